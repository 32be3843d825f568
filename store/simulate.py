"""A realistic, deterministic generator of case histories for tests, benchmarks and demos.

Each case goes through CaseService's own state machine (intake, transitions, clocks, events) and the
sweeper's own deadline check, in simulated time; many cases share one transaction, and their rows are plain ones,
inserted as the batch ends (store/bulk.py `plain_rows`), for speed. The mix:
mostly on time, some late (overdue → escalated by the policy), returned (回退), extended (延期),
reopened after a failed verification (返工), found by an upper grid, corrected on the spot.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlmodel import Session

from engine.router import Case
from store.assessment import CST
from store.bulk import Batch, plain_rows
from store.cases import CLOSED, CaseService, Transition, open_clock
from store.db import UnitOfWork, refresh_statistics
from store.sweeper import check_clock, new_counts
from store.tables import CaseRecord, as_utc

DEFAULT_START = datetime(2026, 1, 1, tzinfo=CST)


@dataclass(frozen=True)
class Mix:
    """Probabilities per case or per step; the defaults give an on-time rate around 85 %."""
    late: float = 0.03  # a step finishes after its deadline
    returned: float = 0.04  # the handling department returns the case once
    extended: float = 0.03  # the handling step is extended (approved) once
    reopened: float = 0.08  # verification fails, the case is reopened
    found_by_upper: float = 0.05  # found by a grid above the lowest level, where the problem is
    corrected_on_site: float = 0.03
    major: float = 0.02


class Simulator:
    def __init__(self, cases: CaseService, jid: str, seed: int, mix: Mix = Mix()):
        self.cases, self.jid, self.mix = cases, jid, mix
        self.rng = random.Random(seed)
        router = cases.policies.router(jid)
        policy = router.jur.policy
        self.types = [t.code for t in policy.problem_types]
        units = list(router.units.values())
        lowest = max(u.level for u in units)
        self.low_units = sorted(u.id for u in units if u.level == lowest)
        self.upper_levels = list(range(1, lowest)) or [lowest]
        self.counts = {"cases": 0, "closed": 0, "open": 0, "overdue": 0, "escalated": 0, "returned": 0,
                       "extended": 0, "reopened": 0}

    def _case(self) -> Case:
        rng, mix = self.rng, self.mix
        upper = rng.random() < mix.found_by_upper
        facts = {"persuasion_failed": rng.random() < 0.8}
        if rng.random() < mix.corrected_on_site:
            facts["corrected_on_site"] = True
        if rng.random() < mix.major:
            facts["major"] = True
        if rng.random() < 0.1:
            facts["no_platform"] = True
        level = rng.choice(self.upper_levels) if upper else None  # an upper grid's patrol found it in a lowest grid
        return Case(problem_type=rng.choice(self.types), unit=rng.choice(self.low_units), found_at_level=level,
                    facts=facts)

    def run(self, n_cases: int, days: int, start: datetime = DEFAULT_START, batch: int = 500,
            progress=None) -> dict:
        began = time.perf_counter()
        end = start + timedelta(days=days)
        moments = sorted(start + timedelta(seconds=self.rng.uniform(0, days * 86400)) for _ in range(n_cases))
        for offset in range(0, n_cases, batch):
            with UnitOfWork(self.cases.engine) as uow, plain_rows(uow.session) as rows:
                for moment in moments[offset:offset + batch]:
                    self._one(rows, moment, end)
            if progress:
                progress(min(offset + batch, n_cases), n_cases)
        refresh_statistics(self.cases.engine)
        return {**self.counts, "seconds": round(time.perf_counter() - began, 2)}

    def _one(self, rows: Batch, now: datetime, end: datetime) -> None:
        rng, mix, cases = self.rng, self.mix, self.cases
        session = cast(Session, rows)  # the state machine only adds rows to its session
        record = cases.intake(session, self.jid, self._case(), "simulator", now)
        rows.settle()  # each intake, transition and sweeper's check: as its own transaction would write it
        self.counts["cases"] += 1
        returned = extended = False
        reopened = 0
        while record.status != CLOSED:
            step = record.status
            allowed = cases.allowed_actions(record)
            assert record.due_at is not None  # an open step always has a deadline
            span = as_utc(record.due_at) - now
            late = rng.random() < mix.late
            at = now + span * (rng.uniform(1.05, 1.8) if late else rng.uniform(0.1, 0.95))
            if "fail" in allowed and reopened < 2 and rng.random() < mix.reopened:
                action = Transition("fail", "网格员", "现场核查未解决")
                reopened += 1
            elif step in self._handling(record) and not returned and rng.random() < mix.returned:
                action, returned = Transition("return", "职能部门", "非本部门职责"), True
            elif step in self._handling(record) and not extended and rng.random() < mix.extended:
                action, extended = Transition("extend", "处置人", "情况复杂需延期", approved_by="包抓领导",
                                              extend_by=timedelta(days=2)), True
                at = now + span * rng.uniform(0.3, 0.9)
            else:
                action = Transition("complete", "网格员")
            if at >= end:
                self.counts["open"] += 1
                return
            self._pass_deadlines(rows, record, at)
            cases.apply(session, record, action, at)
            rows.settle()
            kind = {"fail": "reopened", "return": "returned", "extend": "extended"}.get(action.action)
            if kind:
                self.counts[kind] += 1
            now = at
        self.counts["closed"] += 1

    def _handling(self, record: CaseRecord) -> set[str]:
        router = self.cases.policies.router(record.jurisdiction, record.policy_version)
        assert record.workflow is not None  # a case is only opened with a workflow
        workflow = router.compiled.workflows_by_id[record.workflow]
        return {s.id for s in workflow.steps if s.handling}

    def _pass_deadlines(self, rows: Batch, record: CaseRecord, at: datetime) -> None:
        """Run the sweeper's check for each deadline that passes before `at` (overdue, escalation)."""
        counts = new_counts()
        while record.due_at is not None and as_utc(record.due_at) <= at:
            clock = open_clock(record)
            if clock is None or as_utc(clock.due_at) > at:
                break
            check_clock(cast(Session, rows), self.cases, clock, record, as_utc(clock.due_at), counts)
            rows.settle()
        self.counts["overdue"] += counts["overdue"]
        self.counts["escalated"] += counts["escalated"]


def simulate(cases: CaseService, jid: str, n_cases: int, days: int, seed: int, start: datetime = DEFAULT_START,
             progress=None) -> dict:
    return Simulator(cases, jid, seed).run(n_cases, days, start, progress=progress)
