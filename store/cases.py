"""Cases: intake (idempotent), the workflow state machine, append-only events, and deadline clocks.

A case's status is the id of its current workflow step (or `closed`). Every transition appends a
CaseEvent; every step runs a CaseClock on the step's calendar, which the sweeper (store/sweeper.py)
turns into warnings, overdue marks and escalations.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case as sql_case
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload
from sqlmodel import Session, col, delete, func, select

from engine.decision import Decision
from engine.router import Case, PolicyRouter, RoutingError
from policy.models import CalendarKind, Workflow, WorkflowStep
from store.bulk import flush_new, new_row, plain_rows
from store.db import GroupCommit, UnitOfWork, transaction
from store.outbox import WROTE, number_in  # and its session hook: each event's outbox row, in the same transaction
from store.errors import Conflict, Invalid, NotFound
from store.tables import CaseClock, CaseDepartment, CaseEvent, CaseRecord, as_utc, row_id, utcnow
from store.versions import PolicyStore
from store.webhooks import fan_out

CLOSED = "closed"
RECEIVED = "received"
TRANSITION_LABELS = {"complete": "办结本步骤", "fail": "核查未通过(返工)", "return": "回退(非本部门职责)",
                 "extend": "延期", "reroute": "按新事实重新路由", "escalate": "超期升级", "close": "结案"}


@dataclass
class Transition:
    action: str
    actor: str
    note: str = ""
    facts: dict[str, Any] | None = None
    approved_by: str | None = None
    extend_by: timedelta | None = None


def _replayed(first: CaseRecord, request_hash: str | None) -> CaseRecord:
    """The case a reused Idempotency-Key created, if the request is the same (IETF Idempotency-Key draft)."""
    if request_hash and first.request_hash and first.request_hash != request_hash:
        raise Invalid("Idempotency-Key 已用于不同的请求 — Idempotency-Key was used for a different request",
                      field="Idempotency-Key")
    return first


@dataclass(frozen=True)
class CaseNames:
    problem_type: str
    steps: dict[str, str]


class CaseService:
    def __init__(self, policies: PolicyStore, clock: Callable[[], datetime] = utcnow):
        self.policies = policies
        self.engine = policies.engine
        self.clock = clock  # "now" when a caller gives no moment (tests and the simulator give their own)
        # concurrent intakes share a transaction, and its inserts: a statement per table, of plain rows (no ORM)
        self.intakes = GroupCommit(self.engine, rows=plain_rows, flush=_number_events)
        # patrol records (store.ledger) share them the same way, with the cases they open as ORM rows
        self.patrols = GroupCommit(self.engine, flush=_insert_and_number)

    # --- intake
    def create(self, jurisdiction: str, case: Case, actor: str, idempotency_key: str | None = None,
               now: datetime | None = None, description: str = "", request_hash: str | None = None,
               report: dict[str, Any] | None = None,
               also: Callable[[Session, CaseRecord], None] | None = None) -> CaseRecord:
        """Route and store a case, with its events and clocks, and what `also` adds in the same transaction. The
        same Idempotency-Key returns the first case, never a duplicate; with another `request_hash` (a different
        request body) it is refused."""
        return self.open(jurisdiction, case, actor, idempotency_key, now, description, request_hash, report, also)[0]

    def open(self, jurisdiction: str, case: Case, actor: str, idempotency_key: str | None = None,
             now: datetime | None = None, description: str = "", request_hash: str | None = None,
             report: dict[str, Any] | None = None,
             also: Callable[[Session, CaseRecord], None] | None = None) -> tuple[CaseRecord, Decision]:
        """`create`, with the case's decision: as routed, not expanded again from the row (a replayed
        Idempotency-Key's is read from its row)."""
        if idempotency_key:
            existing = self._by_key(jurisdiction, idempotency_key)
            if existing is not None:
                return self._replay(existing, request_hash)
        now = now or self.clock()
        router, decision = self._route(jurisdiction, case, now)  # a case that cannot be routed writes nothing

        def write(session: Session) -> CaseRecord:
            record = self._add(session, router, decision, jurisdiction, case, actor, now, idempotency_key,
                               description, report)
            record.request_hash = request_hash
            if also is not None:
                flush_new(session)
                also(session, record)
            return record
        try:
            if also is None:
                return self.intakes.run(write), decision
            with UnitOfWork(self.engine) as uow:
                return write(uow.session), decision
        except IntegrityError:  # a concurrent retry with the same key won the race
            existing = self._by_key(jurisdiction, idempotency_key) if idempotency_key else None
            if existing is None:
                raise
            return self._replay(existing, request_hash)

    def _replay(self, first: CaseRecord, request_hash: str | None) -> tuple[CaseRecord, Decision]:
        return _replayed(first, request_hash), self.policies.decision(first.stored_decision)

    def intake(self, session: Session, jurisdiction: str, case: Case, actor: str, now: datetime,
               idempotency_key: str | None = None, description: str = "",
               report: dict[str, Any] | None = None) -> CaseRecord:
        """Route and add a case inside the caller's transaction (the simulator batches many per commit).
        `report`: the intake columns (channel, reporter, lat, lon, coord_system, address, attachments, observed_at)."""
        router, decision = self._route(jurisdiction, case, now)
        return self._add(session, router, decision, jurisdiction, case, actor, now, idempotency_key, description,
                         report)

    def _route(self, jurisdiction: str, case: Case, now: datetime) -> tuple[PolicyRouter, Decision]:
        router = self.policies.router(jurisdiction)
        try:
            return router, router.route(case.model_copy(update={"reported_at": now}))
        except RoutingError as err:
            raise Invalid(str(err), field=err.field, suggestions=err.suggestions) from None

    def _add(self, session: Session, router: PolicyRouter, decision: Decision, jurisdiction: str, case: Case,
             actor: str, now: datetime, idempotency_key: str | None, description: str,
             report: dict[str, Any] | None) -> CaseRecord:
        number = self.policies.numbers[jurisdiction, decision.policy_version]
        found_level, finder = router.finder(case)
        record = new_row(
            CaseRecord, jurisdiction=jurisdiction, policy_version=decision.policy_version, version_number=number,
            idempotency_key=idempotency_key, problem_type=decision.problem_type.code, unit=case.unit,
            facts=dict(case.facts), description=description, stored_decision=router.compact(decision, routed=True),
            handler_level=decision.handler.level,
            handler_unit=decision.handler.unit, found_level=found_level, finder_unit=finder.id if finder else None,
            workflow=decision.workflow, status=RECEIVED,
            reported_by=actor, created_at=now, updated_at=now, events=[], clocks=[],  # all it has, loaded
            **(report or {}))
        workflow = self._workflow(router, decision.workflow)
        session.add(record)
        _departments(session, record, decision)
        self._event(session, record, actor, "created", None, None, now, note="案件受理并路由",
                    data={"decision_first_action": decision.first_action})
        if workflow is None:
            record.status, record.closed_at = CLOSED, now
            self._event(session, record, actor, "closed", RECEIVED, CLOSED, now, note="现场纠正, 记录结案")
        else:
            self._enter(session, router, record, workflow.steps[0], actor, now, note="进入流程首个步骤")
        return record

    def _by_key(self, jurisdiction: str, key: str) -> CaseRecord | None:
        with Session(self.policies.reader) as session:
            return session.exec(select(CaseRecord).where(CaseRecord.jurisdiction == jurisdiction,
                                                         CaseRecord.idempotency_key == key)
                                .options(selectinload(CaseRecord.events), selectinload(CaseRecord.clocks))).first()

    def compact_stored(self, batch: int = 500) -> int:
        """Store the decisions of cases written whole (before #17) compactly; returns how many were rewritten."""
        done, after = 0, 0
        while True:
            with UnitOfWork(self.engine) as uow:
                rows = uow.session.exec(select(CaseRecord).where(col(CaseRecord.id) > after)
                                        .order_by(col(CaseRecord.id)).limit(batch)).all()
                for record in rows:
                    if not record.stored_decision.get("compact"):
                        router = self._router_for(record)
                        record.stored_decision = router.compact(router.restore(record.stored_decision))
                        done += 1
            if len(rows) < batch:
                return done
            after = row_id(rows[-1])

    # --- reading
    def get(self, case_id: int) -> tuple[CaseRecord, list[CaseEvent], list[CaseClock]]:
        with Session(self.policies.reader) as session:
            record = session.get(CaseRecord, case_id)
            if record is None:
                raise NotFound(f"案件 {case_id} 不存在", field="id")
            events = session.exec(select(CaseEvent).where(CaseEvent.case_id == case_id)
                                  .order_by(col(CaseEvent.id))).all()
            clocks = session.exec(select(CaseClock).where(CaseClock.case_id == case_id)
                                  .order_by(col(CaseClock.id))).all()
            return record, list(events), list(clocks)

    def search(self, jurisdiction: str | None = None, unit: str | None = None, status: str | None = None,
               overdue: bool | None = None, limit: int = 50, offset: int = 0,
               level: int | None = None, ids: list[int] | None = None, problem_types: list[str] | None = None,
               created_from: datetime | None = None, created_to: datetime | None = None,
               ) -> tuple[int, list[CaseRecord]]:
        """`status` is a workflow step, `closed`, or `open` (any step but closed)."""
        query = select(CaseRecord)
        if ids is not None:
            query = query.where(col(CaseRecord.id).in_(ids))
        if problem_types is not None:
            query = query.where(col(CaseRecord.problem_type).in_(problem_types))
        if created_from is not None:
            query = query.where(CaseRecord.created_at >= created_from)
        if created_to is not None:
            query = query.where(CaseRecord.created_at <= created_to)
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
        with Session(self.policies.reader) as session:
            total = session.exec(select(func.count()).select_from(query.subquery())).one()
            rows = session.exec(query.order_by(col(CaseRecord.id).desc()).offset(offset).limit(limit)).all()
            return total, list(rows)

    def open_counts(self) -> dict[str, dict[str, int]]:
        """Per jurisdiction: cases not closed, and how many of those are overdue."""
        overdue_count = func.sum(sql_case((col(CaseRecord.overdue), 1), else_=0))
        query = (select(CaseRecord.jurisdiction, func.count(), overdue_count)
                 .where(CaseRecord.status != CLOSED).group_by(CaseRecord.jurisdiction))
        with Session(self.policies.reader) as session:
            return {jid: {"open": total, "overdue": int(overdue or 0)} for jid, total, overdue in session.exec(query)}

    def names(self, record: CaseRecord) -> CaseNames:
        """The case's problem type and workflow steps named as the version that routed it names them."""
        router = self._router_for(record)
        workflow = self._workflow(router, record.workflow)
        return CaseNames(router.compiled.types_by_code[record.problem_type].name or record.problem_type,
                         {step.id: step.name for step in workflow.steps} if workflow else {})

    # --- the state machine
    def _workflow(self, router: PolicyRouter, workflow_id: str | None) -> Workflow | None:
        return router.compiled.workflows_by_id[workflow_id] if workflow_id else None

    def _steps(self, router: PolicyRouter, record: CaseRecord) -> list[WorkflowStep]:
        """The steps of an open case's workflow (a case without one is closed at intake)."""
        workflow = self._workflow(router, record.workflow)
        if workflow is None:
            raise Conflict(f"案件 {record.id} 没有处置流程 — the case has no workflow", field="action")
        return workflow.steps

    def _router_for(self, record: CaseRecord) -> PolicyRouter:
        return self.policies.router(record.jurisdiction, record.policy_version)

    def allowed_actions(self, record: CaseRecord, router: PolicyRouter | None = None) -> list[str]:
        if record.status == CLOSED:
            return []
        router = router or self._router_for(record)
        steps = self._steps(router, record)
        ids = [s.id for s in steps]
        step = steps[ids.index(record.status)]
        allowed = ["complete", "return", "extend", "reroute"]
        if step.on_failure:
            allowed.append("fail")
        if record.stored_decision["escalation_path"] and record.handler_level > 1:  # a list in both stored forms
            allowed.append("escalate")
        if record.status in (ids[0], ids[-1]):
            allowed.append("close")
        return allowed

    def transition(self, case_id: int, t: Transition, now: datetime | None = None) -> CaseRecord:
        now = now or self.clock()

        def work(session: Session) -> CaseRecord:
            # the case row first, then its clocks, as the sweeper: BEGIN IMMEDIATE on SQLite, a row lock on PostgreSQL
            record = session.exec(select(CaseRecord).where(CaseRecord.id == case_id).with_for_update()).first()
            if record is None:
                raise NotFound(f"案件 {case_id} 不存在", field="id")
            self.apply(session, record, t, now)
            return record

        return transaction(self.engine, work)

    def apply(self, session: Session, record: CaseRecord, t: Transition, now: datetime) -> None:
        """One transition inside the caller's transaction: checked against the allowed actions."""
        router = self._router_for(record)
        allowed = self.allowed_actions(record, router)
        if t.action not in allowed:
            raise Conflict(f"当前状态 '{record.status}' 不允许动作 '{t.action}'; "
                           f"允许: {', '.join(allowed) or '无 (已结案)'}",
                           field="action", allowed=allowed)
        getattr(self, f"_do_{t.action}")(session, router, record, t, now)
        record.updated_at = now
        session.add(record)

    def mark_overdue(self, session: Session, record: CaseRecord, clock: CaseClock, now: datetime) -> None:
        """`clock`'s deadline has passed: it stops, the case is marked overdue and the miss recorded."""
        clock.overdue_at, clock.stopped_at = now, now
        record.overdue = True
        self._event(session, record, "sweeper", "overdue", record.status, record.status, now,
                    f"步骤 {clock.step} 超过时限 {as_utc(clock.due_at).isoformat()}")

    def escalate_overdue(self, session: Session, record: CaseRecord, clock: CaseClock, now: datetime) -> bool:
        """Escalate an overdue case along its decision's path, with a fresh clock for the missed step at the new
        level; False at level 1 (nothing above)."""
        router = self._router_for(record)
        if not escalate(session, router, record, "sweeper", "超期自动升级", now):
            return False
        start_clock(router, record, self._step(router, record, clock.step), now)
        return True

    def _step(self, router: PolicyRouter, record: CaseRecord, step_id: str) -> WorkflowStep:
        return next(s for s in self._steps(router, record) if s.id == step_id)

    def _do_complete(self, session, router, record, t: Transition, now) -> None:
        steps = self._steps(router, record)
        _stop_clocks(record, now)
        position = [s.id for s in steps].index(record.status)
        if position == len(steps) - 1:
            self._close(session, record, t, now)
        else:
            self._enter(session, router, record, steps[position + 1], t.actor, now, t.note, "completed")

    def _do_close(self, session, router, record, t: Transition, now) -> None:
        if not t.note.strip():
            raise Invalid("结案须说明理由 (如劝阻有效、已现场纠正)", field="note")
        _stop_clocks(record, now)
        self._close(session, record, t, now)

    def _close(self, session, record, t: Transition, now) -> None:
        previous = record.status
        record.status, record.closed_at, record.due_at = CLOSED, now, None
        self._event(session, record, t.actor, "closed", previous, CLOSED, now, t.note)

    def _do_fail(self, session, router, record, t: Transition, now) -> None:
        """Verification failed: back to the step the policy names; a new clock cycle, old ones kept."""
        step = self._step(router, record, record.status)
        if step.on_failure is None:
            raise Conflict(f"步骤 {step.id} 没有核查不通过时的去向 — the step has no on_failure", field="action")
        _stop_clocks(record, now)
        record.cycle += 1
        self._enter(session, router, record, self._step(router, record, step.on_failure), t.actor, now,
                    t.note or "现场核查未解决, 再次上报", "reopened")

    def _do_return(self, session, router, record, t: Transition, now) -> None:
        """回退: the department is not responsible; the step is dispatched again with a fresh clock."""
        if not t.note.strip():
            raise Invalid("回退须说明理由", field="note")
        _stop_clocks(record, now)
        self._event(session, record, t.actor, "returned", record.status, record.status, now, t.note)
        self._enter(session, router, record, self._step(router, record, record.status), "system", now,
                    "回退后重新派遣", "redispatched")

    def _do_extend(self, session, router, record, t: Transition, now) -> None:
        if not t.approved_by or t.extend_by is None or t.extend_by <= timedelta(0):
            raise Invalid("延期须有审批人 approved_by 和正的延期时长 extend_by (如 P2D)", field="approved_by")
        clock = open_clock(record)
        if clock is None:
            raise Conflict("案件没有正在计时的步骤, 无法延期 — no running clock to extend", field="action")
        old_due = as_utc(clock.due_at)
        clock.due_at = router.calendar.add(old_due, t.extend_by, CalendarKind(clock.calendar))
        clock.warned_50_at = clock.warned_75_at = None
        clock.next_check_at = _threshold(as_utc(clock.started_at), clock.due_at, 0.5)
        record.due_at, record.overdue = clock.due_at, False
        self._event(session, record, t.actor, "extended", record.status, record.status, now, t.note,
                    {"approved_by": t.approved_by, "from": old_due.isoformat(), "to": clock.due_at.isoformat()})

    def _do_reroute(self, session, router, record, t: Transition, now) -> None:
        if not t.facts:
            raise Invalid("重新路由须提供新的事实 facts", field="facts")
        facts = {**record.facts, **t.facts}
        try:
            decision = router.route(Case(problem_type=record.problem_type, unit=record.unit, facts=facts,
                                         found_at_level=record.found_level, reported_at=now))
        except (RoutingError, ValueError) as err:
            raise Invalid(str(err), field="facts") from None
        old = router.restore(record.stored_decision)
        record.facts, record.workflow = facts, decision.workflow
        record.stored_decision = router.compact(decision, routed=True)
        record.handler_level, record.handler_unit = decision.handler.level, decision.handler.unit
        self._event(session, record, t.actor, "rerouted", record.status, record.status, now, t.note,
                    {"facts": t.facts, "old_handler": old.handler.model_dump(mode="json"),
                     "new_handler": decision.handler.model_dump(mode="json"), "first_action": decision.first_action})
        _stop_clocks(record, now)
        session.exec(delete(CaseDepartment).where(CaseDepartment.case_id == record.id))
        _departments(session, record, decision)
        workflow = self._workflow(router, decision.workflow)
        if workflow is None:
            self._close(session, record, t, now)
        else:
            ids = [s.id for s in workflow.steps]
            step = workflow.steps[ids.index(record.status)] if record.status in ids else workflow.steps[0]
            self._enter(session, router, record, step, "system", now, "按新决定重新计时", "redispatched")

    def _do_escalate(self, session, router, record, t: Transition, now) -> None:
        if escalate(session, router, record, t.actor, t.note or "手动升级", now):  # the new grid's own clock
            _stop_clocks(record, now)
            start_clock(router, record, self._step(router, record, record.status), now)

    # --- clocks and events
    def _enter(self, session, router: PolicyRouter, record: CaseRecord, step: WorkflowStep, actor: str, now: datetime,
               note: str = "", action: str = "entered") -> None:
        previous = record.status
        record.status = step.id
        due = start_clock(router, record, step, now)
        record.overdue = False
        self._event(session, record, actor, action, previous, step.id, now, note,
                    {"due": due.isoformat(), "cycle": record.cycle, "step_name": step.name})

    @staticmethod
    def _event(session, record, actor, action, from_status, to_status, at, note="", data=None) -> None:
        # case_id comes from `record` at the flush (a case of a batch has no id yet)
        session.add(new_row(CaseEvent, record=record, at=at, actor=actor, action=action, unit=record.handler_unit,
                            level=record.handler_level, from_status=from_status, to_status=to_status, note=note,
                            data=data or {}))


def _number_events(session: Session) -> None:
    """The events a group of intakes wrote, numbered and fanned out to the webhook subscriptions in the same
    transaction: a separate sequencer's transaction after each group cost as much CPU as a tenth of the group's
    intakes."""
    if session.info.get(WROTE):  # outbox rows were written
        number_in(session, fan_out)


def _insert_and_number(session: Session) -> None:
    """Rows the ORM holds (store.bulk.flush_new), then their events numbered."""
    flush_new(session)
    _number_events(session)


def open_clocks(record: CaseRecord) -> list[CaseClock]:
    """The case's running clocks, oldest first (a case being built in a batch holds them in memory, unflushed)."""
    return [c for c in record.clocks if c.stopped_at is None]


def open_clock(record: CaseRecord) -> CaseClock | None:
    """The clock of the current step: the newest running one."""
    running = open_clocks(record)
    return running[-1] if running else None


def _stop_clocks(record: CaseRecord, now: datetime) -> None:
    for clock in open_clocks(record):
        clock.stopped_at = now


def start_clock(router: PolicyRouter, record: CaseRecord, step: WorkflowStep, now: datetime) -> datetime:
    """A fresh deadline clock for `step`, held by the case's current grid; returns (and records) the due time."""
    due = router.calendar.add(now, step.deadline.duration, step.deadline.calendar)
    record.due_at = due
    record.clocks.append(new_row(CaseClock, cycle=record.cycle, step=step.id, unit=record.handler_unit,  # case_id:
                                 calendar=step.deadline.calendar.value, started_at=now, due_at=due,  # from `record`
                                 next_check_at=_threshold(now, due, 0.5)))
    return due


def _departments(session: Session, record: CaseRecord, decision: Decision) -> None:
    for dept in set(decision.department_ids):
        session.add(new_row(CaseDepartment, record=record, department=dept))  # case_id: from `record`


def _threshold(start: datetime, due: datetime, fraction: float) -> datetime:
    return as_utc(start) + (as_utc(due) - as_utc(start)) * fraction


def escalate(session: Session, router: PolicyRouter, record: CaseRecord, actor: str, note: str, now: datetime) -> bool:
    """Move the case to the next grid of its escalation path; False at level 1 (nothing above)."""
    path = router.restore(record.stored_decision).escalation_path
    nxt = next((hop for hop in path if hop.level < record.handler_level), None)
    if nxt is None:
        return False
    old_level, old_unit = record.handler_level, record.handler_unit
    record.handler_level, record.handler_unit = nxt.level, nxt.unit
    session.add(new_row(CaseEvent, record=record, at=now, actor=actor, action="escalated",  # case_id: from `record`
                        unit=old_unit, level=old_level, from_status=record.status, to_status=record.status, note=note,
                        data={"from": {"level": old_level, "unit": old_unit},
                              "to": {"level": nxt.level, "unit": nxt.unit}, "rule": nxt.rule}))
    return True
