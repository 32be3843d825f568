"""`gridpolicy cadences` and `gridpolicy ledger …`: cadence compliance, object import, the monthly summary,
simulation."""
from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.main import _fail, _services, app

ledger_app = typer.Typer(help="监管台账: 监管对象、巡查记录 supervision ledger", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")


def _period(text: Optional[str]):
    from api.ledger import current_period  # noqa: PLC0415
    from store.errors import StoreError  # noqa: PLC0415
    try:
        return current_period(text)
    except StoreError as err:
        _fail([err.message], 2)


@app.command("cadences")
def cadences(jid: str, period: Annotated[Optional[str], typer.Option(help="2026-11, 2026-Q3 …; 默认本月")] = None,
             unit: Annotated[Optional[str], typer.Option(help="只看此网格及其下级")] = None,
             status: Annotated[Optional[str], typer.Option(
                 help="只列此状态: met, at_risk, missed, open, pending")] = None,
             as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """巡查/检查频次: 每个网格、每项频次要求的应完成次数、已记录次数与状态 (已完成/有风险/未完成)。"""
    from store.cadences import STATUS_LABELS, CadenceService  # noqa: PLC0415
    from store.errors import StoreError  # noqa: PLC0415
    p = _period(period)
    if status and status not in STATUS_LABELS:
        _fail([f"未知的状态 '{status}'; 可用: {', '.join(STATUS_LABELS)}"], 2)
    try:
        result = CadenceService(_services()).compliance(jid, p, unit=unit)
    except StoreError as err:
        _fail([err.message], 2)
    rows = [r for r in result["rows"] if status is None or r["status"] == status]
    if as_json:
        typer.echo(json.dumps({**result, "rows": rows}, ensure_ascii=False, indent=1))
        return
    names = {c["id"]: c for c in result["cadences"]}
    typer.echo(f"{result['name']} {p.label} 频次完成情况 (截至 {result['as_of'][:16]})")
    for lv in result["levels"]:
        typer.echo(f"  第{lv['level']}级 {lv['name']}: "
                   + "  ".join(f"{label} {lv[k]}" for k, label in STATUS_LABELS.items()))
    typer.echo(f"\n{'网格':<18} {'频次要求':<36} {'应完成':>6} {'已记录':>6}  状态")
    for r in rows:
        c = names[r["cadence"]]
        what = f"{c['name'][:24]} ({c['times']}次/{c['per_label']})"
        objects = f" · {r['objects']} 个对象" if r["objects"] else ""
        typer.echo(f"{r['unit_name'][:18]:<18} {what:<36} {r['required']:>6} {r['recorded']:>6}  "
                   f"{r['status_label']}{objects}")


@ledger_app.command("import")
def import_objects(jid: str, file: Path,
                   confirm: Annotated[bool, typer.Option("--confirm", help="无错误时保存")] = False,
                   actor: Annotated[str, typer.Option(help="导入人")] = "cli") -> None:
    """导入监管对象 (CSV 或 .xlsx; 列: 名称,网格,类型,类别,分类理由,许可证号,地址,经度,纬度,建档日期): \
先预览, --confirm 保存。"""
    from store.errors import StoreError  # noqa: PLC0415
    from store.ledger import LedgerService, read_table  # noqa: PLC0415
    if not file.is_file():
        _fail([f"{file}: 文件不存在 — no such file"], 2)
    ledger = LedgerService(_services())
    try:
        rows = read_table(file.read_bytes(), file.name)
        preview = ledger.preview_import(jid, rows)
    except StoreError as err:
        _fail([err.message], 2)
    if preview.errors:
        _fail([f"{file}: {e}" for e in preview.errors] + [f"共 {len(preview.errors)} 处错误, 未保存任何对象"])
    typer.echo(f"{preview.rows} 行: 新增 {len(preview.added)}, 更新 {len(preview.updated)}, 不变 {preview.unchanged}")
    for u in preview.updated[:20]:
        typer.echo(f"  更新 #{u['id']} {u['name']}: "
                   + "; ".join(f"{k} {a} → {b}" for k, (a, b) in u["changes"].items()))
    if confirm:
        ledger.apply_import(jid, rows, actor)
        typer.echo("已保存")
    else:
        typer.echo("预览完毕, 未保存; 加 --confirm 保存")


@ledger_app.command("summary")
def summary(jid: str, out: Path, period: Annotated[Optional[str], typer.Option(help="2026-11; 默认本月")] = None,
            unit: Annotated[Optional[str], typer.Option(help="乡镇/村网格; 默认整个辖区")] = None) -> None:
    """导出巡查记录汇总表 (.xlsx)。"""
    from store.cadences import CadenceService  # noqa: PLC0415
    from store.errors import StoreError  # noqa: PLC0415
    from store.ledger import LedgerService  # noqa: PLC0415
    from store.ledger_xlsx import patrol_summary  # noqa: PLC0415
    policies = _services()
    try:
        out.write_bytes(patrol_summary(LedgerService(policies), CadenceService(policies), jid, _period(period), unit))
    except StoreError as err:
        _fail([err.message], 2)
    typer.echo(f"已导出 {out}")


@ledger_app.command("simulate")
def simulate(jid: str, sources: Annotated[int, typer.Option(min=0, help="监管对象数")] = 1000,
             days: Annotated[int, typer.Option(min=1, max=3660, help="天数")] = 365,
             seed: Annotated[int, typer.Option(help="随机种子")] = 1,
             start: Annotated[str, typer.Option(help="起始日期")] = "2026-01-01",
             daily: Annotated[bool, typer.Option("--daily", help="最低层网格每日巡查 (勤勉程度不同)")] = False) -> None:
    """生成监管对象和巡查记录历史: 有的网格勤勉, 有的不按频次巡查。"""
    from store.simulate_ledger import simulate_ledger  # noqa: PLC0415
    try:
        first = date.fromisoformat(start)
    except ValueError:
        _fail([f"起始日期 '{start}' 格式不正确, 应为 YYYY-MM-DD"], 2)
    counts = simulate_ledger(_services(), jid, sources, first, days, seed, daily=daily,
                             now=datetime.now().astimezone())
    typer.echo(" ".join(f"{k}={v}" for k, v in counts.items()))
