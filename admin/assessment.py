"""综合评价 / 绩效考核 pages: ranking, charts, drill-down from a score to its deductions and case events, export,
and the self / upper-grid assessment records the policy requires."""
from __future__ import annotations

from typing import Annotated

from litestar import Request, Response, get, post
from litestar.concurrency import sync_to_thread
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Redirect, Template
from pydantic import BeforeValidator, Field

from admin.charts import bar_chart, line_chart
from admin.common import jurisdiction_redirect, page, services
from admin.forms import FormModel, blank_is_none, read, text
from store.assessment import INDICATOR_LABELS, RATE_LABELS, Period
from store.assessment_xlsx import workbook
from store.xlsx import MEDIA_TYPE as XLSX_MEDIA_TYPE
from store.errors import Invalid
from store.users import Principal

PeriodQuery = Annotated[str | None, QueryParameter(max_length=16)]
LevelQuery = Annotated[int | None, QueryParameter(ge=1, le=6)]
RANKING_ROWS = 300  # the page shows this many units per level; the Excel export has them all
CHART_UNITS = 40


def _period(request: Request, jid: str, period: str | None) -> Period:
    return services(request).assessment.period(jid, period or None)  # an emptied form field: the default


def _busiest_level(result: dict) -> int:
    """Without a chosen level, show the one whose grids received most cases (the grids being assessed)."""
    return max(result["levels"], key=lambda lv: (lv["indicators"]["received"], -lv["level"]))["level"]


@get("/assessment", sync_to_thread=True)
def assessment_home(request: Request, user: NamedDependency[Principal],
                    jurisdiction: Annotated[str | None, QueryParameter(max_length=64)] = None) -> Redirect:
    return jurisdiction_redirect(request, user, jurisdiction, "assessment")


@get("/j/{jid:str}/assessment", sync_to_thread=True, opt={"role": "viewer"})
def assessment_page(request: Request, user: NamedDependency[Principal], jid: FromPath[str], period: PeriodQuery = None,
                    level: LevelQuery = None) -> Template:
    s = services(request)
    p = _period(request, jid, period)
    overview = s.assessment.assess(jid, p)
    level = level or _busiest_level(overview)
    units = [u for u in overview["units"] if u["level"] == level]
    if not units:
        raise Invalid(f"层级 {level} 不存在; 本辖区层级为 {[lv['level'] for lv in overview['levels']]}", field="level")
    lowest = sorted(units, key=lambda u: (u["score"] if u["score"] is not None else 0, u["unit"]))[:CHART_UNITS]
    charts = {}
    if overview["scheme"]:
        charts["scores"] = bar_chart(f"得分最低的 {len(lowest)} 个网格 (第{level}级)", [u["name"] for u in lowest],
                                     {"得分": [u["score"] for u in lowest]})
    trend = s.assessment.trend(jid, p, 6, level)
    charts["trend"] = line_chart(f"按时率趋势 (第{level}级)", [t["period"] for t in trend], {
        RATE_LABELS[k]: [None if t[k] is None else round(t[k] * 100, 1) for t in trend]
        for k in ("on_time_handling_rate", "on_time_closure_rate", "on_time_report_rate")})
    required = (overview["scheme"] or {}).get("assessments", [])
    kinds = sorted({a["kind"] for a in required if a["kind"] in ("self", "upper")})
    versions = s.policies.list_versions(jid)
    return page("assessment.html", user=user, jid=jid, r=overview, period=p, level=level, units=units[:RANKING_ROWS],
                total_units=len(units), charts=charts, indicator_labels=INDICATOR_LABELS, rate_labels=RATE_LABELS,
                record_kinds=kinds, can_record=user.can(jid, "editor"),
                active_number=next(v.number for v in versions if v.active),
                drafts=[v.number for v in versions if v.status == "draft"])


@get("/j/{jid:str}/assessment/units/{unit:str}", sync_to_thread=True, opt={"role": "viewer"})
def assessment_unit(request: HTMXRequest, user: NamedDependency[Principal], jid: FromPath[str], unit: FromPath[str],
                    period: PeriodQuery = None) -> Template:
    p = _period(request, jid, period)
    explanation = services(request).assessment.explain(jid, p, unit)
    template = "assessment_unit_detail.html" if request.htmx else "assessment_unit.html"
    jur = services(request).policies.router(jid).jur
    return page(template, user=user, jid=jid, e=explanation, period=p, type_names=jur.type_names,
                step_names={s.id: s.name for w in jur.policy.workflows for s in w.steps})


@get("/j/{jid:str}/assessment.xlsx", sync_to_thread=True, opt={"role": "viewer"})
def assessment_export(request: Request, user: NamedDependency[Principal], jid: FromPath[str],
                      period: PeriodQuery = None, level: LevelQuery = None) -> Response:
    p = _period(request, jid, period)
    result = services(request).assessment.assess(jid, p, level)
    return Response(workbook(result), media_type=XLSX_MEDIA_TYPE,
                    headers={"Content-Disposition": f'attachment; filename="assessment-{jid}-{p.label}.xlsx"'})


class RecordForm(FormModel):
    """A self- or upper-grid assessment record."""
    period: str = text("考核期", 16, required=False)
    level: Annotated[int | None, BeforeValidator(blank_is_none)] = Field(None, title="层级", ge=1, le=6)
    unit: str = text("网格单元", 128)
    kind: str = text("考核类别", 16)
    score: float = Field(title="评分", allow_inf_nan=False)
    note: str = text("说明", 2000, required=False)


@post("/j/{jid:str}/assessment/records", opt={"role": "editor"})
async def assessment_record(request: Request, user: NamedDependency[Principal], jid: FromPath[str]) -> Redirect:
    (form,) = read(await request.form(), (RecordForm, ""))
    p = Period.parse(form.period)
    await sync_to_thread(services(request).assessment.record, jid, p, form.unit, form.kind, form.score, user.name,
                         form.note)
    return Redirect(f"/admin/j/{jid}/assessment?period={p.label}&level={form.level or ''}#records")


ROUTES = [assessment_home, assessment_page, assessment_unit, assessment_export, assessment_record]
