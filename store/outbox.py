"""The durable outbox: every case event and deadline warning, written in the transaction that writes it.

A session hook adds one `outbox_event` row for each new CaseEvent (created, entered, escalated, overdue, closed …)
and each warning Notification, so whichever code path records an event (intake, transitions, the sweeper, the
simulator) the outbox row commits or rolls back with it. `sequence` then numbers the committed rows in commit
order (one sequencer at a time) and fans them out to the webhook subscriptions: the pull feed pages by that
number, so a cursor never skips a row that committed late.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Column, Index, bindparam, event, func, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import defer
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Field, Relationship, Session, SQLModel, col, select

from store.db import UnitOfWork, reader
from store.tables import CST, CaseEvent, CaseRecord, Notification, table_of, utcnow

WARNINGS = ("warning_50", "warning_75")  # the other notifications repeat an event (overdue, escalated)
KINDS = {"case.created": "受理", "case.entered": "进入步骤", "case.completed": "办结步骤", "case.closed": "结案",
         "case.reopened": "核查未通过返工", "case.returned": "回退", "case.redispatched": "重新派遣",
         "case.extended": "延期", "case.rerouted": "重新路由", "case.escalated": "升级", "case.overdue": "超期",
         "case.warning_50": "时限过半预警", "case.warning_75": "时限 75% 预警"}
SEQUENCE_LOCK = 461311  # pg_advisory_xact_lock key: one sequencer at a time
BATCH = 1000


class OutboxEvent(SQLModel, table=True):
    __tablename__ = "outbox_event"
    __table_args__ = (Index("ix_outbox_unsequenced", "seq", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    seq: int | None = Field(default=None, unique=True)  # commit order, set by `sequence`; the feed's cursor
    jurisdiction: str = Field(max_length=64, index=True)
    case_id: int = Field(foreign_key="case_record.id", index=True)
    record: CaseRecord = Relationship()
    kind: str = Field(max_length=40)
    at: datetime = Field(default_factory=utcnow)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


def local(moment: datetime | None) -> str | None:
    """An API timestamp: stored in UTC (naive on SQLite), shown with the jurisdiction's offset."""
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(CST).isoformat()


# called (from any thread) after a commit that wrote outbox rows: the delivery loop waits on these instead of polling
_listeners: list[Callable[[], None]] = []
WROTE = "gridpolicy_outbox_written"


def listen(callback: Callable[[], None]) -> Callable[[], None]:
    """Call `callback` after each commit in this process that wrote outbox rows; returns the way to stop."""
    _listeners.append(callback)
    return lambda: _listeners.remove(callback)


def notify() -> None:
    for callback in list(_listeners):
        callback()


@event.listens_for(OrmSession, "after_commit")
def _committed(session: OrmSession) -> None:
    if session.info.pop(WROTE, False):
        notify()


@event.listens_for(OrmSession, "after_rollback")
def _rolled_back(session: OrmSession) -> None:
    session.info.pop(WROTE, None)


def announced(model: type, obj: Any) -> bool:
    """Whether a new row of `model` (an ORM object, or store.bulk's plain row) adds an outbox row: each case event,
    and each warning."""
    return model is CaseEvent or (model is Notification and obj.kind in WARNINGS)


def outbox_values(model: type, obj: Any, record: Any) -> dict[str, Any]:
    """The outbox row (but its case id) of an `announced` row: one definition for the session hook below and
    store.bulk's inserts."""
    if model is CaseEvent:
        return {"jurisdiction": record.jurisdiction, "kind": f"case.{obj.action}", "at": obj.at,
                "data": {"actor": obj.actor, "from_status": obj.from_status, "to_status": obj.to_status,
                         "unit": obj.unit, "level": obj.level, "note": obj.note, "data": obj.data}}
    return {"jurisdiction": record.jurisdiction, "kind": f"case.{obj.kind}", "at": obj.at,
            "data": {"recipient": obj.recipient, "note": obj.message, "unit": record.handler_unit,
                     "level": record.handler_level}}


@event.listens_for(OrmSession, "before_flush")
def _write_outbox(session: OrmSession, _context, _instances) -> None:
    for obj in list(session.new):
        if isinstance(obj, (CaseEvent, Notification)):
            session.info[WROTE] = True
        if announced(type(obj), obj):
            record = obj.record or session.get(CaseRecord, obj.case_id)
            assert record is not None  # an event or a warning belongs to a case
            session.add(OutboxEvent(record=record, **outbox_values(type(obj), obj, record)))  # case_id: from `record`


def message(row: OutboxEvent) -> dict:
    """The event as delivered and fed: Standard Webhooks' {type, timestamp, data}. No reporter contact."""
    return {"type": row.kind, "timestamp": local(row.at),
            "data": {"event_id": row.id, "cursor": str(row.seq), "jurisdiction": row.jurisdiction,
                     "case_id": row.case_id, **row.data}}


def sequence(engine: Engine, fan_out=None) -> int:
    """Number the committed, unnumbered rows in id order and hand each to `fan_out(session, rows)` in the same
    transaction; returns how many. PostgreSQL: an advisory lock makes it one sequencer at a time; SQLite's
    BEGIN IMMEDIATE does the same."""
    with UnitOfWork(engine) as uow:
        session = uow.session
        if engine.dialect.name == "postgresql":
            session.execute(text(f"SELECT pg_advisory_xact_lock({SEQUENCE_LOCK})"))
        # without their data (fan-out does not read it), numbered by one UPDATE statement: this runs for every round
        # of a busy intake, and loading and flushing the rows through the ORM cost as much as the intakes' inserts
        rows = list(session.exec(select(OutboxEvent).options(defer(OutboxEvent.data))  # type: ignore[arg-type]
                                 .where(col(OutboxEvent.seq).is_(None)).order_by(col(OutboxEvent.id)).limit(BATCH)).all())
        if not rows:
            return 0
        top = session.exec(select(func.max(OutboxEvent.seq))).one() or 0
        for offset, row in enumerate(rows, 1):
            set_committed_value(row, "seq", top + offset)
        table = table_of(OutboxEvent)
        session.execute(update(table).where(table.c.id == bindparam("row_id")).values(seq=bindparam("number")),
                        [{"row_id": row.id, "number": row.seq} for row in rows])
        if fan_out is not None:
            fan_out(session, rows)
        return len(rows)


def feed(engine: Engine, jurisdictions: list[str] | None, after: int, kinds: list[str] | None,
         limit: int) -> list[OutboxEvent]:
    """Numbered events after the cursor, oldest first (jurisdictions None = all)."""
    query = select(OutboxEvent).where(col(OutboxEvent.seq).is_not(None), col(OutboxEvent.seq) > after)
    if jurisdictions is not None:
        query = query.where(col(OutboxEvent.jurisdiction).in_(jurisdictions))
    if kinds:
        query = query.where(col(OutboxEvent.kind).in_(kinds))
    with Session(reader(engine)) as session:
        return list(session.exec(query.order_by(col(OutboxEvent.seq)).limit(limit)).all())
