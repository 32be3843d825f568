"""`make bench` (ledger part): a Hefei-size supervision ledger — 1,649 grids, 20,000 supervised objects, a year of
daily patrols (~600,000 records) — then the cadence compliance of a month and a quarter, patrol intake one record per
transaction, one per call from 16 threads at once (they share commits) and in batches (store), one per request over HTTP
from 1 and 16 connections, and the ledger's admin pages over real HTTP; into bench/ledger_results.json.

Baselines measured in the same run (this machine's speed varies 2× with its load): a plain COUNT of the month's
records, and case intake (CaseService.create, one case per transaction)."""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import httpx
from sqlalchemy import func, select
from sqlmodel import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.admin_bench import PASSWORD, measure, sign_in  # noqa: E402
from engine.router import Case  # noqa: E402
from store.assessment import Period  # noqa: E402
from store.cadences import CadenceService, period_days  # noqa: E402
from store.cases import CaseService  # noqa: E402
from store.ledger import CST, LedgerService, PatrolInput  # noqa: E402
from store.simulate_ledger import simulate_ledger  # noqa: E402
from store.tables import PatrolRecord  # noqa: E402
from store.users import create_user  # noqa: E402
from store.versions import open_policy_store  # noqa: E402
from tests.admin_browser import running_server  # noqa: E402

JID = "hefei"
NOW = datetime(2026, 12, 31, 12, tzinfo=CST)  # the simulated year is over: every period is settled


def timed(fn, repeats: int = 3) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times), 3), result


BATCH = 500  # patrols per POST …/patrols/batch
THREADS = 16  # concurrent one-record intakes (requests in flight at once)


def intake(policies, n: int) -> dict:
    """Patrol records one per transaction through LedgerService (as POST …/patrols does) and in batches (as
    POST …/patrols/batch does), and case intake as a baseline."""
    ledger, cases = LedgerService(policies), CaseService(policies)
    units = sorted(u.id for u in policies.router(JID).units.values() if u.level == 4)
    t0 = time.perf_counter()
    for i in range(n):
        ledger.record_patrol(JID, PatrolInput(unit=units[i % len(units)], patrolled_at=NOW - timedelta(minutes=i),
                                              patrollers=["网格员"], signed_by="网格员"),
                             "bench", f"bench-{i}", now=NOW)
    patrols = n / (time.perf_counter() - t0)

    def post(first: int) -> None:  # one record per call, as concurrent requests make them: they share commits
        for i in range(first, n, THREADS):
            ledger.record_patrol(JID, PatrolInput(unit=units[i % len(units)],
                                                  patrolled_at=NOW - timedelta(days=2, minutes=i),
                                                  patrollers=["网格员"], signed_by="网格员"), "bench", f"together-{i}",
                                 now=NOW)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(post, range(THREADS)))
    together = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for start in range(0, n, BATCH):
        ledger.record_patrols(JID, [(PatrolInput(unit=units[i % len(units)],
                                                 patrolled_at=NOW - timedelta(days=1, minutes=i),
                                                 patrollers=["网格员"], signed_by="网格员"), f"batch-{i}")
                                    for i in range(start, min(n, start + BATCH))], "bench", now=NOW)
    batched = n / (time.perf_counter() - t0)
    types = [t.code for t in policies.router(JID).jur.policy.problem_types]
    m = max(50, n // 10)
    t0 = time.perf_counter()
    for i in range(m):
        cases.create(JID, Case(problem_type=types[i % len(types)], unit=units[i % len(units)]), "bench", now=NOW)
    return {"patrols_per_s": round(patrols), f"patrols_from_{THREADS}_threads_per_s": round(together),
            f"patrols_in_batches_of_{BATCH}_per_s": round(batched),
            "baseline_cases_per_s": round(m / (time.perf_counter() - t0))}


def http_intake(base: str, key: str, n: int, connections: int, days_ago: int) -> float:
    """POST …/patrols, one record per request, from `connections` keep-alive connections at once."""
    units = ["hf-l4-0001", "hf-l4-0002", "hf-l4-0003"]

    def post(first: int) -> None:
        with httpx.Client(base_url=base, timeout=60, headers={"X-API-Key": key}) as client:
            for i in range(first, n, connections):
                answer = client.post(f"/v1/jurisdictions/{JID}/patrols",
                                     headers={"Idempotency-Key": uuid.uuid4().hex}, json={
                    "unit": units[i % 3], "patrolled_at": (NOW - timedelta(days=days_ago, minutes=i)).isoformat(),
                    "patrollers": ["网格员"], "signed_by": "网格员"})
                assert answer.status_code == 201, answer.text
    t0 = time.perf_counter()
    with ThreadPoolExecutor(connections) as pool:
        list(pool.map(post, range(connections)))
    return round(n / (time.perf_counter() - t0))


PAGES = {
    "baseline /health": "/health",
    "objects hefei": f"/admin/j/{JID}/ledger",
    "objects search (pinyin)": f"/admin/j/{JID}/ledger?q=mnwry&page=3",
    "objects of a township": f"/admin/j/{JID}/ledger?unit=hf-l3c-01",
    "object page": f"/admin/j/{JID}/ledger/objects/1",
    "patrols hefei": f"/admin/j/{JID}/patrols",
    "patrols of a township, a month": f"/admin/j/{JID}/patrols?unit=hf-l3c-01&from=2026-11-01&to=2026-12-01",
    "cadences of a township": f"/admin/j/{JID}/cadences?period=2026-11&unit=hf-l3c-01",
    "cadences hefei (6-period trend)": f"/admin/j/{JID}/cadences?period=2026-11",
}


def page_times(url: str, key: str, http_n: int) -> tuple[dict, dict]:
    """Patrol intake over HTTP (records/s, one connection and THREADS) and the ledger pages' times, with /health as
    the same-run baseline."""
    with running_server(url) as base, httpx.Client(base_url=base, timeout=60) as client:
        http = {"http_patrols_per_s": http_intake(base, key, http_n, 1, 400),
                f"http_patrols_{THREADS}_connections_per_s": http_intake(base, key, http_n, THREADS, 500)}
        sign_in(client)
        return http, {name: measure(client, path, 20) for name, path in PAGES.items()}


def run(url: str, sources: int, months: int, intake_n: int, pages: bool) -> dict:
    policies = open_policy_store(url)
    start = date(2027 - (months + 11) // 12, (12 - months) % 12 + 1, 1)  # the last `months` months of 2026
    t0 = time.perf_counter()
    counts = simulate_ledger(policies, JID, sources, start, (NOW.date() - start).days + 1, seed=1, daily=True, now=NOW)
    out: dict = {"simulated": counts, "simulate_s": round(time.perf_counter() - t0, 1)}
    service = CadenceService(policies)
    month, quarter = Period.parse("2026-11"), Period.parse("2026-Q3" if months >= 6 else "2026-Q4")
    with Session(policies.engine) as session:
        start, end = date(2026, 11, 1), date(2026, 12, 1)
        out["baseline_count_month_s"], _ = timed(lambda: session.exec(
            select(func.count()).select_from(PatrolRecord).where(
                PatrolRecord.jurisdiction == JID, PatrolRecord.day >= start, PatrolRecord.day < end)).one())
    out["compliance_month_s"], result = timed(lambda: service.compliance(JID, month, NOW))
    out["compliance_month_levels"] = result["levels"]
    out["compliance_quarter_s"], _ = timed(lambda: service.compliance(JID, quarter, NOW))
    out["missed_month_s"], _ = timed(lambda: service.missed(JID, *period_days(month), NOW))
    # the admin dashboard's figures (report and 6-period trend): the first view counts the settled periods, later
    # ones keep them until their tallies are written again
    t0 = time.perf_counter()
    service.dashboard(JID, month, 6, NOW)
    out["dashboard_first_s"] = round(time.perf_counter() - t0, 3)
    out["dashboard_s"], _ = timed(lambda: service.dashboard(JID, month, 6, NOW))
    out["sweep_s"], _ = timed(lambda: service.sweep(NOW), repeats=1)
    out["intake"] = intake(policies, intake_n)
    if pages:
        from store.apikeys import create_key  # noqa: PLC0415
        key = create_key(policies.engine, [], "bench", "bench")
        create_user(policies.engine, "bench", PASSWORD, True, {}, "bench")
        http, out["pages"] = page_times(url, key, max(100, intake_n // 4))
        out["intake"].update(http)
    policies.engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("bench/ledger_results.json"))
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--pg-url", default=os.environ.get("GRIDPOLICY_TEST_DATABASE_URL"))
    parser.add_argument("--sources", type=int, default=20_000)
    parser.add_argument("--months", type=int, default=12, choices=range(1, 13),
                        help="months of daily patrols up to the end of 2026 (fewer: a smaller ledger for iterating)")
    parser.add_argument("--intake", type=int, default=2000, help="patrol records posted one per transaction")
    args = parser.parse_args()
    report = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "python": platform.python_version(),
              "cpus": os.cpu_count(), "load_average_start": os.getloadavg(), "jurisdiction": JID,
              "sources": args.sources, "months": args.months, "backends": {}}
    with tempfile.TemporaryDirectory() as tmp:
        if args.backend in ("sqlite", "both"):
            report["backends"]["sqlite"] = run(f"sqlite:///{tmp}/ledger.db", args.sources, args.months, args.intake,
                                               True)
            args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        if args.backend in ("postgresql", "both"):
            if not args.pg_url:
                raise SystemExit("--pg-url (or GRIDPOLICY_TEST_DATABASE_URL) is needed for PostgreSQL")
            import psycopg  # noqa: PLC0415
            name = f"gp_ledger_bench_{uuid.uuid4().hex[:8]}"
            admin = args.pg_url.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            try:
                report["backends"]["postgresql"] = run(args.pg_url.rsplit("/", 1)[0] + "/" + name, args.sources,
                                                       args.months, args.intake, False)
            finally:
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    report["load_average_end"] = os.getloadavg()
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    for backend, r in report["backends"].items():
        print(f"[{backend}] simulated {r['simulated'].get('patrols')} patrols, {r['simulated'].get('objects')} objects "
              f"in {r['simulate_s']} s")
        print(f"  compliance month {r['compliance_month_s']} s, quarter {r['compliance_quarter_s']} s "
              f"(baseline COUNT of the month {r['baseline_count_month_s']} s); sweep {r['sweep_s']} s")
        print(f"  intake {r['intake']}")
        for name, page in r.get("pages", {}).items():
            print(f"  {name:<34}{page['cold_ms']:>9}{page['p50_ms']:>9}{page['p95_ms']:>9}")


if __name__ == "__main__":
    main()
