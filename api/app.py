"""The Litestar service: /v1 for intake systems and policy tooling, /health, OpenAPI at /schema.

Handlers are synchronous and run on the event loop (sync_to_thread=True): the rules engine holds the
GIL and serialises anyway, so a worker serves one request at a time; scale with worker processes.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sys
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from datetime import timedelta
from typing import Annotated, Any

from litestar import Litestar, MediaType, Request, Response, get, patch, post, put
from litestar.config.app import AppConfig
from litestar.utils.sync import AsyncCallable
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.di import NamedDependency, Provide
from litestar.openapi.spec import Components, Schema, SecurityScheme
from litestar.openapi.spec.enums import OpenAPIType
from litestar.static_files import create_static_files_router
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, PathParameter, QueryParameter
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import OperationalError

from admin.common import Services
from admin.routes import admin_parts
from api import events, ledger, open311
from api.guards import API_KEY_HEADER, KEYED, read_deadline, request_guard, security_headers
from api.openapi_errors import PROBLEM_JSON, document_errors
from api.writer import KeptOutOfCollections, Writer
from api.responses import (AllowedAction, Assessment, AssessmentRecordOut, CaseOut, CasePage, ModelResponse, TrendPoint,
                           UnitExplanation, VersionOut)
from engine.decision import Decision
from api.intake import Report, resolve
from engine.router import Case, PolicyRouter, RoutingError
from policy.catalog import search_score
from policy.diff import compare, diff
from policy.errors import PolicyError
from policy.facts import CASE_FACTS, ENUM_FACTS
from policy.models import SLUG
from store.apikeys import in_scope
from store.budget import read_budget
from store.assessment import Period
from store.assessment_xlsx import workbook
from store.boundaries import diff as boundaries_diff
from store.xlsx import MEDIA_TYPE as XLSX_MEDIA_TYPE
from store.cases import TRANSITION_LABELS, Transition
from store.db import WRITE_WAIT_SECONDS, in_memory, refresh_statistics
from store.errors import NotFound, PreconditionRequired, StoreError
from store.sweeper import sweep
from store.ledger import LedgerService
from store.tables import MAX_ID, ApiKey, CaseRecord, row_id
from store.versions import DraftEdit, PolicyStore, merge_item, open_policy_store

log = logging.getLogger("gridpolicy")
MAX_BODY = 256 * 1024
POLL_SECONDS = 2.0
SWEEP_SECONDS = 30.0
STATISTICS_SECONDS = 3600.0  # SQLite table statistics for the assessment queries (first round at start)
# the loop's thread pool, for handlers (Litestar's sync_to_thread) and the background loop: enough to wait on the
# database beside each other, few enough that the GIL is not shared thin; PostgreSQL's pool holds 20
HANDLER_THREADS = 12


def problem(status: int, title: str, detail: str, field: str | None = None, **extra) -> Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if field:
        body["field"] = field
    body.update({k: v for k, v in extra.items() if v is not None})
    return Response(body, status_code=status, media_type=PROBLEM_JSON)


def _store_error(_: Request, exc: StoreError) -> Response:
    response = problem(exc.status, exc.title, exc.message, exc.field, **exc.extra)
    if "retry_after" in exc.extra:
        response.headers["Retry-After"] = str(exc.extra["retry_after"])
    return response


def _validation_error(_: Request, exc: ValidationException) -> Response:
    errors = []
    for item in exc.extra or []:
        if isinstance(item, dict):
            errors.append({"field": item.get("key") or item.get("source"), "message": item.get("message")})
    field = errors[0]["field"] if errors else None
    return problem(400, "请求格式错误 Invalid request", "请求内容不符合接口定义: " +
                   "; ".join(f"{e['field']}: {e['message']}" for e in errors), field, errors=errors)


def _http_error(_: Request, exc: HTTPException) -> Response:
    detail = {404: "没有这个地址 — no such endpoint", 405: "不支持此方法 — method not allowed",
              413: f"请求体过大, 上限 {MAX_BODY // 1024} KB — request body too large"}.get(exc.status_code, exc.detail)
    response = problem(exc.status_code, exc.detail if exc.status_code not in (404, 405, 413) else detail, detail)
    response.headers.update(exc.headers or {})  # e.g. Allow on a 405
    return response


def _routing_error(_: Request, exc: RoutingError) -> Response:
    return problem(422, "无法路由 Cannot route", str(exc), exc.field, suggestions=exc.suggestions or None)


def _pydantic_error(_: Request, exc: ValidationError) -> Response:
    errors = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"].removeprefix("Value error, ")}
              for e in exc.errors()]
    return problem(400, "请求格式错误 Invalid request", "; ".join(f"{e['field']}: {e['message']}" for e in errors),
                   errors[0]["field"] if errors else None, errors=errors)


def _operational_error(request: Request, exc: OperationalError) -> Response:
    """SQLite's write lock stayed taken beyond WRITE_WAIT_SECONDS (the transaction rolled back): refuse, do not hang."""
    if "database is locked" not in str(exc.orig):
        return _unexpected(request, exc)
    response = problem(503, "服务繁忙 Service unavailable",
                       f"数据库写入等待超过 {WRITE_WAIT_SECONDS:g} 秒, 未保存任何内容, "
                       "请稍后重试 — the database stayed locked; nothing was written, retry later")
    response.headers["Retry-After"] = "1"
    return response


def _unexpected(_: Request, exc: Exception) -> Response:
    log.exception("unexpected error", exc_info=exc)
    return problem(500, "服务器内部错误 Internal error", "服务器内部错误, 已记录日志")


# --- request bodies
# the facts an intake system may report, as the schema states them (engine.router.Case checks the same)
FACTS_SCHEMA: Any = {"properties": {**{name: Schema(type=OpenAPIType.BOOLEAN, description=label)
                                  for name, label in CASE_FACTS.items()},
                               "enterprise_class": Schema(type=OpenAPIType.STRING,
                                                          enum=list(ENUM_FACTS["enterprise_class"][1]),
                                                          description=ENUM_FACTS["enterprise_class"][0])},
                "additional_properties": False}


class RouteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    jurisdiction: str = Field(min_length=1, max_length=64)
    problem_type: str = Field(min_length=1, max_length=200)
    unit: str | None = Field(None, max_length=200, description="问题所在网格 (the grid where the problem is)")
    found_at_level: int | None = Field(None, ge=1, le=6, description="发现问题的上级网格层级, 高于 unit 时填写 "
                                       "(an upper grid found it in unit's area); 无 unit 时为发现层级")
    units_involved: list[str] = Field(default_factory=list, max_length=100)
    facts: dict[str, bool | str] = Field(default_factory=dict, json_schema_extra=FACTS_SCHEMA)

    def case(self) -> Case:
        return Case(problem_type=self.problem_type, unit=self.unit, found_at_level=self.found_at_level,
                    units_involved=self.units_involved, facts=self.facts)


class CaseRequest(RouteRequest, Report):
    """A route request plus what the report carries; `unit` may be left out when `location` is given."""
    model_config = ConfigDict(extra="forbid")
    object_id: int | None = Field(None, ge=1, le=MAX_ID, description="监管对象: 网格与 enterprise_class 取自台账")


class TransitionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: str = Field(min_length=1, max_length=32)
    actor: str = Field(min_length=1, max_length=128)
    note: str = Field("", max_length=2000)
    facts: dict[str, bool | str] | None = Field(None, json_schema_extra=FACTS_SCHEMA)
    approved_by: str | None = Field(None, max_length=128)
    extend_by: timedelta | None = Field(None, json_schema_extra={"pattern": r"^(P\d{1,3}D|PT\d{1,4}H)$"},
                                        description="ISO 8601 时长, 如 P2D 或 PT12H (上限 10 年)")


class DraftUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    author: str = Field(min_length=1, max_length=128)
    document: dict[str, Any]


class SourceIn(BaseModel):
    """A seed quote; the policy's checks (quote found in the seed …) answer 422 naming `source.quote` etc."""
    model_config = ConfigDict(extra="forbid")
    seed: str = Field(min_length=1, max_length=200)
    clause: str = Field(min_length=1, max_length=200)
    quote: str = Field(min_length=1, max_length=4000)


class ItemPatch(BaseModel):
    """JSON merge patch of one item of a draft: the fields sent replace the item's (null clears one); stating a
    `source` drops the item's `assumption` and vice versa."""
    model_config = ConfigDict(extra="forbid")
    author: str = Field(min_length=1, max_length=128)
    source: SourceIn | None = Field(None, description="原文出处 (seed, clause, quote)")
    assumption: str | None = Field(None, min_length=1, max_length=2000, description="假设说明")

    def values(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"author"}, exclude_unset=True)


class UnitPatch(ItemPatch):
    name: str | None = Field(None, min_length=1, max_length=100)
    level: int | None = Field(None, ge=1, le=6)
    parent: str | None = Field(None, max_length=64, pattern=SLUG, json_schema_extra={"pattern": SLUG},
                               description="上级单元编号; 一级网格为 null")


class TypePatch(ItemPatch):
    name: str | None = Field(None, min_length=1, max_length=200)
    level: int | None = Field(None, ge=1, le=6, description="有处置权的网格层级")
    departments: list[Annotated[str, Field(max_length=64, pattern=SLUG)]] | None = Field(
        None, max_length=50, json_schema_extra={"items": {"type": "string", "pattern": SLUG, "maxLength": 64}})
    persuade_first: bool | None = None
    assist_only: bool | None = None


class AssessmentRecordRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    period: str = Field(min_length=4, max_length=16)
    unit: str = Field(min_length=1, max_length=128)
    kind: str = Field(min_length=1, max_length=16)
    score: float
    author: str = Field(min_length=1, max_length=128)
    note: str = Field("", max_length=2000)


class PublishRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actor: str = Field(min_length=1, max_length=128)
    note: str = Field(max_length=2000)


class PublishBody(PublishRequest):
    accept: list[str] = Field([], max_length=500, description="接受新结果的固定测试用例名称 (逐条确认, 记入审计日志)")
    revision: int | None = Field(None, description="草稿修订号 (ETag), 有 accept 时必填; 过时则 412")


VersionNumber = Annotated[int, PathParameter(ge=1, le=MAX_ID)]


CaseId = Annotated[int, PathParameter(ge=1, le=MAX_ID)]


def _api_key(request: Request, services: NamedDependency[Services]) -> ApiKey:
    """The key request_guard checked. It takes `services` only so that Litestar resolves the two in turn:
    dependencies resolved side by side cost a task group per request, more than both reads together."""
    return request.state.api_key


def case_out(record: CaseRecord, services: NamedDependency[Services], events=None, clocks=None,
             decision: Decision | None = None) -> CaseOut:
    """`decision`: the case's, if known (intake routed it), else read back from the row."""
    allowed = [AllowedAction(action=a, label=TRANSITION_LABELS[a]) for a in services.cases.allowed_actions(record)]
    if decision is None:
        decision = services.policies.decision(record.stored_decision)
    return CaseOut.of(record, decision, allowed, events, clocks)


# --- policy endpoints (public, read-only)
@get("/v1/jurisdictions", sync_to_thread=True)
def list_jurisdictions(services: NamedDependency[Services]) -> list[dict]:
    out = []
    for jid in sorted(services.policies.refresh()):
        router = services.policies.router(jid)
        p = router.jur.policy
        out.append({"id": jid, "name": p.name, "version": router.compiled.version,
                    "levels": [{"number": lv.number, "name": lv.name,
                                "units": router.jur.level_counts[0][lv.number],
                                "problem_types": sum(1 for t in p.problem_types if t.level == lv.number)}
                               for lv in p.levels]})
    return out


@get("/v1/jurisdictions/{jid:str}", sync_to_thread=True)
def get_jurisdiction(services: NamedDependency[Services], jid: FromPath[str]) -> dict:
    router = services.policies.router(jid)
    data = router.jur.policy.model_dump(mode="json", exclude_none=True)
    data["version"] = router.compiled.version
    data["units"] = [u.model_dump(mode="json", exclude_none=True) for u in router.jur.units.values()]
    data.pop("unit_groups", None)
    return data


async def _served(policies: PolicyStore, jid: str) -> PolicyRouter:
    """The jurisdiction's router for a handler on the event loop: at once when it is served here, else waited for
    in a thread within the read budget (just after a start, or a publish by another worker)."""
    try:
        return policies.registry.router(jid)
    except KeyError:
        pass

    def wait() -> PolicyRouter:
        with read_budget():
            return policies.router(jid)

    return await asyncio.to_thread(wait)


@get("/v1/jurisdictions/{jid:str}/problem-types")
async def problem_types(services: NamedDependency[Services], jid: FromPath[str],
                        q: Annotated[str | None, QueryParameter(max_length=100)] = None) -> list[dict]:
    router = await _served(services.policies, jid)
    rows = []
    for t in router.jur.policy.problem_types:
        name = router.jur.type_name(t.code)
        score = search_score(q, t.code, name) if q else 1.0
        if score >= 1.0:
            rows.append((score, {"code": t.code, "name": name, "level": t.level, "departments": list(t.departments),
                                 "persuade_first": t.persuade_first, "source": t.provenance}))
    return [row for _, row in sorted(rows, key=lambda r: (-r[0], r[1]["code"]))]


@get("/v1/jurisdictions/{jid:str}/versions", sync_to_thread=True)
def versions(services: NamedDependency[Services], jid: FromPath[str]) -> list[VersionOut]:
    return [VersionOut.of(v) for v in services.policies.list_versions(jid)]


@get("/v1/jurisdictions/{jid:str}/versions/{number:int}", sync_to_thread=True)
def version(services: NamedDependency[Services], jid: FromPath[str], number: VersionNumber) -> Response[VersionOut]:
    policies = services.policies
    v = policies.get_version(jid, number)
    return ModelResponse(VersionOut.of(v, policies.document(v)), headers={"ETag": f'"{v.revision}"'})


@get("/v1/jurisdictions/{jid:str}/diff", sync_to_thread=True)
def version_diff(services: NamedDependency[Services], jid: FromPath[str],
                 from_: Annotated[int, QueryParameter(name="from", ge=1, le=MAX_ID)],
                 to: Annotated[int, QueryParameter(ge=1, le=MAX_ID)]) -> dict:
    policies = services.policies
    old, new = policies.get_version(jid, from_), policies.get_version(jid, to)
    return {"jurisdiction": jid, "from": from_, "to": to,
            **diff(policies.build(old).policy, policies.build(new).policy),
            "boundaries": boundaries_diff(policies.engine, jid, from_, to)}


@get("/v1/compare", sync_to_thread=True)
def compare_jurisdictions(services: NamedDependency[Services], ids: Annotated[str, QueryParameter(
        max_length=500, pattern="[^,]+,+[^,]+", description="至少两个辖区, 如 hefei,panjin")]) -> dict:
    wanted = [i for i in ids.split(",") if i]
    if len(wanted) < 2:
        raise StoreError("比较至少需要两个辖区, 如 ids=hefei,panjin", field="ids")
    return compare([services.policies.router(jid).jur for jid in wanted])


# --- policy changes (API key with the jurisdiction in scope)
@post("/v1/jurisdictions/{jid:str}/drafts", sync_to_thread=True, **KEYED)
def create_draft(services: NamedDependency[Services], jid: FromPath[str], data: JSONBody[PublishRequest],
                 ) -> Response[VersionOut]:
    v = services.policies.create_draft(jid, data.actor)
    return ModelResponse(VersionOut.of(v, services.policies.document(v)), status_code=201,
                    headers={"ETag": f'"{v.revision}"'})


@put("/v1/jurisdictions/{jid:str}/versions/{number:int}", sync_to_thread=True, **KEYED)
def update_draft(services: NamedDependency[Services], jid: FromPath[str], number: VersionNumber,
                 data: JSONBody[DraftUpdate],
                 if_match: Annotated[str | None, HeaderParameter(name="If-Match")] = None) -> Response[VersionOut]:
    v = services.policies.update_draft(jid, number, data.document, _revision(if_match), data.author)
    return ModelResponse(VersionOut.of(v), headers={"ETag": f'"{v.revision}"'})


def _revision(if_match: str | None) -> int:
    if not if_match or not if_match.strip('"').isdigit():
        raise PreconditionRequired("修改草稿须带 If-Match 请求头 (GET 得到的 ETag), 以免覆盖他人的修改",
                                   field="If-Match")
    return int(if_match.strip('"'))


@patch("/v1/jurisdictions/{jid:str}/versions/{number:int}/units/{unit_id:str}", sync_to_thread=True, **KEYED)
def patch_unit(services: NamedDependency[Services], jid: FromPath[str], number: VersionNumber, unit_id: FromPath[str],
               data: JSONBody[UnitPatch], if_match: Annotated[str | None, HeaderParameter(name="If-Match")] = None,
               ) -> Response[VersionOut]:
    """One grid unit of a draft changed, whatever the draft's size (a placeholder becomes a named unit of its own)."""
    def change(edit: DraftEdit) -> str:
        return edit.put_unit(merge_item(edit.unit(unit_id), {**data.values(), "placeholder": False}))

    return _change_item(services, jid, number, data, if_match, change)


@patch("/v1/jurisdictions/{jid:str}/versions/{number:int}/types/{code:str}", sync_to_thread=True, **KEYED)
def patch_type(services: NamedDependency[Services], jid: FromPath[str], number: VersionNumber, code: FromPath[str],
               data: JSONBody[TypePatch], if_match: Annotated[str | None, HeaderParameter(name="If-Match")] = None,
               ) -> Response[VersionOut]:
    """One problem type of a draft changed: its handling level, departments, persuade-first, name or provenance."""
    def change(document: DraftEdit) -> str:
        types = document["problem_types"]
        index = next((i for i, t in enumerate(types) if t["code"] == code), None)
        if index is None:
            raise NotFound(f"草稿 v{number} 中没有问题类型 {code}", field="code")
        types[index] = merge_item(types[index], data.values())
        return f"problem_types[{index}]"

    return _change_item(services, jid, number, data, if_match, change)


def _change_item(services: NamedDependency[Services], jid: str, number: int, data: ItemPatch, if_match: str | None,
                 change: Callable[[DraftEdit], str]) -> Response[VersionOut]:
    v = services.policies.change_draft(jid, number, _revision(if_match), data.author, change)
    return ModelResponse(VersionOut.of(v), headers={"ETag": f'"{v.revision}"'})


@post("/v1/jurisdictions/{jid:str}/versions/{number:int}/publish", sync_to_thread=True, status_code=200, **KEYED)
def publish(services: NamedDependency[Services], jid: FromPath[str], number: VersionNumber,
            data: JSONBody[PublishBody]) -> VersionOut:
    """Refused (403) under the four-eyes rule when the actor last edited the draft; refused (422) while pinned
    cases would change, unless each is named in `accept` (with the draft's `revision`)."""
    return VersionOut.of(services.policies.publish(jid, number, data.actor, data.note, data.accept, data.revision))


@post("/v1/jurisdictions/{jid:str}/versions/{number:int}/rollback", sync_to_thread=True, status_code=200, **KEYED)
def rollback(services: NamedDependency[Services], jid: FromPath[str], number: VersionNumber,
             data: JSONBody[PublishRequest]) -> VersionOut:
    return VersionOut.of(services.policies.rollback(jid, number, data.actor, data.note))


# --- routing and cases (API key)
@post("/v1/route", status_code=200, **KEYED)
async def route(services: NamedDependency[Services], api_key: NamedDependency[ApiKey],
                data: JSONBody[RouteRequest]) -> Decision:
    in_scope(api_key, data.jurisdiction)
    router = await _served(services.policies, data.jurisdiction)
    if router.jur.indexed:
        return router.route(data.case())
    # an unknown unit's close matches need the unit index, built in the background after a load: not on the loop
    return await asyncio.to_thread(router.route, data.case())


@post("/v1/cases", **KEYED)
async def create_case(request: Request, api_key: NamedDependency[ApiKey], data: JSONBody[CaseRequest],
                      idempotency_key: Annotated[str | None, HeaderParameter(name="Idempotency-Key", max_length=200)]
                      = None) -> Response[CaseOut]:
    key = in_scope(api_key, data.jurisdiction)
    request_hash = _digest(data) if idempotency_key else None
    writer: Writer = request.app.state.writer
    case_id, body = await writer.run(_open_case, data, f"apikey:{key.prefix}", idempotency_key, request_hash,
                                     jurisdiction=data.jurisdiction)
    return Response(body, status_code=201, media_type=MediaType.JSON,  # type: ignore[arg-type] # CaseOut's JSON
                    headers={"Location": f"/v1/cases/{case_id}"})


def _open_case(services: Services, data: CaseRequest, actor: str, idempotency_key: str | None,
               request_hash: str | None) -> tuple[int, bytes]:
    """A new case, routed and stored, and its answer's JSON (a writer job: see api/writer.py)."""
    case, report = resolve(services.locators, data.jurisdiction, data.case(), data)
    record, decision = (LedgerService(services.policies, services.cases).open_case(
        data.jurisdiction, case, data.object_id, actor, idempotency_key, request_hash,
        description=data.description, report=report)
        if data.object_id else
        services.cases.open(data.jurisdiction, case, actor=actor, idempotency_key=idempotency_key,
                            description=data.description, request_hash=request_hash, report=report))
    out = case_out(record, services, record.events, record.clocks, decision)
    return row_id(record), out.__pydantic_serializer__.to_json(out)


def _digest(data: BaseModel) -> str:
    """The request as parsed (key order and spacing do not count), to tell a retry from another request."""
    return hashlib.sha256(json.dumps(data.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


@get("/v1/cases/{case_id:int}", sync_to_thread=True, **KEYED)
def get_case(services: NamedDependency[Services], api_key: NamedDependency[ApiKey], case_id: CaseId) -> CaseOut:
    record, events, clocks = services.cases.get(case_id)
    in_scope(api_key, record.jurisdiction)
    return case_out(record, services, events, clocks)


@get("/v1/cases", sync_to_thread=True, **KEYED)
def list_cases(services: NamedDependency[Services], api_key: NamedDependency[ApiKey], jurisdiction: FromQuery[str],
               unit: FromQuery[str | None] = None,
               status: FromQuery[str | None] = None, overdue: FromQuery[bool | None] = None,
               limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
               offset: Annotated[int, QueryParameter(ge=0, le=MAX_ID)] = 0) -> CasePage:
    in_scope(api_key, jurisdiction)
    total, rows = services.cases.search(jurisdiction, unit, status, overdue, limit, offset)
    return CasePage(total=total, limit=limit, offset=offset, items=[case_out(r, services) for r in rows])


@post("/v1/cases/{case_id:int}/transitions", sync_to_thread=True, status_code=200, **KEYED)
def transition(services: NamedDependency[Services], api_key: NamedDependency[ApiKey], case_id: CaseId,
               data: JSONBody[TransitionRequest]) -> CaseOut:
    record, _, _ = services.cases.get(case_id)
    in_scope(api_key, record.jurisdiction)
    if data.facts is not None:
        Case(problem_type=record.problem_type, facts=data.facts)  # same fact checks as intake
    services.cases.transition(case_id, Transition(data.action, data.actor, data.note, data.facts, data.approved_by,
                                           data.extend_by))
    record, events, clocks = services.cases.get(case_id)
    return case_out(record, services, events, clocks)


# --- assessment (API key: it is computed from the jurisdiction's cases)
PeriodQuery = Annotated[str | None, QueryParameter(max_length=16, description="2026-Q3, 2026-07, 2026-H1 或 2026")]
LevelQuery = Annotated[int | None, QueryParameter(ge=1, le=6)]


@get("/v1/jurisdictions/{jid:str}/assessment", sync_to_thread=True, **KEYED)
def assessment(services: NamedDependency[Services], jid: FromPath[str], period: PeriodQuery = None,
               level: LevelQuery = None) -> Assessment:
    return Assessment.model_validate(services.assessment.assess(jid, services.assessment.period(jid, period), level))


@get("/v1/jurisdictions/{jid:str}/assessment.xlsx", sync_to_thread=True, **KEYED)
def assessment_xlsx(services: NamedDependency[Services], jid: FromPath[str], period: PeriodQuery = None,
                    level: LevelQuery = None) -> Response:
    p = services.assessment.period(jid, period)
    return Response(workbook(services.assessment.assess(jid, p, level)), media_type=XLSX_MEDIA_TYPE,
                    headers={"Content-Disposition": f'attachment; filename="assessment-{jid}-{p.label}.xlsx"'})


@get("/v1/jurisdictions/{jid:str}/assessment/trend", sync_to_thread=True, **KEYED)
def assessment_trend(services: NamedDependency[Services], jid: FromPath[str], period: PeriodQuery = None,
                     level: LevelQuery = None,
                     count: Annotated[int, QueryParameter(ge=1, le=24)] = 6) -> list[TrendPoint]:
    periods = services.assessment.trend(jid, services.assessment.period(jid, period), count, level)
    return [TrendPoint.model_validate(p) for p in periods]


@get("/v1/jurisdictions/{jid:str}/assessment/units/{unit:str}", sync_to_thread=True, **KEYED)
def assessment_unit(services: NamedDependency[Services], jid: FromPath[str], unit: FromPath[str],
                    period: PeriodQuery = None,
                    deduction: Annotated[str | None, QueryParameter(max_length=64)] = None) -> UnitExplanation:
    explanation = services.assessment.explain(jid, services.assessment.period(jid, period), unit, deduction)
    return UnitExplanation.model_validate(explanation)


@post("/v1/jurisdictions/{jid:str}/assessment/records", sync_to_thread=True, **KEYED)
def assessment_record(services: NamedDependency[Services], jid: FromPath[str],
                      data: JSONBody[AssessmentRecordRequest]) -> Response[AssessmentRecordOut]:
    row = services.assessment.record(jid, Period.parse(data.period), data.unit, data.kind, data.score, data.author,
                                     data.note)
    return ModelResponse(AssessmentRecordOut.model_validate(row.model_dump()), status_code=201)


@get("/health", sync_to_thread=False)
def health(services: NamedDependency[Services]) -> Response:
    """Healthy once the database answers. `versions`: the active versions served here; `loading`: jurisdictions whose
    active version is still being built here (in the background: a request that needs one waits for it within its
    read budget)."""
    try:
        services.policies.ping()
        db = "ok"
    except Exception as exc:  # noqa: BLE001 - health reports any database failure
        db = f"error: {exc.__class__.__name__}"
    served = services.policies.registry.active()
    body = {"status": "ok" if db == "ok" else "degraded", "database": db,
            "engines_loaded": len(served), "versions": served, "loading": services.policies.loading()}
    return Response(body, status_code=200 if body["status"] == "ok" else 503)


async def _background(app: Litestar) -> None:
    """Each worker polls for newly published versions and sweeps deadlines; all state is in the DB."""
    services: Services = app.state.services
    last_sweep = last_statistics = 0.0
    garbage = KeptOutOfCollections(services.policies)
    await asyncio.to_thread(services.policies.warm)
    while True:
        await asyncio.sleep(POLL_SECONDS)
        try:
            await asyncio.to_thread(services.policies.warm)
            if garbage.due():
                await asyncio.to_thread(garbage.freeze)
            now = asyncio.get_running_loop().time()
            if app.state.sweep and now - last_sweep >= SWEEP_SECONDS:
                last_sweep = now
                await asyncio.to_thread(sweep, services.cases)
                await asyncio.to_thread(ledger.background_sweep, app)
            if app.state.sweep and now - last_statistics >= STATISTICS_SECONDS:
                last_statistics = now
                await asyncio.to_thread(refresh_statistics, services.cases.engine)
        except Exception:  # noqa: BLE001 - keep the worker alive; the next round retries
            log.exception("background refresh/sweep failed")


@contextlib.asynccontextmanager
async def _thread_pool(_: Litestar):
    with ThreadPoolExecutor(HANDLER_THREADS, thread_name_prefix="gridpolicy") as pool:
        asyncio.get_running_loop().set_default_executor(pool)
        yield


@contextlib.asynccontextmanager
async def _writer(app: Litestar):
    writer: Writer = app.state.writer
    writer.start()
    try:
        yield
    finally:
        await writer.stop()


@contextlib.asynccontextmanager
async def _lifespan(app: Litestar):
    task = asyncio.create_task(_background(app))
    try:
        yield
    finally:
        task.cancel()


# /schema: Swagger UI from files vendored in api/static/swagger-ui (no CDN: the page works offline)
API_DOCS_PATH = "/schema-assets"


def _api_docs() -> SwaggerRenderPlugin:
    return SwaggerRenderPlugin(path=["/", "/swagger"], js_url=f"{API_DOCS_PATH}/swagger-ui-bundle.js",
                               css_url=f"{API_DOCS_PATH}/swagger-ui.css",
                               standalone_preset_js_url=f"{API_DOCS_PATH}/swagger-ui-standalone-preset.js",
                               favicon="<link rel='icon' href='/admin/static/favicon.svg' type='image/svg+xml'>")


def create_app(database_url: str | None = None, background: bool = True, sweep_enabled: bool = True) -> Litestar:
    """`background`: a server's app (its loops, and intake in a writer process: api/writer.py)."""
    # Handler threads doing ORM work hand the GIL back to the event loop every millisecond instead of every 5 ms:
    # routing on the loop then waits for intake's threads at most that long per turn.
    sys.setswitchinterval(0.001)
    try:
        policies = open_policy_store(database_url)
    except PolicyError as err:
        raise SystemExit("规则文件校验失败, 服务未启动:\n" + str(err)) from None
    services = Services.over(policies)
    admin = admin_parts(policies.engine)
    url = policies.engine.url
    writer = Writer(services, url.render_as_string(hide_password=False) if background and not in_memory(url) else None)

    def _services() -> Services:
        """The app's services: a provider without parameters, so Litestar parses nothing to call it."""
        return services

    def _state(config: AppConfig) -> AppConfig:
        config.state.update({"services": services, "sweep": sweep_enabled, "writer": writer})
        return config

    app = Litestar(
        route_handlers=[list_jurisdictions, get_jurisdiction, problem_types, versions, version, version_diff,
                        compare_jurisdictions, create_draft, update_draft, patch_unit, patch_type, publish, rollback,
                        route, create_case, get_case, list_cases, transition, assessment, assessment_xlsx,
                        assessment_trend, assessment_unit, assessment_record, health, *open311.ROUTES, *events.ROUTES,
                        ledger.LedgerController, *admin.routers,
                        create_static_files_router(path=API_DOCS_PATH, directories=[Path(__file__).parent / "static"
                                                                                    / "swagger-ui"],
                                                   include_in_schema=False)],
        exception_handlers={StoreError: _store_error, ValidationException: _validation_error,
                            RoutingError: _routing_error, ValidationError: _pydantic_error,
                            OperationalError: _operational_error,
                            HTTPException: _http_error, Exception: _unexpected},
        openapi_config=OpenAPIConfig(title="gridpolicy", version="1", path="/schema",
                                     description="网格化环境监管规则路由服务 — policy-as-data routing",
                                     render_plugins=[_api_docs(), JsonRenderPlugin()],
                                     components=Components(security_schemes={"apiKey": SecurityScheme(
                                         type="apiKey", name=API_KEY_HEADER, security_scheme_in="header",
                                         description="接入系统的 API key (gridpolicy apikey create)")})),
        dependencies={"services": Provide(_services, sync_to_thread=False),
                      "api_key": Provide(_api_key, sync_to_thread=False)},
        request_max_body_size=MAX_BODY,
        response_class=ModelResponse,
        guards=[request_guard],
        before_send=[security_headers],
        middleware=[read_deadline],
        template_config=admin.templates,
        stores=admin.stores,
        lifespan=[_thread_pool, _writer, *([_lifespan, events.delivery] if background else [])],
        on_app_init=[_state],
    )
    _wrap_once(app)
    document_errors(app.openapi_schema)
    return app


def _wrap_once(app: Litestar) -> None:
    """Litestar 2.25 registers a route's handlers again when another method joins the path, wrapping a
    sync_to_thread handler twice; the outer wrapper would answer with the inner one's unawaited coroutine."""
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if isinstance(handler.fn, AsyncCallable) and isinstance(handler.fn.func, AsyncCallable):
                handler._fn = handler.fn.func
