"""Cases stored compactly (#17): a case row keeps the version, the fired rules and the decision's ids, levels and
due times (under 2 KB); reading it back gives the whole decision, quotes and names included, as routing gave it."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import text

from engine.router import Case
from store.cases import Transition

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
