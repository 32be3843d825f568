"""Events delivered out: signed webhooks to a real receiving HTTP server, retries, dead letters, several workers,
kill -9 of the delivering server, and the pull feed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import httpx
import pytest
from sqlmodel import Session, func, select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from engine.router import Case
from policy.loader import REPO_ROOT
from store import webhooks
from store.apikeys import create_key
from store.cases import Transition
from store.db import make_engine
from store.outbox import OutboxEvent
from store.sweeper import sweep
from store.tables import CaseEvent, Notification, utcnow
from tests.admin_browser import free_port
from tests.test_intake_geo import client  # noqa: F401  (the fixture)
from tests.receiver import receiving

JID = "karamay"
CASE = {"jurisdiction": JID, "problem_type": "医疗废物处置", "unit": "kmy-l3-01"}


@pytest.fixture
def receiver():
    with receiving() as r:
        yield r


def subscribe(client, url: str, kinds=()) -> dict:
    response = client.post(f"/v1/jurisdictions/{JID}/webhooks",
                           json={"url": url, "kinds": list(kinds), "actor": "集成"}, headers=client.headers_)
    assert response.status_code == 201, response.text
    return response.json()


def new_cases(client, count: int) -> list[int]:
    ids = []
    for _ in range(count):
        record = client.services.cases.create(JID, Case(problem_type="医疗废物处置", unit="kmy-l3-01"), "测试")
        client.services.cases.transition(record.id, Transition("complete", "网格员", "已上报"))
        ids.append(record.id)
    return ids


def drain(engine, later: timedelta = timedelta(0), rounds: int = 50) -> None:
    for _ in range(rounds):
        if not any(webhooks.deliver_due(engine, utcnow() + later).values()):
            return


def events_of(engine) -> list[OutboxEvent]:
    webhooks.publish(engine)
    with Session(engine) as session:
        return list(session.exec(select(OutboxEvent).order_by(OutboxEvent.seq)).all())


def test_deliveries_are_signed_complete_and_in_order_per_case(client, receiver):
    sub = subscribe(client, receiver.url)
    assert sub["secret"].startswith("whsec_") and "secret" not in client.get(
        f"/v1/jurisdictions/{JID}/webhooks", headers=client.headers_).json()[0]
    new_cases(client, 3)
    sweep(client.services.cases, utcnow() + timedelta(days=30))  # warnings, overdue, escalations
    drain(client.engine)
    events = events_of(client.engine)
    with Session(client.engine) as session:  # one outbox row per event and warning, written with it
        written = session.exec(select(func.count()).select_from(CaseEvent)).one() + session.exec(
            select(func.count()).select_from(Notification).where(Notification.kind.like("warning%"))).one()
    assert len(events) == written and {e.kind for e in events} >= {"case.created", "case.escalated", "case.warning_50"}
    assert len(receiver.ids()) == len(set(receiver.ids()))  # each event once
    assert sorted(receiver.ids()) == sorted(f"evt_{e.id}" for e in events)
    verifier = Webhook(sub["secret"])
    by_case: dict[int, list[int]] = {}
    for item in receiver.received:  # the ping first, then the events
        payload = verifier.verify(item["body"], item["headers"])  # raises unless the signature is right
        assert payload["timestamp"].endswith("+08:00") and payload["data"]["jurisdiction"] == JID
        if payload["type"] == "webhook.ping":
            continue
        by_case.setdefault(payload["data"]["case_id"], []).append(int(payload["data"]["cursor"]))
    assert all(seqs == sorted(seqs) for seqs in by_case.values()) and len(by_case) == 3
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.new_secret()).verify(receiver.received[0]["body"], receiver.received[0]["headers"])


def test_a_receiver_failing_twice_gets_the_event_on_the_third_try(client, receiver):
    subscribe(client, receiver.url, kinds=["case.created", "case.completed", "case.entered"])
    receiver.fail_first = 2
    new_cases(client, 2)
    for minute in range(1, 20):  # one try per case and round: 3 events × 3 tries
        webhooks.deliver_due(client.engine, utcnow() + timedelta(minutes=minute))
    events = [e for e in events_of(client.engine) if e.kind in ("case.created", "case.completed", "case.entered")]
    assert sorted(receiver.ids()) == sorted(f"evt_{e.id}" for e in events)
    assert all(receiver.tries[f"evt_{e.id}"] == 3 for e in events)
    seq_of = {f"evt_{e.id}": (e.case_id, e.seq) for e in events}
    for case_id in {e.case_id for e in events}:
        order = [seq_of[i][1] for i in receiver.ids() if seq_of[i][0] == case_id]
        assert order == sorted(order)  # a retried event is not overtaken by the next one of its case


def test_after_24_hours_of_failures_a_delivery_is_dead_lettered_and_can_be_redelivered(client, receiver):
    subscribe(client, receiver.url, kinds=["case.created"])
    receiver.fail_first = 10**6
    client.services.cases.create(JID, Case(problem_type="医疗废物处置", unit="kmy-l3-01"), "测试")
    hours = 0
    while hours < 40:
        webhooks.deliver_due(client.engine, utcnow() + timedelta(hours=hours))
        hours += 1
    failed = client.get(f"/v1/jurisdictions/{JID}/webhooks/failures", headers=client.headers_).json()
    assert len(failed) == 1 and failed[0]["status"] == "dead" and failed[0]["last_error"] == "HTTP 500"
    tries = receiver.tries[f"evt_{failed[0]['event_id']}"]
    assert 20 <= tries <= 26  # hourly rounds: the backoff (capped at an hour) allows one try per round, for 24 hours
    receiver.fail_first = 0
    answer = client.post(f"/v1/jurisdictions/{JID}/webhooks/deliveries/{failed[0]['id']}/redeliver",
                         headers=client.headers_)
    assert answer.status_code == 200 and answer.json()["status"] == "pending"
    drain(client.engine)
    assert receiver.ids() == [f"evt_{failed[0]['event_id']}"]
    assert client.get(f"/v1/jurisdictions/{JID}/webhooks/failures", headers=client.headers_).json() == []
    again = client.post(f"/v1/jurisdictions/{JID}/webhooks/deliveries/{failed[0]['id']}/redeliver",
                        headers=client.headers_)
    assert again.status_code == 422 and "已成功" in again.json()["detail"]


def test_several_workers_never_deliver_one_event_twice(client, receiver):
    subscribe(client, receiver.url)
    new_cases(client, 8)
    errors = []

    def worker():
        try:
            drain(client.engine)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ids = receiver.ids()
    assert len(ids) == len(set(ids)) == len(events_of(client.engine))


@pytest.mark.parametrize("url, message", [
    ("ftp://127.0.0.1/hooks", "http:// 或 https://"),
    ("javascript:alert(1)", "http:// 或 https://"),
    ("http://127.0.0.1:{closed}/hooks", "无法连接"),
])
def test_a_bad_or_unreachable_url_is_refused_and_nothing_is_stored(client, url, message):
    response = client.post(f"/v1/jurisdictions/{JID}/webhooks", json={
        "url": url.format(closed=free_port()), "actor": "集成"}, headers=client.headers_)
    assert response.status_code == 422 and message in response.json()["detail"] and response.json()["field"] == "url"
    assert client.get(f"/v1/jurisdictions/{JID}/webhooks", headers=client.headers_).json() == []


def test_unknown_kinds_or_secret_are_refused(client, receiver):
    for body, field in (({"kinds": ["case.exploded"]}, "kinds"), ({"secret": "hunter2"}, "secret")):
        response = client.post(f"/v1/jurisdictions/{JID}/webhooks", json={"url": receiver.url, "actor": "集成", **body},
                               headers=client.headers_)
        assert response.status_code == 422 and response.json()["field"] == field
    assert receiver.tries == {}  # refused before any request went out


def test_an_intake_numbers_its_events_and_makes_their_deliveries_as_it_commits(client, receiver):
    """Issue #10 (intake ≥500 cases/s): an intake numbers its events and fans them out in its own transaction (a
    sequencer's transaction after each group of intakes cost a tenth of their CPU). Right after it, before any
    publish, each event has a number after every earlier event's, in the order written, and a delivery."""
    from store.webhooks import WebhookDelivery  # noqa: PLC0415
    subscribe(client, receiver.url)
    new_cases(client, 1)  # a transition's events are left to the sequencer: numbered below
    last = max(e.seq for e in events_of(client.engine))
    record = client.services.cases.create(JID, Case(problem_type="医疗废物处置", unit="kmy-l3-02"), "测试")
    with Session(client.engine) as session:
        rows = session.exec(select(OutboxEvent).where(OutboxEvent.case_id == record.id)
                            .order_by(OutboxEvent.id)).all()
        deliveries = session.exec(select(WebhookDelivery).where(WebhookDelivery.case_id == record.id)).all()
    assert [r.kind for r in rows] == ["case.created", "case.entered"]
    assert [r.seq for r in rows] == [last + 1, last + 2]
    assert sorted(d.event_id for d in deliveries) == [r.id for r in rows]


def test_the_pull_feed_pages_with_a_stable_cursor(client):
    new_cases(client, 4)
    seen, after = [], None
    while True:
        params = {"jurisdiction": JID, "limit": 3, **({"after": after} if after else {})}
        page = client.get("/v1/events", params=params, headers=client.headers_).json()
        seen += page["items"]
        after = page["next"]
        if not page["has_more"]:
            break
    assert [int(e["data"]["cursor"]) for e in seen] == sorted(int(e["data"]["cursor"]) for e in seen)
    assert len(seen) == len(events_of(client.engine)) == 12
    assert client.get("/v1/events", params={"jurisdiction": JID, "after": after},
                      headers=client.headers_).json()["items"] == []
    new_cases(client, 1)
    fresh = client.get("/v1/events", params={"jurisdiction": JID, "after": after}, headers=client.headers_).json()
    assert [e["type"] for e in fresh["items"]] == ["case.created", "case.entered", "case.completed"]
    closed = client.get("/v1/events", params={"kinds": "case.created"}, headers=client.headers_).json()
    assert {e["type"] for e in closed["items"]} == {"case.created"} and len(closed["items"]) == 5
    for params, field in (({"after": "abc"}, "after"), ({"kinds": "case.nope"}, "kinds")):
        response = client.get("/v1/events", params=params, headers=client.headers_)
        assert response.status_code == 422 and response.json()["field"] == field
    scoped = {"X-API-Key": create_key(client.engine, ["panjin"], "scoped", "test")}
    assert client.get("/v1/events", headers=scoped).status_code == 403
    assert client.get("/v1/events", params={"jurisdiction": "panjin"}, headers=scoped).json()["items"] == []


def start_server(url: str, port: int, poll: str = "0.1") -> subprocess.Popen:
    env = os.environ | {"GRIDPOLICY_DATABASE_URL": url, "GRIDPOLICY_WEBHOOK_LEASE": "2",
                        "GRIDPOLICY_WEBHOOK_RETRY_BASE": "0.2", "GRIDPOLICY_DELIVERY_SECONDS": poll}
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host",
                                "127.0.0.1", "--port", str(port), "--log-level", "warning"], env=env, cwd=REPO_ROOT)
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, "server did not start"
        time.sleep(0.3)


def subscribed(base: str, engine, receiver) -> dict:
    """An API key's headers, with the receiver subscribed to every event of the jurisdiction."""
    headers = {"X-API-Key": create_key(engine, [], "all", "test")}
    httpx.post(f"{base}/v1/jurisdictions/{JID}/webhooks", json={"url": receiver.url, "actor": "集成"},
               headers=headers, timeout=30).raise_for_status()
    return headers


def received_all(receiver, engine, case_id: int) -> None:
    wanted = {f"evt_{e.id}" for e in events_of(engine) if e.case_id == case_id}
    deadline = time.monotonic() + 60
    while not wanted <= set(receiver.ids()):
        assert time.monotonic() < deadline, f"not delivered: {wanted - set(receiver.ids())}"
        time.sleep(0.2)


def test_a_new_event_wakes_the_idle_delivery_loop(database_url, receiver):
    """Idle, the loop does not poll every half second: it waits for a commit that wrote events (here its fallback
    poll is an hour, so only the wake-up can deliver)."""
    port = free_port()
    server = start_server(database_url, port, poll="3600")
    try:
        base = f"http://127.0.0.1:{port}"
        app_engine = make_engine(database_url)
        headers = subscribed(base, app_engine, receiver)
        case = httpx.post(f"{base}/v1/cases", json=CASE, headers=headers, timeout=30).json()
        received_all(receiver, app_engine, case["id"])
        app_engine.dispose()
    finally:
        server.terminate()
        server.wait(20)


def test_kill_9_of_the_server_during_delivery_loses_nothing(database_url, receiver):
    port = free_port()
    first = start_server(database_url, port)
    second = None
    try:
        base = f"http://127.0.0.1:{port}"
        app_engine = make_engine(database_url)
        headers = subscribed(base, app_engine, receiver)
        receiver.holding = True  # the first delivery hangs in the receiver
        case = httpx.post(f"{base}/v1/cases", json=CASE, headers=headers, timeout=30).json()
        assert receiver.held.wait(30), "no delivery started"
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        receiver.holding = False
        receiver.hold.set()
        second = start_server(database_url, free_port())
        received_all(receiver, app_engine, case["id"])
        app_engine.dispose()
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(20)
