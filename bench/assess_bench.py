"""`make bench` (assessment): simulate a year of Hefei cases (100,000 by default) through the case store,
then time assessing one quarter (every unit, level and department, ranking, step times), the trend, one
unit's explanation and the Excel export, on SQLite and on PostgreSQL. Writes bench/assess_results.json."""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select, text  # noqa: E402
from sqlmodel import Session  # noqa: E402

from store.assessment import AssessmentService, Period  # noqa: E402
from store.assessment_xlsx import workbook  # noqa: E402
from store.cases import CaseService  # noqa: E402
from store.simulate import Simulator  # noqa: E402
from store.tables import CaseClock, CaseEvent, CaseRecord  # noqa: E402
from store.versions import open_policy_store  # noqa: E402

JID = "hefei"


def timed(fn, repeat: int) -> tuple[float, float, object]:
    times, result = [], None
    for _ in range(repeat):
        began = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - began)
    return round(statistics.median(times), 3), round(min(times), 3), result


def pg_database(admin_url: str) -> str:
    import psycopg  # noqa: PLC0415
    name = f"gp_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


def run(url: str, backend: str, n_cases: int, days: int, seed: int, period: str, repeat: int,
        simulate: bool = True) -> dict:
    policies = open_policy_store(url)
    engine, cases = policies.engine, CaseService(policies)
    counts = {"seconds": None}
    if simulate:
        print(f"[{backend}] simulating {n_cases} {JID} cases over {days} days …", flush=True)
        counts = Simulator(cases, JID, seed).run(n_cases, days, batch=1000,
                                                 progress=lambda d, t: print(f"\r  {d}/{t}", end="", flush=True))
        print()
    with engine.begin() as conn:  # fresh statistics, as PostgreSQL's autovacuum would gather by itself
        conn.execute(text("ANALYZE"))
    with Session(engine) as session:
        rows = {name: session.execute(select(func.count()).select_from(table)).scalar_one()
                for name, table in (("case_record", CaseRecord), ("case_event", CaseEvent), ("case_clock", CaseClock))}
    service = AssessmentService(policies)
    p = Period.parse(period)
    assess_median, assess_min, result = timed(lambda: service.assess(JID, p), repeat)
    level_median, _, _ = timed(lambda: service.assess(JID, p, level=2), repeat)
    trend_median, _, _ = timed(lambda: service.trend(JID, p, 4), repeat)
    worst = min((u for u in result["units"] if u["deductions"]), key=lambda u: u["score"], default=result["units"][0])
    explain_median, _, _ = timed(lambda: service.explain(JID, p, worst["unit"]), repeat)
    xlsx_median, _, book = timed(lambda: workbook(result), 1)
    in_period = [u for u in result["units"] if any(u["indicators"].values())]
    engine.dispose()
    simulated = {"simulate_seconds": counts["seconds"], "simulate_cases_per_second": round(n_cases / counts["seconds"]),
                 "simulated": {k: v for k, v in counts.items() if k != "seconds"}} if simulate else {}
    out = {**simulated,
        "backend": backend, "cases": n_cases, "days": days, "seed": seed, "period": period,
        "rows": rows,
        "units": len(result["units"]), "units_with_activity": len(in_period),
        "assess_quarter_seconds_median": assess_median, "assess_quarter_seconds_min": assess_min,
        "assess_level_2_seconds_median": level_median, "trend_4_quarters_seconds_median": trend_median,
        "explain_worst_unit_seconds_median": explain_median, "xlsx_seconds": xlsx_median, "xlsx_bytes": len(book),
    }
    print(json.dumps(out, ensure_ascii=False), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--period", default="2026-Q3")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pg-url", help="PostgreSQL server URL (a database is created for the run), "
                                         "e.g. the output of scripts/test-postgres.sh")
    parser.add_argument("--out", type=Path, default=Path("bench/assess_results.json"))
    parser.add_argument("--assess-only", metavar="URL", help="time the assessment of an existing database of "
                        "simulated cases (no simulation); its figures replace those of --backend in --out")
    args = parser.parse_args()
    results = []
    if args.assess_only:
        results.append(run(args.assess_only, args.backend, args.cases, args.days, args.seed, args.period, args.repeat,
                           simulate=False))
    if args.backend in ("sqlite", "both") and not args.assess_only:
        with tempfile.TemporaryDirectory() as tmp:
            results.append(run(f"sqlite:///{Path(tmp) / 'bench.db'}", "sqlite", args.cases, args.days, args.seed,
                               args.period, args.repeat))
    if args.backend in ("postgresql", "both") and not args.assess_only:
        if not args.pg_url:
            parser.error("--pg-url is needed for PostgreSQL (scripts/test-postgres.sh prints one)")
        results.append(run(pg_database(args.pg_url), "postgresql", args.cases, args.days, args.seed, args.period,
                           args.repeat))
    existing = json.loads(args.out.read_text()) if args.out.exists() else {}
    by_backend = {r["backend"]: r for r in existing.get("results", [])}
    for r in results:  # an assessment-only run keeps the simulation figures already recorded
        by_backend[r["backend"]] = {**by_backend.get(r["backend"], {}), **r}
    args.out.write_text(json.dumps({"machine": {"python": platform.python_version(), "platform": platform.platform()},
                                    "results": list(by_backend.values())}, ensure_ascii=False, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
