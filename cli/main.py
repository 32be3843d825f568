"""The `gridpolicy` command line."""
from __future__ import annotations

import json
import os
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError

from engine.compiler import compile_policy
from engine.router import Case, Router, RoutingError
from engine.verify import verify
from policy.errors import PolicyError
from policy.loader import UNITS_CSV_SUFFIX, Jurisdiction, Loader, jurisdictions_dir, load_jurisdictions

app = typer.Typer(help="gridpolicy — 网格化环境监管规则 policy-as-data routing", no_args_is_help=True,
                  pretty_exceptions_enable=False)
units_app = typer.Typer(help="网格单元 grid units", no_args_is_help=True)
app.add_typer(units_app, name="units")


def _fail(lines: list[str], code: int = 1) -> None:
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
def validate(paths: Annotated[Optional[list[Path]], typer.Argument(help="辖区目录 (默认 jurisdictions/)")] = None) -> None:
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
        decision = Router(compile_policy(jur)).route(case)
    except ValidationError as exc:
        _fail([f"输入错误 {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()], 2)
    except RoutingError as exc:
        _fail([f"{exc.field}: {exc}"], 2)
    if as_json:
        typer.echo(json.dumps(decision, ensure_ascii=False, indent=2))
        return
    typer.echo(render_decision(decision))


def _party(p: dict | None) -> str:
    if p is None:
        return ""
    if p["kind"] == "grid":
        return f"第{p['level']}级网格{('「' + p['name'] + '」') if p.get('name') else ''}"
    return p["name"]


def render_decision(d: dict) -> str:
    h = d["handler"]
    lines = [f"问题类型: {d['problem_type']['name']} ({d['problem_type']['code']})",
             f"处置网格: 第{h['level']}级 {h['unit_name'] or ''}".rstrip(),
             f"责任部门: {'、'.join(x['name'] for x in h['departments']) or '无'}",
             f"首个动作: {d['first_action']}", "动作:"]
    lines += [f"  - {a['label']}: {_party(a['by'])}{' → ' + _party(a['to']) if a['to'] else ''}  ({a['reason']})"
              for a in d["actions"]]
    if d["deadlines"]:
        lines.append("时限:")
        lines += [f"  - {s['name']}: {s['duration']} ({'工作日' if s['calendar'] == 'working' else '自然日'}) 截止 {s['due']}"
                  for s in d["deadlines"]]
    if d["escalation_path"]:
        lines.append("超期升级路径:")
        lines += [f"  - {e['after']} 后 → 第{e['level']}级 {e['name'] or ''}" for e in d["escalation_path"]]
    lines.append("规则依据 trace:")
    for t in d["trace"]:
        src = t["source"]
        cite = f"{src['seed']} {src['clause']}「{src['quote']}」" if "seed" in src else f"假设 assumption: {src['assumption']}"
        lines.append(f"  - [{t['rule']}] {t['name']} — {cite}")
    return "\n".join(lines)


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


@units_app.command("import")
def units_import(jid: str, csv_file: Path) -> None:
    """用 CSV (id,name,level,parent) 中的真实网格名称替换占位网格; 校验通过才写入。"""
    directory = jurisdictions_dir()
    target = directory / f"{jid}{UNITS_CSV_SUFFIX}"
    if not csv_file.is_file():
        _fail([f"{csv_file}: 文件不存在 — no such file"])
    try:
        jur = Loader(directory, units_csv={jid: csv_file}).build(jid)
    except PolicyError as err:
        _fail([f"错误 error: {issue}" for issue in err.issues] + ["未导入任何单元 — nothing imported"])
    staged = target.with_suffix(".tmp")
    shutil.copyfile(csv_file, staged)
    os.replace(staged, target)  # atomic: readers see the old file or the new one, never half
    typer.echo(f"已导入 {csv_file} → {target}; {jid} 现有 {len(jur.units)} 个网格单元")


def main() -> None:  # pragma: no cover - console entry
    app(sys.argv[1:])
