"""Assessment figures an auditor can recompute (issue #16): one small hand-made case history per cause, its
expected figures worked out here from README's 综合评价 definitions; the trigger registry checked over every
trigger. Real databases (SQLite and PostgreSQL)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from engine.router import Case
from policy.models import TRIGGERS, PeriodKind
from store.assessment import (EVENT, RECORD, TRIGGER_RULES, UNASSIGNED, case_rules, AssessmentService, Period,
                              StepRoles, score_window)
from store.cases import CaseService, Transition
from store.errors import Invalid
from store.sweeper import sweep
from store.tables import CaseEvent, CaseRecord
from store.versions import open_policy_store
from tests.test_assessment import by_unit, cst

# Karamay: handled by the level-2 grid; report PT2H → dispose P5D (working) → recheck
MEDICAL = "waste.medical.disposal"
DUST = "air.dust.general"  # Hefei: handled by the district (level 2); platform or no_platform workflow
Q3 = Period.parse("2026-Q3")


@pytest.fixture
def services(database_url):
    policies = open_policy_store(database_url)
    yield CaseService(policies), AssessmentService(policies)
    policies.engine.dispose()


def walk(cases: CaseService, case_id: int, *steps):
    """Apply (action, moment) pairs; `action` is a Transition or the name of one taken by 网格员."""
    record = None
    for action, moment in steps:
        t = action if isinstance(action, Transition) else Transition(action, "网格员", "说明")
        record = cases.transition(case_id, t, now=moment)
    return record


def karamay(cases: CaseService, unit: str | None, at, **kw):
    return cases.create("karamay", Case(problem_type=MEDICAL, unit=unit, **kw), "网格员", now=at)


def ind(result: dict, unit: str) -> dict:
    return by_unit(result)[unit]["indicators"]


# --- the registry: one entry per trigger generates the SQL condition, the grouped matching and the row flags
def test_every_trigger_has_one_rule_and_its_condition_and_grouped_counts_agree(services):
    cases, assessment = services
    assert set(TRIGGER_RULES) == set(TRIGGERS)
    # A (major): report late at kmy-l2-1 → escalated to kmy, which extends, returns, fails a check, then closes it
    a = karamay(cases, "kmy-l3-01", cst(2026, 7, 6, 9), facts={"major": True})
    sweep(cases, cst(2026, 7, 6, 11, 30))
    walk(cases, a.id, ("complete", cst(2026, 7, 6, 12)),
         (Transition("extend", "处置人", "复杂", approved_by="包抓领导", extend_by=timedelta(days=1)),
          cst(2026, 7, 7, 9)),
         (Transition("return", "职能部门", "非本部门职责"), cst(2026, 7, 7, 10)), ("complete", cst(2026, 7, 7, 11)),
         ("fail", cst(2026, 7, 7, 12)), ("complete", cst(2026, 7, 7, 13)), ("complete", cst(2026, 7, 7, 14)))
    # B: found by the district (level 1) in kmy-l3-02's area; its disposal at kmy-l2-1 runs late
    b = karamay(cases, "kmy-l3-02", cst(2026, 7, 6, 9), found_at_level=1)
    walk(cases, b.id, ("complete", cst(2026, 7, 6, 10)))
    sweep(cases, cst(2026, 7, 13, 11))  # dispose due Mon 13 July 10:00 (5 working days)
    expected = {  # trigger → {charged grid: count}
        "late_report": {"kmy-l3-01": 1},  # the finder of A
        "late_dispatch": {"kmy-l2-1": 1},  # Karamay's dispatch step is its first, report
        "late_handling": {"kmy-l2-1": 1}, "overdue": {"kmy-l2-1": 2}, "escalated": {"kmy-l2-1": 2},
        "major_overdue": {"kmy-l2-1": 1}, "extended": {"kmy": 1}, "returned": {"kmy": 1},
        "verification_failed": {"kmy": 1}, "found_by_upper": {"kmy-l2-1": 1},
    }
    roles = StepRoles.of(cases.policies.router("karamay").jur.policy)
    window = score_window(None, Q3)
    with Session(cases.engine) as session:
        grouped = assessment._event_counts(session, "karamay", roles, Q3, window, sorted(TRIGGERS))
        for trigger, rule in case_rules(TRIGGERS).items():  # the ledger's: tests/test_ledger.py
            by_condition = dict(session.execute(
                select(rule.unit, func.count())
                .select_from(CaseEvent.__table__.join(CaseRecord.__table__, RECORD.id == EVENT.case_id))
                .where(RECORD.jurisdiction == "karamay", EVENT.at >= Q3.start, EVENT.at < Q3.end,
                       rule.condition(roles)).group_by(rule.unit)).all())
            by_groups = {unit: n[f"t:{trigger}"] for unit, n in grouped.items() if n.get(f"t:{trigger}")}
            assert by_condition == by_groups == expected[trigger], trigger


# --- cause 1: roles come from the case's own workflow
def test_roles_come_from_the_case_s_own_workflow(services):
    cases, assessment = services
    facts = {"persuasion_failed": True}
    p = cases.create("hefei", Case(problem_type=DUST, unit="hf-l4-0001", facts=facts), "网格员", now=cst(2026, 7, 6, 9))
    assert p.handler_unit == "hf-changfeng" and p.workflow == "platform"
    # collect, file, dispatch, handle, feedback; the check (verify) fails → handle, feedback, verify → closed
    walk(cases, p.id, *[("fail" if hour == 15 else "complete", cst(2026, 7, 6, hour)) for hour in range(10, 19)])
    # 六(二) without the platform the finding grid handles it itself (限时办结): find, file, handle, feedback
    n = cases.create("hefei", Case(problem_type=DUST, unit="hf-l4-0001", facts=facts | {"no_platform": True}), "网格员",
                     now=cst(2026, 7, 6, 9))
    assert n.workflow == "no_platform" and n.handler_unit == "hf-l4-0001"
    walk(cases, n.id, *[("complete", cst(2026, 7, 6, hour)) for hour in range(10, 14)])
    result = assessment.assess("hefei", Q3)
    district, grid = ind(result, "hf-changfeng"), ind(result, "hf-l4-0001")
    # dispatch: platform's `dispatch` at the district, no_platform's `file` at the grid; platform's `file` is not one
    assert (district["dispatch_started"], district["dispatch_ended"], district["dispatch_on_time"]) == (1, 1, 1)
    assert (grid["dispatch_started"], grid["dispatch_ended"], grid["dispatch_on_time"]) == (1, 1, 1)
    # checks passed: platform's `verify` (once, after the failure) and no_platform's `feedback`; platform's two
    # `feedback` completions are not checks
    assert district["verified"] == 1 and district["reopened"] == 1 and grid["verified"] == 1
    assert by_unit(result)["hf-changfeng"]["rates"]["rework_rate"] == 0.5  # 1 / (1 + 1)
    assert district["handling_started"] == 2 and district["handling_finished"] == 2  # platform twice
    assert grid["handling_started"] == 1 and grid["handling_finished"] == 1
    steps = {(s["workflow"], s["step"]): s for s in result["steps"]}
    assert steps[("platform", "feedback")]["count"] == 2 and steps[("no_platform", "feedback")]["count"] == 1
    assert steps[("platform", "verify")]["count"] == 1  # the failed check did not finish the step


# --- cause 2: a return or an escalation ends a disposal without finishing it
def test_a_return_or_an_escalation_ends_a_disposal_unfinished(services):
    cases, assessment = services
    r = karamay(cases, "kmy-l3-01", cst(2026, 7, 6, 9))
    walk(cases, r.id, ("complete", cst(2026, 7, 6, 10)),
         (Transition("return", "职能部门", "非本部门职责"), cst(2026, 7, 7, 10)),
         ("complete", cst(2026, 7, 8, 10)), ("complete", cst(2026, 7, 8, 11)))
    m = karamay(cases, "kmy-l3-02", cst(2026, 7, 6, 9))
    m = walk(cases, m.id, ("complete", cst(2026, 7, 6, 10)), ("escalate", cst(2026, 7, 7, 10)))
    assert m.handler_unit == "kmy"  # a manual escalation: the district runs its own clock from now
    walk(cases, m.id, ("complete", cst(2026, 7, 8, 10)), ("complete", cst(2026, 7, 8, 11)))
    result = by_unit(assessment.assess("karamay", Q3))
    grid = result["kmy-l2-1"]
    # three disposal clocks at kmy-l2-1: r's first (returned), r's second (finished on time), m's (escalated)
    assert {k: grid["indicators"][k] for k in ("handling_started", "handling_ended", "handling_finished",
                                                  "handling_on_time", "handling_returned")} == {
        "handling_started": 3, "handling_ended": 3, "handling_finished": 1, "handling_on_time": 1,
        "handling_returned": 1}
    assert grid["rates"]["disposal_rate"] == grid["rates"]["on_time_handling_rate"] == round(1 / 3, 4)
    assert grid["rates"]["accurate_dispatch_rate"] == round(2 / 3, 4)  # (3 − 1 returned) / 3
    district = result["kmy"]["indicators"]  # m's disposal, finished by the district on its own clock
    assert (district["handling_started"], district["handling_finished"], district["handling_on_time"]) == (1, 1, 1)


# --- causes 3 and 4: a case is due once; step times include late steps
def test_an_escalated_case_is_due_once_and_its_late_disposal_is_timed(services):
    cases, assessment = services
    x = karamay(cases, "kmy-l3-03", cst(2026, 7, 6, 9))
    x = walk(cases, x.id, ("complete", cst(2026, 7, 6, 10)))
    assert x.due_at == cst(2026, 7, 13, 10)
    assert sweep(cases, cst(2026, 7, 13, 11))["escalated"] == 1  # new disposal clock at kmy, due 20 July 11:00
    walk(cases, x.id, ("complete", cst(2026, 7, 15, 10)), ("complete", cst(2026, 7, 15, 11)))
    y = karamay(cases, "kmy-l3-04", cst(2026, 7, 6, 9))
    walk(cases, y.id, ("complete", cst(2026, 7, 6, 10)), ("complete", cst(2026, 7, 7, 10)),
         ("complete", cst(2026, 7, 7, 11)))
    result = assessment.assess("karamay", Q3)
    # both of x's disposal deadlines fell in Q3: it is due once, at the grid holding it at the last one (kmy)
    assert ind(result, "kmy")["due"] == 1 and ind(result, "kmy")["closed_due"] == 1
    assert ind(result, "kmy")["closed_on_time"] == 0  # it went overdue
    assert ind(result, "kmy-l2-1")["due"] == 1 and ind(result, "kmy-l2-1")["closed_on_time"] == 1  # y only
    # dispose: x from 6 July 10:00 to 15 July 10:00 (216 h, late), y 24 h; p90 = the ⌈0.9·2⌉ = 2nd = 216 h
    dispose = next(s for s in result["steps"] if s["step"] == "dispose")
    assert (dispose["count"], dispose["late"], dispose["avg_hours"], dispose["p90_hours"]) == (2, 1, 120.0, 216.0)


# --- cause 5: Karamay's first step is also its dispatch step
def test_the_step_before_the_handling_step_dispatches_even_when_it_is_the_first(services):
    cases, assessment = services
    y = karamay(cases, "kmy-l3-04", cst(2026, 7, 6, 9))
    walk(cases, y.id, ("complete", cst(2026, 7, 6, 10)))
    karamay(cases, "kmy-l3-05", cst(2026, 7, 6, 9))
    sweep(cases, cst(2026, 7, 6, 12))  # the second report runs late (due 11:00)
    grid = by_unit(assessment.assess("karamay", Q3))["kmy-l2-1"]
    assert (grid["indicators"]["dispatch_ended"], grid["indicators"]["dispatch_on_time"]) == (2, 1)
    assert grid["rates"]["on_time_dispatch_rate"] == grid["rates"]["on_time_report_rate"] == 0.5


# --- cause 6: a period's figures do not change after it ends
def test_a_period_s_figures_do_not_change_after_it_ends(services):
    cases, assessment = services
    c = karamay(cases, "kmy-l3-06", cst(2026, 9, 28, 9))
    walk(cases, c.id, ("complete", cst(2026, 9, 28, 10)))
    before = assessment.assess("karamay", Q3)
    walk(cases, c.id, ("complete", cst(2026, 10, 9, 10)), ("complete", cst(2026, 10, 9, 11)))  # done in Q4
    assert assessment.assess("karamay", Q3) == before
    q4 = ind(assessment.assess("karamay", Period.parse("2026-Q4")), "kmy-l2-1")
    assert (q4["handling_started"], q4["handling_finished"], q4["closed"]) == (0, 1, 1)


# --- cause 7: a case found above its handling level is charged to the grid that should have found it
def test_a_case_found_above_its_level_is_charged_where_it_is_or_shown_unassigned(services):
    cases, assessment = services
    f = karamay(cases, "kmy-l3-05", cst(2026, 7, 6, 9), found_at_level=1)  # the district found it in kmy-l3-05
    assert (f.unit, f.finder_unit, f.found_level, f.handler_unit) == ("kmy-l3-05", "kmy", 1, "kmy-l2-1")
    sweep(cases, cst(2026, 7, 6, 11, 30))  # its report runs late: the finder's (the district's) late report
    u = karamay(cases, None, cst(2026, 7, 6, 12), found_at_level=1)  # where? unknown: no grid at level 2
    assert u.handler_unit is None
    with pytest.raises(Invalid, match="发现层级 3 低于问题所在网格") as err:
        karamay(cases, "kmy-l2-1", cst(2026, 7, 6, 9), found_at_level=3)
    assert err.value.field == "found_at_level"
    result = assessment.assess("karamay", Q3)
    units = by_unit(result)
    # 未发现 (found_by_upper) 5 points to the grid at the handling level where the problem is
    assert units["kmy-l2-1"]["score"] == 95.0 and units["kmy-l2-1"]["indicators"]["received"] == 1
    assert [(d["id"], d["count"]) for d in units["kmy-l2-1"]["deductions"]] == [("not_found", 1)]
    assert units["kmy"]["indicators"]["found"] == 1 and units["kmy-l3-05"]["indicators"]["found"] == 0
    assert units["kmy"]["score"] == 98.0  # late_report, 2 points, to the finder
    assert result["unassigned"]["name"] == UNASSIGNED
    assert (result["unassigned"]["indicators"]["received"], result["unassigned"]["indicators"]["found"]) == (1, 1)
    assert [(d["id"], d["points"]) for d in result["unassigned"]["deductions"]] == [("not_found", 5.0)]
    why = assessment.explain("karamay", Q3, "kmy-l2-1", "not_found")["deductions"][0]["events"]
    assert [(e["case"], e["action"]) for e in why] == [(f.id, "created")]


# --- cause 8: only yearly schemes count from the start of the year; the window's end is the period's
def test_only_yearly_schemes_count_deductions_year_to_date(services):
    cases, assessment = services
    karamay(cases, "kmy-l3-01", cst(2026, 7, 6, 9))
    sweep(cases, cst(2026, 7, 6, 12))  # a late report in July (Karamay's scheme is quarterly)
    july, august = (assessment.assess("karamay", Period.parse(m)) for m in ("2026-07", "2026-08"))
    assert by_unit(july)["kmy-l3-01"]["score"] == 98.0 and by_unit(august)["kmy-l3-01"]["score"] == 100.0
    assert august["score_window"]["label"] == "2026-08-01 至 2026-08-31"
    ningjiaping = assessment.assess("ningjiaping", Period.parse("2026-08"))  # `period: year`
    assert ningjiaping["score_window"]["label"] == "2026-01-01 至 2026-08-31"
    assert ningjiaping["score_window"]["end"] == Period.parse("2026-08").end.isoformat()
    assert Period.parse("2026-08").kind is PeriodKind.month


# --- cause 9: 结案率 is closed among due / due
def test_the_closure_rate_counts_closed_cases_among_those_due(services):
    cases, assessment = services
    a = karamay(cases, "kmy-l3-01", cst(2026, 7, 6, 9))
    walk(cases, a.id, ("complete", cst(2026, 7, 6, 10)))  # disposal due 13 July (Q3)
    walk(cases, a.id, ("complete", cst(2026, 10, 9, 10)), ("complete", cst(2026, 10, 9, 11)))  # closed in Q4
    b = karamay(cases, "kmy-l3-02", cst(2026, 10, 12, 9))
    walk(cases, b.id, ("complete", cst(2026, 10, 12, 10)))  # due in Q4, still open
    q3 = by_unit(assessment.assess("karamay", Q3))["kmy-l2-1"]
    assert (q3["indicators"]["due"], q3["indicators"]["closed_due"]) == (1, 0) and q3["rates"]["closure_rate"] == 0.0
    q4 = by_unit(assessment.assess("karamay", Period.parse("2026-Q4")))["kmy-l2-1"]
    assert (q4["indicators"]["closed"], q4["indicators"]["due"], q4["indicators"]["closed_due"]) == (1, 1, 0)
    assert q4["rates"]["closure_rate"] == 0.0  # literal closed / due would be 100 %
