"""Typed success responses of /v1: what the handlers return, so /schema/openapi.json describes every field an
intake system reads. The JSON is the same the handlers wrote as dicts before (same keys)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from litestar import MediaType, Response
from litestar.serialization import default_serializer
from litestar.types import Serializer
from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from engine.decision import Decision, Provenance
from store.tables import CST, CaseClock, CaseEvent, CaseRecord, PolicyVersion, as_utc

Number = int | float  # kept as computed: an integer score stays an integer in the JSON


class ModelResponse(Response):
    """A pydantic model's JSON straight from pydantic-core, instead of a dict of it that msgspec encodes again (the
    app's response class: the same JSON at a third of the cost, a tenth of a route answer's CPU)."""

    def render(self, content: Any, media_type: str, enc_hook: Serializer = default_serializer) -> bytes:
        if isinstance(content, BaseModel) and media_type == MediaType.JSON:
            return content.__pydantic_serializer__.to_json(content)
        return super().render(content, media_type, enc_hook)


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Sparse(_Out):
    """Fields left unset are left out of the JSON (e.g. a case's events in a list)."""

    @model_serializer(mode="wrap")
    def _without_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        left_out = self.optional_parts() - self.model_fields_set
        return {k: v for k, v in data.items() if k not in left_out} if left_out else data

    @classmethod
    def optional_parts(cls) -> set[str]:
        return set()


# --- cases (a route answer is the engine's Decision itself)
class AllowedAction(_Out):
    action: str = Field(description="complete, fail, return, extend, reroute, escalate or close")
    label: str


class EventOut(_Out):
    id: int
    at: datetime
    actor: str
    action: str
    unit: str | None = Field(description="the grid holding the case when it happened")
    level: int | None
    from_status: str | None
    to_status: str | None
    note: str
    data: dict[str, Any]


class ClockOut(_Out):
    id: int
    cycle: int
    step: str
    unit: str | None
    calendar: str
    started_at: datetime
    due_at: datetime
    warned_50_at: datetime | None
    warned_75_at: datetime | None
    overdue_at: datetime | None
    stopped_at: datetime | None


class CaseOut(_Sparse):
    id: int
    jurisdiction: str
    policy_version: str
    version_number: int
    problem_type: str
    unit: str | None = Field(description="the grid where the problem is")
    finder_unit: str | None = Field(description="the grid that found it: unit or an ancestor (found_at_level)")
    facts: dict[str, bool | str]
    description: str
    channel: str | None = Field(description="信息来源: 热线, 网格员巡查, 公众举报, 上级交办 …")
    reporter: dict[str, str] | None = Field(description="举报人联系方式; never published (Open311, feed, webhooks)")
    lat: float | None = Field(description="WGS-84/CGCS2000, converted from coord_system")
    lon: float | None
    coord_system: str | None = Field(description="the coordinate system the location was sent in")
    address: str
    attachments: list[str]
    observed_at: datetime | None
    decision: Decision
    workflow: str | None
    handler_level: int
    handler_unit: str | None
    found_level: int | None
    status: str = Field(description="the current workflow step, or closed")
    cycle: int
    due_at: datetime | None
    overdue: bool
    reported_by: str
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    allowed_actions: list[AllowedAction]
    events: list[EventOut] | None = Field(None, description="only on a single case")
    clocks: list[ClockOut] | None = Field(None, description="only on a single case")

    @classmethod
    def optional_parts(cls) -> set[str]:
        return {"events", "clocks"}

    @classmethod
    def of(cls, record: CaseRecord, decision: Decision, allowed: list[AllowedAction],
           events: list[CaseEvent] | None = None, clocks: list[CaseClock] | None = None) -> CaseOut:
        parts: dict[str, Any] = {}
        if events is not None:
            parts["events"] = [EventOut.model_validate(_local_columns(e, _EVENT_COLUMNS)) for e in events]
        if clocks is not None:
            parts["clocks"] = [ClockOut.model_validate(_local_columns(c, _CLOCK_COLUMNS)) for c in clocks]
        return cls.model_validate(_local_columns(record, _CASE_COLUMNS)
                                  | {"decision": decision, "allowed_actions": allowed} | parts)


def _local_columns(row: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """A row's columns `names`, its timestamps (stored in UTC) in the jurisdiction's offset (+08:00)."""
    values = {name: getattr(row, name) for name in names}
    for name, value in values.items():
        if isinstance(value, datetime):
            values[name] = as_utc(value).astimezone(CST)
    return values


# the columns each answer shows, read straight off the row (a dump of the whole row first cost a third of an answer)
_EVENT_COLUMNS = tuple(EventOut.model_fields)
_CLOCK_COLUMNS = tuple(ClockOut.model_fields)
_CASE_COLUMNS = tuple(name for name in CaseOut.model_fields if name in CaseRecord.model_fields)


class CasePage(_Out):
    total: int
    limit: int
    offset: int
    items: list[CaseOut]


# --- versions
class VersionOut(_Sparse):
    jurisdiction: str
    number: int
    status: str = Field(description="draft or published")
    active: bool
    content_hash: str
    revision: int = Field(description="the draft revision; send it back as If-Match")
    author: str
    note: str
    created_at: str = Field(description="ISO 8601 date-time")
    published_at: str | None
    published_by: str | None
    document: dict[str, Any] | None = Field(None, description="the resolved policy (single version only)")

    @classmethod
    def optional_parts(cls) -> set[str]:
        return {"document"}

    @classmethod
    def of(cls, v: PolicyVersion, document: dict[str, Any] | None = None) -> VersionOut:
        """`document`: the version's (PolicyStore.document), for the single-version answers."""
        return cls(jurisdiction=v.jurisdiction, number=v.number, status=v.status, active=v.active,
                  content_hash=v.content_hash, revision=v.revision, author=v.author, note=v.note,
                  created_at=v.created_at.isoformat(),
                  published_at=v.published_at.isoformat() if v.published_at else None, published_by=v.published_by,
                  document=document)


# --- assessment (store/assessment.py computes it)
class PeriodOut(_Out):
    label: str = Field(description="2026-07, 2026-Q3, 2026-H1 or 2026")
    kind: str
    kind_label: str
    start: str
    end: str


class WindowOut(_Out):
    label: str = Field(description="e.g. 2026-01-01 至 2026-09-30")
    start: str
    end: str


class DeductionCount(_Out):
    id: str
    name: str
    trigger: str
    count: int
    points_each: Number
    points: Number


class RecordOut(_Out):
    score: Number
    note: str
    author: str
    at: str


Indicators = dict[str, int]
Rates = dict[str, float | None]


class UnitAssessment(_Out):
    unit: str
    name: str
    level: int
    parent: str | None
    indicators: Indicators = Field(description="counts keyed as in indicator_labels")
    rates: Rates = Field(description="ratios keyed as in rate_labels; null where the denominator is 0")
    records: dict[str, RecordOut] = Field(description="self / upper assessments by kind")
    score: Number | None
    loss: Number
    deducted: Number
    deductions: list[DeductionCount]
    vetoed: list[str]
    rank: int


class UnassignedAssessment(_Out):
    """未落实到网格: what no grid can be charged with (see README 综合评价), shown rather than dropped."""
    unit: None
    name: str
    indicators: Indicators
    rates: Rates
    deductions: list[DeductionCount]
    deducted: Number


class LevelAssessment(_Out):
    level: int
    name: str
    units: int
    indicators: Indicators
    rates: Rates
    average_score: float | None


class DepartmentAssessment(_Out):
    id: str
    name: str
    indicators: Indicators
    rates: Rates


class StepTime(_Out):
    workflow: str
    workflow_name: str
    step: str
    name: str
    count: int = Field(description="steps finished in the period, late or not")
    late: int = Field(description="of those, finished after their due time")
    avg_hours: float
    p90_hours: float


class SchemeDeduction(_Out):
    id: str
    name: str
    points: Number
    max_points: Number | None
    trigger: str
    trigger_label: str
    provenance: Provenance


class SchemeVeto(_Out):
    id: str
    name: str
    trigger: str | None
    at_least: int
    trigger_label: str
    provenance: Provenance


class SchemeAssessment(_Out):
    kind: str
    per: str
    provenance: Provenance


class Scheme(_Out):
    scheme: str
    scheme_label: str
    total: Number
    period: str
    level: int | None = Field(description="评分对象的网格层级; 空 = 各级网格均评分")
    publish: str | None
    provenance: Provenance
    deductions: list[SchemeDeduction]
    vetoes: list[SchemeVeto]
    assessments: list[SchemeAssessment]


class Assessment(_Out):
    jurisdiction: str
    name: str
    policy_version: str
    period: PeriodOut
    score_window: WindowOut = Field(description="where deductions are counted (a yearly scheme: the year to date)")
    scheme: Scheme | None
    indicator_labels: dict[str, str]
    rate_labels: dict[str, str]
    documents: dict[str, str] = Field(description="the title of each source document a provenance names by its seed")
    units: list[UnitAssessment]
    unassigned: UnassignedAssessment | None
    levels: list[LevelAssessment]
    departments: list[DepartmentAssessment]
    steps: list[StepTime]


class TrendPoint(_Out):
    period: str
    closure_rate: float | None = None
    on_time_closure_rate: float | None = None
    on_time_report_rate: float | None = None
    on_time_dispatch_rate: float | None = None
    accurate_dispatch_rate: float | None = None
    disposal_rate: float | None = None
    on_time_handling_rate: float | None = None
    rework_rate: float | None = None


class ExplainedEvent(_Out):
    event: int
    case: int
    at: str
    action: str
    step: str | None
    note: str
    problem_type: str


class ExplainedObligation(_Out):
    """A cadence obligation missed in the score window (a ledger trigger's deduction)."""
    cadence: str
    name: str
    object_id: int | None
    period_start: str = Field(description="first day, China time")
    period_end: str = Field(description="last day, China time")
    required: int
    recorded: int


class ExplainedDeduction(_Out):
    id: str
    name: str
    trigger: str
    trigger_label: str
    points_each: Number
    provenance: Provenance
    events: list[ExplainedEvent] = Field(description="the case events counted (case-event triggers)")
    obligations: list[ExplainedObligation] = Field(description="the missed obligations counted (ledger triggers)")


class UnitExplanation(_Out):
    jurisdiction: str
    unit: str
    name: str
    period: PeriodOut
    score_window: WindowOut
    deductions: list[ExplainedDeduction]


class AssessmentRecordOut(_Out):
    id: int
    jurisdiction: str
    period: str
    unit: str
    kind: str
    score: Number
    author: str
    note: str
    created_at: datetime
