"""Cadences enforced: each cadence of the policy becomes an obligation per grid unit (at its level; every unit when
it names none) or, when it names a source class, per supervised object of that class — per period of the cadence
(day, week, half month, month …, calendar periods in China time). Patrol records fulfil them.

Status as of a moment: met (recorded ≥ required), missed (the period ended short), at risk (half the period gone
and fewer than half the required records), open, or pending (not started). Counts come from the patrol tallies
(store/tallies.py: records per unit or object, activity and period, kept by intake): a few rows per subject and
period, whether the period is settled or current.

The sweeper (`sweep`) keeps the current and the previous period of every cadence in `cadence_obligation` and
records a notification, like a case clock's, when an obligation turns at risk or missed.
"""
from __future__ import annotations

import math
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache

from cachetools import LRUCache
from sqlalchemy import bindparam, insert, select, update
from sqlmodel import Session, col

from policy.models import ACTIVITY_LABELS, PERIOD_LABELS, Cadence
from store.assessment import Period
from store.db import UnitOfWork, reader
from store import tallies
from store.ledger import CST
from store.tables import CadenceObligation, Notification, PatrolRecord, SupervisedObject, table_of, utcnow
from store.tallies import Bucket, bucket_of
from store.versions import PolicyStore

STATUS_LABELS = {"met": "已完成", "at_risk": "有风险", "missed": "未完成", "open": "进行中", "pending": "未开始"}
RANK = {status: i for i, status in enumerate(["met", "pending", "open", "at_risk", "missed"])}  # worse: higher
# Activities a check of an object counts for: a patrol that checked a source inspected it.
INSPECTING = ("patrol", "source_inspection")
KEPT = 20_000  # settled periods' statuses kept (a Hefei dashboard view uses ~40 per grid it is filtered by)


def period_days(period: Period) -> Bucket:
    return period.start.astimezone(CST).date(), period.end.astimezone(CST).date()


def buckets_in(kind: str, start: date, end: date) -> list[Bucket]:
    """The cadence periods a report period [start, end) answers for: those ending in it (a week across the month's
    start belongs to the month it ends in), or the one longer period that contains it."""
    first = bucket_of(kind, start)
    if first[0] <= start and first[1] >= end:
        return [first]
    out, day = [], start
    while day < end:
        b = bucket_of(kind, day)
        if start < b[1] <= end:
            out.append(b)
        day = b[1]
    return out


def at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=CST)


def status_of(required: int, recorded: int, bucket: Bucket, now: datetime) -> str:
    if recorded >= required:
        return "met"
    start, end = at(bucket[0]), at(bucket[1])
    if now >= end:
        return "missed"
    if now < start:
        return "pending"
    if now - start >= (end - start) / 2 and recorded < math.ceil(required / 2):
        return "at_risk"
    return "open"


@dataclass
class Obligation:
    cadence: Cadence
    unit: str
    object_id: int | None
    bucket: Bucket
    required: int
    recorded: int
    status: str

    @property
    def subject(self) -> str:
        return self.unit if self.object_id is None else f"object:{self.object_id}"


class CadenceService:
    def __init__(self, policies: PolicyStore):
        self.policies = policies
        self.engine = policies.engine
        # (jurisdiction, version, units, cadence, period) → (tally stamp, statuses) of a grid cadence's settled period
        self._kept: LRUCache = LRUCache(maxsize=KEPT)
        self._keeping = threading.Lock()

    # --- the core: obligations of some cadences over some of their periods
    def evaluate(self, jid: str, plan: list[tuple[Cadence, list[Bucket]]], now: datetime,
                 units: frozenset[str] | None = None) -> tuple[list[Obligation], dict[int, tuple[str, str]]]:
        """Obligations for each (cadence, periods) of `plan`, optionally only in `units`; and the objects
        concerned (id → (name, unit))."""
        counted, objects = self._counted(jid, plan, now, units)
        return [Obligation(cadence, unit, oid, bucket, cadence.times, recorded, status)
                for cadence, bucket, rows in counted for unit, oid, recorded, status in rows], objects

    def _counted(self, jid: str, plan: list[tuple[Cadence, list[Bucket]]], now: datetime, units: frozenset[str] | None
                 ) -> tuple[list[tuple[Cadence, Bucket, list[tuple[str, int | None, int, str]]]],
                            dict[int, tuple[str, str]]]:
        """Per cadence and period of `plan`: (unit, object id, recorded, status) of each subject; the objects."""
        by_level = _by_level(self.policies.router(jid), units)
        with Session(reader(self.engine)) as session:
            members = self._objects(session, jid, plan, units) if any(_per_object(c) for c, _ in plan) else []
            objects = {oid: (name, unit) for oid, name, unit, _, _, _ in members}
            wanted: dict[tuple, set[date]] = defaultdict(set)  # one read per (kind, activities, subjects)
            for cadence, buckets in plan:
                wanted[_tally_key(cadence)].update(b[0] for b in buckets)
            counts = {key: tallies.read(session, jid, key[1], key[2], sorted(starts), key[0],
                                        None if key[0] or units is None else sorted(units))
                      for key, starts in wanted.items()}
        out = []
        for cadence, buckets in plan:
            found = counts[_tally_key(cadence)]
            if _per_object(cadence):
                subjects = [(unit, oid, tallies.object_subject(oid), registered) for oid, _, unit, cls, kind, registered
                            in members if cadence.source_class in (None, cls) and cadence.object_kind in (None, kind)]
            else:
                subjects = [(unit, None, unit, None) for unit in by_level[cadence.level]]
            for bucket in sorted(set(buckets)):
                statuses: dict[int, str] = {}  # one status per count: same period, same moment
                rows = []
                records = found.get(bucket[0], {})
                for unit, oid, subject, registered in subjects:
                    if registered is not None and registered >= bucket[1]:
                        continue  # the object did not exist yet
                    recorded = records.get(subject, 0)
                    status = statuses.get(recorded) or statuses.setdefault(
                        recorded, status_of(cadence.times, recorded, bucket, now))
                    rows.append((unit, oid, recorded, status))
                out.append((cadence, bucket, rows))
        return out, objects

    @staticmethod
    def _objects(session: Session, jid: str, plan, units: frozenset[str] | None) -> list[tuple]:
        """(id, name, unit, class, kind, registered_on) of the objects some per-object cadence of `plan` concerns."""
        classes = {c.source_class for c, _ in plan if c.source_class}
        kinds = {c.object_kind for c, _ in plan if c.object_kind}
        o = SupervisedObject
        query = select(col(o.id), col(o.name), col(o.unit), col(o.source_class), col(o.kind),
                       col(o.registered_on)).where(
            col(o.jurisdiction) == jid, col(o.source_class).in_(classes) | col(o.kind).in_(kinds))
        return [tuple(row) for row in session.execute(query) if units is None or row[2] in units]

    # --- reports
    def compliance(self, jid: str, period: Period, now: datetime | None = None, unit: str | None = None) -> dict:
        """Per unit and cadence: required, recorded, status; summaries per level and per cadence."""
        return self._compliance(jid, period, now or utcnow(), unit)[0]

    def dashboard(self, jid: str, period: Period, count: int, now: datetime | None = None,
                  unit: str | None = None) -> tuple[dict, list[dict]]:
        """The compliance of `period` and the trend of the `count` periods up to it (the cadence dashboard): the
        cadence periods both answer for (the running ones, when `period` is the current one) are counted once."""
        now = now or utcnow()
        report, counted = self._compliance(jid, period, now, unit)
        return report, self._trend(jid, period, count, now, unit, counted)

    def _compliance(self, jid: str, period: Period, now: datetime, unit: str | None) -> tuple[dict, list]:
        """The compliance report, and its obligations as `_counted` gives them."""
        router = self.policies.router(jid)
        policy = router.jur.policy
        units = self._units(router, unit)
        start, end = period_days(period)
        plan = [(c, buckets_in(c.per.value, start, end)) for c in policy.cadences]
        counted, objects = self._counted(jid, plan, now, units)  # no Obligation per row: a quarter has 100,000
        # one row per grid and cadence (a cadence's periods in the report, its objects in the grid added up), made
        # with few objects: a Hefei month is 7,000 rows, and the page's time went to making and collecting them
        by_cadence: dict[str, dict[str, dict]] = defaultdict(dict)
        per_cadence: dict[str, Counter] = defaultdict(Counter)
        levels: Counter = Counter()  # (level, status) → obligations
        for cadence, _, obligations in counted:
            cid, times, rows = cadence.id, cadence.times, by_cadence[cadence.id]
            per_cadence[cid].update(status for _, _, _, status in obligations)
            for unit, oid, recorded, status in obligations:
                row = rows.get(unit)
                if row is None:
                    u = router.units[unit]
                    rows[unit] = {"unit": unit, "unit_name": u.name, "level": u.level, "cadence": cid,
                                  "required": times, "recorded": recorded if recorded < times else times,
                                  "obligations": {status: 1}, "objects": int(oid is not None), "status": status}
                    levels[(u.level, status)] += 1
                    continue
                row["required"] += times
                row["recorded"] += recorded if recorded < times else times
                statuses = row["obligations"]
                statuses[status] = statuses.get(status, 0) + 1
                row["objects"] += oid is not None
                if RANK[status] > RANK[row["status"]]:  # a group's status is its worst obligation's
                    row["status"] = status
                levels[(row["level"], status)] += 1
        # ordered by level, grid and cadence through one int per row (comparing tuples of them took longer than
        # making the rows)
        place, ranks = _unit_places(router), {cid: i for i, cid in enumerate(sorted(by_cadence))}
        unit_rows = sorted((row for rows in by_cadence.values() for row in rows.values()),
                           key=lambda row: place[row["unit"]] * len(ranks) + ranks[row["cadence"]])
        for row in unit_rows:
            row["status_label"] = STATUS_LABELS[row["status"]]
        level_names = {lv.number: lv.name for lv in policy.levels}
        return {
            "jurisdiction": jid, "name": policy.name, "period": period.as_dict(), "as_of": now.isoformat(),
            "status_labels": STATUS_LABELS,
            "cadences": [{"id": c.id, "name": c.name, "activity": c.activity,
                          "activity_label": ACTIVITY_LABELS[c.activity], "level": c.level,
                          "source_class": c.source_class, "object_kind": c.object_kind, "times": c.times,
                          "per": c.per.value, "per_label": PERIOD_LABELS[c.per.value],
                          "periods": [[b[0].isoformat(), b[1].isoformat()] for b in buckets],
                          "provenance": c.provenance, "obligations": dict(per_cadence[c.id])} for c, buckets in plan],
            "levels": [{"level": n, "name": level_names.get(n, ""), **{s: levels[(n, s)] for s in STATUS_LABELS},
                        "total": sum(levels[(n, s)] for s in STATUS_LABELS)} for n in sorted({n for n, _ in levels})],
            "rows": unit_rows,
            "objects": {oid: {"name": name, "unit": u} for oid, (name, u) in objects.items()},
        }, counted

    def trend(self, jid: str, period: Period, count: int, now: datetime | None = None,
              unit: str | None = None) -> list[dict]:
        """Obligations per status in each of the `count` periods up to `period` (oldest first; the dashboard's
        chart): one evaluation over the periods' cadence periods, each obligation counted in the periods it
        answers for."""
        return self._trend(jid, period, count, now or utcnow(), unit, [])

    def _trend(self, jid: str, period: Period, count: int, now: datetime, unit: str | None,
               counted: list) -> list[dict]:
        """The trend, given some of its cadence periods counted already (`_counted`'s, of the same `unit`)."""
        periods = [period]
        for _ in range(count - 1):
            periods.insert(0, periods[0].previous())
        router = self.policies.router(jid)
        cadences = router.jur.policy.cadences
        answers = [{c.id: set(buckets_in(c.per.value, *period_days(p))) for c in cadences} for p in periods]
        plan = [(c, sorted(set().union(*(a[c.id] for a in answers)))) for c in cadences]
        units = self._units(router, unit)
        known = {(c.id, bucket) for c, bucket, _ in counted}
        # a grid cadence's settled periods: from how many grids have each count (kept until their tallies change);
        # the rest, per subject (no read for none)
        settled = [(c, [b for b in buckets if now >= at(b[1]) and (c.id, b) not in known])
                   for c, buckets in plan if not _per_object(c)]
        rest = [(c, running) for c, buckets in plan if (running := [
            b for b in buckets if (_per_object(c) or now < at(b[1])) and (c.id, b) not in known])]
        counted = counted + self._counted(jid, rest, now, units)[0]
        tally = [(c.id, bucket, Counter(status for _, _, _, status in rows)) for c, bucket, rows in counted]
        tally += [(c.id, bucket, statuses) for c, bucket, statuses in self._settled(jid, router, settled, units, now)]
        out = []
        for p, answer in zip(periods, answers):
            statuses: Counter = Counter()
            for cid, bucket, per_status in tally:
                if bucket in answer[cid]:
                    statuses.update(per_status)
            total = sum(statuses.values())
            out.append({"period": p.label, **{s: statuses[s] for s in STATUS_LABELS}, "total": total,
                        "met_rate": round(statuses["met"] / total, 3) if total else None})
        return out

    def _settled(self, jid: str, router, plan: list[tuple[Cadence, list[Bucket]]], units: frozenset[str] | None,
                 now: datetime) -> list[tuple[Cadence, Bucket, Counter]]:
        """The statuses of grid cadences' settled periods, judged once per number of records from how many grids
        have it (counted in SQL: a Hefei half year is 50,000 obligations). Kept until the period's tallies are
        written again (its stamp: a back-dated patrol, a rebuild); another version (cadences, units) has its own."""
        by_level = _by_level(router, units)
        periods = {(c.per.value, b[0]) for c, buckets in plan for b in buckets}
        if not periods:
            return []
        out = []
        with Session(reader(self.engine)) as session:
            stamps = tallies.stamps(session, jid, periods)  # read first: a write after this bumps past what is kept
            for cadence, buckets in plan:
                subjects, per = by_level[cadence.level], cadence.per.value
                keys = {b: ((jid, router.jur.content_hash, units, cadence.id, b), stamps[(per, b[0])])
                        for b in buckets}
                with self._keeping:
                    kept = {b: hit[1] for b, (key, stamp) in keys.items()
                            if (hit := self._kept.get(key)) is not None and hit[0] == stamp}
                missing = [b for b in buckets if b not in kept]
                counts = tallies.histogram(session, jid, per, _tally_key(cadence)[2], [b[0] for b in missing],
                                           subjects) if missing else {}
                for b in missing:
                    by_count = counts.get(b[0], Counter())
                    statuses: Counter = Counter()
                    for recorded, n in [(0, len(subjects) - sum(by_count.values())), *by_count.items()]:
                        statuses[status_of(cadence.times, recorded, b, now)] += n
                    kept[b] = statuses
                    with self._keeping:
                        self._kept[keys[b][0]] = (keys[b][1], statuses)
                out += [(cadence, b, kept[b]) for b in buckets]
        return out

    def _units(self, router, unit: str | None) -> frozenset[str] | None:
        if not unit:
            return None
        from store.ledger import LedgerService  # noqa: PLC0415 - the subtree of a grid, shared with the ledger
        below = LedgerService(self.policies).subtree(router, unit)
        return frozenset(below) if below is not None else None

    def missed(self, jid: str, start: date, end: date, now: datetime | None = None) -> list[Obligation]:
        """The obligations of the cadence periods that the days [start, end) answer for, missed as of `now`
        (the assessment's ledger triggers count them; an object's obligation is its grid's)."""
        plan = [(c, buckets_in(c.per.value, start, end)) for c in self.policies.router(jid).jur.policy.cadences]
        return [ob for ob in self.evaluate(jid, plan, now or utcnow())[0] if ob.status == "missed"]

    # --- the sweeper
    def sweep(self, now: datetime | None = None) -> dict[str, int]:
        """Bring `cadence_obligation` up to date for the current and previous period of every cadence; notify
        the obligations that turned at risk or missed. Jurisdictions without any ledger data are skipped."""
        now = now or utcnow()
        counts: Counter[str] = Counter()
        today = now.astimezone(CST).date()
        for jid in sorted(self.policies.refresh()):
            cadences = self.policies.router(jid).jur.policy.cadences
            if not cadences or not self._in_use(jid):
                continue
            plan = []
            for c in cadences:
                current = bucket_of(c.per.value, today)
                plan.append((c, [bucket_of(c.per.value, current[0] - timedelta(days=1)), current]))
            obligations, _ = self.evaluate(jid, plan, now)
            self._store(jid, obligations, min(b[0][0] for _, b in plan), now, counts)
        return dict(counts)

    def _in_use(self, jid: str) -> bool:
        with Session(reader(self.engine)) as session:
            return any(session.execute(select(col(table.id)).where(col(table.jurisdiction) == jid).limit(1)).first()
                       is not None
                       for table in (PatrolRecord, SupervisedObject))

    def _store(self, jid: str, obligations: list[Obligation], since: date, now: datetime, counts: Counter) -> None:
        """Insert new obligations and update changed ones (Core statements: a Hefei sweep touches thousands)."""
        router = self.policies.router(jid)
        t = table_of(CadenceObligation)
        cadences = {c.id: c for c in router.jur.policy.cadences}
        with UnitOfWork(self.engine) as uow:
            session = uow.session
            stored = {(c, start, subject): (oid, status, recorded)
                      for oid, c, start, subject, status, recorded in session.execute(
                          select(t.c.id, t.c.cadence, t.c.period_start, t.c.subject, t.c.status, t.c.recorded).where(
                              t.c.jurisdiction == jid, t.c.period_start >= since))}
            new, changed, notify = [], [], []
            for ob in obligations:
                old = stored.get((ob.cadence.id, ob.bucket[0], ob.subject))
                if old is not None and (old[1], old[2]) == (ob.status, ob.recorded):
                    continue
                counts[ob.status] += 1
                if old is None:
                    new.append(ob)
                else:
                    changed.append({"row_id": old[0], "status": ob.status, "recorded": ob.recorded, "changed_at": now})
                if ob.status in ("at_risk", "missed") and (old is None or old[1] != ob.status):
                    notify.append((ob, old[0] if old else None))
            if changed:
                session.execute(update(t).where(t.c.id == bindparam("row_id")).values(
                    status=bindparam("status"), recorded=bindparam("recorded"),
                    changed_at=bindparam("changed_at")), changed)
            ids = {}
            for i in range(0, len(new), 5000):
                part = new[i:i + 5000]
                made = session.execute(insert(t).returning(t.c.id, sort_by_parameter_order=True), [{
                    "jurisdiction": jid, "cadence": ob.cadence.id, "subject": ob.subject, "unit": ob.unit,
                    "object_id": ob.object_id, "period_start": ob.bucket[0], "period_end": ob.bucket[1],
                    "required": ob.required, "recorded": ob.recorded, "status": ob.status, "changed_at": now}
                    for ob in part]).scalars().all()
                ids.update({id(ob): oid for ob, oid in zip(part, made)})
            rows = []
            for ob, oid in notify:
                unit = router.units[ob.unit]
                what = f"监管对象 #{ob.object_id} " if ob.object_id else ""
                rows.append({"obligation_id": oid or ids[id(ob)], "case_id": None, "kind": f"cadence_{ob.status}",
                             "at": now,
                             "recipient": f"第{unit.level}级网格 {unit.name}"
                                          + (" / 包抓领导" if ob.status == "missed" else ""),
                             "message": f"{what}{cadences[ob.cadence.id].name}: "
                                        f"{ob.bucket[0]}–{ob.bucket[1] - timedelta(days=1)} "
                                        f"应 {ob.required} 次, 已 {ob.recorded} 次 ({STATUS_LABELS[ob.status]})"})
                counts[f"notified_{ob.status}"] += 1
            for i in range(0, len(rows), 5000):
                session.execute(insert(Notification), rows[i:i + 5000])


@lru_cache(maxsize=64)
def _by_level(router, units: frozenset[str] | None) -> dict[int | None, list[str]]:
    """The grids (only `units` when given) of each level, and all of them under None (a cadence without a level);
    per compiled version (a PolicyRouter is one version's), not to be changed."""
    by_level: dict[int | None, list[str]] = defaultdict(list)
    for u in router.units.values():
        if units is None or u.id in units:
            by_level[u.level].append(u.id)
            by_level[None].append(u.id)
    return by_level


@lru_cache(maxsize=64)
def _unit_places(router) -> dict[str, int]:
    """Each grid's place in the order by level, then id (per compiled version)."""
    return {u.id: i for i, u in enumerate(sorted(router.units.values(), key=lambda u: (u.level, u.id)))}


def _per_object(cadence: Cadence) -> bool:
    return cadence.source_class is not None or cadence.object_kind is not None


def _tally_key(cadence: Cadence) -> tuple[bool, str, tuple[str, ...]]:
    """What a cadence counts: (per object?, period kind, activities). A patrol that checked a source inspected it."""
    per_object = _per_object(cadence)
    activities = INSPECTING if per_object and cadence.activity in INSPECTING else (cadence.activity,)
    return per_object, cadence.per.value, activities
