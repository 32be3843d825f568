"""巡查记录汇总表: the monthly summary of patrol records a village or township files (篇二 四(二): "每月底前由主任负责
上报本月巡查记录汇总表到乡政府备案"), as .xlsx with Chinese headers, plus the cadences' completion for the period."""
from __future__ import annotations

from datetime import datetime, timedelta

from policy.models import ACTIVITY_LABELS
from store import xlsx
from store.assessment import Period
from store.cadences import CadenceService, period_days
from store.ledger import CST, LedgerService

HEADERS = ["序号", "巡查日期", "时间", "网格", "巡查内容", "巡查人", "检查对象", "发现问题", "处理情况", "签字人",
           "现场照片"]


def patrol_summary(ledger: LedgerService, cadences: CadenceService, jid: str, period: Period,
                   unit: str | None = None, now: datetime | None = None) -> bytes:
    router = ledger.policies.router(jid)
    top = ledger.unit(router, unit) if unit else next(u for u in router.units.values() if u.parent is None)
    start, end = period_days(period)
    rows = []
    for n, (record, objects) in enumerate(ledger.patrols_with_objects(jid, top.id, start, end), start=1):
        local = record.patrolled_at.astimezone(CST)
        handled = "; ".join(f"已立案 #{f['case_id']}" if f.get("case_id") else "现场处理" for f in record.findings)
        rows.append([n, record.day.isoformat(), f"{local:%H:%M}", router.units[record.unit].name,
                     ACTIVITY_LABELS.get(record.activity, record.activity), "、".join(record.patrollers),
                     "、".join(o.name for o in objects),
                     "; ".join(f["description"] for f in record.findings) or "未发现问题",
                     handled, record.signed_by, "\n".join(record.photos)])
    last_day = end - timedelta(days=1)
    title = f"{top.name} {start.year}年{start.month}月巡查记录汇总表" if period.kind == "month" else \
        f"{top.name} {period.label} 巡查记录汇总表 ({start} 至 {last_day})"
    footer = [[], [f"共 {len(rows)} 条巡查记录"], ["填报单位:", top.name, "", "负责人(签字):", "", "", "报送日期:"],
              ["说明: 谁巡查谁签字谁负责; 每月底前报送上级网格备案。"]]
    result = cadences.compliance(jid, period, now, top.id)
    names = {c["id"]: c for c in result["cadences"]}
    done = [[r["unit_name"], r["level"], names[r["cadence"]]["name"],
             f"{names[r['cadence']]['times']}次/{names[r['cadence']]['per_label']}", r["objects"] or "", r["required"],
             r["recorded"], r["status_label"]] for r in result["rows"]]
    return xlsx.workbook([
        {"title": "巡查记录汇总表", "caption": title, "headers": HEADERS, "rows": rows, "footer": footer},
        {"title": "频次完成情况",
         "caption": f"{top.name} {period.label} 巡查频次完成情况 (截至 {result['as_of'][:10]})",
         "headers": ["网格", "层级", "频次要求", "频次", "监管对象数", "应完成", "已完成", "状态"], "rows": done},
    ])
