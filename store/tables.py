"""Database tables (SQLModel). Schema changes go through Alembic migrations in store/migrations."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any, Protocol

from sqlalchemy import JSON, Column, Index, Table, UniqueConstraint
from sqlalchemy.orm import Mapped, relationship
from sqlmodel import Field, Relationship, SQLModel



CST = timezone(timedelta(hours=8))  # China Standard Time: assessment periods, and the offset of API timestamps


MAX_ID = 2**31 - 1  # ids and revisions are database integers (PostgreSQL int4): larger values cannot exist


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(moment: datetime) -> datetime:
    """A stored moment as aware UTC (SQLite gives it back naive)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class PolicyVersion(SQLModel, table=True):
    """One version of a jurisdiction's resolved policy. Published versions are immutable."""
    __tablename__ = "policy_version"
    __table_args__ = (UniqueConstraint("jurisdiction", "number"),)
    id: int | None = Field(default=None, primary_key=True)
    jurisdiction: str = Field(index=True, max_length=64)
    number: int
    status: str = Field(max_length=16)  # draft | published
    content_hash: str = Field(max_length=32, index=True)
    # the document without its units, which are shared `unit_chunk` rows listed in order by `unit_chunks`
    # (store/unitchunks.py); both are left unloaded by listings: PolicyStore.document() reassembles a version
    head: dict[str, Any] = Field(sa_column=Column("document", JSON, nullable=False))
    unit_chunks: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]"))
    active: bool = Field(default=False)
    revision: int = Field(default=1)  # bumps on every draft edit: the ETag for optimistic concurrency
    author: str = Field(max_length=128)
    note: str = Field(default="")
    created_at: datetime = Field(default_factory=utcnow)
    published_at: datetime | None = None
    published_by: str | None = Field(default=None, max_length=128)


class UnitChunk(SQLModel, table=True):
    """A run of units, stored once for every version (of any jurisdiction) that lists it (migration 0011)."""
    __tablename__ = "unit_chunk"
    hash: str = Field(primary_key=True, max_length=32)  # of its canonical JSON
    units: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))


class AuditEntry(SQLModel, table=True):
    """Append-only record of every change to policies, keys and cases' configuration."""
    __tablename__ = "audit_entry"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str = Field(max_length=128)
    action: str = Field(max_length=64)
    jurisdiction: str | None = Field(default=None, max_length=64, index=True)
    version_number: int | None = None
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class CaseRecord(SQLModel, table=True):
    __tablename__ = "case_record"
    __table_args__ = (
        UniqueConstraint("jurisdiction", "idempotency_key"),
        Index("ix_case_open_due", "status", "due_at"),
        # covering for the assessment's joins from events and clocks (migration 0004)
        Index("ix_case_record_assess", "id", "jurisdiction", "workflow", "finder_unit", "found_level", "closed_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    jurisdiction: str = Field(index=True, max_length=64)
    policy_version: str = Field(max_length=32)
    version_number: int
    idempotency_key: str | None = Field(default=None, max_length=200)
    request_hash: str | None = Field(default=None, max_length=64)  # of the request that used idempotency_key
    problem_type: str = Field(max_length=128, index=True)
    unit: str | None = Field(default=None, max_length=128, index=True)  # where the problem is
    finder_unit: str | None = Field(default=None, max_length=128)  # the grid that found it: unit or an ancestor
    facts: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    description: str = Field(default="", max_length=4000)
    # the report as the intake system sent it (migration 0010); the reporter's contact is never published
    channel: str | None = Field(default=None, max_length=32)
    reporter: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    lat: float | None = None  # WGS-84/CGCS2000, converted from coord_system
    lon: float | None = None
    coord_system: str | None = Field(default=None, max_length=16)
    address: str = Field(default="", max_length=500)
    attachments: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]"))
    observed_at: datetime | None = None
    # the decision as PolicyRouter.compact stores it (ids, levels and due times; ~1.5 KB instead of ~9 KB): names,
    # reasons and quotes come back from the content-addressed version in PolicyStore.decision. Rows stored whole
    # (before #17, or not compactable) read as they are.
    stored_decision: dict[str, Any] = Field(sa_column=Column("decision", JSON, nullable=False))
    handler_level: int
    handler_unit: str | None = Field(default=None, max_length=128, index=True)
    found_level: int | None = None  # the finder's level; above the handler's = found by an upper grid
    workflow: str | None = Field(default=None, max_length=64)  # its decision's workflow: the steps' roles
    status: str = Field(max_length=32, index=True)  # the current workflow step, or closed
    cycle: int = Field(default=1)  # a reopened case starts a new clock cycle
    due_at: datetime | None = None
    overdue: bool = Field(default=False, index=True)
    reported_by: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)
    closed_at: datetime | None = None
    # the aggregate: a case owns its events and its clocks, in the order they were added
    events: Mapped[list[CaseEvent]] = Relationship(
        sa_relationship=relationship("CaseEvent", back_populates="record", order_by="CaseEvent.id"))
    clocks: Mapped[list[CaseClock]] = Relationship(
        sa_relationship=relationship("CaseClock", back_populates="record", order_by="CaseClock.id"))


class CaseEvent(SQLModel, table=True):
    """Append-only: every transition of a case, who did it, when and why."""
    __tablename__ = "case_event"
    # covering for the assessment's range scans of one action's events (migration 0004)
    __table_args__ = (Index("ix_case_event_assess", "action", "at", "unit", "from_status", "level", "case_id"),)
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case_record.id", index=True)
    record: CaseRecord = Relationship(back_populates="events")  # lets a batch insert cases and their rows in one flush
    at: datetime = Field(default_factory=utcnow)
    actor: str = Field(max_length=128)
    action: str = Field(max_length=32)
    unit: str | None = Field(default=None, max_length=128)  # the handling grid when it happened: who is assessed
    level: int | None = None  # that grid's level
    from_status: str | None = Field(default=None, max_length=32)
    to_status: str | None = Field(default=None, max_length=32)
    note: str = Field(default="")
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class CaseClock(SQLModel, table=True):
    """One running deadline of one workflow step in one cycle; the sweeper works from these rows."""
    __tablename__ = "case_clock"
    __table_args__ = (
        Index("ix_clock_open", "stopped_at", "next_check_at"),
        # covering for the assessment's clocks started or due in a period (migration 0004)
        Index("ix_clock_assess_started", "started_at", "step", "unit", "stopped_at", "overdue_at", "due_at", "case_id"),
        Index("ix_clock_assess_due", "due_at", "step", "unit", "case_id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case_record.id", index=True)
    record: CaseRecord = Relationship(back_populates="clocks")  # lets a batch insert cases and their rows in one flush
    cycle: int
    step: str = Field(max_length=64)
    unit: str | None = Field(default=None, max_length=128)  # the handling grid running this clock
    calendar: str = Field(max_length=16)
    started_at: datetime
    due_at: datetime
    warned_50_at: datetime | None = None
    warned_75_at: datetime | None = None
    overdue_at: datetime | None = None
    stopped_at: datetime | None = None
    next_check_at: datetime  # the earliest moment the sweeper has something to record


class CaseDepartment(SQLModel, table=True):
    """The departments a case is dispatched to (its decision's), one row each, for per-department assessment."""
    __tablename__ = "case_department"
    case_id: int = Field(foreign_key="case_record.id", primary_key=True)
    record: CaseRecord = Relationship()  # lets a batch insert cases and their rows in one flush
    department: str = Field(max_length=64, primary_key=True, index=True)


class AssessmentRecord(SQLModel, table=True):
    """A self-assessment or an upper grid's assessment of a unit for a period, as the policy requires."""
    __tablename__ = "assessment_record"
    __table_args__ = (UniqueConstraint("jurisdiction", "period", "unit", "kind"),)
    id: int | None = Field(default=None, primary_key=True)
    jurisdiction: str = Field(max_length=64, index=True)
    period: str = Field(max_length=16)
    unit: str = Field(max_length=128)
    kind: str = Field(max_length=16)  # self | upper
    score: float
    note: str = Field(default="")
    author: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow)


class Notification(SQLModel, table=True):
    __tablename__ = "notification"
    id: int | None = Field(default=None, primary_key=True)
    case_id: int | None = Field(default=None, foreign_key="case_record.id", index=True)  # or a cadence obligation's
    record: CaseRecord = Relationship()  # lets a batch insert cases and their rows in one flush
    obligation_id: int | None = Field(default=None, foreign_key="cadence_obligation.id", index=True)
    at: datetime = Field(default_factory=utcnow)
    kind: str = Field(max_length=32)  # warning_50 | warning_75 | overdue | escalated | cadence_at_risk | cadence_missed
    recipient: str = Field(max_length=200)
    message: str


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"
    id: int | None = Field(default=None, primary_key=True)
    prefix: str = Field(max_length=16, unique=True)  # shown in listings; the secret is stored hashed
    secret_hash: str = Field(max_length=256)
    jurisdictions: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))  # [] = all
    label: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None


class AdminUser(SQLModel, table=True):
    """A person who signs in to /admin; the password is stored as an argon2 hash."""
    __tablename__ = "admin_user"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True)
    password_hash: str = Field(max_length=256)
    superuser: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow)


class AdminRole(SQLModel, table=True):
    """A user's role in one jurisdiction: viewer < editor (edits drafts) < publisher (publishes, rolls back)."""
    __tablename__ = "admin_role"
    __table_args__ = (UniqueConstraint("user_id", "jurisdiction"),)
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="admin_user.id", index=True)
    jurisdiction: str = Field(max_length=64)
    role: str = Field(max_length=16)


class AppSecret(SQLModel, table=True):
    """Secrets every worker must share (session signing, CSRF), generated once on first start."""
    __tablename__ = "app_secret"
    name: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=256)


class SignInFailure(SQLModel, table=True):
    """A failed admin sign-in, for throttling per user name and per address across workers (migration 0006)."""
    __tablename__ = "signin_failure"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, index=True)
    address: str = Field(max_length=64, index=True)
    at: datetime = Field(default_factory=utcnow, index=True)


class AdminSession(SQLModel, table=True):
    """Server-side admin sessions: every worker sees them, and signing out deletes the row."""
    __tablename__ = "admin_session"
    key: str = Field(primary_key=True, max_length=128)
    value: bytes
    expires_at: datetime | None = Field(default=None, index=True)


# --- the supervision ledger (store/ledger.py, store/cadences.py; migration 0009_ledger)
class SupervisedObject(SQLModel, table=True):
    """监管对象台账: one pollution source, risk source or environmental object in one grid unit (一企一档)."""
    __tablename__ = "supervised_object"
    __table_args__ = (UniqueConstraint("jurisdiction", "identifier"),
                      Index("ix_object_order", "jurisdiction", "unit", "name"),
                      Index("ix_object_kind", "jurisdiction", "kind", "source_class"))
    # search_key is indexed by trigrams (migration 0013): SQLite's FTS5 table object_search, PostgreSQL's pg_trgm
    id: int | None = Field(default=None, primary_key=True)
    jurisdiction: str = Field(max_length=64, index=True)
    unit: str = Field(max_length=128)
    name: str = Field(max_length=200)
    kind: str = Field(max_length=32)
    source_class: str | None = Field(default=None, max_length=8)  # the policy's class (A/B/C) where it defines them
    classed_by: str | None = Field(default=None, max_length=128)
    classed_at: datetime | None = None
    class_reason: str = Field(default="", max_length=1000)
    identifier: str = Field(max_length=64)  # licence number or unified social credit code
    address: str = Field(default="", max_length=300)
    longitude: float | None = None
    latitude: float | None = None
    registered_on: date  # 建档日期: no patrol can have checked it before
    search_key: str = Field(default="", max_length=1000)  # name, pinyin, initials, identifier (lower case)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class ObjectChange(SQLModel, table=True):
    """Append-only history of a supervised object: created, each changed field (old → new), who, when, why."""
    __tablename__ = "object_change"
    id: int | None = Field(default=None, primary_key=True)
    object_id: int = Field(foreign_key="supervised_object.id", index=True)
    at: datetime = Field(default_factory=utcnow)
    actor: str = Field(max_length=128)
    action: str = Field(max_length=16)  # created | updated | imported
    changes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    reason: str = Field(default="", max_length=1000)


class PatrolRecord(SQLModel, table=True):
    """巡查记录: who patrolled which grid when, what was checked and found; 谁巡查谁签字谁负责."""
    __tablename__ = "patrol_record"
    __table_args__ = (UniqueConstraint("jurisdiction", "idempotency_key"),
                      UniqueConstraint("jurisdiction", "unit", "activity", "patrolled_at", "signed_by"),
                      Index("ix_patrol_compliance", "jurisdiction", "day", "activity", "unit"),
                      Index("ix_patrol_latest", "jurisdiction", "patrolled_at"),
                      Index("ix_patrol_unit_day", "jurisdiction", "unit", "day"))
    id: int | None = Field(default=None, primary_key=True)
    jurisdiction: str = Field(max_length=64)
    unit: str = Field(max_length=128)
    activity: str = Field(max_length=32)  # a cadence activity: patrol, source_inspection, leader_contact, summary …
    patrolled_at: datetime
    day: date  # the patrol's calendar day in China time: cadence periods count by it
    patrollers: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    signed_by: str = Field(max_length=128)
    # with case ids
    findings: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    photos: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    idempotency_key: str | None = Field(default=None, max_length=200)
    created_by: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow)


class PatrolObject(SQLModel, table=True):
    """The objects one patrol checked."""
    __tablename__ = "patrol_object"
    __table_args__ = (Index("ix_patrol_object_object", "object_id", "patrol_id"),)
    patrol_id: int = Field(foreign_key="patrol_record.id", primary_key=True)
    object_id: int = Field(foreign_key="supervised_object.id", primary_key=True)
    day: date  # the patrol's day, so an object's inspections per period need no join


class PatrolTally(SQLModel, table=True):
    """Patrol records per subject (a unit, or "object:<id>" for the objects checked), activity and period of each
    kind (store/tallies.py): kept by patrol intake in the same transaction, read by the cadences."""
    __tablename__ = "patrol_tally"
    __table_args__ = {"sqlite_with_rowid": False}  # read by key prefix: rows kept in the key's order (0015)
    jurisdiction: str = Field(max_length=64, primary_key=True)
    per: str = Field(max_length=16, primary_key=True)  # a cadence period kind: day, week, … year
    of_object: bool = Field(primary_key=True)  # the subject is an object
    period_start: date = Field(primary_key=True)
    activity: str = Field(max_length=32, primary_key=True)
    subject: str = Field(max_length=160, primary_key=True)
    n: int


class TallyStamp(SQLModel, table=True):
    """A revision per jurisdiction and period of each kind, bumped by every write of that period's tallies (intake,
    rebuild): the cadence trend's cache of settled periods is checked against it (store/cadences.py)."""
    __tablename__ = "tally_stamp"
    jurisdiction: str = Field(max_length=64, primary_key=True)
    per: str = Field(max_length=16, primary_key=True)
    period_start: date = Field(primary_key=True)
    revision: int


class CaseLink(SQLModel, table=True):
    """A case found at a supervised object and/or opened from a patrol's finding."""
    __tablename__ = "case_link"
    case_id: int = Field(foreign_key="case_record.id", primary_key=True)
    object_id: int | None = Field(default=None, foreign_key="supervised_object.id", index=True)
    patrol_id: int | None = Field(default=None, foreign_key="patrol_record.id", index=True)


class CadenceObligation(SQLModel, table=True):
    """One cadence's obligation for one unit (or one object) and one period, as the cadence sweeper last saw it."""
    __tablename__ = "cadence_obligation"
    __table_args__ = (UniqueConstraint("jurisdiction", "cadence", "period_start", "subject"),
                      Index("ix_obligation_status", "jurisdiction", "period_end", "status"))
    id: int | None = Field(default=None, primary_key=True)
    jurisdiction: str = Field(max_length=64)
    cadence: str = Field(max_length=64)
    subject: str = Field(max_length=160)  # the unit id, or "object:<id>"
    unit: str = Field(max_length=128)
    object_id: int | None = Field(default=None, foreign_key="supervised_object.id")
    period_start: date  # [start, end) calendar days in China time
    period_end: date
    required: int
    recorded: int = 0
    status: str = Field(max_length=16)  # pending | open | at_risk | met | missed
    changed_at: datetime = Field(default_factory=utcnow)


def table_of(model: type[SQLModel]) -> Table:
    """A table model's Core table, for bulk statements and joins of plain columns."""
    table: Table = model.__table__  # type: ignore[attr-defined]  # set by SQLModel's metaclass, absent from its stubs
    return table


class _Stored(Protocol):
    id: int | None


def row_id(row: _Stored) -> int:
    """The id of a row that was flushed (SQLModel types ids `int | None`: they are unset until then)."""
    if row.id is None:
        raise ValueError(f"{type(row).__name__} has no id before it is flushed")
    return row.id
