"""The `gridpolicy` command line."""
from __future__ import annotations

import gc
import json
import os
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer
from pydantic import ValidationError

from engine.compiler import compile_policy
from engine.decision import Decision, GridParty, Party
from engine.pinned import FIELD_LABELS as PINNED_LABELS, run_suite, show as pinned_show
from engine.router import Case, PolicyRouter, RoutingError
from engine.verify import verify
from policy.errors import PolicyError
from policy.loader import UNITS_CSV_SUFFIX, Jurisdiction, Loader, jurisdictions_dir, load_jurisdictions

app = typer.Typer(help="gridpolicy — 网格化环境监管规则 policy-as-data routing", no_args_is_help=True,
                  pretty_exceptions_enable=False)
units_app = typer.Typer(help="网格单元 grid units", no_args_is_help=True)
app.add_typer(units_app, name="units")
apikey_app = typer.Typer(help="接入系统 API key", no_args_is_help=True)
app.add_typer(apikey_app, name="apikey")
user_app = typer.Typer(help="管理后台用户 admin users", no_args_is_help=True)
app.add_typer(user_app, name="user")


def _fail(lines: list[str], code: int = 1) -> NoReturn:
    for line in lines:
        typer.echo(line, err=True)
    raise typer.Exit(code)


def _load_all(directory: Optional[Path] = None) -> dict[str, Jurisdiction]:
    try:
        return load_jurisdictions(directory)
    except PolicyError as err:
        _fail([f"错误 error: {issue}" for issue in err.issues] + [f"共 {len(err.issues)} 个错误"])


def _load_one(jid: str) -> Jurisdiction:
    loader = Loader()
    if jid not in loader.raw:
        _fail([f"未知辖区 unknown jurisdiction '{jid}'; 可用: {', '.join(sorted(loader.raw))}"])
    try:
        return loader.build(jid)
    except PolicyError as err:
        _fail([f"错误 error: {issue}" for issue in err.issues])


@app.command("list")
def list_cmd() -> None:
    """列出所有辖区: 层级、网格数、各层级问题类型数。"""
    for jur in _load_all().values():
        per_level = Counter(t.level for t in jur.policy.problem_types)
        units = Counter(u.level for u in jur.units.values())
        typer.echo(f"{jur.id:<14} {jur.policy.name}  (版本 {jur.content_hash})")
        for level in jur.policy.levels:
            typer.echo(f"    第{level.number}级 {level.name:<16} 网格 {units[level.number]:>5}   "
                       f"问题类型 {per_level.get(level.number, 0):>3}")


@app.command()
def validate(paths: Annotated[Optional[list[Path]], typer.Argument(help="辖区目录 (默认 jurisdictions/)")] = None,
             ) -> None:
    """校验所有辖区文件; 有错误时逐条列出并以 1 退出。"""
    total = 0
    for directory in paths or [jurisdictions_dir()]:
        if not directory.is_dir():
            _fail([f"{directory}: 不是目录 — not a directory"])
        total += len(_load_all(directory))
    typer.echo(f"全部 {total} 个辖区校验通过 — all valid")


@app.command()
def show(jid: str, as_json: Annotated[bool, typer.Option("--json", help="输出解析后的完整规则 JSON")] = False) -> None:
    """显示辖区解析后的规则 (已应用继承)。"""
    jur = _load_one(jid)
    data = jur.policy.model_dump(mode="json", exclude_none=True)
    data["version"] = jur.content_hash
    data["unit_count"] = len(jur.units)
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    typer.echo(f"{jur.policy.name} ({jur.id}) 版本 {jur.content_hash}; 文件: {', '.join(jur.files)}")
    for t in jur.policy.problem_types:
        typer.echo(f"  {t.code:<44} {jur.type_name(t.code):<20} 第{t.level}级 {','.join(t.departments)}")


def _parse_facts(facts: list[str]) -> dict:
    out: dict = {}
    for item in facts:
        name, _, value = item.partition("=")
        if not value:
            _fail([f"--fact 须为 name=value 形式, 而非 '{item}'"], 2)
        out[name] = {"true": True, "false": False}.get(value.lower(), value)
    return out


@app.command()
def route(
    jid: str,
    problem_type: Annotated[str, typer.Option("--type", help="问题类型代码或中文名称")],
    unit: Annotated[Optional[str], typer.Option(help="发现问题的网格单元 id 或名称")] = None,
    level: Annotated[Optional[int], typer.Option("--level", help="发现层级 (未给出单元时)")] = None,
    units_involved: Annotated[Optional[str], typer.Option(help="涉及的网格单元, 逗号分隔")] = None,
    fact: Annotated[Optional[list[str]], typer.Option(help="事实, 如 persuasion_failed=true")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """为一个案件计算路由决定, 附带规则依据。"""
    jur = _load_one(jid)
    try:
        case = Case(problem_type=problem_type, unit=unit, found_at_level=level,
                    units_involved=[u for u in (units_involved or "").split(",") if u],
                    facts=_parse_facts(fact or []))
        decision = PolicyRouter(compile_policy(jur)).route(case)
    except ValidationError as exc:
        _fail([f"输入错误 {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()], 2)
    except RoutingError as exc:
        _fail([f"{exc.field}: {exc}"], 2)
    if as_json:
        typer.echo(json.dumps(decision.model_dump(mode="json"), ensure_ascii=False, indent=2))
        return
    typer.echo(render_decision(decision))


def _party(p: Party | None) -> str:
    if p is None:
        return ""
    if isinstance(p, GridParty):
        return f"第{p.level}级网格{('「' + p.name + '」') if p.name else ''}"
    return p.name


def render_decision(d: Decision) -> str:
    h = d.handler
    lines = [f"问题类型: {d.problem_type.name} ({d.problem_type.code})",
             f"处置网格: 第{h.level}级 {h.unit_name or ''}".rstrip(),
             f"责任部门: {'、'.join(x.name for x in h.departments) or '无'}",
             f"首个动作: {d.first_action}", "动作:"]
    lines += [f"  {'  ∥' if a.parallel else '-'} {a.label}: {_party(a.by)}{' → ' + _party(a.to) if a.to else ''}"
              f"{' 限 ' + a.within.duration + ' 截止 ' + a.within.due if a.within else ''}  ({a.reason})"
              for a in d.actions]
    if d.deadlines:
        lines.append("时限:")
        lines += [f"  - {s.name}: {s.duration} ({'工作日' if s.calendar == 'working' else '自然日'}) 截止 {s.due}"
                  for s in d.deadlines]
    if d.escalation_path:
        lines.append("超期升级路径:")
        lines += [f"  - {e.after} 后 → 第{e.level}级 {e.name or ''}" for e in d.escalation_path]
    lines.append("规则依据 trace:")
    for t in d.trace:
        src = t.source
        cite = (f"{src['seed']} {src['clause']}「{src['quote']}」" if "seed" in src
                else f"假设 assumption: {src['assumption']}")
        lines.append(f"  - [{t.rule}] {t.name} — {cite}")
    return "\n".join(lines)


@app.command("test")
def test_cmd(jid: Annotated[Optional[str], typer.Argument(help="辖区 id (默认全部)")] = None) -> None:
    """运行固定测试用例 (jurisdictions/<id>.tests.yaml); 任一用例结果改变时以 1 退出。"""
    jurisdictions = {jid: _load_one(jid)} if jid else _load_all()
    failed = total = 0
    for jur in jurisdictions.values():
        results = run_suite(jur)
        total += len(results)
        typer.echo(f"{jur.policy.name} ({jur.id}): {len(results)} 个用例 cases")
        for result in results:
            typer.echo(f"  {'通过 PASS' if result.passed else '失败 FAIL'}  {result.case.name}")
            if result.passed:
                continue
            failed += 1
            typer.echo(f"      依据 clause: {result.case.clause.clause} “{result.case.clause.quote}”")
            if result.actual is None:
                typer.echo(f"      无法路由 cannot route: {result.error}")
            for name in [] if result.actual is None else result.changed:
                expected, actual = (pinned_show(getattr(side, name)) for side in (result.case.expect, result.actual))
                typer.echo(f"      {PINNED_LABELS[name]} {name}: 期望 expected {expected}, 实际 actual {actual}")
    typer.echo(f"共 {total} 个用例, {total - failed} 个通过, {failed} 个失败 — {total} cases, {failed} failed")
    if failed:
        raise typer.Exit(1)


@app.command()
def provenance(
    jid: str,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    status: Annotated[Optional[str], typer.Option(help="只列 quoted|assumed|inherited")] = None,
    kind: Annotated[Optional[str], typer.Option(help="只列一类, 如 ProblemType、Deduction")] = None,
) -> None:
    """每类条目及判断性字段中, 有原文出处、假设、继承(引自另一文本)的各有多少; 列出每条假设及其说明。"""
    from policy.provenance import KIND_LABELS, STATUS_LABELS, report as provenance_report  # noqa: PLC0415
    if status is not None and status not in STATUS_LABELS:
        _fail([f"--status 须为 {', '.join(STATUS_LABELS)} 之一, 而非 '{status}'"], 2)
    if kind is not None and kind not in KIND_LABELS:
        _fail([f"--kind 须为 {', '.join(KIND_LABELS)} 之一, 而非 '{kind}'"], 2)
    jur = _load_one(jid)
    out = provenance_report(jur.policy, jur.type_names)
    out["entries"] = [e for e in out["entries"]
                      if (status is None or e["status"] == status) and (kind is None or e["kind"] == kind)]
    if as_json:
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    typer.echo(f"{jur.policy.name} ({jid}) 出处统计: 原文 {out['totals']['quoted']}  假设 {out['totals']['assumed']}  "
               f"继承 {out['totals']['inherited']}")
    typer.echo("类别".ljust(14) + "原文".rjust(6) + "假设".rjust(6) + "继承".rjust(6))
    for name, row in out["kinds"].items():
        typer.echo(f"{KIND_LABELS.get(name, name):<12}" + "".join(f"{row[s]:>8}" for s in STATUS_LABELS))
    listed = [e for e in out["entries"] if e["status"] != "quoted" or status == "quoted"]
    if listed:
        typer.echo("逐条:")
    for e in listed:
        where = f"{e['path']}{'.' + e['field'] if e['field'] else ''}"
        value = f" = {e['value']}" if e["value"] else ""
        cite = f" [{e['clause']}「{e['quote']}」]" if e["quote"] else ""
        typer.echo(f"  [{STATUS_LABELS[e['status']]}] {e['kind_label']} {e['label']} {e['field_label']}{value} "
                   f"({where}){cite}: {e['note']}".rstrip(": "))


@app.command()
def coverage(jid: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """打印覆盖矩阵 (问题类型 × 发现层级 → 处置层级、部门); 有缺口或冲突时以 1 退出。"""
    jur = _load_one(jid)
    report = verify(compile_policy(jur))
    if as_json:
        typer.echo(json.dumps({"ok": report.ok, "problems": report.problems(), "matrix": report.matrix},
                              ensure_ascii=False, indent=2))
    else:
        levels = [lv.number for lv in jur.policy.levels]
        typer.echo("问题类型".ljust(40) + "".join(f"第{n}级发现".ljust(16) for n in levels) + "部门")
        for row in report.matrix:
            cells = "".join(f"→{row['entries'][n]['handler_level']} {row['entries'][n]['first_action']}".ljust(18)
                            for n in levels)
            typer.echo(f"{row['name'][:18]:<22}{cells}{','.join(row['departments'])}")
        typer.echo(f"已检查 {report.combinations} 种事实组合; 问题 {len(report.problems())} 个")
        for problem in report.problems():
            typer.echo(f"  ✗ {problem}")
    if not report.ok:
        raise typer.Exit(1)


@units_app.command("list")
def units_list(jid: str, level: Annotated[int | None, typer.Option("--level", help="只列出此层级")] = None) -> None:
    """列出网格单元: 编号、层级、名称、上级编号 (制表符分隔), 供 /v1/route 和 /v1/cases 的 unit 字段使用。"""
    jur = _load_one(jid)
    levels = sorted(lv.number for lv in jur.policy.levels)
    if level is not None and level not in levels:
        _fail([f"层级 {level} 不存在; {jid} 的层级为 {levels}"])
    for unit in jur.units.values():
        if level is None or unit.level == level:
            typer.echo(f"{unit.id}\t第{unit.level}级\t{unit.name}\t{unit.parent or '-'}")


@units_app.command("import")
def units_import(jid: str, csv_file: Path) -> None:
    """用 CSV (id,name,level,parent) 中的真实网格名称替换占位网格; 校验通过才写入。"""
    gc.disable()  # a one-shot process: cycle collections over 200,000 units' objects took half its time
    directory = jurisdictions_dir()
    target = directory / f"{jid}{UNITS_CSV_SUFFIX}"
    if not csv_file.is_file():
        _fail([f"{csv_file}: 文件不存在 — no such file"])
    try:
        jur = Loader(directory, units_csv={jid: csv_file}).build(jid, hashed=False)  # checked, not stored
    except PolicyError as err:
        _fail([f"错误 error: {issue}" for issue in err.issues] + ["未导入任何单元 — nothing imported"])
    staged = target.with_suffix(".tmp")
    shutil.copyfile(csv_file, staged)
    os.replace(staged, target)  # atomic: readers see the old file or the new one, never half
    typer.echo(f"已导入 {csv_file} → {target}; {jid} 现有 {len(jur.units)} 个网格单元")


boundaries_app = typer.Typer(help="网格边界 unit boundaries (GeoJSON)", no_args_is_help=True)
units_app.add_typer(boundaries_app, name="boundaries")


@boundaries_app.command("import")
def boundaries_import(
    jid: str, geojson_file: Path,
    draft: Annotated[Optional[int],
                     typer.Option("--draft", help="导入到的草稿版本号; 默认最新草稿, 没有则新建")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="只预览, 不保存")] = False,
) -> None:
    """把 GeoJSON FeatureCollection (properties.id = 网格单元 id, WGS-84/CGCS2000 经纬度) 导入草稿;
    有任何问题则不保存。"""
    from store.boundaries import import_boundaries  # noqa: PLC0415
    from store.errors import StoreError  # noqa: PLC0415
    from store.versions import open_policy_store  # noqa: PLC0415
    if not geojson_file.is_file():
        _fail([f"{geojson_file}: 文件不存在 — no such file"])
    policies = open_policy_store()
    try:
        drafts = [v.number for v in policies.list_versions(jid) if v.status == "draft"]
        number = draft or (drafts[-1] if drafts else policies.create_draft(jid, "cli").number)
        preview = import_boundaries(policies, jid, number, geojson_file.read_bytes(), "cli", apply=not dry_run)
    except StoreError as err:
        _fail([err.message])
    typer.echo(f"{jid} 草稿 v{number}: 匹配 {len(preview.matched)} 个网格单元, 无边界的单元 {preview.missing} 个")
    if not preview.ok:
        _fail([f"错误 error: {p}" for p in preview.problems()] + ["未导入任何边界 — nothing imported"])
    typer.echo("预览完毕, 未保存 (--dry-run)" if dry_run else f"已保存到草稿 v{number}; 发布该草稿后按位置确定网格")


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8000,
          workers: Annotated[int, typer.Option(help="工作进程数 (规则引擎持有 GIL, 以进程扩展)")] = 1,
          access_log: Annotated[bool, typer.Option(help="逐个请求写访问日志 (约占路由请求 1/10 的 CPU)")] = False,
          ) -> None:
    """启动服务 (迁移数据库、首次导入随附辖区); 数据库由 GRIDPOLICY_DATABASE_URL 指定, 默认 var/ 下的 SQLite。"""
    import socket  # noqa: PLC0415 - only the server needs these

    import uvicorn  # noqa: PLC0415
    from uvicorn.supervisors import Multiprocess  # noqa: PLC0415

    from store.db import database_url  # noqa: PLC0415
    typer.echo(f"gridpolicy 服务: http://{host}:{port}  数据库: {database_url().split('@')[-1]}  进程: {workers}")
    typer.echo("接口文档 OpenAPI: /schema   健康检查: /health   创建接入密钥: gridpolicy apikey create --all")
    typer.echo(f"管理后台: http://{host}:{port}/admin   创建第一个管理员: gridpolicy user create NAME --superuser")
    # A starting worker compiles every jurisdiction, busy for longer than the supervisor's default 5 s liveness
    # ping on a loaded machine: it would be killed and restarted over and over.
    # uvloop and httptools: the event loop and HTTP parser in C (a third less CPU per answer than asyncio and h11);
    # the protocol sends an answer's head and body in one write (api/protocol.py)
    options: dict[str, Any] = {"factory": True, "host": host, "port": port, "workers": workers, "log_level": "info",
               "timeout_worker_healthcheck": 120, "loop": "uvloop", "http": "api.protocol:JoinedWritesProtocol",
               "access_log": access_log}
    if workers == 1:
        uvicorn.run("api.app:create_app", **options)
        return
    config = uvicorn.Config("api.app:create_app", **options)
    # uvicorn binds the workers' shared socket with protocol 0, and asyncio turns Nagle off only on sockets
    # that say IPPROTO_TCP: each keep-alive response would then wait ~40 ms for the client's delayed ACK.
    bound = config.bind_socket()
    Multiprocess(config, sockets=[socket.socket(bound.family, bound.type, socket.IPPROTO_TCP,
                                                fileno=bound.detach())]).run()


def _engine():
    from store.db import make_engine, migrate  # noqa: PLC0415
    engine = make_engine()
    migrate(engine)
    return engine


def _require_known(jurisdictions: list[str] | None) -> None:
    """Exit 2 naming any id that is not a bundled jurisdiction (templates such as _common are not)."""
    known = sorted(k for k in Loader().raw if not k.startswith("_"))
    unknown = [j for j in jurisdictions or [] if j not in known]
    if unknown:
        _fail([f"未知辖区 {', '.join(unknown)}; 可用: {', '.join(known)}"], 2)


@apikey_app.command("create")
def apikey_create(
    jurisdiction: Annotated[Optional[list[str]], typer.Option("--jurisdiction", help="可访问的辖区 (可重复)")] = None,
    all_: Annotated[bool, typer.Option("--all", help="可访问全部辖区")] = False,
    label: str = "",
) -> None:
    """创建 API key; 密钥只显示一次, 在最后一行。"""
    from store.apikeys import create_key  # noqa: PLC0415
    if bool(jurisdiction) == all_:
        _fail(["须指定 --jurisdiction ID (可重复) 或 --all 之一"], 2)
    _require_known(jurisdiction)
    scope = [] if all_ else list(jurisdiction or [])
    key = create_key(_engine(), scope, label, actor="cli")
    typer.echo(f"已创建, 范围: {'全部辖区' if all_ else ', '.join(scope)}。请妥善保存, 不会再次显示:")
    typer.echo(key)


@apikey_app.command("revoke")
def apikey_revoke(prefix: str) -> None:
    """吊销 API key (按前缀, 即 gp_<前缀>_… 中的前缀)。"""
    from store.apikeys import revoke_key  # noqa: PLC0415
    from store.errors import StoreError  # noqa: PLC0415
    try:
        revoke_key(_engine(), prefix, actor="cli")
    except StoreError as err:
        _fail([err.message])
    typer.echo(f"已吊销 {prefix}")


@apikey_app.command("list")
def apikey_list() -> None:
    """列出 API key (只显示前缀)。"""
    from store.apikeys import list_keys  # noqa: PLC0415
    for key in list_keys(_engine()):
        state = f"已吊销 {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "有效"
        typer.echo(f"{key.prefix}  {','.join(key.jurisdictions) or '全部辖区'}  {key.label}  {state}")


@user_app.command("create")
def user_create(
    name: str,
    superuser: Annotated[bool, typer.Option("--superuser", help="超级管理员: 所有辖区的全部权限")] = False,
    role: Annotated[Optional[str], typer.Option(
        "--role", help="viewer (查看) | editor (编辑草稿) | publisher (发布/回滚)")] = None,
    jurisdiction: Annotated[Optional[list[str]], typer.Option("--jurisdiction", help="角色所属辖区 (可重复)")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="从标准输入读取密码")] = False,
) -> None:
    """创建管理后台用户 (密码以 argon2 散列保存)。"""
    from store.errors import StoreError  # noqa: PLC0415
    from store.users import create_user  # noqa: PLC0415
    if superuser == bool(role) or bool(role) != bool(jurisdiction):
        _fail(["须指定 --superuser, 或 --role ROLE 与 --jurisdiction ID 之一"], 2)
    _require_known(jurisdiction)
    password = (sys.stdin.readline().rstrip("\n") if password_stdin
                else typer.prompt("密码", hide_input=True, confirmation_prompt="再次输入密码"))
    roles = {j: role for j in jurisdiction or []} if role else {}
    try:
        create_user(_engine(), name, password, superuser, roles, actor="cli")
    except StoreError as err:
        _fail([err.message])
    typer.echo(f"已创建用户 {name}: {'超级管理员' if superuser else f'{role} @ ' + ', '.join(jurisdiction or [])}。"
               "登录 http://127.0.0.1:8000/admin")


@app.command("compare")
def compare_cmd(ids: Annotated[list[str], typer.Argument(help="两个或更多辖区 id")]) -> None:
    """并排比较辖区: 层级、网格数、共有问题类型的处置层级 (差异标 *)、流程时限。"""
    from policy.diff import compare  # noqa: PLC0415
    if len(ids) < 2:
        _fail(["至少需要两个辖区"], 2)
    result = compare([_load_one(jid) for jid in ids])
    for j in result["jurisdictions"]:
        levels = " / ".join(f"{lv['name']}×{lv['units']}({lv['problem_types']}类)" for lv in j["levels"])
        typer.echo(f"{j['id']:<12} {levels}")
    typer.echo("\n共有问题类型的处置层级 (* 表示不同):")
    typer.echo(f"{'问题类型':<24}" + "".join(f"{i:>12}" for i in ids))
    for row in result["problem_types"]:
        if len(row["by_jurisdiction"]) < 2:
            continue
        by = row["by_jurisdiction"]
        cells = "".join(f"{('第' + str(by[i]['level']) + '级') if i in by else '—':>12}" for i in ids)
        typer.echo(f"{'*' if row['differs'] else ' '}{row['name'][:20]:<23}{cells}")
    for j in result["jurisdictions"]:
        for w in j["workflows"]:
            steps = " → ".join(f"{s['name']}({s['duration'] / 3600:g}h{'?' if s['assumed'] else ''})"
                               for s in w["steps"])
            typer.echo(f"{j['id']} 流程 {w['name']}: {steps}")


def _services():
    from store.versions import open_policy_store  # noqa: PLC0415
    try:
        return open_policy_store()
    except PolicyError as err:
        _fail([f"错误 error: {issue}" for issue in err.issues])


@app.command("compact-cases")
def compact_cases() -> None:
    """把 #17 之前整份保存的案件决定改为紧凑存储 (引文与名称从规则版本读回); 可重复执行。"""
    from store.cases import CaseService  # noqa: PLC0415
    typer.echo(f"rewritten={CaseService(_services()).compact_stored()}")


@app.command()
def simulate(jid: str, cases: Annotated[int, typer.Option("--cases", min=1, help="案件数")] = 1000,
             days: Annotated[int, typer.Option("--days", min=1, max=3660, help="天数")] = 365,
             seed: Annotated[int, typer.Option("--seed", help="随机种子 (同一种子得到同样的案件)")] = 1,
             start: Annotated[str, typer.Option("--start", help="起始日期 (北京时间)")] = "2026-01-01") -> None:
    """生成模拟案件历史: 经由案件状态机与超期检查, 含按时、超期升级、回退、延期、返工等情形。"""
    from datetime import date, datetime  # noqa: PLC0415

    from store.assessment import CST  # noqa: PLC0415
    from store.cases import CaseService  # noqa: PLC0415
    from store.errors import StoreError  # noqa: PLC0415
    from store.simulate import simulate as run  # noqa: PLC0415
    try:
        first = datetime.combine(date.fromisoformat(start), datetime.min.time(), tzinfo=CST)
    except ValueError:
        _fail([f"起始日期 '{start}' 格式不正确, 应为 YYYY-MM-DD"], 2)
    policies = _services()
    try:
        counts = run(CaseService(policies), jid, cases, days, seed, first,
                     progress=lambda done, total: typer.echo(f"\r{done}/{total}", nl=False, err=True))
    except StoreError as err:
        _fail([err.message])
    typer.echo("", err=True)
    typer.echo(" ".join(f"{k}={v}" for k, v in counts.items()))


@app.command()
def assess(jid: str, period: Annotated[Optional[str], typer.Option(help="2026-Q3, 2026-07, 2026-H1 或 2026")] = None,
           level: Annotated[Optional[int], typer.Option(help="只看某一层级")] = None,
           as_json: Annotated[bool, typer.Option("--json")] = False,
           xlsx: Annotated[Optional[Path], typer.Option(help="导出 Excel 到此文件")] = None,
           top: Annotated[int, typer.Option(help="每层级显示的网格数")] = 10) -> None:
    """综合评价 / 绩效考核: 各网格的案件指标、得分、扣分与排名。"""
    from store.assessment import RATE_LABELS, AssessmentService  # noqa: PLC0415
    from store.assessment_xlsx import workbook  # noqa: PLC0415
    from store.errors import StoreError  # noqa: PLC0415
    service = AssessmentService(_services())
    try:
        p = service.period(jid, period or None)
        result = service.assess(jid, p, level)
    except StoreError as err:
        _fail([err.message], 2)
    if xlsx:
        xlsx.write_bytes(workbook(result))
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False, indent=1))
        return
    scheme = result["scheme"]
    typer.echo(f"{result['name']} 考核期 {p.label}" + (
        f" · {scheme['scheme_label']} {scheme['total']:g} 分, 扣分自 {result['score_window']['label']} 计"
        if scheme else " · 未设考核方案"))
    for lv in result["levels"]:
        rates = "  ".join(f"{RATE_LABELS[k]} {v:.1%}" for k, v in lv["rates"].items() if v is not None)
        typer.echo(f"\n第{lv['level']}级 {lv['name']} ({lv['units']} 个网格, 平均 {lv['average_score']}) {rates}")
        for u in [u for u in result["units"] if u["level"] == lv["level"]][:top]:
            items = "; ".join(f"{d['name']}×{d['count']} -{d['points']:g}" for d in u["deductions"])
            veto = f" 一票否决: {', '.join(u['vetoed'])}" if u["vetoed"] else ""
            typer.echo(f"  {u['rank']:>4}. {u['name'][:16]:<16} {u['score']!s:>6}  {items}{veto}")
    if result["unassigned"]:  # cases no grid can be charged with: shown, never dropped
        un = result["unassigned"]
        items = "; ".join(f"{d['name']}×{d['count']} -{d['points']:g}" for d in un["deductions"])
        typer.echo(f"\n{un['name']}: 受理 {un['indicators']['received']}  {items}")
    if xlsx:
        typer.echo(f"\n已导出 {xlsx}")


from cli import ledger as _ledger  # noqa: E402,F401 - registers `gridpolicy cadences` and `gridpolicy ledger …`


def main() -> None:  # pragma: no cover - console entry
    app(sys.argv[1:])

