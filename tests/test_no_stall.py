"""A worker never stalls (#17): a real server (uvicorn, SQLite) whose database write lock is held by another
process, as a long write would hold it. Intakes wait for the lock in handler threads; meanwhile /health and
routing answer, because they run on the event loop and only read (WAL readers never wait for the writer).
A write that waits longer than GRIDPOLICY_WRITE_WAIT_SECONDS is refused with a 503 problem and writes nothing."""
from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest
from litestar import Litestar, get
from litestar.testing import TestClient

import api.guards
import store.budget
from api.guards import read_deadline
from store.apikeys import create_key
from store.db import make_engine
from store.versions import open_policy_store
from tests.admin_browser import running_server

WRITE_WAIT = 6  # seconds a write waits for the lock in this server
CASE = {"jurisdiction": "karamay", "problem_type": "医疗废物处置", "unit": "kmy-l3-01"}


@pytest.fixture(scope="module")
def server(prepared_sqlite, tmp_path_factory, request):
    path = tmp_path_factory.mktemp("stall") / "stall.db"
    shutil.copy(prepared_sqlite, path)
    engine = make_engine(f"sqlite:///{path}")
    key = create_key(engine, [], "stall", "test")
    engine.dispose()
    patch = pytest.MonkeyPatch()
    patch.setenv("GRIDPOLICY_WRITE_WAIT_SECONDS", str(WRITE_WAIT))
    with running_server(f"sqlite:///{path}") as base:
        yield base, {"X-API-Key": key}, path
    patch.undo()


@contextmanager
def write_lock(path):
    """Another process's write transaction, holding SQLite's write lock until the block ends."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        connection.execute("ROLLBACK")
        connection.close()


def _count(base, auth) -> int:
    return httpx.get(f"{base}/v1/cases", params={"jurisdiction": "karamay", "limit": 1}, headers=auth).json()["total"]


def test_health_and_routing_answer_while_intakes_wait_for_the_database(server):
    base, auth, path = server
    before = _count(base, auth)
    with ThreadPoolExecutor(6) as pool:
        with write_lock(path):
            intakes = [pool.submit(httpx.post, f"{base}/v1/cases", json=CASE, headers=auth, timeout=60)
                       for _ in range(6)]
            time.sleep(1)  # the intakes reach the server and wait for the lock
            health = httpx.get(f"{base}/health", timeout=WRITE_WAIT)
            routed = httpx.post(f"{base}/v1/route", json=CASE, headers=auth, timeout=WRITE_WAIT)
            assert health.status_code == 200 and health.json()["status"] == "ok"
            assert routed.status_code == 200 and routed.json()["handler"]["level"] == 2
            # both answered while every intake was still waiting for the lock
            assert not any(f.done() for f in intakes)
        assert [f.result().status_code for f in intakes] == [201] * 6
    assert _count(base, auth) == before + 6


def test_an_admin_page_whose_session_waits_for_the_database_stalls_nothing(server):
    """Each admin request reads and renews its session row (a write): while that waits for the lock, in a thread,
    /health still answers (before, the session store wrote on the event loop and held up the whole worker)."""
    from store.users import create_user  # noqa: PLC0415
    base, _, path = server
    engine = make_engine(f"sqlite:///{path}")
    create_user(engine, "值班员", "password-123", False, {"karamay": "viewer"}, "test")
    engine.dispose()
    with httpx.Client(base_url=base, timeout=60) as admin, ThreadPoolExecutor(1) as pool:
        token = admin.get("/admin/login").cookies.get("gp_csrf")
        signed = admin.post("/admin/login", data={"name": "值班员", "password": "password-123"},
                            headers={"X-CSRFToken": token})
        assert signed.status_code in (302, 303) and "login" not in signed.headers["location"]
        with write_lock(path):
            page = pool.submit(admin.get, "/admin/j/karamay/assessment")
            time.sleep(1)  # the page's session renewal waits for the lock
            health = httpx.get(f"{base}/health", timeout=WRITE_WAIT / 2)
            assert health.status_code == 200 and not page.done()
        assert page.result().status_code == 200


def test_a_write_waiting_beyond_its_budget_is_refused_and_writes_nothing(server):
    base, auth, path = server
    before = _count(base, auth)
    with write_lock(path):
        refused = httpx.post(f"{base}/v1/cases", json=CASE, headers=auth, timeout=60)
        assert httpx.get(f"{base}/health", timeout=WRITE_WAIT).status_code == 200
    assert refused.status_code == 503
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.headers["retry-after"] == "1"
    assert "未保存任何内容" in refused.json()["detail"]
    assert _count(base, auth) == before
    assert httpx.post(f"{base}/v1/cases", json=CASE, headers=auth).status_code == 201  # the lock is free again


# --- the read budget: a GET waits for a build only so long (#17)
READ_BUDGET = 0.001  # seconds: shorter than any build (a Hefei draft reusing its parent's parts builds in < 50 ms)


@pytest.fixture(scope="module")
def budget_server(prepared_sqlite, tmp_path_factory):
    """Hefei with a second published version; the server's reads have a 1 ms budget."""
    path = tmp_path_factory.mktemp("budget") / "budget.db"
    shutil.copy(prepared_sqlite, path)
    policies = open_policy_store(f"sqlite:///{path}")
    draft = policies.create_draft("hefei", "编辑")
    document = policies.document(draft)
    document["departments"][0]["duties"] = [*document["departments"][0]["duties"], "汇总巡查情况"]
    policies.update_draft("hefei", draft.number, document, draft.revision, "编辑")
    policies.publish("hefei", draft.number, "发布人", "增加部门职责")
    policies.engine.dispose()
    patch = pytest.MonkeyPatch()
    patch.setenv("GRIDPOLICY_READ_SECONDS", str(READ_BUDGET))
    with running_server(f"sqlite:///{path}") as base:
        yield base, f"sqlite:///{path}"
    patch.undo()


def test_a_read_waiting_for_a_build_past_its_budget_is_refused_and_answered_on_retry(budget_server):
    # a draft written after the server started: nothing can have built it there, so the diff waits for its build
    base, url = budget_server
    policies = open_policy_store(url)
    draft = policies.create_draft("hefei", "编辑")
    document = policies.document(draft)
    document["departments"][0]["duties"] = [*document["departments"][0]["duties"], "核对巡查记录"]
    policies.update_draft("hefei", draft.number, document, draft.revision, "编辑")
    policies.engine.dispose()
    diff = f"{base}/v1/jurisdictions/hefei/diff?from=2&to={draft.number}"
    refused = httpx.get(diff, timeout=30)
    assert refused.status_code == 503
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.headers["retry-after"] == "5"
    assert "正在准备中" in refused.json()["detail"] and "still being prepared" in refused.json()["detail"]
    assert httpx.get(f"{base}/health", timeout=5).status_code == 200
    deadline = time.monotonic() + 120
    while (answer := httpx.get(diff, timeout=30)).status_code == 503:  # the build went on: a retry finds it
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.5)
    assert answer.status_code == 200 and answer.json()["departments"]


def test_a_handler_running_past_the_read_budget_is_answered_with_503_at_once(monkeypatch):
    """A GET whose handler computes on past its budget (no build to wait for): the client is not kept waiting."""
    monkeypatch.setattr(api.guards, "READ_SECONDS", 0.2)
    monkeypatch.setattr(store.budget, "READ_SECONDS", 0.2)
    finished = threading.Event()

    @get("/slow", sync_to_thread=True)
    def slow() -> str:
        time.sleep(3)
        finished.set()
        return "late"

    with TestClient(Litestar([slow], middleware=[read_deadline])) as client:
        answer = client.get("/slow")
        assert not finished.is_set()  # answered while the handler still ran
        assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
        assert answer.headers["content-type"] == "application/problem+json"
        assert "时间预算" in answer.json()["detail"] and "budget" in answer.json()["detail"]
