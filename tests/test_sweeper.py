"""Deadline clocks: warnings at 50%/75%, overdue + escalation at 100%, once, with several sweepers."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import Session, select

from engine.router import Case
from policy.loader import Loader
from store.cases import CaseService, Transition
from store.sweeper import sweep
from store.tables import CaseEvent, Notification

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)  # a Monday with no holiday in the following weeks


def kinds(cases: CaseService, case_id: int) -> list[str]:
    with Session(cases.engine) as session:
        return [n.kind for n in session.exec(select(Notification).where(Notification.case_id == case_id)
                                             .order_by(Notification.id)).all()]


def test_warnings_then_overdue_then_escalation(cases):
    record = cases.create("karamay", Case(problem_type="医疗废物处置", unit="kmy-l3-01"), "intake", now=T0)
    assert record.status == "report" and record.due_at is not None  # report step: PT2H
    assert sweep(cases, T0 + timedelta(minutes=30)) == {"warning_50": 0, "warning_75": 0, "overdue": 0, "escalated": 0}
    assert sweep(cases, T0 + timedelta(minutes=61))["warning_50"] == 1
    assert sweep(cases, T0 + timedelta(minutes=95))["warning_75"] == 1
    assert sweep(cases, T0 + timedelta(minutes=95))["warning_75"] == 0  # recorded once
    result = sweep(cases, T0 + timedelta(hours=3))
    assert result["overdue"] == 1 and result["escalated"] == 1
    record, events, clocks = cases.get(record.id)
    assert record.overdue and record.handler_level == 1 and record.handler_unit == "kmy"
    assert [e.action for e in events][-2:] == ["overdue", "escalated"]
    assert len(clocks) == 2 and clocks[0].overdue_at is not None and clocks[1].stopped_at is None
    assert kinds(cases, record.id) == ["warning_50", "warning_75", "overdue", "escalated"]
    # at level 1 nothing is above: a second miss is recorded but not escalated
    later = sweep(cases, T0 + timedelta(hours=6))
    assert later["overdue"] == 1 and later["escalated"] == 0


def test_extension_needs_approval_and_moves_the_due_time(cases):
    record = cases.create("karamay", Case(problem_type="医疗废物处置", unit="kmy-l3-01"), "intake", now=T0)
    cases.transition(record.id, Transition("complete", "网格员"), now=T0 + timedelta(minutes=10))
    with pytest.raises(Exception, match="审批人"):
        cases.transition(record.id, Transition("extend", "处置人", "需要更多时间"), now=T0 + timedelta(hours=1))
    before = cases.get(record.id)[0].due_at
    cases.transition(record.id, Transition("extend", "处置人", "材料待补", approved_by="分管领导",
                                           extend_by=timedelta(days=2)), now=T0 + timedelta(hours=1))
    record, events, _ = cases.get(record.id)
    assert record.due_at.replace(tzinfo=timezone.utc) > before.replace(tzinfo=timezone.utc)
    assert events[-1].action == "extended" and events[-1].data["approved_by"] == "分管领导"


def test_return_redispatches_with_a_fresh_clock(cases):
    record = cases.create("karamay", Case(problem_type="医疗废物处置", unit="kmy-l3-01"), "intake", now=T0)
    cases.transition(record.id, Transition("complete", "网格员"), now=T0 + timedelta(minutes=5))
    cases.transition(record.id, Transition("return", "生态环境分局", "不属本部门职责"), now=T0 + timedelta(hours=1))
    record, events, clocks = cases.get(record.id)
    assert [e.action for e in events][-2:] == ["returned", "redispatched"] and record.status == "dispose"
    assert sum(1 for c in clocks if c.step == "dispose") == 2


def test_two_sweepers_escalate_once(cases):
    ids = [cases.create("karamay", Case(problem_type="医疗废物处置", unit=f"kmy-l3-{n:02d}"), "intake", now=T0).id
           for n in range(1, 21)]
    results = []
    barrier = threading.Barrier(2)

    def run():
        barrier.wait()
        results.append(sweep(cases, T0 + timedelta(hours=3)))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r["escalated"] for r in results) == 20
    with Session(cases.engine) as session:
        escalations = session.exec(select(CaseEvent).where(CaseEvent.action == "escalated")).all()
    assert sorted(e.case_id for e in escalations) == sorted(ids)


def test_concurrent_retries_with_one_idempotency_key_make_one_case(cases):
    barrier = threading.Barrier(6)
    ids = []

    def retry():
        barrier.wait()
        ids.append(cases.create("karamay", Case(problem_type="医疗废物处置", unit="kmy-l3-02"), "intake",
                                idempotency_key="retry-7", now=T0).id)

    threads = [threading.Thread(target=retry) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 6 and len(set(ids)) == 1
    assert cases.search("karamay")[0] == 1


def test_bootstrap_is_idempotent(cases):
    policies = cases.policies
    before = {jid: [v.number for v in policies.list_versions(jid)] for jid in policies.refresh()}
    assert policies.bootstrap(Loader()) == []
    after = {jid: [v.number for v in policies.list_versions(jid)] for jid in policies.refresh()}
    assert before == after and all(numbers == [1] for numbers in after.values())
