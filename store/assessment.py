"""Assessment (综合评价 / 绩效考核): case indicators and the policy's score per grid unit, level and department.

Everything is computed with set-based SQL (GROUP BY over case_event, case_clock, case_record; the same
SQLAlchemy Core on SQLite and PostgreSQL); Python only combines the per-unit aggregate rows. Every score
is explainable: it lists its deductions, and `explain` returns the case events behind each deduction.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, case, func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from policy.loader import Jurisdiction
from policy.models import PERIOD_LABELS, TRIGGERS, Policy, Scoring
from store.errors import Invalid, NotFound
from store.tables import CST, AssessmentRecord, CaseClock, CaseDepartment, CaseEvent, CaseRecord, utcnow
from store.versions import PolicyStore

MONTHS = {"month": 1, "quarter": 3, "half_year": 6, "year": 12}
_PERIOD = re.compile(r"^(\d{4})(?:-(?:(Q)([1-4])|(H)([12])|(\d{2})))?$")
PERIOD_HELP = "可用格式: 2026-Q3 (季度), 2026-07 (月), 2026-H1 (半年), 2026 (年)"

E, R, C, D = CaseEvent.__table__.c, CaseRecord.__table__.c, CaseClock.__table__.c, CaseDepartment.__table__.c

INDICATOR_LABELS = {
    "found": "发现问题数", "received": "受理案件数", "report_started": "上报步骤数", "report_on_time": "按时上报数",
    "dispatch_started": "派遣步骤数", "dispatch_on_time": "按时派遣数", "handling_started": "处置步骤数",
    "handling_finished": "处置完成数", "handling_on_time": "按时处置数", "verified": "核查通过数",
    "reopened": "返工数", "overdue": "超期数", "escalated": "升级数", "returned": "回退数", "extended": "延期数",
    "closed": "结案数", "due": "应结案数", "closed_due": "应结案中已结案数", "closed_on_time": "按期结案数",
}
RATE_LABELS = {
    "closure_rate": "结案率", "on_time_closure_rate": "按期结案率", "on_time_report_rate": "按时立案率",
    "on_time_dispatch_rate": "按时派遣率", "accurate_dispatch_rate": "准确派遣率", "disposal_rate": "处置率",
    "on_time_handling_rate": "按时处置率", "rework_rate": "返工率",
}


@dataclass(frozen=True)
class Period:
    kind: str  # month | quarter | half_year | year
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
            return cls("quarter", year, int(match.group(3)))
        if match.group(4):
            return cls("half_year", year, int(match.group(5)))
        if match.group(6):
            month = int(match.group(6))
            if not 1 <= month <= 12:
                raise Invalid(f"考核期月份 {match.group(6)} 不存在, 须为 01–12; {PERIOD_HELP}", field="period")
            return cls("month", year, month)
        return cls("year", year, 1)

    @classmethod
    def containing(cls, kind: str, moment: datetime) -> "Period":
        local = moment.astimezone(CST)
        return cls(kind, local.year, (local.month - 1) // MONTHS[kind] + 1)

    @property
    def label(self) -> str:
        return {"month": f"{self.year}-{self.index:02d}", "quarter": f"{self.year}-Q{self.index}",
                "half_year": f"{self.year}-H{self.index}", "year": f"{self.year}"}[self.kind]

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
        return {"label": self.label, "kind": self.kind, "kind_label": PERIOD_LABELS[self.kind],
                "start": self.start.isoformat(), "end": self.end.isoformat()}


def score_window(scoring: Scoring | None, period: Period) -> Period | None:
    """Deductions of a yearly (or half-yearly) scheme published per quarter count from the scheme period's
    start: 宁家坪镇's 12 points are for the year, so its Q3 figure is the year to date."""
    if scoring is None or scoring.period.value not in MONTHS or MONTHS[scoring.period.value] <= MONTHS[period.kind]:
        return None
    return Period.containing(scoring.period.value, period.start)


@dataclass(frozen=True)
class StepRoles:
    """Which workflow steps are reporting, dispatching, handling and verifying, from the policy."""
    report: frozenset[str]
    dispatch: frozenset[str]
    handling: frozenset[str]
    verify: frozenset[str]

    @classmethod
    def of(cls, policy: Policy) -> "StepRoles":
        report, dispatch, handling, verify = set(), set(), set(), set()
        for workflow in policy.workflows:
            steps = workflow.steps
            report.add(steps[0].id)
            for i, step in enumerate(steps):
                if step.handling:
                    handling.add(step.id)
                    if i > 1:  # the step that hands the case to the handler
                        dispatch.add(steps[i - 1].id)
                if step.on_failure:
                    verify.add(step.id)
        return cls(frozenset(report), frozenset(dispatch), frozenset(handling), frozenset(verify))


def trigger_condition(trigger: str, roles: StepRoles):
    """The case events a deduction trigger counts (the vocabulary is policy.models.TRIGGERS)."""
    def overdue_in(steps):
        return and_(E.action == "overdue", E.from_status.in_(sorted(steps)))
    conditions = {
        "late_report": lambda: overdue_in(roles.report),
        "late_dispatch": lambda: overdue_in(roles.dispatch),
        "late_handling": lambda: overdue_in(roles.handling),
        "overdue": lambda: E.action == "overdue",
        "escalated": lambda: E.action == "escalated",
        "verification_failed": lambda: E.action == "reopened",
        "returned": lambda: E.action == "returned",
        "extended": lambda: E.action == "extended",
        "found_by_upper": lambda: and_(E.action == "created", R.found_level < E.level),
        "major_overdue": lambda: and_(E.action == "overdue", R.facts["major"].as_boolean().is_(True)),
    }
    return conditions[trigger]()


# The event actions each trigger counts (a superset filter for the WHERE clause), and the indicators that count
# one action each (plus "verified": a completed or closed verification step).
TRIGGER_ACTIONS = {
    "late_report": {"overdue"}, "late_dispatch": {"overdue"}, "late_handling": {"overdue"}, "overdue": {"overdue"},
    "escalated": {"escalated"}, "verification_failed": {"reopened"}, "returned": {"returned"},
    "extended": {"extended"}, "found_by_upper": {"created"}, "major_overdue": {"overdue"},
}
INDICATOR_ACTIONS = {
    "created": "received", "closed": "closed", "reopened": "reopened", "overdue": "overdue",
    "escalated": "escalated", "returned": "returned", "extended": "extended",
}


def event_matches(trigger: str, roles: StepRoles, action: str, step: str | None, facts: dict[str, bool]) -> bool:
    """`trigger_condition` for one group of events of the same action and step (facts: upper, major)."""
    if trigger in ("late_report", "late_dispatch", "late_handling"):
        steps = {"late_report": roles.report, "late_dispatch": roles.dispatch, "late_handling": roles.handling}
        return action == "overdue" and step in steps[trigger]
    if trigger == "found_by_upper":
        return action == "created" and facts["upper"]
    if trigger == "major_overdue":
        return action == "overdue" and facts["major"]
    return action == {"overdue": "overdue", "escalated": "escalated", "verification_failed": "reopened",
                      "returned": "returned", "extended": "extended"}[trigger]


# Who answers for a trigger: the grid that found and had to report the case, or (the rest) the grid handling it.
FINDER_TRIGGERS = frozenset({"late_report"})


def charged_unit(trigger: str):
    return R.unit if trigger in FINDER_TRIGGERS else E.unit


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
        "on_time_report_rate": ratio(ind.get("report_on_time", 0), ind.get("report_started", 0)),
        "on_time_dispatch_rate": ratio(ind.get("dispatch_on_time", 0), ind.get("dispatch_started", 0)),
        "accurate_dispatch_rate": ratio(max(ind.get("handling_started", 0) - ind.get("returned", 0), 0),
                                        ind.get("handling_started", 0)),
        "disposal_rate": ratio(ind.get("handling_finished", 0), ind.get("handling_started", 0)),
        "on_time_handling_rate": ratio(ind.get("handling_on_time", 0), ind.get("handling_started", 0)),
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
        kind = (scoring.publish or scoring.period).value if scoring else "quarter"
        return Period.containing(kind if kind in MONTHS else "quarter", now or utcnow())

    # --- the set-based queries
    def _event_counts(self, session, jid: str, roles: StepRoles, period: Period, window: Period,
                      triggers: list[str]) -> dict[str, dict[str, int]]:
        """Event indicators (period) and trigger counts (score window) per unit; a trigger charged to the
        finder is grouped by the case's unit in a second query.

        SQL groups the events by (unit, action, step) and by the few per-row facts a trigger needs (found by
        an upper grid, major case, inside the period); Python then adds those group counts into indicators
        and triggers with `event_matches`, the row-level twin of `trigger_condition`."""
        longer = window.start < period.start
        handler = [t for t in triggers if t not in FINDER_TRIGGERS]
        finder = [t for t in triggers if t in FINDER_TRIGGERS]
        out: dict[str, dict[str, int]] = {}
        for key, wanted, indicators in ((E.unit, handler, True), (R.unit, finder, False)):
            if not wanted and not indicators:
                continue
            actions = set(INDICATOR_ACTIONS) | {"completed"} if indicators else set()
            for t in wanted:
                actions |= TRIGGER_ACTIONS[t]
            flags = []
            if "found_by_upper" in wanted:
                flags.append(case((and_(E.action == "created", R.found_level < E.level), 1), else_=0).label("f_upper"))
            if "major_overdue" in wanted:
                flags.append(case((and_(E.action == "overdue", R.facts["major"].as_boolean().is_(True)), 1),
                                  else_=0).label("f_major"))
            if indicators and longer:
                flags.append(case((E.at >= period.start, 1), else_=0).label("f_in_period"))
            query = (select(key.label("key"), E.action, E.from_status, *flags, func.count().label("n"))
                     .select_from(CaseEvent.__table__.join(CaseRecord.__table__, R.id == E.case_id))
                     .where(R.jurisdiction == jid, E.action.in_(sorted(actions)), E.at >= window.start,
                            E.at < period.end, key.is_not(None))
                     .group_by(key, E.action, E.from_status, *flags))
            for row in session.execute(query):
                m = row._mapping
                counts = out.setdefault(row.key, {})
                if indicators:
                    for name in (*INDICATOR_ACTIONS.values(), "verified"):
                        counts.setdefault(name, 0)
                for t in wanted:
                    counts.setdefault(f"t:{t}", 0)
                facts = {"upper": bool(m.get("f_upper", 0)), "major": bool(m.get("f_major", 0))}
                if indicators and (not longer or m["f_in_period"]):
                    name = INDICATOR_ACTIONS.get(row.action)
                    if name:
                        counts[name] += row.n
                    if row.action in ("completed", "closed") and row.from_status in roles.verify:
                        counts["verified"] += row.n
                for t in wanted:
                    if event_matches(t, roles, row.action, row.from_status, facts):
                        counts[f"t:{t}"] += row.n
        return out

    def _clock_counts(self, session, jid: str, roles: StepRoles, period: Period,
                      by=C.unit, join_departments: bool = False) -> dict[str, dict[str, int]]:
        finished = and_(C.stopped_at.is_not(None), C.overdue_at.is_(None))
        on_time = and_(finished, C.stopped_at <= C.due_at)
        sums = []
        for role in ("report", "dispatch", "handling"):
            steps = C.step.in_(sorted(getattr(roles, role)))
            sums += [_count(steps).label(f"{role}_started"), _count(and_(steps, on_time)).label(f"{role}_on_time")]
        sums.append(_count(and_(C.step.in_(sorted(roles.handling)), finished)).label("handling_finished"))
        source = CaseClock.__table__.join(CaseRecord.__table__, R.id == C.case_id)
        if join_departments:
            source = source.join(CaseDepartment.__table__, D.case_id == C.case_id)
        query = (select(by.label("key"), *sums).select_from(source)
                 .where(R.jurisdiction == jid, C.started_at >= period.start, C.started_at < period.end)
                 .group_by(by))
        return {row.key: {k: int(v or 0) for k, v in row._mapping.items() if k != "key"}
                for row in session.execute(query) if row.key is not None}

    def _due_counts(self, session, jid: str, roles: StepRoles, period: Period) -> dict[str, dict[str, int]]:
        """应结案: cases whose handling deadline fell in the period, per grid that held them at that deadline."""
        late = (select(E.case_id).where(E.action == "overdue", E.at < period.end).scalar_subquery())
        closed = and_(R.closed_at.is_not(None), R.closed_at < period.end)
        query = (select(C.unit, func.count(func.distinct(C.case_id)).label("due"),
                        func.count(func.distinct(case((closed, C.case_id)))).label("closed_due"),
                        func.count(func.distinct(case((and_(closed, C.case_id.not_in(late)), C.case_id))))
                        .label("closed_on_time"))
                 .select_from(CaseClock.__table__.join(CaseRecord.__table__, R.id == C.case_id))
                 .where(R.jurisdiction == jid, C.step.in_(sorted(roles.handling)), C.due_at >= period.start,
                        C.due_at < period.end, C.unit.is_not(None))
                 .group_by(C.unit))
        return {row.unit: {"due": row.due, "closed_due": row.closed_due, "closed_on_time": row.closed_on_time}
                for row in session.execute(query)}

    def _found_counts(self, session, jid: str, period: Period) -> dict[str, int]:
        query = (select(R.unit, func.count()).where(R.jurisdiction == jid, R.created_at >= period.start,
                                                     R.created_at < period.end, R.unit.is_not(None))
                 .group_by(R.unit))
        return {unit: n for unit, n in session.execute(query)}

    def _department_returns(self, session, jid: str, period: Period) -> dict[str, int]:
        query = (select(D.department, func.count())
                 .select_from(CaseEvent.__table__.join(CaseRecord.__table__, R.id == E.case_id)
                              .join(CaseDepartment.__table__, D.case_id == E.case_id))
                 .where(R.jurisdiction == jid, E.action == "returned", E.at >= period.start, E.at < period.end)
                 .group_by(D.department))
        return {dept: n for dept, n in session.execute(query)}

    def _step_times(self, session, jid: str, period: Period, policy: Policy) -> list[dict]:
        """Average and p90 hours of finished steps: the p90 row is picked by a window function, not in Python."""
        durations = (select(C.step, _seconds(C.started_at, C.stopped_at, self.engine.dialect.name).label("seconds"))
                     .select_from(CaseClock.__table__.join(CaseRecord.__table__, R.id == C.case_id))
                     .where(R.jurisdiction == jid, C.started_at >= period.start, C.started_at < period.end,
                            C.stopped_at.is_not(None), C.overdue_at.is_(None))
                     .subquery())  # each duration computed once, then ranked
        timed = select(durations.c.step, durations.c.seconds,
                       func.row_number().over(partition_by=durations.c.step, order_by=durations.c.seconds).label("rn"),
                       func.count().over(partition_by=durations.c.step).label("n"),
                       func.avg(durations.c.seconds).over(partition_by=durations.c.step).label("mean")).subquery()
        query = select(timed.c.step, timed.c.n, timed.c.mean, timed.c.seconds).where(
            timed.c.rn == (timed.c.n * 9 + 9) // 10)  # ceil(0.9 n) in integer arithmetic
        names = {s.id: s.name for w in policy.workflows for s in w.steps}
        order = list(names)
        rows = sorted(session.execute(query), key=lambda r: order.index(r.step) if r.step in order else len(order))
        return [{"step": r.step, "name": names.get(r.step, r.step), "count": r.n,
                 "avg_hours": round(float(r.mean) / 3600, 2), "p90_hours": round(float(r.seconds) / 3600, 2)}
                for r in rows]

    # --- the assessment
    def assess(self, jid: str, period: Period, level: int | None = None) -> dict:
        router = self.policies.router(jid)
        jur, policy = router.jur, router.jur.policy
        levels = {lv.number: lv for lv in policy.levels}
        if level is not None and level not in levels:
            raise Invalid(f"层级 {level} 不存在; 本辖区层级为 {sorted(levels)}", field="level")
        scoring = policy.scoring
        window = score_window(scoring, period) or period
        roles = StepRoles.of(policy)
        deductions = list(scoring.deductions) if scoring else []
        vetoes = [v for v in (scoring.vetoes if scoring else []) if v.trigger]
        triggers = sorted({d.trigger for d in deductions} | {v.trigger for v in vetoes})
        with Session(self.engine) as session:
            events = self._event_counts(session, jid, roles, period, window, triggers)
            clocks = self._clock_counts(session, jid, roles, period)
            due = self._due_counts(session, jid, roles, period)
            found = self._found_counts(session, jid, period)
            departments = self._clock_counts(session, jid, roles, period, by=D.department, join_departments=True)
            returns = self._department_returns(session, jid, period)
            steps = self._step_times(session, jid, period, policy)
            records = self._records(session, jid, period)
        units = []
        for unit in jur.units.values():
            if level is not None and unit.level != level:
                continue
            counts = events.get(unit.id, {})
            ind = {k: 0 for k in INDICATOR_LABELS}
            _add(ind, {k: v for k, v in counts.items() if not k.startswith("t:")})
            _add(ind, clocks.get(unit.id, {}))
            _add(ind, due.get(unit.id, {}))
            ind["found"] = found.get(unit.id, 0)
            units.append({"unit": unit.id, "name": unit.name, "level": unit.level, "parent": unit.parent,
                          "indicators": ind, "rates": rates(ind), "records": records.get(unit.id, {}),
                          **self._score(scoring, counts)})
        _rank(units)
        return {
            "jurisdiction": jid, "name": policy.name, "policy_version": router.compiled.version,
            "period": period.as_dict(), "score_window": window.as_dict(),
            "scheme": _scheme(scoring), "indicator_labels": INDICATOR_LABELS, "rate_labels": RATE_LABELS,
            "units": units,
            "levels": _levels(units, levels),
            "departments": _departments(policy, departments, returns),
            "steps": steps,
        }

    @staticmethod
    def _score(scoring: Scoring | None, counts: dict[str, int]) -> dict:
        if scoring is None:
            return {"score": None, "loss": 0, "deducted": 0, "deductions": [], "vetoed": []}
        items = []
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
        wanted = {u.id for u in router.jur.units.values() if level is None or u.level == level}
        periods = [period]
        while len(periods) < count:
            periods.insert(0, periods[0].previous())
        out = []
        with Session(self.engine) as session:
            for p in periods:
                ind: dict[str, int] = {}
                for per_unit in (self._clock_counts(session, jid, roles, p), self._due_counts(session, jid, roles, p)):
                    for unit, values in per_unit.items():
                        if unit in wanted:
                            _add(ind, values)
                out.append({"period": p.label, **rates(ind)})
        return out

    def explain(self, jid: str, period: Period, unit: str, deduction: str | None = None, limit: int = 500) -> dict:
        """The case events behind each deduction of one unit, with the rule that turned them into points."""
        jur = self._jurisdiction(jid)
        if unit not in jur.units:
            raise NotFound(f"网格单元 '{unit}' 不存在于辖区 {jid}", field="unit")
        scoring = jur.policy.scoring
        items = [d for d in (scoring.deductions if scoring else []) if deduction in (None, d.id)]
        if deduction is not None and not items:
            known = ", ".join(d.id for d in scoring.deductions) if scoring else "无"
            raise NotFound(f"扣分项 '{deduction}' 不存在; 本辖区扣分项: {known}", field="deduction")
        window = score_window(scoring, period) or period
        roles = StepRoles.of(jur.policy)
        out = []
        with Session(self.engine) as session:
            for item in items:
                query = (select(E.id, E.case_id, E.at, E.action, E.from_status, E.note, R.problem_type)
                         .select_from(CaseEvent.__table__.join(CaseRecord.__table__, R.id == E.case_id))
                         .where(R.jurisdiction == jid, charged_unit(item.trigger) == unit, E.at >= window.start,
                                E.at < period.end, trigger_condition(item.trigger, roles))
                         .order_by(E.at, E.id).limit(limit))
                events = [{"event": r.id, "case": r.case_id, "at": r.at.astimezone(CST).isoformat(), "action": r.action,
                           "step": r.from_status, "note": r.note, "problem_type": r.problem_type}
                          for r in session.execute(query)]
                out.append({"id": item.id, "name": item.name, "trigger": item.trigger,
                            "trigger_label": TRIGGERS[item.trigger], "points_each": item.points,
                            "provenance": item.provenance, "events": events})
        return {"jurisdiction": jid, "unit": unit, "name": jur.units[unit].name, "period": period.as_dict(),
                "score_window": window.as_dict(), "deductions": out}

    # --- self and upper assessments
    def _records(self, session, jid: str, period: Period) -> dict[str, dict]:
        rows = session.execute(select(AssessmentRecord).where(AssessmentRecord.jurisdiction == jid,
                                                               AssessmentRecord.period == period.label)).scalars()
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
        if kind not in required:
            raise Invalid(f"本辖区政策不要求 '{kind}' 考核记录; 可记录: {', '.join(required) or '无'}", field="kind")
        if unit not in jur.units:
            raise Invalid(f"网格单元 '{unit}' 不存在于辖区 {jid}", field="unit")
        if not 0 <= score <= scoring.total:
            raise Invalid(f"评分 {score} 超出范围, 须在 0–{scoring.total:g} 之间", field="score")
        with Session(self.engine) as session:
            row = session.execute(select(AssessmentRecord).where(
                AssessmentRecord.jurisdiction == jid, AssessmentRecord.period == period.label,
                AssessmentRecord.unit == unit, AssessmentRecord.kind == kind)).scalar_one_or_none()
            row = row or AssessmentRecord(jurisdiction=jid, period=period.label, unit=unit, kind=kind, score=score,
                                          author=author)
            row.score, row.note, row.author, row.created_at = score, note, author, utcnow()
            session.add(row)
            session.commit()
            session.refresh(row)
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


def _departments(policy: Policy, clocks: dict[str, dict[str, int]], returns: dict[str, int]) -> list[dict]:
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
    return {"scheme": scoring.scheme, "scheme_label": "倒扣分制" if scoring.scheme == "deduction" else "百分制",
            "total": scoring.total, "period": scoring.period.value,
            "publish": scoring.publish.value if scoring.publish else None, "provenance": scoring.provenance,
            "deductions": [{"id": d.id, "name": d.name, "points": d.points, "max_points": d.max_points,
                            "trigger": d.trigger, "trigger_label": TRIGGERS[d.trigger], "provenance": d.provenance}
                           for d in scoring.deductions],
            "vetoes": [{"id": v.id, "name": v.name, "trigger": v.trigger, "at_least": v.at_least,
                        "trigger_label": TRIGGERS.get(v.trigger or "", "人工评定"), "provenance": v.provenance}
                       for v in scoring.vetoes],
            "assessments": [{"kind": a.kind, "per": a.per.value, "provenance": a.provenance}
                            for a in scoring.assessments]}
