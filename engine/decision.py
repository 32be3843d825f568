"""The decision the engine returns for a case: one typed model read by the store, the API (and its OpenAPI
document), the admin pages and the CLI. Its JSON form is what `POST /v1/route` answers and what a case stores.

To add a field: add it to the model with a default (stored decisions without it still load) and fill it in
`engine/router.py:PolicyRouter.route`.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Provenance = Annotated[dict[str, str], Field(description="出处: {seed, clause, quote} 或 {assumption} (假设)")]


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _is_none(value: Any) -> bool:
    return value is None


class GridParty(_Part):
    kind: Literal["grid"] = "grid"
    level: int
    unit: str | None = Field(description="网格单元 id; 层级之下无法确定时为空")
    name: str | None


class DepartmentParty(_Part):
    kind: Literal["department"] = "department"
    id: str
    name: str


class LeaderParty(_Part):
    kind: Literal["leader"] = "leader"
    name: str
    of: str = Field(description="包抓领导所包抓的网格")


class CompetentBodyParty(_Part):
    """Beyond the grid's authority: the body with the power to act (移交移送), named by its role, not by id."""
    kind: Literal["competent_body"] = "competent_body"
    name: str


class HeadParty(_Part):
    kind: Literal["head"] = "head"
    name: str = Field(description="网格长 (the level's head role)")
    of: str = Field(description="所在网格")


Party = Annotated[GridParty | DepartmentParty | LeaderParty | CompetentBodyParty | HeadParty,
                  Field(discriminator="kind")]


class ProblemTypeRef(_Part):
    code: str
    name: str


class Handler(_Part):
    level: int = Field(description="处置网格层级 (1 = 最高)")
    unit: str | None
    unit_name: str | None
    departments: list[DepartmentParty]


class ActionDeadline(_Part):
    duration: str = Field(description="ISO 8601 duration")
    calendar: Literal["natural", "working"]
    due: str = Field(description="ISO 8601 date-time")
    source: Provenance


class DecidedAction(_Part):
    kind: str = Field(description="persuade, report, dispose, dispatch, escalate … (policy/models.py:ActionKind)")
    label: str
    reason: str
    rule: str
    by: Party
    to: Party | None
    parallel: bool = Field(False, description="与前一动作同时进行 (e.g. 同时上报)")
    within: ActionDeadline | None = Field(None, description="the action's own deadline (立即报告, 及时上报)")


class Deadline(_Part):
    step: str
    name: str
    actor: str
    duration: str = Field(description="ISO 8601 duration")
    calendar: Literal["natural", "working"]
    source: Provenance
    due: str = Field(description="ISO 8601 date-time")


class EscalationHop(_Part):
    level: int
    unit: str | None
    name: str | None
    after: str = Field(description="ISO 8601 date-time: the handling deadline whose miss hands the case on")
    rule: str


class TraceEntry(_Part):
    rule: str
    name: str
    source: Provenance
    # left out of the JSON when unset, as the engine always wrote it (per field: a third of the cost of a model
    # serializer filtering the whole entry)
    priority: int | None = Field(None, exclude_if=_is_none)
    phase: Literal["escalation"] | None = Field(None, exclude_if=_is_none)


class Decision(_Part):
    jurisdiction: str
    policy_version: str = Field(description="content hash of the policy version that decided")
    problem_type: ProblemTypeRef
    handler: Handler
    first_action: str | None
    actions: list[DecidedAction]
    workflow: str | None
    deadlines: list[Deadline]
    escalation_path: list[EscalationHop]
    trace: list[TraceEntry]

    @property
    def department_ids(self) -> list[str]:
        return [d.id for d in self.handler.departments]
