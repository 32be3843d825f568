"""Impact preview: replaying stored cases against a draft (both databases), and the escalation graph's edges."""
from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.compiler import compile_policy
from engine.router import Case
from engine.verify import escalation_edges
from store.cases import CaseService
from store.errors import Invalid
from store.replay import DEFAULT_DAYS, MAX_DAYS, parse_days, replay_version
from store.tables import utcnow

MEDICAL = "waste.medical.disposal"  # karamay: handled at level 2


def _draft_with_level(cases: CaseService, code: str, level: int):
    policies = cases.policies
    draft = policies.create_draft("karamay", "test")
    document = policies.document(draft)
    document["problem_types"] = [{**t, "level": level} if t["code"] == code else t for t in document["problem_types"]]
    return policies.update_draft("karamay", draft.number, document, draft.revision, "test")


def test_replay_lists_exactly_the_cases_routed_differently(cases):
    now = utcnow()
    recent = cases.create("karamay", Case(problem_type=MEDICAL, unit="kmy-l3-01"), "intake",
                          now=now - timedelta(days=2))
    other = cases.create("karamay", Case(problem_type="waste.medical.wastewater", unit="kmy-l3-01"), "intake",
                         now=now - timedelta(days=1))
    cases.create("karamay", Case(problem_type=MEDICAL, unit="kmy-l3-01"), "intake", now=now - timedelta(days=45))
    cases.create("panjin", Case(problem_type=MEDICAL, unit=next(iter(cases.policies.router("panjin").units))),
                 "intake", now=now - timedelta(days=1))
    draft = _draft_with_level(cases, MEDICAL, 3)

    report = replay_version(cases.policies, draft, days=30, now=now)
    assert (report.in_window, report.replayed, report.capped) == (2, 2, False)
    assert [d.case_id for d in report.differences] == [recent.id]
    changed = report.differences[0]
    assert (changed.old["level"], changed.new["level"]) == (2, 3)
    assert "level" in changed.changed and "departments" not in changed.changed
    assert other.id not in {d.case_id for d in report.differences}

    wider = replay_version(cases.policies, draft, days=60, now=now)
    assert wider.in_window == 3 and len(wider.differences) == 2

    capped = replay_version(cases.policies, draft, days=60, cap=1, now=now)
    assert (capped.in_window, capped.replayed, capped.capped) == (3, 1, True)
    assert capped.differences == []  # the newest case alone: its type is unchanged
    assert ([d.case_id for d in replay_version(cases.policies, draft, days=60, cap=2, now=now).differences]
            == [recent.id])


def test_replay_leaves_the_active_engine_working(cases):
    """The draft is compiled beside the active version and closed afterwards: routing keeps working."""
    cases.create("karamay", Case(problem_type=MEDICAL, unit="kmy-l3-01"), "intake")
    draft = cases.policies.create_draft("karamay", "test")  # same content as the active version
    assert replay_version(cases.policies, draft).differences == []
    decision = cases.policies.router("karamay").route(Case(problem_type=MEDICAL, unit="kmy-l3-01"))
    assert decision.handler.level == 2


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 10_000),
                                st.sampled_from([{}, {"persuasion_failed": True}, {"suspected_crime": True},
                                                 {"corrected_on_site": True}])), min_size=1, max_size=6))
def test_replaying_against_the_active_version_changes_nothing(cases, picks):
    """Invariant: the version that routed the cases routes them the same way again."""
    router = cases.policies.router("karamay")
    types, units = router.jur.policy.problem_types, sorted(router.units)
    for t, u, facts in picks:
        cases.create("karamay", Case(problem_type=types[t % len(types)].code, unit=units[u % len(units)],
                                     facts=facts), "intake")
    report = replay_version(cases.policies, cases.policies.active_version("karamay"))
    assert report.replayed >= len(picks) and report.differences == []


@given(st.integers(1, MAX_DAYS))
def test_parse_days_accepts_whole_days(days):
    assert parse_days(f" {days} ") == days


@pytest.mark.parametrize("text", ["0", "-3", "abc", "1.5", str(MAX_DAYS + 1), "３０x"])
def test_parse_days_refuses_other_input_in_chinese(text):
    with pytest.raises(Invalid) as err:
        parse_days(text)
    assert err.value.field == "days" and "天数" in err.value.message


def test_parse_days_defaults():
    assert parse_days("") == parse_days(None) == DEFAULT_DAYS


def test_escalation_edges_climb_to_level_one(bundled):
    for jur in bundled.values():
        compiled = compile_policy(jur)
        try:
            edges = escalation_edges(compiled)
        finally:
            compiled.close()
        levels = sorted(lv.number for lv in jur.policy.levels)
        assert [e["from"] for e in edges] == levels[1:], jur.id
        assert all(e["to"] < e["from"] and e["rule"] for e in edges), jur.id
