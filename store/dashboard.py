"""Case counts for the admin dashboard, counted by the database (GROUP BY), never by loading every case."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, cast
from sqlalchemy import case as sql_case
from sqlmodel import Session, col, func, select

from store.cases import CLOSED
from store.db import reader
from store.tables import CaseRecord, utcnow

IS_CLOSED = sql_case((col(CaseRecord.status) == CLOSED, 1), else_=0)
IS_OPEN = sql_case((col(CaseRecord.status) != CLOSED, 1), else_=0)
IS_OVERDUE = sql_case(((col(CaseRecord.status) != CLOSED) & col(CaseRecord.overdue), 1), else_=0)
WEEKLY_AFTER_DAYS = 60  # longer windows are charted per week


@dataclass
class Counts:
    key: Any  # a level, a unit id or a day
    open: int
    overdue: int
    closed: int

    @property
    def total(self) -> int:
        return self.open + self.closed


def _counts(engine, jurisdiction: str, column, limit: int | None = None) -> list[Counts]:
    query = (select(column, func.sum(IS_OPEN), func.sum(IS_OVERDUE), func.sum(IS_CLOSED))
             .where(CaseRecord.jurisdiction == jurisdiction).group_by(column)
             .order_by(func.sum(IS_OPEN).desc(), func.count().desc(), column))
    with Session(reader(engine)) as session:
        rows = session.exec(query.limit(limit) if limit else query).all()
    return [Counts(key, int(o or 0), int(d or 0), int(c or 0)) for key, o, d, c in rows]


def by_level(engine, jurisdiction: str) -> list[Counts]:
    return sorted(_counts(engine, jurisdiction, CaseRecord.handler_level), key=lambda c: c.key)


def by_unit(engine, jurisdiction: str, limit: int = 50) -> tuple[int, list[Counts]]:
    """The `limit` handling units with the most open cases, and how many units have cases at all (cases
    without a determined unit count as one group, as they are listed)."""
    groups = (select(CaseRecord.handler_unit).where(CaseRecord.jurisdiction == jurisdiction)
              .group_by(CaseRecord.handler_unit).subquery())
    with Session(reader(engine)) as session:
        units = session.exec(select(func.count()).select_from(groups)).one()
    return units, _counts(engine, jurisdiction, CaseRecord.handler_unit, limit)


def totals(engine, jurisdiction: str) -> Counts:
    query = (select(func.sum(IS_OPEN), func.sum(IS_OVERDUE), func.sum(IS_CLOSED))
             .where(CaseRecord.jurisdiction == jurisdiction))
    with Session(reader(engine)) as session:
        o, d, c = session.exec(query).one()
    return Counts(jurisdiction, int(o or 0), int(d or 0), int(c or 0))


def _per_day(engine, jurisdiction: str, column, since: datetime) -> dict[date, int]:
    day = func.date(column)
    query = (select(day, cast(func.count(), Integer)).where(CaseRecord.jurisdiction == jurisdiction, column >= since)
             .group_by(day))
    with Session(reader(engine)) as session:
        # SQLite answers 'YYYY-MM-DD' strings, PostgreSQL dates
        return {date.fromisoformat(str(d)): n for d, n in session.exec(query).all()}


def over_time(engine, jurisdiction: str, days: int, now: datetime | None = None) -> dict:
    """Cases received and closed per day (UTC), or per week (starting Monday) for windows over 60 days."""
    now = now or utcnow()
    start = (now - timedelta(days=days - 1)).date()
    since = datetime.combine(start, datetime.min.time(), tzinfo=now.tzinfo)
    received = _per_day(engine, jurisdiction, CaseRecord.created_at, since)
    closed = _per_day(engine, jurisdiction, CaseRecord.closed_at, since)
    weekly = days > WEEKLY_AFTER_DAYS
    buckets: dict[date, list[int]] = {}
    for offset in range(days):
        d = start + timedelta(days=offset)
        bucket = buckets.setdefault(d - timedelta(days=d.weekday()) if weekly else d, [0, 0])
        bucket[0] += received.get(d, 0)
        bucket[1] += closed.get(d, 0)
    return {"weekly": weekly, "labels": [d.isoformat() for d in buckets],
            "received": [v[0] for v in buckets.values()], "closed": [v[1] for v in buckets.values()]}
