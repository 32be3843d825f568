"""Cases stored compactly (#17): a case row keeps the version, the fired rules and the decision's ids, levels and
due times (under 2 KB); reading it back gives the whole decision, quotes and names included, as routing gave it."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from engine.compiler import compile_policy
from engine.router import Case, PolicyRouter, RoutingError
from store.cases import Transition
from store.tables import CST

WHEN = datetime(2026, 9, 28, 9, 0, tzinfo=timezone.utc)
FACTS = [{}, {"persuasion_failed": True}, {"suspected_crime": True}, {"corrected_on_site": True}]


def _stored_sizes(cases) -> dict[int, int]:
    length = "length(decision)" if cases.engine.dialect.name == "sqlite" else "octet_length(decision::text)"
    with cases.engine.connect() as connection:
        return dict(connection.execute(text(f"SELECT id, {length} FROM case_record")).all())


def test_a_stored_case_is_small_and_reads_back_as_the_whole_decision(cases):
    router = cases.policies.router("hefei")
    units = [u.id for u in router.units.values() if u.level == 4][:3]
    made = []
    for i, ptype in enumerate(t.code for t in router.jur.policy.problem_types[:24]):
        case = Case(problem_type=ptype, unit=units[i % 3], facts=FACTS[i % len(FACTS)])
        record = cases.create("hefei", case, "测试", now=WHEN)
        made.append((record.id, router.route(case.model_copy(update={"reported_at": WHEN}))))
    sizes = _stored_sizes(cases)
    for case_id, decision in made:
        assert len(decision.model_dump_json()) > 2048  # the whole decision would not fit
        assert sizes[case_id] <= 2048, (case_id, sizes[case_id])
        # quotes, names and reasons back from the version
        assert cases.policies.decision(cases.get(case_id)[0].stored_decision) == decision
        assert cases.policies.decision(cases.search("hefei", ids=[case_id])[1][0].stored_decision) == decision


def test_a_rerouted_case_stores_its_new_decision_compactly(cases):
    router = cases.policies.router("hefei")
    unit = next(u.id for u in router.units.values() if u.level == 4)
    ptype = router.jur.policy.problem_types[0].code
    record = cases.create("hefei", Case(problem_type=ptype, unit=unit), "测试", now=WHEN)
    cases.transition(record.id, Transition("reroute", "网格员", "劝阻无效", {"persuasion_failed": True}), now=WHEN)
    again = router.route(Case(problem_type=ptype, unit=unit, facts={"persuasion_failed": True}, reported_at=WHEN))
    assert cases.policies.decision(cases.get(record.id)[0].stored_decision) == again
    assert _stored_sizes(cases)[record.id] <= 2048


def test_a_decision_stored_whole_still_reads_and_is_compacted_in_place(cases):
    """Rows written before compaction (or a decision compact() cannot restate) are read as stored, and
    `compact_stored` rewrites them compactly."""
    router = cases.policies.router("hefei")
    unit = next(u.id for u in router.units.values() if u.level == 4)
    record = cases.create("hefei", Case(problem_type=router.jur.policy.problem_types[1].code, unit=unit), "测试",
                          now=WHEN)
    decision = cases.policies.decision(cases.get(record.id)[0].stored_decision)
    value = ":d" if cases.engine.dialect.name == "sqlite" else "CAST(:d AS json)"
    with cases.engine.begin() as connection:
        connection.execute(text(f"UPDATE case_record SET decision = {value} WHERE id = :id"),
                           {"d": decision.model_dump_json(), "id": record.id})
    assert _stored_sizes(cases)[record.id] > 2048
    assert cases.policies.decision(cases.get(record.id)[0].stored_decision) == decision
    assert cases.compact_stored(batch=2) == 1  # `gridpolicy compact-cases`: rows stored whole become compact
    assert _stored_sizes(cases)[record.id] <= 2048
    assert cases.policies.decision(cases.get(record.id)[0].stored_decision) == decision


# --- compact's memo of round trips (#10 item 6): a routed decision's shape is checked once per version
JIDS = ["karamay", "panjin", "weiyang", "hefei"]
FACT_NAMES = ["persuasion_failed", "corrected_on_site", "suspected_crime", "major", "no_platform"]


@pytest.fixture(scope="module")
def routers(bundled) -> dict[str, PolicyRouter]:
    return {jid: PolicyRouter(compile_policy(bundled[jid])) for jid in JIDS}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_memoised_and_fresh_compaction_agree(routers, data):
    """Whatever cases a router compacted before (its memo), a routed decision compacts exactly as a fresh check
    (`routed=False`: expand and compare) compacts it, and reads back as the decision."""
    router = routers[data.draw(st.sampled_from(JIDS))]
    jur = router.jur
    units = [u.id for level in jur.policy.levels for u in jur.units_at(level.number)[:3]]
    case = Case(problem_type=data.draw(st.sampled_from([t.code for t in jur.policy.problem_types[:6]])),
                unit=data.draw(st.sampled_from(units)),
                found_at_level=data.draw(st.none() | st.sampled_from([lv.number for lv in jur.policy.levels])),
                units_involved=data.draw(st.lists(st.sampled_from(units), max_size=2)),
                facts=data.draw(st.dictionaries(st.sampled_from(FACT_NAMES), st.booleans())),
                reported_at=data.draw(st.datetimes(datetime(2025, 1, 1), datetime(2027, 12, 31),
                                                   timezones=st.sampled_from([timezone.utc, CST]))))
    try:
        decision = router.route(case)
    except RoutingError:
        assume(False)
        return
    memoised = router.compact(decision, routed=True)
    assert memoised == router.compact(decision)
    assert router.restore(memoised) == decision


def test_a_routed_shape_is_expanded_once(routers, monkeypatch):
    """Two cases that differ only in their moment: the second's compact form is not expanded again."""
    router = PolicyRouter(routers["karamay"].compiled)  # its memo empty
    expanded = []
    expand = router.expand
    monkeypatch.setattr(router, "expand", lambda stored: expanded.append(stored) or expand(stored))
    unit = router.jur.units_at(3)[0].id
    ptype = router.jur.policy.problem_types[0].code
    first, second = (router.route(Case(problem_type=ptype, unit=unit, facts={"major": True}, reported_at=at))
                     for at in (WHEN, WHEN + timedelta(days=3, minutes=7)))
    assert first.deadlines[0].due != second.deadlines[0].due
    stored = [router.compact(first, routed=True), router.compact(second, routed=True)]
    assert len(expanded) == 1 and all(s.get("compact") for s in stored)
    router.compact(second)  # a decision not known to be routed here (e.g. a row stored whole) is always checked
    assert len(expanded) == 2
    assert [router.restore(s) for s in stored] == [first, second]
