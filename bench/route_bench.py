"""`make bench`: routing throughput and latency per jurisdiction, beside the reference evaluator, compile
time, and RSS before/after 200,000 routings. Writes bench/results.json and prints a table."""
from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.compiler import compile_policy, default_facts  # noqa: E402
from engine.router import Case, PolicyRouter, entry_of, evaluate, type_features  # noqa: E402
from policy.loader import Loader  # noqa: E402
from tests.reference import reference_evaluate  # noqa: E402

WHEN = datetime(2026, 9, 28, 9, 0, tzinfo=timezone.utc)
FACT_VARIANTS = [{}, {"persuasion_failed": True}, {"suspected_crime": True}, {"corrected_on_site": True}]


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20


def cases_for(router: PolicyRouter) -> list[Case]:
    jur = router.jur
    out = []
    for ptype, level, facts in itertools.product(jur.policy.problem_types, jur.policy.levels, FACT_VARIANTS):
        unit = jur.units_at(level.number)[0]
        out.append(Case(problem_type=ptype.code, unit=unit.id, facts=facts, reported_at=WHEN))
    return out


def timed(fn, items, total: int) -> tuple[float, list[int]]:
    latencies = []
    clock = time.perf_counter_ns
    start = clock()
    for item in itertools.islice(itertools.cycle(items), total):
        t0 = clock()
        fn(item)
        latencies.append(clock() - t0)
    return (clock() - start) / 1e9, latencies


def summary(seconds: float, latencies: list[int]) -> dict:
    ordered = sorted(latencies)
    return {"per_second": round(len(latencies) / seconds), "p50_us": round(ordered[len(ordered) // 2] / 1000, 1),
            "p99_us": round(ordered[int(len(ordered) * 0.99)] / 1000, 1),
            "mean_us": round(statistics.fmean(latencies) / 1000, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("bench/results.json"))
    parser.add_argument("--routings", type=int, default=20_000, help="timed routings per jurisdiction")
    parser.add_argument("--soak", type=int, default=200_000, help="routings for the RSS check")
    args = parser.parse_args()

    t0 = time.perf_counter()
    loader = Loader()
    jurisdictions, issues = loader.load_all()
    load_seconds = time.perf_counter() - t0
    if issues:
        sys.exit("\n".join(map(str, issues)))
    results = {"machine": platform.platform(), "python": platform.python_version(),
               "load_all_seconds": round(load_seconds, 3), "jurisdictions": {}}
    routers = {}
    for jid, jur in jurisdictions.items():
        t0 = time.perf_counter()
        router = PolicyRouter(compile_policy(jur))
        compile_ms = (time.perf_counter() - t0) * 1000
        routers[jid] = router
        cases = cases_for(router)
        seconds, lat = timed(router.route, cases, args.routings)
        facts = [default_facts() | c.facts | type_features(router.compiled.types_by_code[c.problem_type]) | {
            "problem_type": c.problem_type, "cross_boundary": False,
            "entry": entry_of(router.units[c.unit].level, router.compiled.types_by_code[c.problem_type].level)}
            for c in cases]
        ev_seconds, ev_lat = timed(lambda f: evaluate(router.compiled, f), facts, args.routings)
        ref_seconds, ref_lat = timed(lambda f: reference_evaluate(jur.policy, f), facts, args.routings)
        route, rules, ref = summary(seconds, lat), summary(ev_seconds, ev_lat), summary(ref_seconds, ref_lat)
        results["jurisdictions"][jid] = {
            "problem_types": len(jur.policy.problem_types), "rules": len(jur.policy.rules), "units": len(jur.units),
            "compile_ms": round(compile_ms, 2), "route": route, "rules_table": rules, "reference": ref,
            "rules_table_vs_reference": round(rules["per_second"] / ref["per_second"], 3)}
    rss_before = rss_mb()
    soak_cases = [c for r in routers.values() for c in cases_for(r)[:50]]
    owners = [routers[jid] for jid in routers for _ in range(min(50, len(cases_for(routers[jid]))))]
    t0 = time.perf_counter()
    for i in range(args.soak):
        k = i % len(soak_cases)
        owners[k].route(soak_cases[k])
    results["soak"] = {"routings": args.soak, "seconds": round(time.perf_counter() - t0, 1),
                       "rss_before_mb": round(rss_before, 1), "rss_after_mb": round(rss_mb(), 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8")

    print(f"load all jurisdictions: {results['load_all_seconds']} s")
    print(f"{'jurisdiction':<14}{'types':>6}{'compile ms':>11}{'route/s':>9}{'p50 µs':>8}{'p99 µs':>8}"
          f"{'rules/s':>9}{'ref/s':>9}{'rules/ref':>10}")
    for jid, r in results["jurisdictions"].items():
        print(f"{jid:<14}{r['problem_types']:>6}{r['compile_ms']:>11}{r['route']['per_second']:>9}"
              f"{r['route']['p50_us']:>8}{r['route']['p99_us']:>8}{r['rules_table']['per_second']:>9}"
              f"{r['reference']['per_second']:>9}{r['rules_table_vs_reference']:>10}")
    s = results["soak"]
    print(f"RSS {s['rss_before_mb']} MB → {s['rss_after_mb']} MB after {s['routings']} routings ({s['seconds']} s)")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
