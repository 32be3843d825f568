"""监管台账 pages: supervised objects (search by name/pinyin, filter by grid, kind, class; detail with history; add,
edit, import with preview), patrol records (list, entry form whose finding opens a case), and the cadence compliance
dashboard with the monthly 巡查记录汇总表."""
from __future__ import annotations

import json
from datetime import date, datetime
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from admin.charts import bar_chart
from admin.common import FormInvalid, Number, is_htmx, jurisdiction_redirect, page, services
from admin.forms import PatrolForm, read
from api.ledger import current_period, ledger_services
from policy.models import ACTIVITY_LABELS, OBJECT_KINDS
from store.cadences import RANK, STATUS_LABELS
from store.errors import Invalid, StoreError
from store.ledger import CST, IMPORT_COLUMNS, OBJECT_FIELDS, PAGE, Finding, PatrolInput, RowError, read_table
from store.ledger_xlsx import patrol_summary
from store.users import Principal
from store.xlsx import MEDIA_TYPE as XLSX_MEDIA_TYPE

Text = Annotated[str | None, QueryParameter(max_length=128)]
PageQuery = Annotated[int, QueryParameter(ge=1, le=100_000)]
DASHBOARD_ROWS = 300
TREND_PERIODS = 6
CHART_ORDER = ("open", "at_risk", "met", "missed", "pending")  # the chart palette's blue, amber, green, red, grey


def _ledger(request: Request):
    return ledger_services(request.app)


def _field_errors(err: StoreError) -> dict[str, str]:
    errors = err.extra.get("errors") or [{"field": err.field or "general", "message": err.message}]
    return {e["field"]: e["message"] for e in errors}


def _context(request: Request, jid: str) -> dict[str, Any]:
    router = services(request).policies.router(jid)
    return {"jid": jid, "name": router.jur.policy.name, "kinds": OBJECT_KINDS,
            "classes": {c.id: c for c in router.jur.policy.source_classes}, "units": router.units,
            "field_labels": {key: label for label, key in IMPORT_COLUMNS.items()}}


@get("/ledger", sync_to_thread=True)
def ledger_home(request: Request, user: NamedDependency[Principal],
                jurisdiction: Annotated[str | None, QueryParameter(max_length=64)] = None) -> Redirect:
    return jurisdiction_redirect(request, user, jurisdiction, "ledger")


# --- objects
@get("/j/{jid:str}/ledger", sync_to_thread=True, opt={"role": "viewer"})
def objects_page(request: Request, user: NamedDependency[Principal], jid: FromPath[str], q: Text = None,
                 unit: Text = None, kind: Text = None,
                 source_class: Annotated[str | None, QueryParameter(name="class", max_length=8)] = None,
                 page_no: Annotated[int, QueryParameter(name="page", ge=1, le=100_000)] = 1) -> Template:
    ledger = _ledger(request).ledger
    total, rows = ledger.search_objects(jid, q, unit or None, kind or None, source_class or None, PAGE,
                                        (page_no - 1) * PAGE)
    context = {**_context(request, jid), "user": user, "rows": rows, "total": total, "page_no": page_no,
               "pages": max(1, -(-total // PAGE)), "q": q or "", "unit": unit or "", "kind": kind or "",
               "source_class": source_class or "", "counts": ledger.object_counts(jid)}
    return page("ledger_objects_rows.html" if is_htmx(request) else "ledger_objects.html", **context)


@get("/j/{jid:str}/ledger/objects/{object_id:int}", sync_to_thread=True, opt={"role": "viewer"})
def object_page(request: Request, user: NamedDependency[Principal], jid: FromPath[str], object_id: Number,
                saved: Annotated[bool, QueryParameter()] = False) -> Template:
    return _object_page(request, user, jid, object_id, {}, saved=saved)


def _object_page(request: Request, user: Principal, jid: str, object_id: int, errors: dict[str, str],
                 status: int = 200, saved: bool = False, form: dict | None = None) -> Template:
    ledger = _ledger(request).ledger
    obj = ledger.get_object(jid, object_id)
    total, patrols = ledger.search_patrols(jid, object_id=object_id, limit=20)
    return page("ledger_object.html", status, **_context(request, jid), user=user, obj=obj, errors=errors, saved=saved,
                history=ledger.history(jid, object_id), patrols=patrols, patrol_total=total,
                form=form or obj.model_dump(), editable=user.can(jid, "editor"), activity_labels=ACTIVITY_LABELS)


@post("/j/{jid:str}/ledger/objects/{object_id:int}", opt={"role": "editor"})
async def object_save(request: Request, user: NamedDependency[Principal], jid: FromPath[str],
                      object_id: Number) -> Response:
    form = await request.form()
    data = {k: str(form.get(k, ""))[:1000] for k in OBJECT_FIELDS if k in form and k != "registered_on"}
    try:
        _ledger(request).ledger.update_object(jid, object_id, data, user.name, str(form.get("reason", ""))[:1000])
    except StoreError as err:
        return _object_page(request, user, jid, object_id, _field_errors(err), err.status, form=dict(data))
    return Redirect(f"/admin/j/{jid}/ledger/objects/{object_id}?saved=true")


@get("/j/{jid:str}/ledger/new", sync_to_thread=True, opt={"role": "editor"})
def object_new(request: Request, user: NamedDependency[Principal], jid: FromPath[str]) -> Template:
    return page("ledger_object_new.html", **_context(request, jid), user=user, form={}, errors={})


@post("/j/{jid:str}/ledger/new", opt={"role": "editor"})
async def object_create(request: Request, user: NamedDependency[Principal], jid: FromPath[str]) -> Response:
    form = await request.form()
    data = {k: str(form.get(k, ""))[:1000] for k in OBJECT_FIELDS}
    try:
        obj = _ledger(request).ledger.create_object(jid, data, user.name)
    except StoreError as err:
        return page("ledger_object_new.html", err.status, **_context(request, jid), user=user, form=data,
                    errors=_field_errors(err))
    return Redirect(f"/admin/j/{jid}/ledger/objects/{obj.id}?saved=true")


# --- import: upload → preview (errors per row, nothing saved) → confirm
@get("/j/{jid:str}/ledger/import", sync_to_thread=True, opt={"role": "editor"})
def import_form(request: Request, user: NamedDependency[Principal], jid: FromPath[str]) -> Template:
    return page("ledger_import.html", **_context(request, jid), user=user, preview=None, errors=[], payload="")


@post("/j/{jid:str}/ledger/import", opt={"role": "editor"})
async def import_post(request: Request, user: NamedDependency[Principal], jid: FromPath[str]) -> Response:
    form = await request.form()
    ledger = _ledger(request).ledger
    upload = form.get("file")
    try:
        if form.get("payload"):  # the confirmed preview: the rows it showed
            rows = json.loads(str(form.get("payload")))
        elif upload is not None and hasattr(upload, "read"):
            rows = read_table(await upload.read(), upload.filename or "objects.csv")
        else:
            raise Invalid("请选择 CSV 或 Excel 文件", field="file")
        if form.get("confirm") == "yes":
            ledger.apply_import(jid, rows, user.name)
            return Redirect(f"/admin/j/{jid}/ledger?imported={len(rows)}")
        preview = ledger.preview_import(jid, rows)
    except (StoreError, ValueError) as err:
        message = err.message if isinstance(err, StoreError) else "导入数据无法解析, 请重新上传文件"
        errors = [RowError(e["row"], e["field"], e["message"]) for e in err.extra.get("errors", [])] \
            if isinstance(err, StoreError) and err.extra.get("errors") else [RowError(None, "file", message)]
        return page("ledger_import.html", 422, **_context(request, jid), user=user, preview=None, errors=errors,
                    payload="")
    status = 422 if preview.errors else 200
    return page("ledger_import.html", status, **_context(request, jid), user=user, preview=preview,
                errors=preview.errors,
                payload="" if preview.errors else json.dumps(rows, ensure_ascii=False, default=str))


# --- patrol records
@get("/j/{jid:str}/patrols", sync_to_thread=True, opt={"role": "viewer"})
def patrols_page(request: Request, user: NamedDependency[Principal], jid: FromPath[str], unit: Text = None,
                 from_: Annotated[date | None, QueryParameter(name="from")] = None,
                 to: Annotated[date | None, QueryParameter()] = None,
                 page_no: Annotated[int, QueryParameter(name="page", ge=1, le=100_000)] = 1,
                 saved: Annotated[int | None, QueryParameter(ge=1)] = None) -> Template:
    return _patrols_page(request, user, jid, unit, from_, to, page_no, {}, {}, saved=saved)


def _patrols_page(request, user, jid, unit, start, end, page_no, form: dict, errors: dict, status: int = 200,
                  saved: int | None = None) -> Template:
    ledger = _ledger(request).ledger
    total, rows = ledger.search_patrols(jid, unit or None, start, end, limit=PAGE, offset=(page_no - 1) * PAGE)
    types = services(request).policies.router(jid).jur.type_names
    return page("ledger_patrols.html", status, **_context(request, jid), user=user, rows=rows, total=total,
                page_no=page_no, pages=max(1, -(-total // PAGE)), unit=unit or "", start=start, end=end, form=form,
                errors=errors, saved=saved, activity_labels=ACTIVITY_LABELS, types=types,
                editable=user.can(jid, "editor"), now=datetime.now(CST).strftime("%Y-%m-%dT%H:%M"))


@post("/j/{jid:str}/patrols", opt={"role": "editor"})
async def patrol_save(request: Request, user: NamedDependency[Principal], jid: FromPath[str]) -> Response:
    data = await request.form()
    form = {k: str(v)[:2000] for k, v in data.items()}  # shown again as sent
    try:
        (patrol,) = read(data, (PatrolForm, ""))
        findings = [Finding(patrol.finding, patrol.finding_object[0] if patrol.finding_object else None,
                            patrol.problem_type)] if patrol.finding else []
        record, _ = _ledger(request).ledger.record_patrol(jid, PatrolInput(
            unit=patrol.unit, activity=patrol.activity, patrolled_at=patrol.patrolled_at, patrollers=patrol.patrollers,
            signed_by=patrol.signed_by, objects=patrol.objects, findings=findings, photos=patrol.photos),
            f"admin:{user.name}")
    except FormInvalid as err:
        return _patrols_page(request, user, jid, None, None, None, 1, form, err.errors, err.status)
    except StoreError as err:
        errors = {k.replace("findings[0].", "").replace("description", "finding")
                  .replace("object_id", "finding_object"): v for k, v in _field_errors(err).items()}
        return _patrols_page(request, user, jid, None, None, None, 1, form, errors, err.status)
    return Redirect(f"/admin/j/{jid}/patrols?saved={record.id}")


# --- cadence compliance
@get("/j/{jid:str}/cadences", sync_to_thread=True, opt={"role": "viewer"})
def cadences_page(request: Request, user: NamedDependency[Principal], jid: FromPath[str],
                  period: Annotated[str | None, QueryParameter(max_length=16)] = None, unit: Text = None,
                  status: Annotated[str | None, QueryParameter(max_length=16)] = None) -> Template:
    service = _ledger(request).cadences
    p = current_period(period or None)
    result, trend = service.dashboard(jid, p, TREND_PERIODS, unit=unit or None)
    # the worst first; the report's order (level, grid, cadence) kept within a status
    by_status: dict[str, list[dict]] = {s: [] for s in sorted(RANK, key=RANK.__getitem__, reverse=True)}
    for row in result["rows"]:
        by_status[row["status"]].append(row)
    rows = by_status.get(status, []) if status else [row for group in by_status.values() for row in group]
    charts = {"levels": bar_chart(f"各层级频次义务 ({p.label})", [f"第{lv['level']}级" for lv in result["levels"]],
                                  {STATUS_LABELS[s]: [lv[s] for lv in result["levels"]] for s in CHART_ORDER},
                                  stacked=True)}
    charts["trend"] = bar_chart("近期各期完成率 (%)", [t["period"] for t in trend],
                                {"已完成 %": [None if t["met_rate"] is None else round(100 * t["met_rate"], 1)
                                            for t in trend]},
                                height=260)
    return page("ledger_cadences.html", **_context(request, jid), user=user, r=result, period=p,
                rows=rows[:DASHBOARD_ROWS], total_rows=len(rows), unit=unit or "", status=status or "", charts=charts,
                status_labels=STATUS_LABELS, cadences={c["id"]: c for c in result["cadences"]}, trend=trend)


@get("/j/{jid:str}/patrol-summary.xlsx", sync_to_thread=True, opt={"role": "viewer"})
def summary_export(request: Request, user: NamedDependency[Principal], jid: FromPath[str],
                   period: Annotated[str | None, QueryParameter(max_length=16)] = None, unit: Text = None) -> Response:
    services_ = _ledger(request)
    p = current_period(period or None)
    data = patrol_summary(services_.ledger, services_.cadences, jid, p, unit or None)
    return Response(data, media_type=XLSX_MEDIA_TYPE,
                    headers={"Content-Disposition": f'attachment; filename="patrol-summary-{jid}-{p.label}.xlsx"'})


ROUTES = [ledger_home, objects_page, object_page, object_save, object_new, object_create, import_form, import_post,
          patrols_page, patrol_save, cadences_page, summary_export]
