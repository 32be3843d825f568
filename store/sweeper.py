"""Deadline sweeper: warnings at 50% and 75% of a step's time; at 100% the case is marked overdue and
escalated by its policy (new handler, event, notification), with a fresh clock at the new level.

State is only in the database, so a restart loses nothing. Several workers may sweep at once: on
PostgreSQL each claims clock rows with SELECT … FOR UPDATE SKIP LOCKED; on SQLite the write
transaction (BEGIN IMMEDIATE) serialises them. Either way a clock is handled by one worker.
"""
from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from store.cases import CaseService, as_utc, escalate, start_clock
from store.tables import CaseClock, CaseRecord, Notification, utcnow


def new_counts() -> dict[str, int]:
    return {"warning_50": 0, "warning_75": 0, "overdue": 0, "escalated": 0}


def sweep(cases: CaseService, now: datetime | None = None, batch: int = 200) -> dict[str, int]:
    now = now or utcnow()
    counts = new_counts()
    with Session(cases.engine) as session:
        query = (select(CaseClock).where(CaseClock.stopped_at.is_(None), CaseClock.next_check_at <= now)
                 .order_by(CaseClock.next_check_at).limit(batch))
        if cases.engine.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        for clock in session.exec(query).all():
            check_clock(session, cases, clock, session.get(CaseRecord, clock.case_id), now, counts)
        session.commit()
    return counts


def check_clock(session: Session, cases: CaseService, clock: CaseClock, record: CaseRecord, now: datetime,
                counts: dict[str, int]) -> None:
    """Record what one clock has reached by `now` (also used by the simulator to let deadlines pass)."""
    start, due = as_utc(clock.started_at), as_utc(clock.due_at)
    span = due - start
    if clock.warned_50_at is None and now >= start + span * 0.5:
        clock.warned_50_at = now
        _notify(session, record, "warning_50", f"步骤 {clock.step} 已用时 50%, 截止 {due.isoformat()}")
        counts["warning_50"] += 1
    if clock.warned_75_at is None and now >= start + span * 0.75:
        clock.warned_75_at = now
        _notify(session, record, "warning_75", f"步骤 {clock.step} 已用时 75%, 截止 {due.isoformat()}")
        counts["warning_75"] += 1
    if clock.overdue_at is None and now >= due:
        if record.id is None:  # a case of the simulator's current batch: its number goes into the messages
            session.flush()
        clock.overdue_at, clock.stopped_at = now, now
        record.overdue = True
        CaseService._event(session, record, "sweeper", "overdue", record.status, record.status, now,
                           f"步骤 {clock.step} 超过时限 {due.isoformat()}")
        _notify(session, record, "overdue", f"案件 {record.id} 超期未办结")
        counts["overdue"] += 1
        router = cases.policies.router(record.jurisdiction, record.policy_version)
        if escalate(session, router, record, "sweeper", "超期自动升级", now):
            counts["escalated"] += 1
            _notify(session, record, "escalated", f"案件 {record.id} 升级至第{record.handler_level}级网格, 通报包抓领导")
            start_clock(session, router, record, cases._step(router, record, clock.step), now)
    else:
        clock.next_check_at = (start + span * 0.75 if clock.warned_75_at is None else due)
    session.add(clock)
    session.add(record)

def _notify(session: Session, record: CaseRecord, kind: str, message: str) -> None:
    recipient = f"第{record.handler_level}级网格 {record.handler_unit or ''}".strip()
    if kind in ("overdue", "escalated"):
        recipient += " / 包抓领导"
    session.add(Notification(record=record, kind=kind, recipient=recipient, message=message))
