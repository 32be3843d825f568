"""Insight pages: the escalation graph and impact preview on the verify page, compare chart and .xlsx export,
and the cases dashboard."""
from __future__ import annotations

from collections import Counter
from typing import Annotated

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Template

from admin.charts import bar_chart, line_chart
from admin.common import Number, page, services
from engine.compiler import CompiledPolicy
from engine.verify import escalation_edges
from policy.diff import compare
from policy.words import CASE_EVENT_LABELS, CASE_STATE_LABELS, condition_text, duration_text, label
from store import dashboard, xlsx
from store.cases import CLOSED
from store.tables import as_utc, utcnow
from store.errors import Invalid, NotFound
from store.replay import DEFAULT_DAYS, parse_days, replay_version
from store.users import Principal

NODE_W, NODE_H, GAP, LEFT, TOP = 300, 54, 46, 20, 16


def escalation_graph(compiled: CompiledPolicy) -> dict:
    """Coordinates for the escalation graph SVG: one box per level (with its grid count, or its only grid's
    name), one arrow per escalation hop, labelled with the deadline rule and the handling deadline it follows."""
    jur = compiled.jurisdiction
    levels = sorted(jur.policy.levels, key=lambda lv: lv.number)
    counts = Counter(u.level for u in jur.units.values())
    y = {lv.number: TOP + i * (NODE_H + GAP) for i, lv in enumerate(levels)}
    nodes = []
    for lv in levels:
        only = jur.units_at(lv.number)[0].name if counts[lv.number] == 1 else None
        nodes.append({"number": lv.number, "title": f"第{lv.number}级 {lv.name}", "y": y[lv.number],
                      "detail": only or f"{counts[lv.number]} 个{lv.unit_kind}"})
    steps = sorted({f"「{s.name}」{duration_text(s.deadline.duration, s.deadline.calendar)}"
                    for w in jur.policy.workflows for s in w.steps if s.handling})
    deadline = "超过处置时限 " + " / ".join(steps) if steps else "超期"
    edges: list[dict] = []
    for edge in escalation_edges(compiled):
        start, end = y[edge["from"]] + NODE_H / 2, y[edge["to"]] + NODE_H / 2
        bulge = LEFT + NODE_W + 40 + 24 * (edge["from"] - edge["to"])
        shift = 32 * sum(e["from"] == edge["from"] and e["to"] == edge["to"] for e in edges)  # same arrow, next label
        condition = condition_text(edge["when"]).removesuffix("时") if edge["when"] else ""
        path = f"M {LEFT + NODE_W} {start} C {bulge} {start}, {bulge} {end}, {LEFT + NODE_W + 4} {end}"
        edges.append(edge | {"condition": condition, "path": path,
                             "label_x": bulge + 6, "label_y": (start + end) / 2 + shift, "deadline": deadline})
    return {"nodes": nodes, "edges": edges, "node_w": NODE_W, "node_h": NODE_H, "left": LEFT,
            "height": TOP * 2 + len(levels) * (NODE_H + GAP) - GAP, "width": 980}


# --- impact preview (fragment on the verify page; a page of its own without htmx)
@get("/j/{jid:str}/v/{number:int}/impact", sync_to_thread=True, opt={"role": "viewer"})
def impact(request: HTMXRequest, user: NamedDependency[Principal], jid: FromPath[str], number: Number,
           days: Annotated[str | None, QueryParameter(max_length=20)] = None) -> Template:
    s = services(request).policies
    version = s.get_version(jid, number)
    report = replay_version(s, version, parse_days(days))
    return page("insight_impact.html" if request.htmx else "insight_impact_page.html", user=user, jid=jid,
                version=version, impact=report, days=report.days)


# --- compare: the chart, every section as a table, and the same tables as an .xlsx workbook
CompareIds = Annotated[list[str] | None, QueryParameter(max_items=50)]


def chosen_jurisdictions(request: Request, ids: list[str] | None) -> tuple[list[str], list[str]]:
    """(all known jurisdiction ids, the requested ones that exist, in request order)."""
    known = sorted(services(request).policies.refresh())
    return known, [i for i in dict.fromkeys(ids or []) if i in known]


def comparison(request: Request, chosen: list[str]) -> dict:
    s = services(request).policies
    return compare([s.router(jid).jur for jid in chosen])


def level_chart(result: dict):
    """Problem types handled at each level, one bar per jurisdiction."""
    top = max(lv["number"] for j in result["jurisdictions"] for lv in j["levels"])
    series = {}
    for j in result["jurisdictions"]:
        per_level = {lv["number"]: lv["problem_types"] for lv in j["levels"]}
        series[j["name"]] = [per_level.get(n) for n in range(1, top + 1)]
    return bar_chart("各级网格处置的问题类型数", [f"第{n}级" for n in range(1, top + 1)], series)


def compare_sections(result: dict) -> list[dict]:
    """Each section of the comparison as a title, Chinese headers and typed rows (for HTML and Excel alike)."""
    js = result["jurisdictions"]
    return [
        {"id": "levels", "title": "层级与网格",
         "headers": ["辖区", "辖区名称", "层级", "层级名称", "网格类型", "网格数", "问题类型数"],
         "rows": [[j["id"], j["name"], lv["number"], lv["name"], lv["unit_kind"], lv["units"], lv["problem_types"]]
                  for j in js for lv in j["levels"]]},
        {"id": "types", "title": "问题类型处置层级",
         "headers": ["问题类型代码", "问题类型", *[j["id"] for j in js], "层级不同"],
         "rows": [[t["code"], t["name"], *[t["by_jurisdiction"].get(j["id"], {}).get("level") for j in js],
                   "是" if t["differs"] else ""] for t in result["problem_types"]]},
        {"id": "departments", "title": "职能部门", "headers": ["辖区", "部门代码", "部门名称"],
         "rows": [[j["id"], d["id"], d["name"]] for j in js for d in j["departments"]]},
        {"id": "workflows", "title": "流程与时限", "headers": ["辖区", "流程", "步骤", "时限", "日历", "依据"],
         "rows": [[j["id"], w["name"], st["name"], duration_text(st["duration"], st["calendar"]),
                   label(st["calendar"], "calendar"), "假设" if st["assumed"] else "原文"]
                  for j in js for w in j["workflows"] for st in w["steps"]]},
        {"id": "rules", "title": "规则与超期升级", "headers": ["辖区", "规则代码", "规则名称", "优先级"],
         "rows": [[j["id"], r["id"], r["name"], r["priority"]] for j in js for r in j["escalation"]]},
        {"id": "scoring", "title": "考核评分", "headers": ["辖区", "计分方式", "总分", "考核周期", "公示周期"],
         "rows": [[j["id"], *([label(j["scoring"]["scheme"], "scheme"), j["scoring"]["total"],
                               label(j["scoring"]["period"], "period"),
                               label(j["scoring"]["publish"], "period")]
                             if j["scoring"] else ["无", None, None, None])]
                  for j in js]},
    ]


def compare_extras(result: dict) -> dict:
    return {"chart": level_chart(result), "sections": compare_sections(result)}


@get("/compare.xlsx", sync_to_thread=True)
def compare_xlsx(request: Request, user: NamedDependency[Principal], ids: CompareIds = None) -> Response:
    _, chosen = chosen_jurisdictions(request, ids)
    if len(chosen) < 2:
        raise Invalid("导出比较表须至少选择两个存在的辖区 (ids)", field="ids")
    return Response(xlsx.workbook(compare_sections(comparison(request, chosen))), media_type=xlsx.MEDIA_TYPE,
                    headers={"Content-Disposition": f'attachment; filename="compare-{"-".join(chosen)}.xlsx"'})


# --- cases: dashboard per jurisdiction, filtered list, one case with its timeline
PAGE_SIZE = 50
STATES = {"all": "全部", "open": "在办", "overdue": "超期", "closed": "已结案"}


def _whole(text: str | None, field: str, label: str, low: int = 1) -> int | None:
    text = (text or "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < low:
        raise Invalid(f"{label}须为不小于 {low} 的整数, 收到 '{text[:20]}'", field=field)
    return int(text)


@get("/cases/{jid:str}", sync_to_thread=True, opt={"role": "viewer"})
def cases_dashboard(request: Request, user: NamedDependency[Principal], jid: FromPath[str],
                    days: Annotated[str | None, QueryParameter(max_length=20)] = None) -> Template:
    s = services(request).policies
    jur = s.router(jid).jur
    engine = s.engine
    window = parse_days(days)
    levels = {lv.number: lv.name for lv in jur.policy.levels}
    unit_count, units = dashboard.by_unit(engine, jid)
    series = dashboard.over_time(engine, jid, window)
    chart = line_chart(f"每{'周' if series['weekly'] else '日'}受理与结案 ({series['labels'][0]} 至今, UTC)",
                       [label[5:] for label in series["labels"]],  # MM-DD; the title has the year
                       {"受理": series["received"], "结案": series["closed"]})
    return page("cases_dashboard.html", user=user, jid=jid, name=jur.policy.name, days=window,
                totals=dashboard.totals(engine, jid), by_level=dashboard.by_level(engine, jid), levels=levels,
                units=units, unit_count=unit_count, unit_names={u.id: u.name for u in jur.units.values()}, chart=chart)


@get("/cases/{jid:str}/list", sync_to_thread=True, opt={"role": "viewer"})
def cases_list(request: Request, user: NamedDependency[Principal], jid: FromPath[str],
               state_: Annotated[str | None, QueryParameter(name="state", max_length=20)] = None,
               level: Annotated[str | None, QueryParameter(max_length=20)] = None,
               unit: Annotated[str | None, QueryParameter(max_length=128)] = None,
               page_: Annotated[str | None, QueryParameter(name="page", max_length=20)] = None) -> Template:
    state = state_ or "all"
    if state not in STATES:
        states = "、".join(f"{k} ({v})" for k, v in STATES.items())
        raise Invalid(f"状态须为 {states} 之一, 收到 '{state}'", field="state")
    number = _whole(page_, "page", "页码") or 1
    total, rows = services(request).cases.search(
        jid, unit=(unit or "").strip() or None, status={"open": "open", "overdue": "open", "closed": CLOSED}.get(state),
        overdue=True if state == "overdue" else None, level=_whole(level, "level", "层级"),
        limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE)
    pages = max(1, -(-total // PAGE_SIZE))
    query = {"state": state, "level": level or "", "unit": unit or ""}
    now = utcnow()  # an overdue case escalated runs a fresh clock at its new level: its due time is ahead
    restarted = {r.id for r in rows if r.overdue and r.due_at is not None and as_utc(r.due_at) > now}
    names = {r.id: services(request).cases.names(r) for r in rows}
    return page("cases_list.html", user=user, jid=jid, rows=rows, total=total, page_number=number, pages=pages,
                restarted=restarted, names=names,
                query=query, states=STATES, levels=sorted(services(request).policies.router(jid).jur.policy.levels,
                                                          key=lambda lv: lv.number))


@get("/cases/{jid:str}/{case_id:int}", sync_to_thread=True, opt={"role": "viewer"})
def case_page(request: Request, user: NamedDependency[Principal], jid: FromPath[str], case_id: Number) -> Template:
    record, events, clocks = services(request).cases.get(case_id)
    if record.jurisdiction != jid:
        raise NotFound(f"辖区 {jid} 没有案件 {case_id}", field="id")
    decision = services(request).policies.decision(record.stored_decision)
    steps = {d.step: d.name for d in decision.deadlines} | CASE_STATE_LABELS
    return page("cases_case.html", user=user, jid=jid, record=record, events=events, clocks=clocks, steps=steps,
                labels=CASE_EVENT_LABELS, decision=decision)


def setup_templates(env) -> None:
    env.globals["impact_default_days"] = DEFAULT_DAYS


ROUTES = [impact, compare_xlsx, cases_dashboard, cases_list, case_page]
