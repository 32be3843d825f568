"""Webhook delivery (`make bench`): events delivered per second to a local receiver, and the lag from an event's
commit to its receipt (p50/p99) while cases arrive. Baseline in the same run: bare signed POSTs to the same
receiver, without the database."""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
from sqlmodel import Session, select  # noqa: E402

from engine.router import Case  # noqa: E402
from store import webhooks  # noqa: E402
from store.cases import CaseService  # noqa: E402
from store.tables import as_utc  # noqa: E402
from store.outbox import OutboxEvent  # noqa: E402
from store.versions import open_policy_store  # noqa: E402
from tests.receiver import receiving  # noqa: E402

JID = "karamay"


def create(cases: CaseService, count: int, pause: float = 0.0) -> None:
    for _ in range(count):
        cases.create(JID, Case(problem_type="医疗废物处置", unit="kmy-l3-01"), "bench")
        time.sleep(pause)


def run(url: str, backlog: int, live: int) -> dict:
    policies = open_policy_store(url)
    cases = CaseService(policies)
    with receiving() as receiver:
        sub = webhooks.subscribe(policies.engine, JID, receiver.url, [], "bench")
        with httpx.Client() as client:  # baseline: signed POSTs straight to the receiver
            started = time.perf_counter()
            for i in range(300):
                webhooks._post(client, sub, f"base_{i}", {"type": "bench", "data": {"i": i}})
            baseline = 300 / (time.perf_counter() - started)
        create(cases, backlog)
        webhooks.publish(policies.engine)
        sent = len(receiver.ids())
        started = time.perf_counter()
        while any(webhooks.deliver_due(policies.engine, limit=200).values()):
            pass
        elapsed = time.perf_counter() - started
        throughput = (len(receiver.ids()) - sent) / elapsed
        # lag: a worker loop like the server's runs while cases arrive
        stop = threading.Event()

        def worker() -> None:
            while not stop.is_set():
                if not any(webhooks.deliver_due(policies.engine).values()):
                    time.sleep(0.05)
        thread = threading.Thread(target=worker)
        thread.start()
        before = set(receiver.ids())
        create(cases, live, pause=0.05)
        deadline = time.monotonic() + 60
        with Session(policies.engine) as session:
            expected = len(session.exec(select(OutboxEvent.id)).all())
        while len(receiver.ids()) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        thread.join()
        with Session(policies.engine) as session:
            at = {f"evt_{e.id}": as_utc(e.at).timestamp() for e in session.exec(select(OutboxEvent))}
        lags = sorted(r["at"] - at[r["id"]] for r in receiver.received if r["id"] in at and r["id"] not in before)
    policies.engine.dispose()
    return {"events_backlog": backlog * 3, "delivered_per_s": round(throughput, 1),
            "baseline_bare_posts_per_s": round(baseline, 1), "live_events": len(lags),
            "lag_p50_ms": round(statistics.median(lags) * 1000, 1),
            "lag_p99_ms": round(lags[int(len(lags) * 0.99) - 1] * 1000, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path)
    parser.add_argument("--pg-url", default=None)
    parser.add_argument("--backlog", type=int, default=300, help="cases created before delivery starts (3 events each)")
    parser.add_argument("--live", type=int, default=100, help="cases created while the worker runs, 20/s")
    args = parser.parse_args()
    results = {"when": datetime.now(timezone.utc).isoformat(), "machine": platform.platform()}
    with tempfile.TemporaryDirectory() as folder:
        results["sqlite"] = run(f"sqlite:///{folder}/events.db", args.backlog, args.live)
    if args.pg_url:
        import psycopg  # noqa: PLC0415
        admin = args.pg_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS gp_events_bench WITH (FORCE)")
            conn.execute("CREATE DATABASE gp_events_bench")
        results["postgresql"] = run(args.pg_url.rsplit("/", 1)[0] + "/gp_events_bench", args.backlog, args.live)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS gp_events_bench WITH (FORCE)")
    print(json.dumps(results, ensure_ascii=False, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
