"""Cases: intake (idempotent), the workflow state machine, append-only events, and deadline clocks.

A case's status is the id of its current workflow step (or `closed`). Every transition appends a
CaseEvent; every step runs a CaseClock on the step's calendar, which the sweeper (store/sweeper.py)
turns into warnings, overdue marks and escalations.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import case as sql_case
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, delete, func, select

from engine.router import Case, Router, RoutingError
from policy.models import CalendarKind, Workflow, WorkflowStep
from store import outbox  # noqa: F401  (its session hook writes each event's outbox row in the same transaction)
from store.errors import Conflict, Invalid, NotFound
from store.tables import CaseClock, CaseDepartment, CaseEvent, CaseRecord, PolicyVersion, utcnow
from store.versions import PolicyStore

CLOSED = "closed"
RECEIVED = "received"
ACTION_LABELS = {"complete": "办结本步骤", "fail": "核查未通过(返工)", "return": "回退(非本部门职责)",
                 "extend": "延期", "reroute": "按新事实重新路由", "escalate": "超期升级", "close": "结案"}


@dataclass
class Transition:
    action: str
    actor: str
    note: str = ""
    facts: dict[str, Any] | None = None
    approved_by: str | None = None
    extend_by: timedelta | None = None


def as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class CaseService:
    def __init__(self, policies: PolicyStore):
        self.policies = policies
        self.engine = policies.engine

    # --- intake
    def create(self, jurisdiction: str, case: Case, actor: str, idempotency_key: str | None = None,
               now: datetime | None = None, description: str = "", report: dict[str, Any] | None = None) -> CaseRecord:
        """Route and store a case. The same Idempotency-Key returns the first case, never a duplicate."""
        if idempotency_key:
            existing = self._by_key(jurisdiction, idempotency_key)
            if existing is not None:
                return existing
        with Session(self.engine) as session:
            try:
                record = self.intake(session, jurisdiction, case, actor, now or utcnow(), idempotency_key, description,
                                     report)
                session.flush()
            except IntegrityError:  # a concurrent retry with the same key won the race
                session.rollback()
                existing = self._by_key(jurisdiction, idempotency_key)
                if existing is None:
                    raise
                return existing
            session.commit()
            session.refresh(record)
            return record

    def intake(self, session: Session, jurisdiction: str, case: Case, actor: str, now: datetime,
               idempotency_key: str | None = None, description: str = "",
               report: dict[str, Any] | None = None) -> CaseRecord:
        """Route and add a case inside the caller's transaction (the simulator batches many per commit).
        `report`: the intake columns (channel, reporter, lat, lon, coord_system, address, attachments, observed_at)."""
        router = self.policies.router(jurisdiction)
        try:
            decision = router.route(case.model_copy(update={"reported_at": now}))
        except RoutingError as err:
            raise Invalid(str(err), field=err.field, suggestions=err.suggestions) from None
        numbers = session.info.setdefault("active_numbers", {})  # one look-up per transaction and jurisdiction
        if jurisdiction not in numbers:
            numbers[jurisdiction] = session.exec(select(PolicyVersion.number).where(
                PolicyVersion.jurisdiction == jurisdiction, PolicyVersion.active)).one()
        number = numbers[jurisdiction]
        found = router.units.get(case.unit) if case.unit else None
        record = CaseRecord(
            jurisdiction=jurisdiction, policy_version=decision["policy_version"], version_number=number,
            idempotency_key=idempotency_key, problem_type=decision["problem_type"]["code"], unit=case.unit,
            facts=dict(case.facts), description=description, decision=decision, handler_level=decision["handler"]["level"],
            handler_unit=decision["handler"]["unit"], found_level=found.level if found else case.found_at_level, status=RECEIVED,
            reported_by=actor, created_at=now, updated_at=now, **(report or {}))
        workflow = self._workflow(router, decision)
        session.add(record)
        _departments(session, record)
        self._event(session, record, actor, "created", None, None, now, note="案件受理并路由",
                    data={"decision_first_action": decision["first_action"]})
        if workflow is None:
            record.status, record.closed_at = CLOSED, now
            self._event(session, record, actor, "closed", RECEIVED, CLOSED, now, note="现场纠正, 记录结案")
        else:
            self._enter(session, router, record, workflow.steps[0], actor, now, note="进入流程首个步骤")
        return record

    def _by_key(self, jurisdiction: str, key: str) -> CaseRecord | None:
        with Session(self.engine) as session:
            return session.exec(select(CaseRecord).where(CaseRecord.jurisdiction == jurisdiction,
                                                         CaseRecord.idempotency_key == key)).first()

    # --- reading
    def get(self, case_id: int) -> tuple[CaseRecord, list[CaseEvent], list[CaseClock]]:
        with Session(self.engine) as session:
            record = session.get(CaseRecord, case_id)
            if record is None:
                raise NotFound(f"案件 {case_id} 不存在", field="id")
            events = session.exec(select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id)).all()
            clocks = session.exec(select(CaseClock).where(CaseClock.case_id == case_id).order_by(CaseClock.id)).all()
            return record, list(events), list(clocks)

    def search(self, jurisdiction: str | None = None, unit: str | None = None, status: str | None = None,
               overdue: bool | None = None, limit: int = 50, offset: int = 0,
               level: int | None = None) -> tuple[int, list[CaseRecord]]:
        """`status` is a workflow step, `closed`, or `open` (any step but closed)."""
        query = select(CaseRecord)
        if jurisdiction:
            query = query.where(CaseRecord.jurisdiction == jurisdiction)
        if unit:
            query = query.where((CaseRecord.unit == unit) | (CaseRecord.handler_unit == unit))
        if status == "open":
            query = query.where(CaseRecord.status != CLOSED)
        elif status:
            query = query.where(CaseRecord.status == status)
        if level is not None:
            query = query.where(CaseRecord.handler_level == level)
        if overdue is not None:
            query = query.where(CaseRecord.overdue == overdue)
        with Session(self.engine) as session:
            total = session.exec(select(func.count()).select_from(query.subquery())).one()
            rows = session.exec(query.order_by(CaseRecord.id.desc()).offset(offset).limit(limit)).all()
            return total, list(rows)

    def open_counts(self) -> dict[str, dict[str, int]]:
        """Per jurisdiction: cases not closed, and how many of those are overdue."""
        query = (select(CaseRecord.jurisdiction, func.count(), func.sum(sql_case((CaseRecord.overdue, 1), else_=0)))
                 .where(CaseRecord.status != CLOSED).group_by(CaseRecord.jurisdiction))
        with Session(self.engine) as session:
            return {jid: {"open": total, "overdue": int(overdue or 0)} for jid, total, overdue in session.exec(query)}

    # --- the state machine
    def _workflow(self, router: Router, decision: dict) -> Workflow | None:
        wid = decision.get("workflow")
        return router.compiled.workflows_by_id[wid] if wid else None

    def _router_for(self, record: CaseRecord) -> Router:
        return self.policies.router(record.jurisdiction, record.policy_version)

    def allowed_actions(self, record: CaseRecord, router: Router | None = None) -> list[str]:
        if record.status == CLOSED:
            return []
        router = router or self._router_for(record)
        workflow = self._workflow(router, record.decision)
        steps = [s.id for s in workflow.steps]
        step = workflow.steps[steps.index(record.status)]
        allowed = ["complete", "return", "extend", "reroute"]
        if step.on_failure:
            allowed.append("fail")
        if record.decision["escalation_path"] and record.handler_level > 1:
            allowed.append("escalate")
        if record.status in (steps[0], steps[-1]):
            allowed.append("close")
        return allowed

    def transition(self, case_id: int, t: Transition, now: datetime | None = None) -> CaseRecord:
        with Session(self.engine) as session:
            record = session.get(CaseRecord, case_id)  # BEGIN IMMEDIATE / row lock: one writer at a time
            if record is None:
                raise NotFound(f"案件 {case_id} 不存在", field="id")
            if self.engine.dialect.name == "postgresql":
                session.exec(select(CaseRecord).where(CaseRecord.id == case_id).with_for_update())
                session.refresh(record)
            self.apply(session, record, t, now or utcnow())
            session.commit()
            session.refresh(record)
            return record

    def apply(self, session: Session, record: CaseRecord, t: Transition, now: datetime) -> None:
        """One transition inside the caller's transaction: checked against the allowed actions."""
        router = self._router_for(record)
        allowed = self.allowed_actions(record, router)
        if t.action not in allowed:
            raise Conflict(f"当前状态 '{record.status}' 不允许动作 '{t.action}'; 允许: {', '.join(allowed) or '无 (已结案)'}",
                           field="action", allowed=allowed)
        getattr(self, f"_do_{t.action}")(session, router, record, t, now)
        record.updated_at = now
        session.add(record)

    def _step(self, router: Router, record: CaseRecord, step_id: str) -> WorkflowStep:
        workflow = self._workflow(router, record.decision)
        return next(s for s in workflow.steps if s.id == step_id)

    def _do_complete(self, session, router, record, t: Transition, now) -> None:
        workflow = self._workflow(router, record.decision)
        ids = [s.id for s in workflow.steps]
        self._stop_clocks(session, record, now)
        position = ids.index(record.status)
        if position == len(ids) - 1:
            self._close(session, record, t, now)
        else:
            self._enter(session, router, record, workflow.steps[position + 1], t.actor, now, t.note, "completed")

    def _do_close(self, session, router, record, t: Transition, now) -> None:
        if not t.note.strip():
            raise Invalid("结案须说明理由 (如劝阻有效、已现场纠正)", field="note")
        self._stop_clocks(session, record, now)
        self._close(session, record, t, now)

    def _close(self, session, record, t: Transition, now) -> None:
        previous = record.status
        record.status, record.closed_at, record.due_at = CLOSED, now, None
        self._event(session, record, t.actor, "closed", previous, CLOSED, now, t.note)

    def _do_fail(self, session, router, record, t: Transition, now) -> None:
        """Verification failed: back to the step the policy names; a new clock cycle, old ones kept."""
        step = self._step(router, record, record.status)
        self._stop_clocks(session, record, now)
        record.cycle += 1
        self._enter(session, router, record, self._step(router, record, step.on_failure), t.actor, now,
                    t.note or "现场核查未解决, 再次上报", "reopened")

    def _do_return(self, session, router, record, t: Transition, now) -> None:
        """回退: the department is not responsible; the step is dispatched again with a fresh clock."""
        if not t.note.strip():
            raise Invalid("回退须说明理由", field="note")
        self._stop_clocks(session, record, now)
        self._event(session, record, t.actor, "returned", record.status, record.status, now, t.note)
        self._enter(session, router, record, self._step(router, record, record.status), "system", now,
                    "回退后重新派遣", "redispatched")

    def _do_extend(self, session, router, record, t: Transition, now) -> None:
        if not t.approved_by or t.extend_by is None or t.extend_by <= timedelta(0):
            raise Invalid("延期须有审批人 approved_by 和正的延期时长 extend_by (如 P2D)", field="approved_by")
        clock = self._open_clock(session, record)
        old_due = as_utc(clock.due_at)
        clock.due_at = router.calendar.add(old_due, t.extend_by, CalendarKind(clock.calendar))
        clock.warned_50_at = clock.warned_75_at = None
        clock.next_check_at = _threshold(as_utc(clock.started_at), clock.due_at, 0.5)
        record.due_at, record.overdue = clock.due_at, False
        session.add(clock)
        self._event(session, record, t.actor, "extended", record.status, record.status, now, t.note,
                    {"approved_by": t.approved_by, "from": old_due.isoformat(), "to": clock.due_at.isoformat()})

    def _do_reroute(self, session, router, record, t: Transition, now) -> None:
        if not t.facts:
            raise Invalid("重新路由须提供新的事实 facts", field="facts")
        facts = {**record.facts, **t.facts}
        try:
            decision = router.route(Case(problem_type=record.problem_type, unit=record.unit, facts=facts,
                                         reported_at=now))
        except (RoutingError, ValueError) as err:
            raise Invalid(str(err), field="facts") from None
        old = record.decision
        record.facts, record.decision = facts, decision
        record.handler_level, record.handler_unit = decision["handler"]["level"], decision["handler"]["unit"]
        self._event(session, record, t.actor, "rerouted", record.status, record.status, now, t.note,
                    {"facts": t.facts, "old_handler": old["handler"], "new_handler": decision["handler"],
                     "first_action": decision["first_action"]})
        self._stop_clocks(session, record, now)
        session.exec(delete(CaseDepartment).where(CaseDepartment.case_id == record.id))
        _departments(session, record)
        workflow = self._workflow(router, decision)
        if workflow is None:
            self._close(session, record, t, now)
        else:
            ids = [s.id for s in workflow.steps]
            step = workflow.steps[ids.index(record.status)] if record.status in ids else workflow.steps[0]
            self._enter(session, router, record, step, "system", now, "按新决定重新计时", "redispatched")

    def _do_escalate(self, session, router, record, t: Transition, now) -> None:
        escalate(session, router, record, t.actor, t.note or "手动升级", now)

    # --- clocks and events
    def _enter(self, session, router: Router, record: CaseRecord, step: WorkflowStep, actor: str, now: datetime,
               note: str = "", action: str = "entered") -> None:
        previous = record.status
        record.status = step.id
        due = start_clock(session, router, record, step, now)
        record.overdue = False
        self._event(session, record, actor, action, previous, step.id, now, note,
                    {"due": due.isoformat(), "cycle": record.cycle, "step_name": step.name})

    @staticmethod
    def _open_clock(session: Session, record: CaseRecord) -> CaseClock | None:
        return next((c for c in reversed(open_clocks(session, record)) if c.stopped_at is None), None)

    @staticmethod
    def _stop_clocks(session: Session, record: CaseRecord, now: datetime) -> None:
        for clock in open_clocks(session, record):
            if clock.stopped_at is None:
                clock.stopped_at = now
                session.add(clock)

    @staticmethod
    def _event(session, record, actor, action, from_status, to_status, at, note="", data=None) -> None:
        session.add(CaseEvent(record=record, at=at, actor=actor, action=action, unit=record.handler_unit,
                              level=record.handler_level,
                              from_status=from_status, to_status=to_status, note=note, data=data or {}))


def open_clocks(session: Session, record: CaseRecord) -> list[CaseClock]:
    """The case's running clocks, kept on the session once read, so a batch of transitions (the simulator)
    needs no query, and no flush, per step."""
    cache = session.info.setdefault("open_clocks", {})
    key = id(record)
    if key not in cache:
        cache[key] = [] if record.id is None else list(session.exec(select(CaseClock).where(
            CaseClock.case_id == record.id, CaseClock.stopped_at.is_(None)).order_by(CaseClock.id)).all())
    cache[key] = [c for c in cache[key] if c.stopped_at is None]
    return cache[key]


def add_clock(session: Session, record: CaseRecord, clock: CaseClock) -> None:
    open_clocks(session, record).append(clock)
    session.add(clock)


def start_clock(session: Session, router: Router, record: CaseRecord, step: WorkflowStep, now: datetime) -> datetime:
    """A fresh deadline clock for `step`, held by the case's current grid; returns (and records) the due time."""
    due = router.calendar.add(now, step.deadline.duration, step.deadline.calendar)
    record.due_at = due
    add_clock(session, record, CaseClock(record=record, cycle=record.cycle, step=step.id, unit=record.handler_unit,
                                         calendar=step.deadline.calendar.value, started_at=now, due_at=due,
                                         next_check_at=_threshold(now, due, 0.5)))
    return due


def _departments(session: Session, record: CaseRecord) -> None:
    for dept in {d["id"] for d in record.decision["handler"]["departments"]}:
        session.add(CaseDepartment(record=record, department=dept))


def _threshold(start: datetime, due: datetime, fraction: float) -> datetime:
    return as_utc(start) + (as_utc(due) - as_utc(start)) * fraction


def escalate(session: Session, router: Router, record: CaseRecord, actor: str, note: str, now: datetime) -> bool:
    """Move the case to the next grid of its escalation path; False at level 1 (nothing above)."""
    path = record.decision.get("escalation_path") or []
    nxt = next((hop for hop in path if hop["level"] < record.handler_level), None)
    if nxt is None:
        return False
    old = {"level": record.handler_level, "unit": record.handler_unit}
    record.handler_level, record.handler_unit = nxt["level"], nxt["unit"]
    session.add(CaseEvent(record=record, at=now, actor=actor, action="escalated", unit=old["unit"], level=old["level"],
                          from_status=record.status,
                          to_status=record.status, note=note,
                          data={"from": old, "to": {"level": nxt["level"], "unit": nxt["unit"]}, "rule": nxt["rule"]}))
    return True
