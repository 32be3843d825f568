"""Transactions (issue #10 §1, §3, §5): loading an older policy version inside a write never waits for the
caller's own lock; the sweeper and transitions take locks in one order; workers starting together import the
bundled jurisdictions once."""
from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from sqlalchemy import event
from sqlmodel import Session, select

from engine.router import Case
from store.cases import CaseService, Transition
from store.db import make_engine
from store.sweeper import sweep
from store.tables import CaseEvent, PolicyVersion
from store.versions import open_policy_store
from tests.test_pinned import MEDICAL_WASTE_CASE
from tests.test_scaleout import GRIDPOLICY, free_port

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)  # a Monday; karamay's report step runs PT2H
MEDICAL = Case(problem_type="医疗废物处置", unit="kmy-l3-01")


def impatient(engine) -> None:
    """Lock waits fail fast instead of after 30 s, so a transaction waiting on its own lock shows as an error."""
    @event.listens_for(engine, "connect")
    def _short_waits(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        if engine.dialect.name == "sqlite":
            cursor.execute("PRAGMA busy_timeout=300")
        else:
            cursor.execute("SET lock_timeout = '3s'")
        cursor.close()
    engine.dispose()


def publish_v2(cases: CaseService) -> str:
    """Karamay v2: medical waste handled at level 1 instead of level 2."""
    policies = cases.policies
    draft = policies.create_draft("karamay", "编辑")
    document = policies.document(draft)
    document["problem_types"][0]["level"] = 1
    saved = policies.update_draft("karamay", draft.number, document, draft.revision, "编辑")
    return policies.publish("karamay", draft.number, "发布人", "改由市级处置", [MEDICAL_WASTE_CASE],
                            saved.revision).content_hash


def test_cases_of_an_older_version_move_after_a_restart(database_url):
    policies = open_policy_store(database_url)
    cases = CaseService(policies)
    to_move = cases.create("karamay", MEDICAL, "intake", now=T0)
    to_escalate = cases.create("karamay", MEDICAL, "intake", now=T0)
    v1 = to_move.policy_version
    assert publish_v2(cases) != v1
    policies.engine.dispose()

    restarted = open_policy_store(database_url)  # a new process: only the active version (v2) is compiled
    impatient(restarted.engine)
    cases = CaseService(restarted)
    assert v1 not in restarted.registry.active().values()
    moved = cases.transition(to_move.id, Transition("complete", "网格员"), now=T0 + timedelta(minutes=10))
    assert moved.status == "dispose" and moved.policy_version == v1

    results, errors = [], []

    def intake():
        try:
            for _ in range(5):
                results.append(cases.create("karamay", MEDICAL, "intake", now=T0 + timedelta(hours=3)).id)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=intake)
    thread.start()
    counts = sweep(cases, T0 + timedelta(hours=3))
    thread.join()
    assert not errors and len(results) == 5  # intake was not locked out meanwhile
    assert counts["overdue"] == 1 and counts["escalated"] == 1
    record, events, clocks = cases.get(to_escalate.id)
    assert record.policy_version == v1 and record.handler_level == 1 and record.handler_unit == "kmy"
    assert [e.action for e in events][-2:] == ["overdue", "escalated"]
    assert [c.stopped_at is None for c in clocks] == [False, True]
    restarted.engine.dispose()


def test_a_unit_of_work_commits_or_rolls_back_and_refuses_nesting(cases):
    from store.db import UnitOfWork  # noqa: PLC0415
    with pytest.raises(ValueError), UnitOfWork(cases.engine) as uow:
        cases.intake(uow.session, "karamay", MEDICAL, "intake", T0)
        raise ValueError("abandon")
    assert cases.search("karamay")[0] == 0
    with UnitOfWork(cases.engine) as uow:
        cases.intake(uow.session, "karamay", MEDICAL, "intake", T0)
        with pytest.raises(RuntimeError, match="nested"), UnitOfWork(cases.engine):
            pass
    assert cases.search("karamay")[0] == 1


def test_transitions_and_sweeps_at_once_never_deadlock(cases):
    """Transitions lock a case and then its clocks; so must the sweeper, or PostgreSQL aborts one of them."""
    if cases.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: no lock order to get wrong")
    late = T0 + timedelta(hours=3)
    ids = [cases.create("karamay", MEDICAL.model_copy(update={"unit": f"kmy-l3-{n % 9 + 1:02d}"}), "intake", now=T0).id
           for n in range(60)]
    errors, start = [], threading.Barrier(4)

    def transitions(chosen):
        start.wait()
        for case_id in chosen:
            try:
                cases.transition(case_id, Transition("complete", "网格员"), now=late)
            except Exception as exc:  # noqa: BLE001 - any failure is reported below
                errors.append(exc)

    def sweeps():
        start.wait()
        for _ in range(10):
            try:
                sweep(cases, late, batch=7)
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

    threads = [threading.Thread(target=transitions, args=(ids[0::2],)),
               threading.Thread(target=transitions, args=(ids[1::2],)),
               threading.Thread(target=sweeps), threading.Thread(target=sweeps)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Session(cases.engine) as session:
        escalated = Counter(e.case_id for e in session.exec(select(CaseEvent).where(CaseEvent.action == "escalated")))
    assert max(escalated.values(), default=1) == 1  # no case escalated twice
    for case_id in ids:
        record, events, clocks = cases.get(case_id)
        assert record.status == "dispose"  # every transition went through
        assert sum(c.stopped_at is None for c in clocks) == 1  # exactly one running clock, of the current step


def test_two_workers_on_a_fresh_postgresql_import_once(database_url, tmp_path):
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's BEGIN IMMEDIATE already serialises the importers")
    log = tmp_path / "serve.log"
    port = free_port()
    with log.open("w") as out:
        server = subprocess.Popen([GRIDPOLICY, "serve", "--port", str(port), "--workers", "2"],
                                  env={**os.environ, "GRIDPOLICY_DATABASE_URL": database_url},
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while log.read_text().count("Application startup complete") < 2 and "Traceback" not in log.read_text():
            assert time.time() < deadline and server.poll() is None, log.read_text()
            time.sleep(0.5)
        output = log.read_text()
        assert "Traceback" not in output and "UniqueViolation" not in output and "died" not in output, output
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
    engine = make_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    with Session(engine) as session:
        numbers = Counter(v.jurisdiction for v in session.exec(select(PolicyVersion)))
    engine.dispose()
    assert numbers and set(numbers.values()) == {1}


def test_a_batch_of_loaded_cases_never_sees_another_cases_clocks(cases):
    """One transaction moving many stored cases one after another (as a batch job does): each transition stops
    the clocks of its own case, even when a case object reuses the memory of the previous one."""
    from store.tables import CaseRecord  # noqa: PLC0415
    ids = [cases.create("karamay", MEDICAL, "intake", now=T0).id for _ in range(30)]
    with Session(cases.engine) as session:
        for case_id in ids:
            record = session.get(CaseRecord, case_id)
            cases.apply(session, record, Transition("complete", "网格员"), T0 + timedelta(minutes=5))
            session.flush()
            session.expunge(record)
            del record
        session.commit()
    for case_id in ids:
        record, _, clocks = cases.get(case_id)
        assert record.status == "dispose"
        assert [c.step for c in clocks if c.stopped_at is None] == ["dispose"]


def test_a_transaction_aborted_by_a_deadlock_runs_again_then_gives_up_with_503(tmp_path):
    from sqlalchemy.exc import OperationalError  # noqa: PLC0415

    from store.db import transaction  # noqa: PLC0415
    from store.errors import Busy  # noqa: PLC0415

    class Deadlock(Exception):
        sqlstate = "40P01"

    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    attempts = []

    def work(session):
        attempts.append(1)
        if len(attempts) < 3:
            raise OperationalError("UPDATE case_clock …", {}, Deadlock())
        return "done"

    assert transaction(engine, work) == "done" and len(attempts) == 3

    def always(session):
        raise OperationalError("UPDATE case_clock …", {}, Deadlock())

    def other(session):
        raise OperationalError("SELECT …", {}, ValueError("no sqlstate"))

    with pytest.raises(Busy) as refused:
        transaction(engine, always, attempts=2)
    assert refused.value.status == 503
    with pytest.raises(OperationalError):  # anything else is not retried
        transaction(engine, other)
    engine.dispose()


def queued_behind_a_leader(group, writes: list, submit=None) -> dict:
    """Runs `writes` (callables of a session) through `group` from threads, all queued behind a first write
    that holds its transaction open until they wait: they then share one transaction. Returns n → outcome.
    `submit(write)`: a service call that runs `write` through `group` itself."""
    running, release = threading.Event(), threading.Event()

    def hold(session):
        running.set()
        assert release.wait(10)
        return "leader"
    outcomes: dict[int, object] = {}

    def run(n: int, work) -> None:
        try:
            outcomes[n] = (submit if submit and n >= 0 else group.run)(work)
        except Exception as err:  # noqa: BLE001 - the test reads it
            outcomes[n] = err
    leader = threading.Thread(target=run, args=(-1, hold))
    leader.start()
    assert running.wait(10)
    threads = [threading.Thread(target=run, args=(n, work)) for n, work in enumerate(writes)]
    for thread in threads:
        thread.start()
    deadline = time.time() + 10
    while len(group._queue) < len(writes) and time.time() < deadline:
        time.sleep(0.01)
    assert len(group._queue) == len(writes)
    release.set()
    for thread in [leader, *threads]:
        thread.join(20)
    return outcomes


def test_intakes_that_arrive_together_share_one_commit_and_a_bad_one_takes_none_with_it(cases):
    """Intake throughput (issue #10 §6, "fewer flushes and round trips per case"): writes queued while one runs
    share the next transaction; one failing write is refused alone and the others are stored; two requests with
    one Idempotency-Key in one transaction still make one case."""
    commits = []

    def stored(outcome) -> bool:  # the case row as written (a plain row, store.bulk), and in the database
        return not isinstance(outcome, BaseException) and cases.get(outcome.id)[0].unit == outcome.unit
    event.listen(cases.engine, "commit", lambda _conn: commits.append(1))
    router = cases.policies.router("karamay")

    def intake(n: int, key: str | None = None):
        case = Case(problem_type="医疗废物处置", unit=f"kmy-l3-0{n % 9 + 1}")
        decision = router.route(case.model_copy(update={"reported_at": T0}))
        return lambda session: cases._add(session, router, decision, "karamay", case, "intake", T0, key, "", None)

    def broken(session):
        raise ValueError("这个写入坏了")
    outcomes = queued_behind_a_leader(cases.intakes, [intake(n) for n in range(12)])
    assert all(stored(outcomes[n]) for n in range(12)), outcomes
    assert len(commits) == 1  # one for the twelve queued behind the leader (which wrote nothing)
    outcomes = queued_behind_a_leader(cases.intakes, [intake(0), broken, intake(1)])
    assert isinstance(outcomes[1], ValueError) and str(outcomes[1]) == "这个写入坏了"
    assert stored(outcomes[0]) and stored(outcomes[2])
    assert cases.search("karamay")[0] == 14
    duplicates = queued_behind_a_leader(cases.intakes, [intake(n, key=f"same-{n % 3}") for n in range(6)])
    assert [stored(duplicates[n]) for n in range(6)].count(True) == 3
    assert cases.search("karamay")[0] == 17  # the other three: IntegrityError, which create() answers with the first

    # through CaseService.create, concurrent retries with one key still answer with one case
    created = []
    threads = [threading.Thread(target=lambda: created.append(cases.create("karamay", MEDICAL, "intake", now=T0,
                                                                            idempotency_key="retry")))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert len(created) == 8 and len({record.id for record in created}) == 1


def test_writers_of_one_process_take_turns_before_sqlite_lock(tmp_path):
    """A dozen handler threads writing to SQLite at once: each waits its turn in the process (not in SQLite's
    sleeping busy handler) and none is refused; a write that cannot get its turn in time is a 503."""
    import store.db as db  # noqa: PLC0415
    from store.errors import Busy  # noqa: PLC0415
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (n INTEGER)")
    errors = []

    def write(n: int) -> None:
        try:
            with engine.begin() as connection:
                connection.exec_driver_sql(f"INSERT INTO t VALUES ({n})")
                time.sleep(0.01)
        except Exception as err:  # noqa: BLE001 - the test reads it
            errors.append(err)
    threads = [threading.Thread(target=write, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM t").scalar() == 12
    waited = db.WRITE_WAIT_SECONDS
    db.WRITE_WAIT_SECONDS = 0.2
    try:
        holder = engine.connect()
        holder.begin()
        holder.exec_driver_sql("INSERT INTO t VALUES (99)")
        with pytest.raises(Busy) as refused, engine.begin():
            pass
        assert refused.value.status == 503
        holder.rollback()
        holder.close()
        with engine.begin() as connection:  # the lock was given back
            connection.exec_driver_sql("INSERT INTO t VALUES (100)")
    finally:
        db.WRITE_WAIT_SECONDS = waited
    engine.dispose()


def _hold_a_write(path: str, holding, release) -> None:
    """In another process: a write transaction open until `release` is set."""
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO t VALUES (1)")
        holding.set()
        release.wait(30)
    engine.dispose()


def test_writers_of_several_processes_take_turns_before_sqlite_lock(tmp_path):
    """Issue #10 (two workers' intake p99): a write waiting for another process's is woken when it ends, in the
    processes' own lock (an flock beside the database), not in SQLite's busy handler, which sleeps up to 100 ms
    between looks; one that cannot get its turn in time is a 503 and writes nothing."""
    import multiprocessing  # noqa: PLC0415

    import store.db as db  # noqa: PLC0415
    from store.errors import Busy  # noqa: PLC0415
    path = tmp_path / "p.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (n INTEGER)")
    context = multiprocessing.get_context("spawn")
    holding, release = context.Event(), context.Event()
    other = context.Process(target=_hold_a_write, args=(str(path), holding, release))
    other.start()
    assert holding.wait(60)
    waited, db.WRITE_WAIT_SECONDS = db.WRITE_WAIT_SECONDS, 0.3
    try:
        with pytest.raises(Busy) as refused, engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO t VALUES (2)")
        assert refused.value.status == 503
        db.WRITE_WAIT_SECONDS = 30
        waiting = []

        def write() -> None:
            with engine.begin() as connection:
                connection.exec_driver_sql("INSERT INTO t VALUES (3)")
            waiting.append("written")
        def lock_waiters() -> int:  # the refused write's waiter is still there, to give the lock back when it comes
            return sum(t.name == "sqlite-process-lock" and t.is_alive() for t in threading.enumerate())
        refused_waiters = lock_waiters()
        writer = threading.Thread(target=write)
        writer.start()
        for _ in range(200):  # the write waits in the processes' lock, not in SQLite
            if lock_waiters() > refused_waiters:
                break
            time.sleep(0.05)
        assert waiting == [] and lock_waiters() == refused_waiters + 1
        release.set()
        writer.join(30)
        other.join(30)
        assert waiting == ["written"]
    finally:
        db.WRITE_WAIT_SECONDS = waited
        release.set()
    with engine.connect() as connection:  # the refused write left nothing; the other two are stored
        assert sorted(n for (n,) in connection.exec_driver_sql("SELECT n FROM t")) == [1, 3]
    engine.dispose()
