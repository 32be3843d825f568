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
