"""Open311 GeoReport v2 for each jurisdiction, mapped onto problem types and cases.

service_code = problem-type code, service attributes = the case facts the rules test, address_id =
the grid unit where the problem was found, agency_responsible = the handling department(s),
expected_datetime = the handling deadline. XML (mandatory in the spec) and JSON are both served;
errors are the spec's errors[code, description].
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from pydantic import ValidationError

from api.guards import parse_moment
from admin.common import Services
from api.intake import Report, resolve
from api.writer import Writer
from engine.decision import Decision
from engine.router import Case, PolicyRouter, RoutingError
from policy.catalog import pinyin_keys
from policy.facts import CASE_FACTS
from store.apikeys import authorize
from store.cases import CLOSED
from store.errors import StoreError
from store.tables import MAX_ID, CaseRecord
from store.versions import PolicyStore

SPEC = "http://wiki.open311.org/GeoReport_v2"
CHANGESET = "2026-11-01T00:00:00Z"
MAX_REQUESTS = 1000  # the most a search answers (newest first)
FORMATS = {"xml": "text/xml; charset=utf-8", "json": "application/json; charset=utf-8"}
# element names of list containers and their items (the spec's XML is schemaless, but fixed)
CONTAINERS = {"services": "service", "service_requests": "request", "errors": "error", "attributes": "attribute",
              "values": "value", "endpoints": "endpoint", "formats": "format"}


class Open311Error(Exception):
    def __init__(self, status: int, description: str):
        super().__init__(description)
        self.status, self.description = status, description

    def __reduce__(self):  # raised in the writer process, answered by the server
        return Open311Error, (self.status, self.description)


def _split(name: str) -> tuple[str, str]:
    stem, dot, fmt = name.rpartition(".")
    if not dot or fmt not in FORMATS:
        raise Open311Error(404, f"格式须为 .xml 或 .json — use .xml or .json, not '{name}'")
    return stem, fmt


def _xml(tag: str, value: Any) -> ET.Element:
    element = ET.Element(tag)
    if isinstance(value, dict):
        for key, child in value.items():
            element.append(_xml(key, child))
    elif isinstance(value, list):
        for item in value:
            element.append(_xml(CONTAINERS[tag], item))
    elif value is not None:
        element.text = str(value).lower() if isinstance(value, bool) else str(value)
    return element


def render(root: str, payload: Any, fmt: str, status: int = 200) -> Response:
    if fmt == "json":
        return Response(payload, status_code=status, media_type=FORMATS["json"])
    body = b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(_xml(root, payload), encoding="utf-8")
    return Response(body, status_code=status, media_type=FORMATS["xml"])


def error_response(err: Open311Error, fmt: str) -> Response:
    return render("errors", [{"code": err.status, "description": err.description}], fmt, err.status)


def _router(policies: PolicyStore, jid: str) -> PolicyRouter:
    try:
        return policies.router(jid)
    except StoreError:
        raise Open311Error(404, f"jurisdiction_id '{jid}' 不存在 — not found") from None


LIFECYCLE_FACTS = {"deadline_missed", "verification_failed"}  # set by the workflow, not by a reporter


def _tested_facts(router: PolicyRouter) -> list[str]:
    return [f for f in router.compiled.tested_facts if f in CASE_FACTS and f not in LIFECYCLE_FACTS]


def _service(router: PolicyRouter, code: str) -> dict:
    jur = router.jur
    ptype = router.compiled.types_by_code[code]
    name = jur.type_name(code)
    departments = "、".join(d.name for d in jur.policy.departments if d.id in ptype.departments) or "无"
    aliases = jur.catalog.types[code].aliases if code in jur.catalog.types else []
    return {"service_code": code, "service_name": name,
            "description": f"第{ptype.level}级网格处置; 责任部门: {departments}",
            "metadata": bool(_tested_facts(router)), "type": "realtime",
            "keywords": ", ".join([*aliases, *pinyin_keys(name)]),
            "group": jur.catalog.categories.get(code.rsplit(".", 1)[0], "")}


def _request_json(request: Request, record: CaseRecord, router: PolicyRouter, private: bool) -> dict:
    """One service request; the reporter's description only for `private` readers (a key for the jurisdiction)."""
    decision = request.app.state.services.policies.decision(record.stored_decision)
    departments = decision.handler.departments
    deadlines = decision.deadlines
    handling_steps = {s.id for w in router.jur.policy.workflows for s in w.steps if s.handling}
    handling = next((d.due for d in deadlines if d.step in handling_steps), deadlines[-1].due if deadlines else None)
    return {
        "service_request_id": record.id, "status": "closed" if record.status == CLOSED else "open",
        "status_notes": record.status, "service_name": decision.problem_type.name,
        "service_code": record.problem_type, **({"description": record.description} if private else {}),
        "agency_responsible": "、".join(d.name for d in departments) or f"第{record.handler_level}级网格",
        "service_notice": _notice(decision), "requested_datetime": _w3(record.created_at),
        "updated_datetime": _w3(record.updated_at),
        "expected_datetime": _w3(datetime.fromisoformat(handling)) if handling else None,
        "address": router.units[record.unit].name if record.unit is not None and record.unit in router.units else "",
        "address_id": record.unit or "", "zipcode": "",
        "lat": "", "long": "", "media_url": "",
    }


def _notice(decision: Decision) -> str:
    first = decision.actions[0].label if decision.actions else "登记"
    return f"{first}; 由第{decision.handler.level}级网格{decision.handler.unit_name or ''}处置"


def _w3(moment: datetime) -> str:
    """W3C datetime in UTC, as the spec's examples write it."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _guarded(resource: str, build) -> Response:
    """Parse `name.fmt`, build the answer, and turn any Open311Error into the spec's errors document."""
    fmt = "xml"
    try:
        stem, fmt = _split(resource)
        return build(stem, fmt)
    except Open311Error as err:
        return error_response(err, fmt)


@get("/open311/v2/{jid:str}/{resource:str}", sync_to_thread=True)
def open311_get(request: Request, jid: FromPath[str], resource: FromPath[str]) -> Response:
    def build(stem: str, fmt: str) -> Response:
        router = _router(request.app.state.services.policies, jid)
        if stem == "discovery":
            base = str(request.base_url).rstrip("/") + f"/open311/v2/{jid}"
            return render("discovery", {"changeset": CHANGESET, "contact": "网格化环境监管平台管理员",
                                        "key_service": "gridpolicy apikey create --jurisdiction " + jid,
                                        "endpoints": [{"specification": SPEC, "url": base, "changeset": CHANGESET,
                                                       "type": "production",
                                                       "formats": ["text/xml", "application/json"]}]},
                          fmt)
        if stem == "services":
            return render("services", [_service(router, t.code) for t in router.jur.policy.problem_types], fmt)
        if stem == "requests":
            return render("service_requests", _search(request, router), fmt)
        raise Open311Error(404, f"没有资源 '{stem}'")
    return _guarded(resource, build)


@get("/open311/v2/{jid:str}/services/{name:str}", sync_to_thread=True)
def open311_service_definition(request: Request, jid: FromPath[str], name: FromPath[str]) -> Response:
    def build(code: str, fmt: str) -> Response:
        router = _router(request.app.state.services.policies, jid)
        if code not in router.compiled.types_by_code:
            raise Open311Error(404, f"service_code '{code}' 不存在")
        attributes = [{"variable": "true", "code": fact, "datatype": "singlevaluelist", "required": "false",
                       "datatype_description": "true / false", "order": i + 1, "description": CASE_FACTS[fact],
                       "values": [{"key": "true", "name": "是"}, {"key": "false", "name": "否"}]}
                      for i, fact in enumerate(_tested_facts(router))]
        return render("service_definition", {"service_code": code, "attributes": attributes}, fmt)
    return _guarded(name, build)


@get("/open311/v2/{jid:str}/requests/{name:str}", sync_to_thread=True)
def open311_request(request: Request, jid: FromPath[str], name: FromPath[str]) -> Response:
    def build(case_id: str, fmt: str) -> Response:
        router = _router(request.app.state.services.policies, jid)
        missing = Open311Error(404, f"service_request_id '{case_id}' 不存在")
        if not case_id.isdigit() or int(case_id) > MAX_ID:
            raise missing
        try:
            record, _, _ = request.app.state.services.cases.get(int(case_id))
        except StoreError:
            raise missing from None
        if record.jurisdiction != jid:
            raise missing
        return render("service_requests", [_request_json(request, record, router, _reader(request, jid))], fmt)
    return _guarded(name, build)


def _search(request: Request, router: PolicyRouter) -> list[dict]:
    """The newest MAX_REQUESTS cases matching the query, filtered by the database."""
    params = request.query_params
    filters: dict[str, Any] = {}
    if params.get("service_request_id"):
        wanted = params["service_request_id"].split(",")
        filters["ids"] = [int(i) for i in wanted if i.isdigit() and int(i) <= MAX_ID]
    else:
        if params.get("service_code"):
            filters["problem_types"] = params["service_code"].split(",")
        if params.get("status") in ("open", "closed"):
            filters["status"] = "open" if params["status"] == "open" else CLOSED
        for bound, name in (("start_date", "created_from"), ("end_date", "created_to")):
            if params.get(bound):
                try:
                    filters[name] = parse_moment(params[bound], bound)
                except StoreError as err:
                    raise Open311Error(400, err.message) from None
    _, rows = request.app.state.services.cases.search(router.jur.id, limit=MAX_REQUESTS, **filters)
    private = _reader(request, router.jur.id)
    return [_request_json(request, r, router, private) for r in rows]


def _reader(request: Request, jid: str) -> bool:
    """True when the caller holds an API key for `jid` (header X-API-Key or the spec's api_key parameter): only
    then does an answer carry what the reporter wrote. No key: the public view. A bad key: refused."""
    key = request.headers.get("X-API-Key") or request.query_params.get("api_key")
    if not key:
        return False
    try:
        authorize(request.app.state.services.policies.engine, key, jid)
    except StoreError as err:
        raise Open311Error(403, f"api_key 无效: {err.message}") from None
    return True


@post("/open311/v2/{jid:str}/{resource:str}", status_code=201)
async def open311_post(request: Request, jid: FromPath[str], resource: FromPath[str]) -> Response:
    form = dict(await request.form())
    fmt = "xml"
    try:
        stem, fmt = _split(resource)
        if stem != "requests":
            raise Open311Error(404, f"只能向 requests 提交 — POST to requests.{fmt}")
        writer: Writer = request.app.state.writer
        body = await writer.run(_create, jid, form, jurisdiction=jid)
    except Open311Error as err:
        return error_response(err, fmt)
    return render("service_requests", body, fmt, 201)


def _create(services: Services, jid: str, form: dict) -> list[dict]:
    """A service request, routed and stored, and its answer (a writer job: see api/writer.py)."""
    try:
        key = authorize(services.policies.engine, form.get("api_key"), jid)
    except StoreError as err:
        raise Open311Error(403, f"api_key 无效: {err.message}") from None
    router = _router(services.policies, jid)
    code = form.get("service_code")
    if not code:
        raise Open311Error(400, "缺少 service_code — service_code was not provided")
    if code not in router.compiled.types_by_code:
        raise Open311Error(404, f"service_code '{code}' 不存在")
    located = bool(form.get("lat") or form.get("long"))
    unit = form.get("address_id") or (None if located else form.get("address_string"))
    if not unit and not located:
        raise Open311Error(400, "须提供 address_id (网格单元 id)、lat/long (位置) 或 address_string (网格单元名称)")
    facts = {}
    for name, value in form.items():
        if name.startswith("attribute[") and name.endswith("]"):
            fact = name[len("attribute["):-1]
            if fact not in CASE_FACTS or fact in LIFECYCLE_FACTS:
                raise Open311Error(400, f"未知属性 attribute[{fact}]")
            if value not in ("true", "false"):
                raise Open311Error(400, f"attribute[{fact}] 须为 true 或 false")
            facts[fact] = value == "true"
    try:
        report = _report(form, located)
        case, columns = resolve(services.locators, jid, Case(problem_type=code, unit=unit, facts=facts), report)
        record = services.cases.create(jid, case, f"open311:{key.prefix}", description=report.description,
                                       report=columns)
    except (StoreError, RoutingError) as err:
        raise Open311Error(400, getattr(err, "message", str(err))) from None
    decision = services.policies.decision(record.stored_decision)
    return [{"service_request_id": record.id, "service_notice": _notice(decision),
             "account_id": form.get("account_id") or None}]


def _report(form: dict, located: bool) -> Report:
    """GeoReport v2's request fields as the intake's report (lat/long are WGS-84 unless `coord_system` says else)."""
    name = " ".join(form.get(k, "").strip() for k in ("last_name", "first_name")).strip()
    contact = {k: v for k, v in {"name": name, "email": form.get("email"), "phone": form.get("phone")}.items() if v}
    fields = {"description": (form.get("description") or "")[:4000], "reporter": contact or None,
              "attachments": [form["media_url"]] if form.get("media_url") else [], "channel": "公众举报"}
    if located:
        fields["location"] = {"lat": form.get("lat"), "long": form.get("long"),
                              "coord_system": form.get("coord_system") or "wgs84",
                              "address": form.get("address_string") or ""}
    try:
        return Report.model_validate(fields)
    except ValidationError as err:
        first = err.errors()[0]
        field = str(first["loc"][0])
        where = {"location": "lat/long", "reporter": "email/phone", "attachments": "media_url"}.get(field, field)
        raise Open311Error(400, f"{where} 无效: {first['msg']}") from None


ROUTES = [open311_get, open311_service_definition, open311_request, open311_post]
