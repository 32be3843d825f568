"""Deadline sweeper: warnings at 50% and 75% of a step's time; at 100% the case is marked overdue and
escalated by its policy (new handler, event, notification), with a fresh clock at the new level.

State is only in the database, so a restart loses nothing. Several workers may sweep at once: on
PostgreSQL each claims the cases with due clocks with SELECT … FOR UPDATE SKIP LOCKED, the case row
before its clocks as a transition takes them (one lock order, so no deadlock); on SQLite the write
transaction (BEGIN IMMEDIATE) serialises them. Either way a clock is handled by one worker.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import selectinload
from sqlmodel import Session, col, select

from store.bulk import new_row
from store.cases import CaseService, open_clocks
from store.db import transaction
from store.tables import CaseClock, CaseRecord, Notification, as_utc


def new_counts() -> dict[str, int]:
    return {"warning_50": 0, "warning_75": 0, "overdue": 0, "escalated": 0}


def sweep(cases: CaseService, now: datetime | None = None, batch: int = 200) -> dict[str, int]:
    now = now or cases.clock()

    def work(session: Session) -> dict[str, int]:
        counts = new_counts()
        due = (select(col(CaseClock.case_id)).where(col(CaseClock.stopped_at).is_(None),
                                                     col(CaseClock.next_check_at) <= now)
               .order_by(col(CaseClock.next_check_at)).limit(batch))
        claimed = session.exec(select(CaseRecord).where(col(CaseRecord.id).in_(due)).order_by(col(CaseRecord.id))
                               .options(selectinload(CaseRecord.clocks)).with_for_update(skip_locked=True)).all()
        for record in claimed:
            for clock in open_clocks(record):
                if as_utc(clock.next_check_at) <= now:
                    check_clock(session, cases, clock, record, now, counts)
        return counts

    return transaction(cases.engine, work)


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
        cases.mark_overdue(session, record, clock, now)
        _notify(session, record, "overdue", f"案件 {record.id} 超期未办结")
        counts["overdue"] += 1
        if cases.escalate_overdue(session, record, clock, now):
            counts["escalated"] += 1
            _notify(session, record, "escalated",
                    f"案件 {record.id} 升级至第{record.handler_level}级网格, 通报包抓领导")
    else:
        clock.next_check_at = (start + span * 0.75 if clock.warned_75_at is None else due)

def _notify(session: Session, record: CaseRecord, kind: str, message: str) -> None:
    recipient = f"第{record.handler_level}级网格 {record.handler_unit or ''}".strip()
    if kind in ("overdue", "escalated"):
        recipient += " / 包抓领导"
    session.add(new_row(Notification, record=record, kind=kind, recipient=recipient, message=message))
