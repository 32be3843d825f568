"""The supervision ledger over HTTP (API key with the jurisdiction in scope): supervised objects and their import,
patrol records (Idempotency-Key), cadence compliance and the monthly 巡查记录汇总表."""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated

from litestar import Controller, Litestar, Request, Response, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody, PathParameter, QueryParameter
from pydantic import BaseModel, ConfigDict, Field

from api.guards import KEYED
from store.assessment import Period
from store.cadences import CadenceService
from store.ledger import Finding, LedgerService, PatrolInput, read_table
from store.ledger_xlsx import patrol_summary
from store.tables import MAX_ID, ApiKey, PatrolRecord, SupervisedObject
from store.xlsx import MEDIA_TYPE as XLSX_MEDIA_TYPE


CADENCE_SWEEP_SECONDS = 300.0  # obligations change by the day; the case sweeper's 30 s would only repeat the work
ObjectId = Annotated[int, PathParameter(ge=1, le=MAX_ID)]
PeriodQuery = Annotated[str | None, QueryParameter(max_length=16, description="2026-11, 2026-Q3, 2026-H1 或 2026")]
Text = Annotated[str | None, QueryParameter(max_length=128)]


@dataclass
class Ledger:
    ledger: LedgerService
    cadences: CadenceService


def ledger_services(app: Litestar) -> Ledger:
    """One ledger and cadence service per app, over the app's policy and case stores."""
    if app.state.get("ledger") is None:
        services = app.state.services
        app.state.ledger = Ledger(LedgerService(services.policies, services.cases), CadenceService(services.policies))
    return app.state.ledger


def background_sweep(app: Litestar) -> None:
    """Called by the server's background loop; sweeps the cadences every CADENCE_SWEEP_SECONDS."""
    now = time.monotonic()
    if now - (app.state.get("cadence_swept") or -CADENCE_SWEEP_SECONDS) >= CADENCE_SWEEP_SECONDS:
        app.state.cadence_swept = now
        ledger_services(app).cadences.sweep()


class ObjectBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=200)
    unit: str = Field(max_length=128)
    kind: str = Field(max_length=32)
    identifier: str = Field(max_length=64, description="排污许可证号或统一社会信用代码")
    source_class: str | None = Field(None, max_length=8, description="规则定义的类别 (如盘锦 A/B/C)")
    class_reason: str = Field("", max_length=1000)
    address: str = Field("", max_length=300)
    longitude: float | None = None
    latitude: float | None = None
    registered_on: date | None = Field(None, description="建档日期, 默认今天")
    actor: str = Field(min_length=1, max_length=128)


class ObjectPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actor: str = Field(min_length=1, max_length=128)
    reason: str = Field("", max_length=1000, description="变更理由 (改类别时必填)")
    name: str | None = Field(None, max_length=200)
    unit: str | None = Field(None, max_length=128)
    kind: str | None = Field(None, max_length=32)
    identifier: str | None = Field(None, max_length=64)
    source_class: str | None = Field(None, max_length=8)
    class_reason: str | None = Field(None, max_length=1000)
    address: str | None = Field(None, max_length=300)
    longitude: float | None = None
    latitude: float | None = None


class FindingBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = Field(min_length=1, max_length=2000)
    object_id: int | None = Field(None, ge=1, le=MAX_ID)
    problem_type: str | None = Field(None, max_length=200, description="填写则立案, 按规则路由")
    facts: dict[str, bool | str] = Field(default_factory=dict)


class PatrolBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unit: str = Field(min_length=1, max_length=128)
    activity: str = Field("patrol", max_length=32)
    patrolled_at: datetime = Field(description="无时区按北京时间")
    # item constraints go into the schema by hand: Litestar leaves those of a list's items out
    patrollers: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=10, json_schema_extra={"items": {"type": "string", "minLength": 1, "maxLength": 64}})
    signed_by: str = Field(min_length=1, max_length=64, description="签字人, 须为巡查人之一")
    objects: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(
        default_factory=list, max_length=500, json_schema_extra={"items": {"type": "integer", "minimum": 1,
                                                                           "maximum": MAX_ID}})
    findings: list[FindingBody] = Field(default_factory=list, max_length=50)
    photos: list[Annotated[str, Field(max_length=1000)]] = Field(
        default_factory=list, max_length=20, json_schema_extra={"items": {"type": "string", "maxLength": 1000}})

    def patrol(self) -> PatrolInput:
        return PatrolInput(unit=self.unit, activity=self.activity, patrolled_at=self.patrolled_at,
                           patrollers=list(self.patrollers), signed_by=self.signed_by, objects=list(self.objects),
                           findings=[Finding(f.description, f.object_id, f.problem_type, dict(f.facts))
                                     for f in self.findings], photos=list(self.photos))


MAX_BATCH = 500  # patrols per batch: one transaction, within the 256 KB body limit


class BatchPatrol(PatrolBody):
    idempotency_key: str | None = Field(None, max_length=200, description="同一键的记录只存一次, 重试返回首次记录")


class PatrolBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    patrols: list[BatchPatrol] = Field(min_length=1, max_length=MAX_BATCH)


class BatchItemOut(BaseModel):
    id: int
    unit: str
    created: bool = Field(description="false: 此 Idempotency-Key 的记录此前已保存")


class PatrolBatchOut(BaseModel):
    created: int
    existing: int
    patrols: list[BatchItemOut] = Field(description="与请求中的顺序一致")


def object_json(obj: SupervisedObject) -> dict:
    return obj.model_dump(mode="json", exclude={"search_key"})


def patrol_json(record: PatrolRecord, objects: list[SupervisedObject] | None = None) -> dict:
    out = record.model_dump(mode="json", exclude={"idempotency_key"})
    if objects is not None:
        out["objects"] = [{"id": o.id, "name": o.name, "unit": o.unit} for o in objects]
    return out


class LedgerController(Controller):
    path = "/v1/jurisdictions/{jid:str}"
    tags = ["监管台账 ledger"]

    security = KEYED["security"]  # every ledger operation: a key for the jurisdiction of the path

    # --- supervised objects
    @get("/objects", sync_to_thread=True)
    def objects(self, request: Request, jid: FromPath[str], q: Text = None, unit: Text = None, kind: Text = None,
                source_class: Annotated[str | None, QueryParameter(name="class", max_length=8)] = None,
                limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
                offset: Annotated[int, QueryParameter(ge=0, le=MAX_ID)] = 0) -> dict:
        total, rows = ledger_services(request.app).ledger.search_objects(jid, q, unit, kind, source_class,
                                                                                   limit, offset)
        return {"total": total, "limit": limit, "offset": offset, "items": [object_json(o) for o in rows]}

    @post("/objects", sync_to_thread=True)
    def create_object(self, request: Request, jid: FromPath[str], data: JSONBody[ObjectBody]) -> Response:
        ledger = ledger_services(request.app).ledger
        obj = ledger.create_object(jid, data.model_dump(exclude={"actor"}), data.actor)
        return Response(object_json(obj), status_code=201,
                        headers={"Location": f"/v1/jurisdictions/{jid}/objects/{obj.id}"})

    @get("/objects/{object_id:int}", sync_to_thread=True)
    def get_object(self, request: Request, jid: FromPath[str], object_id: ObjectId) -> dict:
        ledger = ledger_services(request.app).ledger
        out = object_json(ledger.get_object(jid, object_id))
        out["history"] = [c.model_dump(mode="json", exclude={"object_id"}) for c in ledger.history(jid, object_id)]
        total, patrols = ledger.search_patrols(jid, object_id=object_id, limit=20)
        out["patrols"] = {"total": total, "latest": [patrol_json(p) for p in patrols]}
        return out

    @patch("/objects/{object_id:int}", sync_to_thread=True)
    def update_object(self, request: Request, jid: FromPath[str], object_id: ObjectId,
                      data: JSONBody[ObjectPatch]) -> dict:
        ledger = ledger_services(request.app).ledger
        changes = data.model_dump(exclude={"actor", "reason"}, exclude_unset=True)
        return object_json(ledger.update_object(jid, object_id, changes, data.actor, data.reason))

    @post("/objects/import", status_code=200)
    async def import_objects(self, request: Request, jid: FromPath[str],
                       actor: Annotated[str, QueryParameter(min_length=1, max_length=128)],
                       filename: Annotated[str, QueryParameter(max_length=200)] = "objects.csv",
                       confirm: Annotated[bool, QueryParameter(
                           description="false: 只预览; true: 无错误时保存")] = False) -> Response:
        """The request body is a CSV file (or .xlsx with filename=….xlsx): a preview per row; with confirm=true it is
        saved, only when no row has an error."""
        ledger = ledger_services(request.app).ledger
        rows = read_table(await request.body(), filename)
        preview = ledger.apply_import(jid, rows, actor) if confirm else ledger.preview_import(jid, rows)
        body = {"rows": preview.rows, "added": len(preview.added), "updated": preview.updated,
                "unchanged": preview.unchanged, "errors": [e.as_dict() for e in preview.errors], "saved": confirm}
        return Response(body, status_code=422 if preview.errors else 200)

    # --- patrol records
    @post("/patrols", sync_to_thread=True)
    def create_patrol(self, request: Request, api_key: NamedDependency[ApiKey], jid: FromPath[str],
                      data: JSONBody[PatrolBody],
                      idempotency_key: Annotated[str | None, HeaderParameter(
                          name="Idempotency-Key", max_length=200)] = None) -> Response:
        ledger = ledger_services(request.app).ledger
        patrol = data.patrol()
        record, created = ledger.record_patrol(jid, patrol, f"apikey:{api_key.prefix}", idempotency_key)
        assert record.id is not None  # stored: it has its id
        # the objects a new record checked (with those of its findings) are read back; a replay's are unknown here
        objects = ledger.get_patrol(jid, record.id)[1] if patrol.objects or not created else []
        return Response(patrol_json(record, objects), status_code=201 if created else 200,
                        headers={"Location": f"/v1/jurisdictions/{jid}/patrols/{record.id}"})

    @post("/patrols/batch", sync_to_thread=True, status_code=200)
    def create_patrols(self, request: Request, api_key: NamedDependency[ApiKey], jid: FromPath[str],
                       data: JSONBody[PatrolBatch]) -> PatrolBatchOut:
        """Up to 500 patrol records in one transaction (an app syncing its offline queue): all saved or none, each
        error naming its item (`patrols[i].field`)."""
        stored = ledger_services(request.app).ledger.record_patrols(
            jid, [(p.patrol(), p.idempotency_key) for p in data.patrols], f"apikey:{api_key.prefix}")
        items = [BatchItemOut(id=record.id or 0, unit=record.unit, created=created) for record, created in stored]
        made = sum(i.created for i in items)
        return PatrolBatchOut(created=made, existing=len(items) - made, patrols=items)

    @get("/patrols", sync_to_thread=True)
    def patrols(self, request: Request, jid: FromPath[str], unit: Text = None,
                from_: Annotated[date | None, QueryParameter(name="from")] = None,
                to: Annotated[date | None, QueryParameter(description="不含")] = None,
                object_id: Annotated[int | None, QueryParameter(name="object", ge=1, le=MAX_ID)] = None,
                limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
                offset: Annotated[int, QueryParameter(ge=0, le=MAX_ID)] = 0) -> dict:
        ledger = ledger_services(request.app).ledger
        total, rows = ledger.search_patrols(jid, unit, from_, to, object_id, limit, offset)
        return {"total": total, "limit": limit, "offset": offset, "items": [patrol_json(r) for r in rows]}

    @get("/patrols/{patrol_id:int}", sync_to_thread=True)
    def get_patrol(self, request: Request, jid: FromPath[str], patrol_id: ObjectId) -> dict:
        record, objects = ledger_services(request.app).ledger.get_patrol(jid, patrol_id)
        return patrol_json(record, objects)

    # --- cadences
    @get("/cadences", sync_to_thread=True)
    def cadences(self, request: Request, jid: FromPath[str], period: PeriodQuery = None, unit: Text = None) -> dict:
        services = ledger_services(request.app)
        return services.cadences.compliance(jid, current_period(period), unit=unit)

    @get("/patrol-summary.xlsx", sync_to_thread=True)
    def summary(self, request: Request, jid: FromPath[str], period: PeriodQuery = None, unit: Text = None) -> Response:
        services = ledger_services(request.app)
        p = current_period(period)
        return Response(patrol_summary(services.ledger, services.cadences, jid, p, unit), media_type=XLSX_MEDIA_TYPE,
                        headers={"Content-Disposition": f'attachment; filename="patrol-summary-{jid}-{p.label}.xlsx"'})


def current_period(text: str | None, now: datetime | None = None) -> Period:
    """`text` parsed, or the current month (cadences are mostly monthly or shorter)."""
    return Period.parse(text) if text else Period.containing("month", now or datetime.now().astimezone())

