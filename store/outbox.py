"""The durable outbox: every case event and deadline warning, written in the transaction that writes it.

A session hook adds one `outbox_event` row for each new CaseEvent (created, entered, escalated, overdue, closed …)
and each warning Notification, so whichever code path records an event (intake, transitions, the sweeper, the
simulator) the outbox row commits or rolls back with it. `sequence` then numbers the committed rows in commit
order (one sequencer at a time) and fans them out to the webhook subscriptions: the pull feed pages by that
number, so a cursor never skips a row that committed late. A group of intakes numbers its own rows as the last
statements of its transaction (`number_in`). A commit that made deliveries, or left rows unnumbered, wakes this
process's delivery loop (`listen`).
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, NamedTuple

import sqlalchemy
from sqlalchemy import JSON, Column, Index, bindparam, event, func, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as OrmSession
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


class Numbered(NamedTuple):
    """A new event as the sequencer numbered it, without its data (fan-out does not read it)."""
    id: int
    seq: int
    jurisdiction: str
    kind: str
    case_id: int
    at: datetime


# built once: the sequencer runs in every group of intakes
_OUTBOX = table_of(OutboxEvent)
_ANY_NEW = sqlalchemy.select(_OUTBOX.c.id).where(_OUTBOX.c.seq.is_(None)).limit(1)
_NEW = (sqlalchemy.select(_OUTBOX.c.id, _OUTBOX.c.jurisdiction, _OUTBOX.c.kind, _OUTBOX.c.case_id, _OUTBOX.c.at)
        .where(_OUTBOX.c.seq.is_(None)).order_by(_OUTBOX.c.id).limit(BATCH))
_TOP = sqlalchemy.select(func.max(_OUTBOX.c.seq))
_NUMBER = update(_OUTBOX).where(_OUTBOX.c.id == bindparam("row_id")).values(seq=bindparam("number"))


def sequence(engine: Engine, fan_out: Callable[[Session, list[Numbered]], int]) -> None:
    """Number the committed, unnumbered rows in id order and hand them to `fan_out(session, rows)` in the same
    transaction."""
    with reader(engine).connect() as connection:  # most rounds find nothing new: look without the write lock first
        if connection.execute(_ANY_NEW).first() is None:
            return
    with UnitOfWork(engine) as uow:
        number_in(uow.session, fan_out)


def number_in(session: Session, fan_out: Callable[[Session, list[Numbered]], int]) -> None:
    """`sequence` inside the caller's write transaction, as its last statements: the rows it wrote are numbered with
    those committed before it, and their numbers stay in commit order because one sequencer runs at a time until its
    transaction ends (PostgreSQL: an advisory lock; SQLite: BEGIN IMMEDIATE already holds the one write lock). The
    commit wakes the delivery loop only if `fan_out` made deliveries (more than a batch of rows left unnumbered wait
    for its next round)."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"SELECT pg_advisory_xact_lock({SEQUENCE_LOCK})"))
    new = connection.execute(_NEW).all()
    created = 0
    if new:
        top = connection.execute(_TOP).scalar() or 0
        rows = [Numbered(row.id, top + offset, row.jurisdiction, row.kind, row.case_id, row.at)
                for offset, row in enumerate(new, 1)]
        connection.execute(_NUMBER, [{"row_id": row.id, "number": row.seq} for row in rows])
        created = fan_out(session, rows)
    if created:
        session.info[WROTE] = True
    else:
        session.info.pop(WROTE, None)


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
