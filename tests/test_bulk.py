"""store.bulk's plain rows (intake's and the simulator's) and flush_new (the ORM rows of a patrol's cases) write the
rows the ORM's flush writes, outbox too."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, text
from sqlalchemy.orm import selectinload
from sqlmodel import Session, col, select

from engine.router import Case
from store.bulk import new_row
from store.cases import CaseService, Transition, open_clocks
from store.db import GroupCommit, transaction
from store.simulate import Mix, Simulator
from store.sweeper import check_clock, new_counts
from store.tables import CaseClock, CaseDepartment, CaseEvent, CaseRecord, as_utc

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
CHILDREN = ("case_department", "case_event", "case_clock", "notification", "outbox_event")


def _orm_flush(session: Session) -> None:
    session.flush()


def _top(cases: CaseService) -> int:
    with cases.engine.connect() as connection:
        return connection.execute(text("SELECT coalesce(max(id), 0) FROM case_record")).scalar()


def _history(cases: CaseService, after: int, upto: int | None = None) -> dict[str, list[Any]]:
    """The cases with `after` < id <= `upto` and their rows, ids replaced by the case's position and the row's place in
    its case (what a different id sequence cannot change)."""
    upto = _top(cases) if upto is None else upto
    bounds = {"a": after, "b": upto}
    with cases.engine.connect() as connection:
        ids = [row[0] for row in connection.execute(
            text("SELECT id FROM case_record WHERE id > :a AND id <= :b ORDER BY id"), bounds)]
        place = {case_id: n for n, case_id in enumerate(ids)}
        out: dict[str, list[Any]] = {}
        records = connection.execute(text("SELECT * FROM case_record WHERE id > :a AND id <= :b ORDER BY id"), bounds)
        out["case_record"] = [{k: v for k, v in row._mapping.items() if k != "id"} for row in records]
        for table in CHILDREN:
            order = "case_id, department" if table == "case_department" else "case_id, id"
            rows = connection.execute(text(f"SELECT * FROM {table} WHERE case_id > :a AND case_id <= :b "
                                           f"ORDER BY {order}"), bounds)
            out[table] = [_comparable(table, row._mapping, place) for row in rows]
        return out


def _comparable(table: str, row: Any, place: dict[int, int]) -> dict[str, Any]:
    values = {k: v for k, v in row.items() if k not in ("id", "seq")}
    case_id = values["case_id"]
    values["case_id"] = place[case_id]
    if table == "notification" or str(values.get("kind")).startswith("case.warning"):
        del values["at"]  # a notification is stamped with the wall clock, not the simulated time
    if table == "notification":
        values["message"] = values["message"].replace(f"案件 {case_id} ", f"案件 #{place[case_id]} ")
    return values


def _check_deadlines(cases: CaseService, case_id: int, now: datetime) -> None:
    """What `sweep(cases, now)` does for one case: the sweeper's check of each of its clocks due by `now`, in a
    transaction of its own (sweep itself would also check the other cases' clocks)."""
    def work(session: Session) -> None:
        record = session.get(CaseRecord, case_id)
        for clock in open_clocks(record):
            if as_utc(clock.next_check_at) <= now:
                check_clock(session, cases, clock, record, now, new_counts())
    transaction(cases.engine, work)


def _replay(cases: CaseService, simulated: list[tuple[CaseRecord, list[CaseEvent]]]) -> None:
    """Each simulated case again, through the service's own doors: CaseService.create, CaseService.transition for
    each step the simulator's actors took, and the sweeper's check at each deadline it let pass."""
    for record, events in simulated:
        found_by_upper = record.finder_unit != record.unit
        case_id = cases.create(record.jurisdiction, Case(problem_type=record.problem_type, unit=record.unit,
                                                         found_at_level=record.found_level if found_by_upper else None,
                                                         facts=record.facts),
                               events[0].actor, now=events[0].at).id
        for step in events[1:]:
            if step.action == "overdue":
                _check_deadlines(cases, case_id, as_utc(step.at))
            elif step.actor not in ("simulator", "sweeper", "system"):  # the rest follow from these
                action = {"completed": "complete", "closed": "complete", "reopened": "fail"}.get(step.action,
                                                                                                 step.action[:-2])
                cases.transition(case_id, Transition(action, step.actor, step.note,
                                                     approved_by=step.data.get("approved_by"),
                                                     extend_by=timedelta(days=2) if action == "extend" else None),
                                 as_utc(step.at))


@settings(max_examples=3, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(jid=st.sampled_from(["karamay", "ningjiaping"]), seed=st.integers(0, 10_000), late=st.floats(0, 0.5),
       reopened=st.floats(0, 0.4), returned=st.floats(0, 0.4))
# escalated twice (a village's case to the town, then the county): each warning names the grid that held it then
@example(jid="ningjiaping", seed=1, late=0.9, reopened=0.1, returned=0.1)
def test_simulated_histories_are_what_the_case_service_writes(cases, monkeypatch, jid, seed, late, reopened, returned):
    """The simulator's plain rows (store.bulk.plain_rows: intake, every transition, warnings, overdue, escalation)
    are the rows CaseService writes for the same steps, through its intake, its transitions and the sweeper's check,
    each in its own transaction; and the same again with intake's rows made by the ORM and inserted by flush_new (as
    a patrol's finding opens a case), or flushed by the ORM (and its outbox hook)."""
    mix = Mix(late=late, reopened=reopened, returned=returned, extended=0.2, corrected_on_site=0.1)
    before = _top(cases)
    Simulator(cases, jid, seed, mix).run(25, 30, START, batch=10)
    simulated_upto = _top(cases)
    simulated = _history(cases, before, simulated_upto)
    assert len(simulated["case_record"]) == 25 and simulated["outbox_event"]
    with Session(cases.engine) as session:
        steps = [(record, list(record.events)) for record in session.exec(
            select(CaseRecord).where(col(CaseRecord.id) > before).order_by(col(CaseRecord.id))
            .options(selectinload(CaseRecord.events)))]
    # intake as it is (plain rows); as patrols open cases (ORM rows, flush_new); through the ORM's flush and its hook
    for intakes in (cases.intakes, cases.patrols, GroupCommit(cases.engine, flush=_orm_flush)):
        after = _top(cases)
        with monkeypatch.context() as patch:
            patch.setattr(cases, "intakes", intakes)
            _replay(cases, steps)
        replayed = _history(cases, after)
        for table in ("case_record", *CHILDREN):
            assert replayed[table] == simulated[table], table


def test_a_seed_gives_the_same_rows_whatever_the_batches(cases):
    """Determinism per seed, row by row (a case's number and its rows' places aside), and the batch size (how many
    cases share a transaction and their inserts) changes nothing."""
    before = _top(cases)
    Simulator(cases, "ningjiaping", 11, Mix(late=0.3)).run(30, 30, START, batch=8)
    middle = _top(cases)
    Simulator(cases, "ningjiaping", 11, Mix(late=0.3)).run(30, 30, START, batch=13)
    first, second = _history(cases, before, middle), _history(cases, middle)
    assert len(first["case_record"]) == 30 and first["notification"]
    assert first == second


def test_a_simulated_batch_is_inserted_once_and_never_updated(cases):
    """#10: the rows of a case overdue mid-batch are numbered as they are made (its messages name it), not flushed:
    each batch's rows are inserted by one statement per table as it ends, and no row of it is updated."""
    statements: list[str] = []
    event.listen(cases.engine, "before_cursor_execute", lambda _c, _k, statement, *_: statements.append(statement))
    counts = Simulator(cases, "karamay", 3, Mix(late=0.5)).run(40, 30, START, batch=20)
    assert counts["overdue"] > 2
    inserts = [s.split()[2] for s in statements if s.startswith("INSERT")]
    assert sorted(inserts) == sorted(["case_record", "case_department", "case_event", "case_clock", "notification",
                                      "outbox_event"] * 2)
    assert not [s for s in statements if s.startswith("UPDATE")]


def test_a_group_of_intakes_gets_ids_events_clocks_and_outbox_rows(cases):
    """Concurrent intakes share one transaction (GroupCommit) and their plain rows' inserts: each returned case carries
    its ids, and each event has its outbox row."""
    units = [f"kmy-l3-{n:02d}" for n in range(1, 10)]
    with ThreadPoolExecutor(8) as pool:
        records = list(pool.map(lambda unit: cases.create("karamay", Case(problem_type="医疗废物处置", unit=unit),
                                                           "intake"), units * 3))
    assert len({r.id for r in records}) == 27
    for record, stored in zip(records, (cases.get(r.id) for r in records)):
        assert [e.id for e in record.events] == [e.id for e in stored[1]] and len(stored[1]) == 2
        assert [c.id for c in record.clocks] == [c.id for c in stored[2]] and len(stored[2]) == 1
    with cases.engine.connect() as connection:
        outbox = connection.execute(text("SELECT case_id, kind FROM outbox_event ORDER BY id")).all()
    assert sorted(outbox) == sorted((r.id, kind) for r in records for kind in ("case.created", "case.entered"))



TEXT = st.text(max_size=12)
MOMENT = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(timezone.utc))


@settings(max_examples=30)
@given(actor=TEXT, note=st.one_of(st.none(), TEXT), at=st.one_of(st.none(), MOMENT),
       data=st.one_of(st.none(), st.dictionaries(TEXT, st.integers(), max_size=3)), cycle=st.integers(1, 5))
def test_new_row_makes_what_the_constructor_makes(actor, note, at, data, cycle):
    """new_row (intake's and the simulator's rows, #10) gives the columns, defaults and set fields the SQLModel
    constructor gives, and its relationships back-populate the case's collections as the constructor's do."""
    given_event = {k: v for k, v in {"actor": actor, "action": "created", "note": note, "at": at, "data": data}.items()
                   if v is not None}
    shared = {"jurisdiction": "karamay", "policy_version": "v", "version_number": 1, "problem_type": "t",
              "stored_decision": {}, "handler_level": 3, "status": "received", "reported_by": actor,
              "created_at": START, "updated_at": START}
    built = []
    for make in (lambda model, **values: model(**values), new_row):
        record = make(CaseRecord, **shared, events=[], clocks=[], attachments=[], cycle=cycle)
        event = make(CaseEvent, record=record, **given_event)
        clock = make(CaseClock, record=record, cycle=cycle, step="s", calendar="natural", started_at=START,
                     due_at=START, next_check_at=START)
        department = make(CaseDepartment, record=record, department="d")
        assert record.events == [event] and event.record is record and department.record is record
        record.clocks.append(clock)
        assert clock.record is record
        built.append([(row.model_dump(), row.model_fields_set) for row in (record, event, clock, department)])
    by_constructor, by_new_row = built
    for (dumped, fields), (dumped_new, fields_new) in zip(by_constructor, by_new_row):
        # defaults made by a factory at construction: the same value but a moment apart
        assert dumped.keys() == dumped_new.keys() and fields == fields_new
        assert {k: v for k, v in dumped.items() if k != "at" or "at" in given_event} == \
            {k: v for k, v in dumped_new.items() if k != "at" or "at" in given_event}
