"""Impact preview: replay the stored cases of the last N days against another policy version (a draft)
and list those it would route differently. Bounded: at most `cap` cases (the newest) are replayed."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlmodel import Session, col, func

from engine.compiler import compile_policy
from engine.decision import Decision
from engine.router import Case, PolicyRouter, RoutingError
from store.errors import Invalid
from store.tables import CaseRecord, PolicyVersion, as_utc, utcnow
from store.versions import PolicyStore

DEFAULT_DAYS = 30
MAX_DAYS = 366
REPLAY_CAP = 200  # ~0.25 ms per case (load + route): keeps the preview well under 200 ms
COMPARED = ("level", "unit", "first_action", "departments")


def parse_days(text: str | None) -> int:
    """The form's day count: a whole number of days, 1 to MAX_DAYS; empty means the default."""
    text = (text or "").strip()
    if not text:
        return DEFAULT_DAYS
    if not text.isdigit() or not 1 <= int(text) <= MAX_DAYS:
        raise Invalid(f"天数须为 1 到 {MAX_DAYS} 之间的整数, 收到 '{text[:20]}'", field="days")
    return int(text)


def outcome(decision: Decision) -> dict:
    """The parts of a decision an admin compares: handler level and unit, first action, departments."""
    handler = decision.handler
    return {"level": handler.level, "unit": handler.unit, "unit_name": handler.unit_name,
            "first_action": decision.first_action, "departments": decision.department_ids}


@dataclass
class Replayed:
    case_id: int
    created_at: datetime
    problem_type: str
    unit: str | None
    old: dict
    new: dict | None  # None: the version cannot route the case at all (see error)
    error: str | None = None

    @property
    def changed(self) -> list[str]:
        return list(COMPARED) if self.new is None else [k for k in COMPARED if self.old[k] != self.new[k]]


@dataclass
class ReplayReport:
    days: int
    since: datetime
    in_window: int  # cases created in the window
    cap: int
    replayed: int = 0
    differences: list[Replayed] = field(default_factory=list)

    @property
    def capped(self) -> bool:
        return self.in_window > self.replayed

    @property
    def unroutable(self) -> int:
        return sum(1 for d in self.differences if d.new is None)


def replay(policies: PolicyStore, jurisdiction: str, router: PolicyRouter, days: int = DEFAULT_DAYS,
           cap: int = REPLAY_CAP, now: datetime | None = None) -> ReplayReport:
    """Route the newest `cap` cases created in the last `days` days with `router`, each as reported
    (same type, unit, facts and report time), and keep those whose outcome differs from the stored one."""
    since = (now or utcnow()) - timedelta(days=days)
    r = CaseRecord
    window = (col(r.jurisdiction) == jurisdiction, col(r.created_at) >= since)
    with Session(policies.reader) as session:
        total = session.execute(select(func.count()).select_from(r).where(*window)).scalar_one()
        rows = session.execute(select(col(r.id), col(r.created_at), col(r.problem_type), col(r.unit),
                                      col(r.found_level), col(r.facts), col(r.stored_decision)).where(*window)
                               .order_by(col(r.created_at).desc(), col(r.id).desc()).limit(cap)).all()
    report = ReplayReport(days, since, total, cap, replayed=len(rows))
    for case_id, created_at, ptype, unit, found_level, facts, stored in rows:
        decision = policies.decision(stored)
        item = Replayed(case_id, as_utc(created_at), decision.problem_type.name, unit, outcome(decision), None)
        try:
            item.new = outcome(router.route(Case(problem_type=ptype, unit=unit, found_at_level=found_level,
                                                 facts=facts, reported_at=item.created_at)))
        except (RoutingError, ValueError) as err:
            item.error = str(err)
        if item.changed:
            report.differences.append(item)
    return report


def replay_version(policies: PolicyStore, version: PolicyVersion, days: int = DEFAULT_DAYS,
                   cap: int = REPLAY_CAP, now: datetime | None = None) -> ReplayReport:
    """Replay against a version compiled just for this (drafts are never loaded into the registry); the
    active router's calendar is shared, with its memo of working-day shifts."""
    compiled = compile_policy(policies.build(version))
    try:
        router = PolicyRouter(compiled, calendar=policies.router(version.jurisdiction).calendar)
        return replay(policies, version.jurisdiction, router, days, cap, now)
    finally:
        compiled.close()
