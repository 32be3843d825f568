"""Pinned test cases (固定测试用例): route each case of a policy's suite and compare with what it expects.

A suite lives beside its policy (`jurisdictions/<id>.tests.yaml`, `Policy.tests`), is stored with every
version, and is run by `gridpolicy test`, the verify page and `PolicyStore.publish`.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from engine.compiler import compile_policy
from engine.decision import Decision
from engine.router import Case, PolicyRouter, RoutingError
from policy.loader import Jurisdiction
from policy.models import PinnedCase, PinnedExpect

# Pinned cases are routed at one fixed time, so a deadline's calendar can never make a run differ.
REPORTED_AT = datetime(2026, 1, 5, 1, 0, tzinfo=timezone.utc)
FIELD_LABELS = {"level": "处置层级", "unit": "处置网格", "first_action": "首个动作", "departments": "职能部门",
                "escalation": "超时升级层级"}


def observed(decision: Decision) -> PinnedExpect:
    """The parts of a decision a pinned case fixes."""
    return PinnedExpect(level=decision.handler.level, unit=decision.handler.unit, first_action=decision.first_action,
                        departments=decision.department_ids,
                        escalation=[hop.level for hop in decision.escalation_path])


def case_of(case: PinnedCase) -> Case:
    given = case.given
    return Case(problem_type=given.problem_type, unit=given.unit, found_at_level=given.found_at_level,
                facts=dict(given.facts), reported_at=REPORTED_AT)


@dataclass
class PinnedResult:
    case: PinnedCase
    actual: PinnedExpect | None  # None: the policy cannot route the case (see error)
    error: str | None = None

    @property
    def changed(self) -> list[str]:
        """The expected fields this policy decides differently."""
        if self.actual is None:
            return list(FIELD_LABELS)
        return [name for name in FIELD_LABELS if getattr(self.case.expect, name) != getattr(self.actual, name)]

    @property
    def passed(self) -> bool:
        return not self.changed


def run_cases(router: PolicyRouter, cases: list[PinnedCase]) -> list[PinnedResult]:
    """A case without a unit fixes no handling unit (which grid that is depends on the unit tree, which imports
    of real grid names replace, not on the rules)."""
    results = []
    for case in cases:
        try:
            actual = observed(router.route(case_of(case)))
            if case.given.unit is None:
                actual = actual.model_copy(update={"unit": None})
            results.append(PinnedResult(case, actual))
        except (RoutingError, ValueError) as err:
            results.append(PinnedResult(case, None, str(err)))
    return results


def run_suite(jur: Jurisdiction) -> list[PinnedResult]:
    """The jurisdiction's own suite against itself, compiled just for this run."""
    if not jur.policy.tests:
        return []
    compiled = compile_policy(jur)
    try:
        return run_cases(PolicyRouter(compiled), list(jur.policy.tests))
    finally:
        compiled.close()


def show(value) -> str:
    if isinstance(value, list):
        return "、".join(str(v) for v in value) or "—"
    return "—" if value is None else str(value)
