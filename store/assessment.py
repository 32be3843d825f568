"""Assessment (综合评价 / 绩效考核): case indicators and the policy's score per grid unit, level and department.

Everything is computed with set-based SQL (GROUP BY over case_event, case_clock, case_record; the same
SQLAlchemy Core on SQLite and PostgreSQL); Python only combines the per-unit aggregate rows. Every score
is explainable: it lists its deductions, and `explain` returns the case events behind each deduction.
The definitions are README's 综合评价 section, which says how to recompute every figure from the tables.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import and_, case, exists, false, func, not_, or_, select, union_all
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col

from policy.loader import Jurisdiction
from policy.models import PERIOD_LABELS, TRIGGERS, PeriodKind, Policy, Scoring
from policy import words
from store.db import UnitOfWork, reader
from store.errors import Invalid, NotFound
from store.tables import CST, AssessmentRecord, CaseClock, CaseDepartment, CaseEvent, CaseRecord, table_of, utcnow
from store.versions import PolicyStore

MONTHS: dict[str, int] = {PeriodKind.month: 1, PeriodKind.quarter: 3, PeriodKind.half_year: 6, PeriodKind.year: 12}
_PERIOD = re.compile(r"^(\d{4})(?:-(?:(Q)([1-4])|(H)([12])|(\d{2})))?$")
PERIOD_HELP = "可用格式: 2026-Q3 (季度), 2026-07 (月), 2026-H1 (半年), 2026 (年)"

EVENT, RECORD, CLOCK, DEPARTMENT = (table_of(CaseEvent).c, table_of(CaseRecord).c, table_of(CaseClock).c,
                                    table_of(CaseDepartment).c)
FINISHING = ("completed", "closed")  # events that finish the step they leave (from_status)
ENTERING = ("entered", "completed", "reopened", "redispatched")  # events that start the step they lead to
UNASSIGNED = "未落实到网格"  # the row of figures whose grid cannot be known (no grid at the handling level)

INDICATOR_LABELS = {
    "found": "发现问题数", "received": "受理案件数", "report_started": "上报步骤数", "report_ended": "上报步骤结束数",
    "report_on_time": "按时上报数", "dispatch_started": "派遣步骤数", "dispatch_ended": "派遣步骤结束数",
    "dispatch_on_time": "按时派遣数", "handling_started": "处置步骤数", "handling_ended": "处置步骤结束数",
    "handling_finished": "处置完成数", "handling_on_time": "按时处置数", "handling_returned": "处置步骤回退数",
    "verified": "核查通过数",
    "reopened": "返工数", "overdue": "超期数", "escalated": "升级数", "returned": "回退数", "extended": "延期数",
    "closed": "结案数", "due": "应结案数", "closed_due": "应结案中已结案数", "closed_on_time": "按期结案数",
}
RATE_LABELS = {
    "closure_rate": "结案率", "on_time_closure_rate": "按期结案率", "on_time_report_rate": "按时立案率",
    "on_time_dispatch_rate": "按时派遣率", "accurate_dispatch_rate": "准确派遣率", "disposal_rate": "处置率",
    "on_time_handling_rate": "按时处置率", "rework_rate": "返工率",
}
# The indicators that count the events of one action each.
EVENT_INDICATORS = {
    "created": "received", "closed": "closed", "reopened": "reopened", "overdue": "overdue",
    "escalated": "escalated", "returned": "returned", "extended": "extended",
}


@dataclass(frozen=True)
class Period:
    """A calendar period in China time: 2026-07, 2026-Q3, 2026-H1 or 2026 (its length is a PeriodKind)."""
    kind: PeriodKind
    year: int
    index: int  # month 1-12, quarter 1-4, half 1-2, year 1

    @classmethod
    def parse(cls, text: str) -> "Period":
        match = _PERIOD.match((text or "").strip())
        if not match:
            raise Invalid(f"考核期 '{text}' 格式不正确; {PERIOD_HELP}", field="period")
        year = int(match.group(1))
        if not 2000 <= year <= 2100:
            raise Invalid(f"考核期年份 {year} 超出范围 (2000–2100)", field="period")
        if match.group(2):
            return cls(PeriodKind.quarter, year, int(match.group(3)))
        if match.group(4):
            return cls(PeriodKind.half_year, year, int(match.group(5)))
        if match.group(6):
            month = int(match.group(6))
            if not 1 <= month <= 12:
                raise Invalid(f"考核期月份 {match.group(6)} 不存在, 须为 01–12; {PERIOD_HELP}", field="period")
            return cls(PeriodKind.month, year, month)
        return cls(PeriodKind.year, year, 1)

    @classmethod
    def containing(cls, kind: PeriodKind | str, moment: datetime) -> "Period":
        kind = PeriodKind(kind)
        local = moment.astimezone(CST)
        return cls(kind, local.year, (local.month - 1) // MONTHS[kind] + 1)

    @property
    def label(self) -> str:
        return {PeriodKind.month: f"{self.year}-{self.index:02d}", PeriodKind.quarter: f"{self.year}-Q{self.index}",
                PeriodKind.half_year: f"{self.year}-H{self.index}", PeriodKind.year: f"{self.year}"}[self.kind]

    def _month_start(self, offset: int) -> datetime:
        months = self.year * 12 + (self.index - 1) * MONTHS[self.kind] + offset
        return datetime(months // 12, months % 12 + 1, 1, tzinfo=CST).astimezone(timezone.utc)

    @property
    def start(self) -> datetime:
        return self._month_start(0)

    @property
    def end(self) -> datetime:
        return self._month_start(MONTHS[self.kind])

    def previous(self) -> "Period":
        return Period.containing(self.kind, self.start - timedelta(seconds=1))

    def as_dict(self) -> dict:
        return {"label": self.label, "kind": self.kind.value, "kind_label": PERIOD_LABELS[self.kind.value],
                "start": self.start.isoformat(), "end": self.end.isoformat()}


@dataclass(frozen=True)
class Window:
    """The time a score's deductions are counted over: [start, end)."""
    start: datetime
    end: datetime

    @property
    def label(self) -> str:  # China-time dates, both inclusive
        last = (self.end - timedelta(microseconds=1)).astimezone(CST)
        return f"{self.start.astimezone(CST):%Y-%m-%d} 至 {last:%Y-%m-%d}"

    def as_dict(self) -> dict:
        return {"label": self.label, "start": self.start.isoformat(), "end": self.end.isoformat()}


def score_window(scoring: Scoring | None, period: Period) -> Window:
    """A yearly scheme (`period: year`) published per quarter or month counts its deductions from the start of
    the year up to the period's end (宁家坪镇's 12 points are for the year); every other scheme, the period."""
    if scoring is not None and scoring.period is PeriodKind.year:
        return Window(Period.containing(PeriodKind.year, period.start).start, period.end)
    return Window(period.start, period.end)


ROLES = ("report", "dispatch", "handling", "verify")


@dataclass(frozen=True)
class StepRoles:
    """Which steps of each workflow report, dispatch, handle and verify: the first step; the step before a
    `handling: true` step (the first step too); that step; steps with `on_failure`. A case's steps take their
    roles from the case's own workflow (case_record.workflow)."""
    steps: dict[str, dict[str, frozenset[str]]]  # role → workflow id → step ids

    @classmethod
    def of(cls, policy: Policy) -> "StepRoles":
        steps: dict[str, dict[str, frozenset[str]]] = {role: {} for role in ROLES}
        for workflow in policy.workflows:
            ids = [s.id for s in workflow.steps]
            handling = [i for i, s in enumerate(workflow.steps) if s.handling]
            members = {"report": {ids[0]}, "dispatch": {ids[i - 1] for i in handling if i > 0},
                       "handling": {ids[i] for i in handling}, "verify": {s.id for s in workflow.steps if s.on_failure}}
            for role, found in members.items():
                if found:
                    steps[role][workflow.id] = frozenset(found)
        return cls(steps)

    def has(self, role: str, workflow: str | None, step: str | None) -> bool:
        return step in self.steps[role].get(workflow or "", ())

    def sql(self, role: str, step, workflow=RECORD.workflow) -> ColumnElement:
        """`step` (a column) has `role` in the case's `workflow` (a column)."""
        return or_(false(), *(and_(workflow == w, step.in_(sorted(ids)))
                              for w, ids in sorted(self.steps[role].items())))


@dataclass(frozen=True)
class TriggerRule:
    """How one deduction trigger (the vocabulary is policy.models.TRIGGERS) counts: the case events of `action`,
    only from a step with `role` in the case's workflow and only those meeting `flag` (SQL over the event and its
    case) when given; charged to the grid holding the case at the event, or with `finder` to the grid that found
    it. `condition` (explanations) and `matches` (scores, over grouped rows) are both derived from these fields."""
    action: str
    role: str | None = None
    flag: Callable[[], ColumnElement] | None = None
    finder: bool = False

    @property
    def unit(self):
        return RECORD.finder_unit if self.finder else EVENT.unit

    def condition(self, roles: StepRoles) -> ColumnElement:
        return and_(EVENT.action == self.action, *([roles.sql(self.role, EVENT.from_status)] if self.role else []),
                    *([self.flag()] if self.flag else []))

    def matches(self, roles: StepRoles, action: str, workflow: str | None, step: str | None, flagged: bool) -> bool:
        """`condition` for a group of events of one action, workflow and step (`flagged`: they meet `flag`)."""
        return (action == self.action and (self.role is None or roles.has(self.role, workflow, step))
                and (self.flag is None or flagged))


@dataclass(frozen=True)
class LedgerRule:
    """A trigger counted from cadence obligations (store/cadences.py) missed in the score window, of any activity
    or of `activity`; charged to the obligation's grid (an object's grid for a per-object cadence)."""
    activity: str | None = None

    def matches(self, obligation) -> bool:
        return self.activity in (None, obligation.cadence.activity)


TRIGGER_RULES: dict[str, TriggerRule | LedgerRule] = {
    "late_report": TriggerRule("overdue", role="report", finder=True),
    "late_dispatch": TriggerRule("overdue", role="dispatch"),
    "late_handling": TriggerRule("overdue", role="handling"),
    "overdue": TriggerRule("overdue"),
    "escalated": TriggerRule("escalated"),
    "verification_failed": TriggerRule("reopened"),
    "returned": TriggerRule("returned"),
    "extended": TriggerRule("extended"),
    "found_by_upper": TriggerRule("created", flag=lambda: RECORD.found_level < EVENT.level),
    "major_overdue": TriggerRule("overdue", flag=lambda: RECORD.facts["major"].as_boolean().is_(True)),
    "cadence_missed": LedgerRule(),
    "summary_late": LedgerRule("summary"),
}


def case_rules(triggers) -> dict[str, TriggerRule]:
    return {t: rule for t in triggers if isinstance(rule := TRIGGER_RULES[t], TriggerRule)}


def ledger_rules(triggers) -> dict[str, LedgerRule]:
    return {t: rule for t in triggers if isinstance(rule := TRIGGER_RULES[t], LedgerRule)}


def _count(condition):
    return func.sum(case((condition, 1), else_=0))


def _seconds(start, stop, dialect: str):
    if dialect == "postgresql":
        return func.extract("epoch", stop - start)
    return (func.julianday(stop) - func.julianday(start)) * 86400.0


def rates(ind: dict[str, int]) -> dict[str, float | None]:
    def ratio(num: float, den: float) -> float | None:
        return round(num / den, 4) if den else None
    return {
        "closure_rate": ratio(ind.get("closed_due", 0), ind.get("due", 0)),
        "on_time_closure_rate": ratio(ind.get("closed_on_time", 0), ind.get("due", 0)),
        "on_time_report_rate": ratio(ind.get("report_on_time", 0), ind.get("report_ended", 0)),
        "on_time_dispatch_rate": ratio(ind.get("dispatch_on_time", 0), ind.get("dispatch_ended", 0)),
        "accurate_dispatch_rate": ratio(ind.get("handling_ended", 0) - ind.get("handling_returned", 0),
                                        ind.get("handling_ended", 0)),
        "disposal_rate": ratio(ind.get("handling_finished", 0), ind.get("handling_ended", 0)),
        "on_time_handling_rate": ratio(ind.get("handling_on_time", 0), ind.get("handling_ended", 0)),
        "rework_rate": ratio(ind.get("reopened", 0), ind.get("verified", 0) + ind.get("reopened", 0)),
    }


def _add(into: dict[str, int], more: dict[str, int]) -> None:
    for key, value in more.items():
        into[key] = into.get(key, 0) + value


class AssessmentService:
    def __init__(self, policies: PolicyStore):
        self.policies = policies
        self.engine: Engine = policies.engine

    def _jurisdiction(self, jid: str) -> Jurisdiction:
        return self.policies.router(jid).jur

    def period(self, jid: str, text: str | None) -> Period:
        """`text` parsed, or without one the current period of the policy's publication cadence."""
        return Period.parse(text) if text is not None else self.default_period(jid)

    def default_period(self, jid: str, now: datetime | None = None) -> Period:
        scoring = self._jurisdiction(jid).policy.scoring
        kind = (scoring.publish or scoring.period) if scoring else PeriodKind.quarter
        return Period.containing(kind if kind in MONTHS else PeriodKind.quarter, now or utcnow())

    # --- the set-based queries; a None key collects what no grid can be charged with (未落实到网格)
    def _event_counts(self, session, jid: str, roles: StepRoles, period: Period, window: Window,
                      triggers: list[str]) -> dict[str | None, dict[str, int]]:
        """Event indicators (period) and trigger counts (score window) per unit; triggers charged to the finder
        are grouped by the case's finder_unit in a second query.

        SQL groups the events by (unit, action, step, workflow) and by the flags of the wanted triggers (and
        whether inside the period); Python adds those group counts up with `TriggerRule.matches`."""
        longer = window.start < period.start
        rules = case_rules(triggers)
        out: dict[str | None, dict[str, int]] = {}
        for key, finder, indicators in ((EVENT.unit, False, True), (RECORD.finder_unit, True, False)):
            wanted = [t for t, rule in rules.items() if rule.finder == finder]
            if not wanted and not indicators:
                continue
            actions = {rules[t].action for t in wanted}
            if indicators:
                actions |= set(EVENT_INDICATORS) | set(FINISHING)
            flags = [case((flag(), 1), else_=0).label(f"f_{t}") for t in wanted if (flag := rules[t].flag)]
            if indicators and longer:
                flags.append(case((EVENT.at >= period.start, 1), else_=0).label("in_period"))
            query = (select(key.label("key"), EVENT.action, EVENT.from_status, RECORD.workflow, *flags,
                            func.count().label("n"))
                     .select_from(table_of(CaseEvent).join(table_of(CaseRecord), RECORD.id == EVENT.case_id))
                     .where(RECORD.jurisdiction == jid, EVENT.action.in_(sorted(actions)), EVENT.at >= window.start,
                            EVENT.at < period.end)
                     .group_by(key, EVENT.action, EVENT.from_status, RECORD.workflow, *flags))
            for row in session.execute(query):
                m = row._mapping
                counts = out.setdefault(row.key, {})
                if indicators:
                    for name in (*EVENT_INDICATORS.values(), "verified"):
                        counts.setdefault(name, 0)
                for t in wanted:
                    counts.setdefault(f"t:{t}", 0)
                if indicators and (not longer or m["in_period"]):
                    indicator = EVENT_INDICATORS.get(row.action)
                    if indicator:
                        counts[indicator] += row.n
                    if row.action in FINISHING and roles.has("verify", row.workflow, row.from_status):
                        counts["verified"] += row.n
                for t in wanted:
                    if rules[t].matches(roles, row.action, row.workflow, row.from_status, m.get(f"f_{t}", 0)):
                        counts[f"t:{t}"] += row.n
        return out

    def _missed_obligations(self, jid: str, window: Window, now: datetime | None = None) -> list:
        """The cadence obligations missed in the score window (periods ending in it), as of `now`."""
        from store.cadences import CadenceService  # noqa: PLC0415 - cadences builds on this module's Period
        days = (window.start.astimezone(CST).date(), window.end.astimezone(CST).date())
        return CadenceService(self.policies).missed(jid, *days, now)

    def _ledger_counts(self, jid: str, window: Window, triggers: list[str],
                       now: datetime | None = None) -> dict[str, dict[str, int]]:
        rules = ledger_rules(triggers)
        out: dict[str, dict[str, int]] = {}
        if not rules:
            return out
        for obligation in self._missed_obligations(jid, window, now):
            counts = out.setdefault(obligation.unit, dict.fromkeys((f"t:{t}" for t in rules), 0))
            for t, rule in rules.items():
                counts[f"t:{t}"] += rule.matches(obligation)
        return out

    def _clock_counts(self, session, jid: str, roles: StepRoles, period: Period,
                      by=CLOCK.unit, join_departments: bool = False) -> dict[str | None, dict[str, int]]:
        """Per role, the steps (clocks) started in the period, and those that ended in it: how each ended is the
        case event from its step at its stop time — a completion (`completed`/`closed`) finishes it, on time when
        at or before the clock's due time; a return, a failed check, an overdue mark or an escalation ends it
        unfinished."""
        ending = table_of(CaseEvent).alias("ending")  # at most one such event per clock
        source = (table_of(CaseClock).join(table_of(CaseRecord), RECORD.id == CLOCK.case_id)
                  .outerjoin(ending, and_(ending.c.case_id == CLOCK.case_id, ending.c.from_status == CLOCK.step,
                                          ending.c.at == CLOCK.stopped_at,
                                          ending.c.action.in_((*FINISHING, "returned")))))
        if join_departments:
            source = source.join(table_of(CaseDepartment), DEPARTMENT.case_id == CLOCK.case_id)
        started = and_(CLOCK.started_at >= period.start, CLOCK.started_at < period.end)
        stopped = and_(CLOCK.stopped_at >= period.start, CLOCK.stopped_at < period.end)
        columns = (by.label("key"), RECORD.workflow, CLOCK.step, CLOCK.due_at, CLOCK.stopped_at,
                   case((started, 1), else_=0).label("started"), case((stopped, 1), else_=0).label("ended"),
                   ending.c.action.label("ended_by"))
        # started in the period, or started before it and ended in it: two index range scans, not an OR
        clocks = union_all(*(select(*columns).select_from(source).where(RECORD.jurisdiction == jid, which)
                             for which in (started, and_(CLOCK.started_at < period.start, stopped)))).subquery()
        ended = clocks.c.ended == 1
        finished = and_(ended, clocks.c.ended_by.in_(FINISHING))
        sums = []
        for role in ("report", "dispatch", "handling"):
            steps = roles.sql(role, clocks.c.step, clocks.c.workflow)
            sums += [_count(and_(steps, clocks.c.started == 1)).label(f"{role}_started"),
                     _count(and_(steps, ended)).label(f"{role}_ended"),
                     _count(and_(steps, finished, clocks.c.stopped_at <= clocks.c.due_at)).label(f"{role}_on_time")]
        handling = roles.sql("handling", clocks.c.step, clocks.c.workflow)
        sums += [_count(and_(handling, finished)).label("handling_finished"),
                 _count(and_(handling, ended, clocks.c.ended_by == "returned")).label("handling_returned")]
        query = select(clocks.c.key, *sums).group_by(clocks.c.key)
        return {row.key: {k: int(v or 0) for k, v in row._mapping.items() if k != "key"}
                for row in session.execute(query)}

    def _due_counts(self, session, jid: str, roles: StepRoles, period: Period) -> dict[str | None, dict[str, int]]:
        """应结案: each case with a handling deadline (a handling step's clock due) in the period, counted once, at
        the unit of the last such clock (the grid holding the case at its last handling deadline of the period);
        closed before the period's end; and closed without any overdue event (按期)."""
        last = (select(CLOCK.case_id, CLOCK.unit, func.row_number().over(
                    partition_by=CLOCK.case_id, order_by=(CLOCK.due_at.desc(), CLOCK.id.desc())).label("n"))
                .select_from(table_of(CaseClock).join(table_of(CaseRecord), RECORD.id == CLOCK.case_id))
                .where(RECORD.jurisdiction == jid, roles.sql("handling", CLOCK.step), CLOCK.due_at >= period.start,
                       CLOCK.due_at < period.end)
                .subquery())
        late = table_of(CaseEvent).alias("late")
        closed = and_(RECORD.closed_at.is_not(None), RECORD.closed_at < period.end)
        on_time = and_(closed, not_(exists().where(late.c.case_id == last.c.case_id, late.c.action == "overdue")))
        query = (select(last.c.unit, func.count().label("due"), _count(closed).label("closed_due"),
                        _count(on_time).label("closed_on_time"))
                 .select_from(last.join(table_of(CaseRecord), RECORD.id == last.c.case_id))
                 .where(last.c.n == 1).group_by(last.c.unit))
        return {row.unit: {"due": row.due, "closed_due": int(row.closed_due or 0),
                           "closed_on_time": int(row.closed_on_time or 0)} for row in session.execute(query)}

    def _found_counts(self, session, jid: str, period: Period) -> dict[str | None, int]:
        query = (select(RECORD.finder_unit, func.count())
                 .where(RECORD.jurisdiction == jid, RECORD.created_at >= period.start, RECORD.created_at < period.end)
                 .group_by(RECORD.finder_unit))
        return {unit: n for unit, n in session.execute(query)}

    def _department_returns(self, session, jid: str, period: Period) -> dict[str, int]:
        query = (select(DEPARTMENT.department, func.count())
                 .select_from(table_of(CaseEvent).join(table_of(CaseRecord), RECORD.id == EVENT.case_id)
                              .join(table_of(CaseDepartment), DEPARTMENT.case_id == EVENT.case_id))
                 .where(RECORD.jurisdiction == jid, EVENT.action == "returned", EVENT.at >= period.start,
                        EVENT.at < period.end)
                 .group_by(DEPARTMENT.department))
        return {dept: n for dept, n in session.execute(query)}

    def _step_times(self, session, jid: str, period: Period, policy: Policy) -> list[dict]:
        """Hours of every step finished in the period (a `completed` or `closed` event from it), from the event
        that entered it, whether late or not; `late`: finished after the due time of the clock started on
        entering (extensions included). The p90 row is picked by a window function, not in Python."""
        # each event of the cases finishing a step in the period, with the time of the latest entering event
        # before it: the case is in one step at a time, so for a finishing event that entered its step
        event = table_of(CaseEvent).alias("history")
        finishing = (select(EVENT.case_id)
                     .select_from(table_of(CaseEvent).join(table_of(CaseRecord), RECORD.id == EVENT.case_id))
                     .where(RECORD.jurisdiction == jid, EVENT.action.in_(FINISHING), EVENT.at >= period.start,
                            EVENT.at < period.end))
        history = (select(event.c.case_id, event.c.action, event.c.from_status, event.c.at,
                          func.max(case((event.c.action.in_(ENTERING), event.c.at))).over(
                              partition_by=event.c.case_id, order_by=event.c.id, rows=(None, -1)).label("entered_at"))
                   .where(event.c.case_id.in_(finishing), event.c.at < period.end)
                   .subquery())
        finished = (select(RECORD.workflow, history.c.case_id, history.c.from_status.label("step"),
                           history.c.at.label("finished_at"), history.c.entered_at)
                    .select_from(history.join(table_of(CaseRecord), RECORD.id == history.c.case_id))
                    .where(RECORD.jurisdiction == jid, history.c.action.in_(FINISHING), history.c.at >= period.start)
                    .subquery())
        first_clock = and_(CLOCK.case_id == finished.c.case_id, CLOCK.step == finished.c.step,
                           CLOCK.started_at == finished.c.entered_at)
        durations = (select(finished.c.workflow, finished.c.step,
                            _seconds(finished.c.entered_at, finished.c.finished_at, self.engine.dialect.name)
                            .label("seconds"),
                            case((finished.c.finished_at > CLOCK.due_at, 1), else_=0).label("late"))
                     .select_from(finished.outerjoin(table_of(CaseClock), first_clock))
                     .where(finished.c.entered_at.is_not(None))
                     .subquery())  # each duration computed once, then ranked
        part = (durations.c.workflow, durations.c.step)
        timed = select(*part, durations.c.seconds,
                       func.row_number().over(partition_by=part, order_by=durations.c.seconds).label("rn"),
                       func.count().over(partition_by=part).label("n"),
                       func.sum(durations.c.late).over(partition_by=part).label("late"),
                       func.avg(durations.c.seconds).over(partition_by=part).label("mean")).subquery()
        query = select(timed.c.workflow, timed.c.step, timed.c.n, timed.c.late, timed.c.mean, timed.c.seconds).where(
            timed.c.rn == (timed.c.n * 9 + 9) // 10)  # ceil(0.9 n) in integer arithmetic
        order = [(w.id, s.id) for w in policy.workflows for s in w.steps]
        names = {(w.id, s.id): (w.name, s.name) for w in policy.workflows for s in w.steps}
        rows = sorted(session.execute(query), key=lambda r: (order.index((r.workflow, r.step))
                                                            if (r.workflow, r.step) in order else len(order), r.step))
        return [{"workflow": r.workflow, "workflow_name": names.get((r.workflow, r.step), (r.workflow, None))[0],
                 "step": r.step, "name": names.get((r.workflow, r.step), (None, r.step))[1], "count": r.n,
                 "late": int(r.late or 0), "avg_hours": round(float(r.mean) / 3600, 2),
                 "p90_hours": round(float(r.seconds) / 3600, 2)}
                for r in rows]

    # --- the assessment
    def assess(self, jid: str, period: Period, level: int | None = None, now: datetime | None = None) -> dict:
        router = self.policies.router(jid)
        jur, policy = router.jur, router.jur.policy
        levels = {lv.number: lv for lv in policy.levels}
        if level is not None and level not in levels:
            raise Invalid(f"层级 {level} 不存在; 本辖区层级为 {sorted(levels)}", field="level")
        scoring = policy.scoring
        window = score_window(scoring, period)
        roles = StepRoles.of(policy)
        deductions = list(scoring.deductions) if scoring else []
        vetoes = [v for v in (scoring.vetoes if scoring else []) if v.trigger]
        triggers = sorted({d.trigger for d in deductions} | {v.trigger for v in vetoes if v.trigger})
        with Session(reader(self.engine)) as session:
            events = self._event_counts(session, jid, roles, period, window, triggers)
            clocks = self._clock_counts(session, jid, roles, period)
            due = self._due_counts(session, jid, roles, period)
            found = self._found_counts(session, jid, period)
            departments = self._clock_counts(session, jid, roles, period, by=DEPARTMENT.department,
                                             join_departments=True)
            returns = self._department_returns(session, jid, period)
            steps = self._step_times(session, jid, period, policy)
            records = self._records(session, jid, period)
        for unit_id, missed in self._ledger_counts(jid, window, triggers, now).items():
            _add(events.setdefault(unit_id, {}), missed)

        def indicators(unit: str | None) -> tuple[dict[str, int], dict[str, int]]:
            counts = events.get(unit, {})
            ind = {k: 0 for k in INDICATOR_LABELS}
            _add(ind, {k: v for k, v in counts.items() if not k.startswith("t:")})
            _add(ind, clocks.get(unit, {}))
            _add(ind, due.get(unit, {}))
            ind["found"] = found.get(unit, 0)
            return ind, counts

        units = []
        for unit in jur.units.values():
            if level is not None and unit.level != level:
                continue
            ind, counts = indicators(unit.id)
            units.append({"unit": unit.id, "name": unit.name, "level": unit.level, "parent": unit.parent,
                          "indicators": ind, "rates": rates(ind), "records": records.get(unit.id, {}),
                          # a scheme scoped to one level (宁家坪镇: the villages) scores no other grid
                          **self._score(scoring if scoring is None or scoring.level in (None, unit.level) else None,
                                        counts)})
        _rank(units)
        ind, counts = indicators(None)
        score = self._score(scoring, counts)
        unassigned = ({"unit": None, "name": UNASSIGNED, "indicators": ind, "rates": rates(ind),
                       "deductions": score["deductions"], "deducted": score["deducted"]}
                      if any(ind.values()) or score["deducted"] else None)
        return {
            "jurisdiction": jid, "name": policy.name, "policy_version": router.compiled.version,
            "period": period.as_dict(), "score_window": window.as_dict(),
            "scheme": _scheme(scoring), "indicator_labels": INDICATOR_LABELS, "rate_labels": RATE_LABELS,
            "documents": {doc.seed: doc.title for doc in policy.sources},
            "units": units,
            "unassigned": unassigned,
            "levels": _levels(units, levels),
            "departments": _departments(policy, departments, returns),
            "steps": steps,
        }

    @staticmethod
    def _score(scoring: Scoring | None, counts: dict[str, int]) -> dict:
        if scoring is None:
            return {"score": None, "loss": 0, "deducted": 0, "deductions": [], "vetoed": []}
        items: list[dict[str, Any]] = []
        for item in scoring.deductions:
            n = counts.get(f"t:{item.trigger}", 0)
            if n:
                points = n * item.points if item.max_points is None else min(n * item.points, item.max_points)
                items.append({"id": item.id, "name": item.name, "trigger": item.trigger, "count": n,
                              "points_each": item.points, "points": points})
        vetoed = [v.id for v in scoring.vetoes if v.trigger and counts.get(f"t:{v.trigger}", 0) >= v.at_least]
        deducted = sum(i["points"] for i in items)
        loss = min(scoring.total, deducted)
        return {"score": 0.0 if vetoed else scoring.total - loss, "loss": loss, "deducted": deducted,
                "deductions": items, "vetoed": vetoed}

    def trend(self, jid: str, period: Period, count: int = 6, level: int | None = None) -> list[dict]:
        """按时处置率 and 按期结案率 of this and the preceding periods (one aggregate query pair each)."""
        router = self.policies.router(jid)
        roles = StepRoles.of(router.jur.policy)
        wanted: set[str | None] = {u.id for u in router.jur.units.values() if level is None or u.level == level}
        if level is None:
            wanted.add(None)  # every case of the jurisdiction, 未落实到网格 too
        periods = [period]
        while len(periods) < count:
            periods.insert(0, periods[0].previous())
        out = []
        with Session(reader(self.engine)) as session:
            for p in periods:
                ind: dict[str, int] = {}
                for per_unit in (self._clock_counts(session, jid, roles, p), self._due_counts(session, jid, roles, p)):
                    for unit, values in per_unit.items():
                        if unit in wanted:
                            _add(ind, values)
                out.append({"period": p.label, **rates(ind)})
        return out

    def explain(self, jid: str, period: Period, unit: str, deduction: str | None = None, limit: int = 500,
                now: datetime | None = None) -> dict:
        """The case events behind each deduction of one unit, with the rule that turned them into points."""
        jur = self._jurisdiction(jid)
        if unit not in jur.units:
            raise NotFound(f"网格单元 '{unit}' 不存在于辖区 {jid}", field="unit")
        scoring = jur.policy.scoring
        items = [d for d in (scoring.deductions if scoring else []) if deduction in (None, d.id)]
        if deduction is not None and not items:
            known = ", ".join(d.id for d in scoring.deductions) if scoring else "无"
            raise NotFound(f"扣分项 '{deduction}' 不存在; 本辖区扣分项: {known}", field="deduction")
        window = score_window(scoring, period)
        roles = StepRoles.of(jur.policy)
        missed = self._missed_obligations(jid, window, now) if ledger_rules(i.trigger for i in items) else []
        out = []
        with Session(reader(self.engine)) as session:
            for item in items:
                rule = TRIGGER_RULES[item.trigger]
                events, obligations = [], []
                if isinstance(rule, LedgerRule):
                    obligations = [{"cadence": ob.cadence.id, "name": ob.cadence.name, "object_id": ob.object_id,
                                    "period_start": ob.bucket[0].isoformat(),
                                    "period_end": (ob.bucket[1] - timedelta(days=1)).isoformat(),
                                    "required": ob.required, "recorded": ob.recorded}
                                   for ob in missed if ob.unit == unit and rule.matches(ob)][:limit]
                else:
                    query = (select(EVENT.id, EVENT.case_id, EVENT.at, EVENT.action, EVENT.from_status, EVENT.note,
                                    RECORD.problem_type)
                             .select_from(table_of(CaseEvent).join(table_of(CaseRecord), RECORD.id == EVENT.case_id))
                             .where(RECORD.jurisdiction == jid, rule.unit == unit, EVENT.at >= window.start,
                                    EVENT.at < period.end, rule.condition(roles))
                             .order_by(EVENT.at, EVENT.id).limit(limit))
                    events = [{"event": r.id, "case": r.case_id, "at": r.at.astimezone(CST).isoformat(),
                               "action": r.action, "step": r.from_status, "note": r.note,
                               "problem_type": r.problem_type}
                              for r in session.execute(query)]
                out.append({"id": item.id, "name": item.name, "trigger": item.trigger,
                            "trigger_label": TRIGGERS[item.trigger], "points_each": item.points,
                            "provenance": item.provenance, "events": events, "obligations": obligations})
        return {"jurisdiction": jid, "unit": unit, "name": jur.units[unit].name, "period": period.as_dict(),
                "score_window": window.as_dict(), "deductions": out}

    # --- self and upper assessments
    def _records(self, session, jid: str, period: Period) -> dict[str, dict]:
        rows = session.execute(select(AssessmentRecord).where(col(AssessmentRecord.jurisdiction) == jid,
                                                               col(AssessmentRecord.period) == period.label)).scalars()
        out: dict[str, dict] = {}
        for row in rows:
            out.setdefault(row.unit, {})[row.kind] = {"score": row.score, "note": row.note, "author": row.author,
                                                      "at": row.created_at.isoformat()}
        return out

    def record(self, jid: str, period: Period, unit: str, kind: str, score: float, author: str,
               note: str = "") -> AssessmentRecord:
        """Store a self or upper-grid assessment; a second one for the same unit, period and kind replaces it."""
        jur = self._jurisdiction(jid)
        scoring = jur.policy.scoring
        required = sorted({a.kind for a in scoring.assessments if a.kind in ("self", "upper")}) if scoring else []
        if scoring is None or kind not in required:
            raise Invalid(f"本辖区政策不要求 '{kind}' 考核记录; 可记录: {', '.join(required) or '无'}", field="kind")
        if unit not in jur.units:
            raise Invalid(f"网格单元 '{unit}' 不存在于辖区 {jid}", field="unit")
        if not 0 <= score <= scoring.total:
            raise Invalid(f"评分 {score} 超出范围, 须在 0–{scoring.total:g} 之间", field="score")
        with UnitOfWork(self.engine) as uow:
            session = uow.session
            row = session.execute(select(AssessmentRecord).where(
                col(AssessmentRecord.jurisdiction) == jid, col(AssessmentRecord.period) == period.label,
                col(AssessmentRecord.unit) == unit, col(AssessmentRecord.kind) == kind)).scalar_one_or_none()
            row = row or AssessmentRecord(jurisdiction=jid, period=period.label, unit=unit, kind=kind, score=score,
                                          author=author)
            row.score, row.note, row.author, row.created_at = score, note, author, utcnow()
            session.add(row)
        return row


def _rank(units: list[dict]) -> None:
    """Competition ranking (1, 2, 2, 4) within each level; ties broken for display by unit id."""
    units.sort(key=lambda u: (u["level"], -(u["score"] if u["score"] is not None else 0), u["unit"]))
    by_level: dict[int, list[dict]] = {}
    for u in units:
        by_level.setdefault(u["level"], []).append(u)
    for members in by_level.values():
        previous, rank = None, 0
        for position, u in enumerate(members, start=1):
            if u["score"] != previous:
                rank, previous = position, u["score"]
            u["rank"] = rank


def _levels(units: list[dict], levels: dict) -> list[dict]:
    out = []
    for number in sorted({u["level"] for u in units}):
        members = [u for u in units if u["level"] == number]
        ind: dict[str, int] = {}
        for u in members:
            _add(ind, u["indicators"])
        scores = [u["score"] for u in members if u["score"] is not None]
        out.append({"level": number, "name": levels[number].name, "units": len(members), "indicators": ind,
                    "rates": rates(ind), "average_score": round(sum(scores) / len(scores), 4) if scores else None})
    return out


def _departments(policy: Policy, clocks: dict[str | None, dict[str, int]], returns: dict[str, int]) -> list[dict]:
    out = []
    for dept in policy.departments:
        ind = dict(clocks.get(dept.id, {}))
        ind["returned"] = returns.get(dept.id, 0)
        if any(ind.values()):
            out.append({"id": dept.id, "name": dept.name, "indicators": ind, "rates": rates(ind)})
    return out


def _scheme(scoring: Scoring | None) -> dict | None:
    if scoring is None:
        return None
    return {"scheme": scoring.scheme, "scheme_label": words.label(scoring.scheme, "scheme"),
            "total": scoring.total, "period": scoring.period.value, "level": scoring.level,
            "publish": scoring.publish.value if scoring.publish else None, "provenance": scoring.provenance,
            "deductions": [{"id": d.id, "name": d.name, "points": d.points, "max_points": d.max_points,
                            "trigger": d.trigger, "trigger_label": TRIGGERS[d.trigger], "provenance": d.provenance}
                           for d in scoring.deductions],
            "vetoes": [{"id": v.id, "name": v.name, "trigger": v.trigger, "at_least": v.at_least,
                        "trigger_label": TRIGGERS.get(v.trigger or "", "人工评定"), "provenance": v.provenance}
                       for v in scoring.vetoes],
            "assessments": [{"kind": a.kind, "per": a.per.value, "provenance": a.provenance}
                            for a in scoring.assessments]}
