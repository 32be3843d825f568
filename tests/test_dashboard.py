"""Dashboard counts (SQL GROUP BY) on both databases, checked against the cases created."""
from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.router import Case
from store import dashboard
from store.cases import Transition
from store.tables import utcnow


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(0, 80), st.booleans()),
                     min_size=1, max_size=8))
def test_counts_match_the_cases_created(cases, plan):
    engine = cases.engine
    before = dashboard.totals(engine, "karamay")
    before_days = dashboard.over_time(engine, "karamay", 30)
    router = cases.policies.router("karamay")
    types, units = router.jur.policy.problem_types, sorted(router.units)
    now = utcnow()
    closed = recent = 0
    for t, u, age, close in plan:
        record = cases.create("karamay", Case(problem_type=types[t % len(types)].code, unit=units[u % len(units)]),
                              "test", now=now - timedelta(days=age))
        recent += age < 30
        if close and record.status != "closed":
            cases.transition(record.id, Transition("close", "test", "已整改"), now=now)
        closed += close or record.status == "closed"
    after = dashboard.totals(engine, "karamay")
    assert after.total - before.total == len(plan)
    assert after.closed - before.closed == closed
    levels = dashboard.by_level(engine, "karamay")
    assert sum(c.open for c in levels) == after.open and sum(c.closed for c in levels) == after.closed
    units_with_cases, top = dashboard.by_unit(engine, "karamay")
    assert sum(c.total for c in top) == after.total and len(top) == units_with_cases
    days = dashboard.over_time(engine, "karamay", 30)
    assert len(days["labels"]) == 30 and not days["weekly"]
    assert sum(days["received"]) - sum(before_days["received"]) == recent
    assert sum(days["closed"]) - sum(before_days["closed"]) == closed
    assert dashboard.totals(engine, "panjin").total == 0


def test_long_windows_are_counted_per_week(cases):
    now = utcnow()
    for age in (1, 8, 85):
        cases.create("karamay", Case(problem_type="waste.medical.disposal", unit="kmy-l3-01"), "t",
                     now=now - timedelta(days=age))
    weeks = dashboard.over_time(cases.engine, "karamay", 90, now=now)
    assert weeks["weekly"] and 13 <= len(weeks["labels"]) <= 14 and sum(weeks["received"]) == 3
