"""A deterministic generator of supervision ledgers for tests, benchmarks and demos: supervised objects spread over
the lowest grids (classed where the policy defines classes) and patrol histories that follow each cadence — some
grids diligent, some average, some lax — optionally with daily patrols of every lowest grid (volume).

Rows go in with bulk inserts (SQLAlchemy Core, ids returned in order), not through LedgerService one by one: a year of
daily patrols on Hefei is ~600,000 records. Records are valid by construction (known units, days not in the future,
objects checked after they were registered, the signer is the patroller)."""
from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session, col

from policy.models import OBJECT_KINDS
from store import tallies
from store.cadences import INSPECTING
from store.db import UnitOfWork, refresh_statistics
from store.ledger import CST, search_key
from store.tables import ObjectChange, PatrolObject, PatrolRecord, SupervisedObject, utcnow
from store.versions import PolicyStore

# (share of grids, share of each period's required records they make)
DILIGENCE = {"diligent": (0.6, 1.0), "average": (0.3, 0.7), "lax": (0.1, 0.25)}
DAILY_RATE = {"diligent": 0.95, "average": 0.7, "lax": 0.2}  # chance of a patrol on a given day (--daily)
CLASS_WEIGHTS = {"A": 0.5, "B": 0.35, "C": 0.15}
KIND_WEIGHTS = {"pollution_source": 0.6, "risk_source": 0.08, "livestock_farm": 0.1, "medical": 0.05,
                "auto_repair": 0.1, "water_source": 0.02, "construction_project": 0.03,
                "trial_production_project": 0.02}
CHUNK = 5000


def simulate_ledger(policies: PolicyStore, jid: str, sources: int, start: date, days: int, seed: int = 1,
                    daily: bool = False, now: datetime | None = None) -> dict[str, int]:
    rng = random.Random(seed)
    router = policies.router(jid)
    policy = router.jur.policy
    lowest = max(u.level for u in router.units.values())
    grids = sorted(u.id for u in router.units.values() if u.level == lowest)
    diligence = {u: rng.choices(list(DILIGENCE), [s for s, _ in DILIGENCE.values()])[0] for u in sorted(router.units)}
    classes = [c.id for c in policy.source_classes]
    last = min(start + timedelta(days=days), ((now or utcnow()).astimezone(CST)).date())  # nothing in the future
    counts: Counter = Counter()
    with UnitOfWork(policies.engine) as uow:
        session = uow.session
        objects = _objects(session, rng, jid, grids, sources, classes, start, counts)
        by_unit: dict[str, list[int]] = defaultdict(list)
        for oid, unit, _, _ in objects:
            by_unit[unit].append(oid)
        planned: list[tuple[str, str, date, list[int]]] = []  # (unit, activity, day, objects)
        for cadence in policy.cadences:
            per_object = cadence.source_class is not None or cadence.object_kind is not None
            subjects = ([(unit, [oid]) for oid, unit, cls, kind in objects
                         if cadence.source_class in (None, cls) and cadence.object_kind in (None, kind)]
                        if per_object else
                        [(u.id, None) for u in router.units.values() if cadence.level in (None, u.level)])
            activity = "source_inspection" if per_object and cadence.activity in INSPECTING else cadence.activity
            for b_start, b_end in _buckets(cadence.per.value, start, last):
                span = (b_end - b_start).days
                for unit, checked in subjects:
                    share = DILIGENCE[diligence[unit]][1]
                    for _ in range(cadence.times):
                        if rng.random() < share:
                            day = b_start + timedelta(days=rng.randrange(span))
                            if day < last:
                                planned.append((unit, activity, day, checked or _sample(rng, by_unit[unit])))
        if daily:
            for unit in grids:
                rate = DAILY_RATE[diligence[unit]]
                for n in range((last - start).days):
                    if rng.random() < rate:
                        planned.append((unit, "patrol", start + timedelta(days=n), _sample(rng, by_unit[unit])))
        _patrols(session, rng, jid, router, planned, counts)
        tallies.rebuild(session, jid)
    refresh_statistics(policies.engine)
    counts.update({f"grids_{k}": v for k, v in Counter(diligence[g] for g in grids).items()})
    return dict(counts)


def _objects(session: Session, rng: random.Random, jid: str, grids: list[str], n: int, classes: list[str],
             registered: date, counts: Counter) -> list[tuple[int, str, str | None, str]]:
    """n objects, returned as (id, unit, class, kind)."""
    rows: list[dict[str, Any]] = []
    kinds, weights = list(KIND_WEIGHTS), list(KIND_WEIGHTS.values())
    now = utcnow()
    for i in range(n):
        kind = rng.choices(kinds, weights)[0]
        cls = (rng.choices(classes, [CLASS_WEIGHTS.get(c, 0.1) for c in classes])[0]
               if classes and kind == "pollution_source" else None)
        name = f"模拟{OBJECT_KINDS[kind]}{i + 1:05d}"
        identifier = f"SIM{jid[:6].upper()}{i + 1:07d}"
        rows.append({"jurisdiction": jid, "unit": grids[rng.randrange(len(grids))], "name": name, "kind": kind,
                     "source_class": cls, "classed_by": "模拟" if cls else None, "classed_at": now if cls else None,
                     "class_reason": "模拟数据: 按诚信守法情况、日常监管状况和环境影响程度定类" if cls else "",
                     "identifier": identifier, "address": "", "longitude": None, "latitude": None,
                     "registered_on": registered, "search_key": search_key(name, identifier), "created_at": now,
                     "updated_at": now})
    out: list[tuple[int, str, str | None, str]] = []
    for chunk in range(0, len(rows), CHUNK):
        part = rows[chunk:chunk + CHUNK]
        ids = session.execute(insert(SupervisedObject).returning(col(SupervisedObject.id),
                                                                 sort_by_parameter_order=True),
                              part).scalars().all()
        session.execute(insert(ObjectChange), [{"object_id": oid, "at": now, "actor": "模拟", "action": "imported",
                                                "changes": {"name": [None, r["name"]]}, "reason": ""}
                                               for oid, r in zip(ids, part)])
        out.extend((oid, r["unit"], r["source_class"], r["kind"]) for oid, r in zip(ids, part))
    counts["objects"] = len(out)
    return out


def _buckets(kind: str, start: date, end: date) -> list[tuple[date, date]]:
    out, day = [], start
    while day < end:
        b = tallies.bucket_of(kind, day)
        out.append((max(b[0], start), b[1]))
        day = b[1]
    return out


def _sample(rng: random.Random, ids: list[int]) -> list[int]:
    return rng.sample(ids, min(len(ids), rng.choice((0, 1, 1, 2)))) if ids else []


def _patrols(session: Session, rng: random.Random, jid: str, router, planned, counts: Counter) -> None:
    used: set[tuple] = set()
    now = utcnow()
    rows, checked = [], []
    for unit, activity, day, objects in planned:
        minute = rng.randrange(8 * 60, 18 * 60)
        while (unit, activity, day, minute) in used:  # one signer: one record per minute and activity
            minute += 1
        used.add((unit, activity, day, minute))
        officer = f"{router.units[unit].name}网格员"
        finding = [{"description": "发现问题, 已现场劝阻整改", "object_id": objects[0] if objects else None,
                    "problem_type": None}] if rng.random() < 0.03 else []
        rows.append({"jurisdiction": jid, "unit": unit, "activity": activity, "day": day,
                     "patrolled_at": datetime.combine(day, time(minute // 60, minute % 60), tzinfo=CST),
                     "patrollers": [officer], "signed_by": officer, "findings": finding, "photos": [],
                     "idempotency_key": None, "created_by": "模拟", "created_at": now})
        checked.append(objects)
    for chunk in range(0, len(rows), CHUNK):
        part = rows[chunk:chunk + CHUNK]
        ids = session.execute(insert(PatrolRecord).returning(col(PatrolRecord.id), sort_by_parameter_order=True),
                              part).scalars().all()
        links = [{"patrol_id": pid, "object_id": oid, "day": r["day"]}
                 for pid, r, objects in zip(ids, part, checked[chunk:chunk + CHUNK]) for oid in objects]
        if links:
            session.execute(insert(PatrolObject), links)
        counts["patrol_objects"] += len(links)
    counts["patrols"] = len(rows)
