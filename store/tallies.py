"""Patrol tallies: the number of patrol records per subject (a grid unit, or `object:<id>` for an object a patrol
checked), activity and calendar period of every kind a cadence can use (day, week, half month … year).

Patrol intake adds to them in the same transaction as the records (an upsert per touched row), so a cadence's
obligations for any period — settled or current — read a few rows per subject instead of scanning the records.
`recount` derives them from scratch in SQL — an implementation independent of the incremental one, which the tests
compare it with — and `rebuild` stores that (the simulator's bulk inserts). Every write of a period's tallies bumps
the period's stamp (`tally_stamp`): what a cache of figures of a settled period is checked against.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any
from functools import lru_cache

from sqlalchemy import String, and_, delete, func, or_, select, text, type_coerce, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlmodel import Session

from policy.models import PERIOD_LABELS
from store.assessment import MONTHS
from store.tables import PatrolRecord, PatrolTally, TallyStamp, table_of

PERIOD_KINDS = tuple(PERIOD_LABELS)  # every kind is kept: a new policy version may add a cadence of any kind
OBJECT = "object:"  # an object's subject (as in cadence_obligation)
KEY = ("jurisdiction", "per", "of_object", "period_start", "activity", "subject")  # the primary key's order
STAMP_KEY = ("jurisdiction", "per", "period_start")  # a period's, of its tallies of units and of objects alike
CHUNK = 5000

Bucket = tuple[date, date]  # [start, end) days
Tallies = Counter  # {KEY: records}


def bucket_of(kind: str, day: date) -> Bucket:
    """The period of kind `kind` (a cadence's `per`) containing `day`."""
    if kind == "day":
        return day, day + timedelta(days=1)
    if kind == "week":  # calendar weeks start on Monday
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    if kind == "half_month":
        if day.day < 16:
            return day.replace(day=1), day.replace(day=16)
        return day.replace(day=16), month_add(day.replace(day=1), 1)
    span = MONTHS[kind]
    first = date(day.year, (day.month - 1) // span * span + 1, 1)
    return first, month_add(first, span)


def month_add(day: date, months: int) -> date:
    n = day.year * 12 + day.month - 1 + months
    return date(n // 12, n % 12 + 1, 1)


def object_subject(object_id: int) -> str:
    return f"{OBJECT}{object_id}"


def tallies(daily: Iterable[tuple[str, str, str, date | str, int]]) -> Tallies:
    """(jurisdiction, subject, activity, day, records) → the tallies of every period kind."""
    out: Tallies = Counter()
    for jid, subject, activity, day, n in daily:
        day = day if isinstance(day, date) else date.fromisoformat(str(day)[:10])
        for per in PERIOD_KINDS:
            out[(jid, per, subject.startswith(OBJECT), bucket_of(per, day)[0], activity, subject)] += n
    return out


def of_records(records: Iterable[tuple[PatrolRecord, Iterable[int]]]) -> Tallies:
    """The tallies new records (each with the ids of the objects it checked) add."""
    return tallies(row for r, objects in records for row in
                   [(r.jurisdiction, r.unit, r.activity, r.day, 1)]
                   + [(r.jurisdiction, object_subject(oid), r.activity, r.day, 1) for oid in objects])


def add(session: Session | Connection, counts: Tallies) -> None:
    """Add `counts` to the stored tallies and bump their periods' stamps (one upsert per row, in key order so
    concurrent intakes lock rows in the same order)."""
    if not counts:
        return
    upsert, bump = _upserts((session.get_bind() if isinstance(session, Session) else session).dialect.name)
    rows = [dict(zip(KEY, key), n=n) for key, n in sorted(counts.items())]
    for i in range(0, len(rows), CHUNK):
        session.execute(upsert, rows[i:i + CHUNK])
    periods = sorted({(key[0], key[1], key[3]) for key in counts})
    for i in range(0, len(periods), CHUNK):
        session.execute(bump, [dict(zip(STAMP_KEY, p), revision=1) for p in periods[i:i + CHUNK]])


@lru_cache(maxsize=2)
def _upserts(dialect: str):
    """The tallies' upsert and the stamps' bump (built once: building them cost more than running them for one
    record)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    t, s = table_of(PatrolTally), table_of(TallyStamp)
    tally, stamp = insert(t), insert(s)
    return (tally.on_conflict_do_update(index_elements=list(KEY), set_={"n": t.c.n + tally.excluded.n}),
            stamp.on_conflict_do_update(index_elements=list(STAMP_KEY), set_={"revision": s.c.revision + 1}))


# The start of a day's period of each kind, in each dialect's SQL ({d}: the day column).
PERIOD_SQL = {
    "sqlite": {
        "day": "{d}",
        "week": "date({d}, '-' || ((CAST(strftime('%w', {d}) AS INTEGER) + 6) % 7) || ' days')",
        "half_month": "CASE WHEN CAST(strftime('%d', {d}) AS INTEGER) < 16 THEN date({d}, 'start of month') "
                      "ELSE date({d}, 'start of month', '+15 days') END",
        "month": "date({d}, 'start of month')",
        "quarter": "date({d}, 'start of month', '-' || ((CAST(strftime('%m', {d}) AS INTEGER) - 1) % 3) || ' months')",
        "half_year":
            "date({d}, 'start of month', '-' || ((CAST(strftime('%m', {d}) AS INTEGER) - 1) % 6) || ' months')",
        "year": "date({d}, 'start of year')",
    },
    "postgresql": {
        "day": "{d}",
        "week": "date_trunc('week', {d})::date",
        "half_month": "CASE WHEN extract(day FROM {d}) < 16 THEN date_trunc('month', {d})::date "
                      "ELSE (date_trunc('month', {d}) + interval '15 days')::date END",
        "month": "date_trunc('month', {d})::date",
        "quarter": "date_trunc('quarter', {d})::date",
        "half_year": "(date_trunc('year', {d}) + make_interval(months => "
                     "((extract(month FROM {d})::int - 1) / 6) * 6))::date",
        "year": "date_trunc('year', {d})::date",
    },
}


def _recount_sql(dialect: str, jid: str | None) -> list[str]:
    """SELECTs of the tallies from scratch, one per period kind and subject kind, grouped in SQL (a year of Hefei's
    records is millions of tally rows: they never pass through Python)."""
    where = "" if jid is None else "WHERE p.jurisdiction = :jid"
    out = []
    for per, expr in PERIOD_SQL[dialect].items():
        for of_object, subject, source, day in (
                (False, "p.unit", "patrol_record p", "p.day"),
                (True, "'object:' || o.object_id", "patrol_object o JOIN patrol_record p ON p.id = o.patrol_id",
                 "o.day")):
            start = expr.format(d=day)
            out.append(f"SELECT p.jurisdiction, '{per}', {'TRUE' if of_object else 'FALSE'}, {start}, p.activity, "
                       f"{subject}, count(*) FROM {source} {where} "
                       f"GROUP BY p.jurisdiction, {start}, p.activity, {subject}")
    return out


def recount(session: Session | Connection, jid: str | None = None) -> Tallies:
    """The tallies from scratch (of one jurisdiction, or all), counted from the records in SQL."""
    dialect = (session.get_bind() if isinstance(session, Session) else session).dialect.name
    out: Tallies = Counter()
    for sql in _recount_sql(dialect, jid):
        for j, per, of_object, start, activity, subject, n in session.execute(text(sql), {"jid": jid}):
            out[(j, per, bool(of_object), _as_date(start), activity, subject)] = n
    return out


def rebuild(session: Session | Connection, jid: str | None = None) -> None:
    """Replace the stored tallies (of one jurisdiction, or all) with a recount and bump the stamps of every period,
    inside the database."""
    refill(session, jid)
    s = table_of(TallyStamp)
    bump = update(s).values(revision=s.c.revision + 1)
    session.execute(bump if jid is None else bump.where(s.c.jurisdiction == jid))
    columns, where = ", ".join(STAMP_KEY), "TRUE" if jid is None else "jurisdiction = :jid"  # WHERE: SQLite's upsert
    session.execute(text(f"INSERT INTO tally_stamp ({columns}, revision) SELECT DISTINCT {columns}, 1 "
                         f"FROM patrol_tally WHERE {where} ON CONFLICT DO NOTHING"), {"jid": jid})


def refill(session: Session | Connection, jid: str | None = None) -> None:
    """Replace the stored tallies (of one jurisdiction, or all) with a recount, inside the database; no stamps
    (`rebuild` bumps them)."""
    dialect = (session.get_bind() if isinstance(session, Session) else session).dialect.name
    t = table_of(PatrolTally)
    session.execute(delete(t) if jid is None else delete(t).where(t.c.jurisdiction == jid))
    for sql in _recount_sql(dialect, jid):
        session.execute(text(f"INSERT INTO patrol_tally ({', '.join(KEY)}, n) {sql}"), {"jid": jid})


def read(session: Session, jid: str, per: str, activities: tuple[str, ...], starts: list[date], objects: bool,
         units: list[str] | None = None) -> dict[date, dict[str, int]]:
    """{period start: {subject: records}} of the activities in the periods of kind `per` starting at `starts`:
    of objects, or of units (only `units` when given)."""
    t = table_of(PatrolTally).c
    # the start as stored (SQLite: text), turned into a date once per period, not once per row
    query = select(t.subject, type_coerce(t.period_start, String), t.n).where(
        t.jurisdiction == jid, t.per == per, t.activity.in_(activities), t.of_object == objects,
        t.period_start.in_(starts))
    if units is not None:
        query = query.where(t.subject.in_(units))
    out: dict[Any, dict[str, int]] = defaultdict(dict)
    for subject, start, n in session.execute(query).all():  # several activities: their records add up
        counts = out[start]
        counts[subject] = counts.get(subject, 0) + n
    return {_as_date(start): counts for start, counts in out.items()}


def histogram(session: Session, jid: str, per: str, activities: tuple[str, ...], starts: list[date],
              units: list[str]) -> dict[date, Counter]:
    """Per period start: how many of `units` have each number of records of the activities (≥ 1), counted in SQL;
    the caller judges each number once (a settled Hefei half year is 50,000 obligations)."""
    t = table_of(PatrolTally).c
    per_unit = select(t.period_start, func.sum(t.n).label("n")).where(
        t.jurisdiction == jid, t.per == per, t.activity.in_(activities), t.of_object.is_(False),
        t.period_start.in_(starts), t.subject.in_(units)).group_by(t.subject, t.period_start).subquery()
    query = select(per_unit.c.period_start, per_unit.c.n, func.count()).group_by(per_unit.c.period_start,
                                                                                 per_unit.c.n)
    out: dict[date, Counter] = defaultdict(Counter)
    for start, n, subjects in session.execute(query):
        out[_as_date(start)][n] = subjects
    return out


def stamps(session: Session, jid: str, periods: set[tuple[str, date]]) -> dict[tuple[str, date], int]:
    """The stamp of each (kind, start) of `periods`: 0 if its tallies were never written since stamps were kept."""
    s = table_of(TallyStamp).c
    query = select(s.per, s.period_start, s.revision).where(
        s.jurisdiction == jid, s.per.in_({per for per, _ in periods}),
        s.period_start.in_({start for _, start in periods}))
    found = {(per, _as_date(start)): revision for per, start, revision in session.execute(query)}
    return {p: found.get(p, 0) for p in periods}


def records(session: Session, jid: str, start: date | None, end: date | None, units: list[str] | None = None) -> int:
    """The patrol records of the days [start, end) (of `units`; open ends: all): the tallies of the fewest whole
    years, months and days covering them."""
    t = table_of(PatrolTally).c
    if start is None or end is None:
        first, last = session.execute(select(func.min(t.period_start), func.max(t.period_start)).where(
            t.jurisdiction == jid, t.per == "year", t.of_object.is_(False))).one()
        if first is None:
            return 0
        start, end = start or _as_date(first), end or month_add(_as_date(last), 12)
    if start >= end:
        return 0
    pieces: dict[str, list[date]] = {"year": [], "month": [], "day": []}
    day = start
    while day < end:
        per = next(k for k in pieces if bucket_of(k, day)[0] == day and bucket_of(k, day)[1] <= end)
        pieces[per].append(day)
        day = bucket_of(per, day)[1]
    query = select(func.coalesce(func.sum(t.n), 0)).where(
        t.jurisdiction == jid, t.of_object.is_(False),
        or_(*[and_(t.per == per, t.period_start.in_(starts)) for per, starts in pieces.items() if starts]))
    if units is not None:
        query = query.where(t.subject.in_(units))
    return session.execute(query).scalar_one()


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
