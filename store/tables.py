"""Database tables (SQLModel). Schema changes go through Alembic migrations in store/migrations."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, Relationship, SQLModel


CST = timezone(timedelta(hours=8))  # China Standard Time: assessment periods, and the offset of API timestamps


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class PolicyVersion(SQLModel, table=True):
    """One version of a jurisdiction's resolved policy. Published versions are immutable."""
    __tablename__ = "policy_version"
    __table_args__ = (UniqueConstraint("jurisdiction", "number"),)
    id: int | None = Field(default=None, primary_key=True)
    jurisdiction: str = Field(index=True, max_length=64)
    number: int
    status: str = Field(max_length=16)  # draft | published
    content_hash: str = Field(max_length=32, index=True)
    document: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    active: bool = Field(default=False)
    revision: int = Field(default=1)  # bumps on every draft edit: the ETag for optimistic concurrency
    author: str = Field(max_length=128)
    note: str = Field(default="")
    created_at: datetime = Field(default_factory=utcnow)
    published_at: datetime | None = None
    published_by: str | None = Field(default=None, max_length=128)


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
        Index("ix_case_record_assess", "id", "jurisdiction", "unit", "found_level", "closed_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    jurisdiction: str = Field(index=True, max_length=64)
    policy_version: str = Field(max_length=32)
    version_number: int
    idempotency_key: str | None = Field(default=None, max_length=200)
    problem_type: str = Field(max_length=128, index=True)
    unit: str | None = Field(default=None, max_length=128, index=True)
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
    decision: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    handler_level: int
    handler_unit: str | None = Field(default=None, max_length=128, index=True)
    found_level: int | None = None  # the finder's level; above the handler's = found by an upper grid
    status: str = Field(max_length=32, index=True)  # the current workflow step, or closed
    cycle: int = Field(default=1)  # a reopened case starts a new clock cycle
    due_at: datetime | None = None
    overdue: bool = Field(default=False, index=True)
    reported_by: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)
    closed_at: datetime | None = None


class CaseEvent(SQLModel, table=True):
    """Append-only: every transition of a case, who did it, when and why."""
    __tablename__ = "case_event"
    # covering for the assessment's range scans of one action's events (migration 0004)
    __table_args__ = (Index("ix_case_event_assess", "action", "at", "unit", "from_status", "level", "case_id"),)
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case_record.id", index=True)
    record: CaseRecord = Relationship()  # lets a batch insert cases and their rows in one flush
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
    record: CaseRecord = Relationship()  # lets a batch insert cases and their rows in one flush
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
    case_id: int = Field(foreign_key="case_record.id", index=True)
    record: CaseRecord = Relationship()  # lets a batch insert cases and their rows in one flush
    at: datetime = Field(default_factory=utcnow)
    kind: str = Field(max_length=32)  # warning_50 | warning_75 | overdue | escalated
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


class AdminSession(SQLModel, table=True):
    """Server-side admin sessions: every worker sees them, and signing out deletes the row."""
    __tablename__ = "admin_session"
    key: str = Field(primary_key=True, max_length=128)
    value: bytes
    expires_at: datetime | None = Field(default=None, index=True)
