"""`make bench`: render times of the draft editors over real HTTP on Hefei (1,649 units) — the units page, one
node's children, a unit's form, search (first, with cold pinyin, and warm), departments, workflows, and a validation
as the admin types. Target: every page under 200 ms. Writes bench/admin_edit_results.json and prints a table."""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store.db import make_engine, migrate  # noqa: E402
from store.users import create_user  # noqa: E402
from tests.admin_browser import PASSWORD, running_server  # noqa: E402

TARGET_MS = 200


def timed(client: httpx.Client, method: str, path: str, runs: int, **kwargs) -> dict:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        response = client.request(method, path, **kwargs)
        times.append((time.perf_counter() - start) * 1000)
        if response.status_code >= 300:
            raise SystemExit(f"{method} {path}: {response.status_code} {response.text[:300]}")
    ordered = sorted(times)
    return {"runs": runs, "first_ms": round(times[0], 1), "p50_ms": round(statistics.median(times), 1),
            "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], 1), "max_ms": round(max(times), 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("bench/admin_edit_results.json"))
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        engine = make_engine(url)
        migrate(engine)
        create_user(engine, "bench", PASSWORD, True, {}, "bench")
        engine.dispose()
        with running_server(url) as base, httpx.Client(base_url=base, timeout=30) as client:
            token = re.search(r'name="_csrf_token" value="([^"]+)"', client.get("/admin/login").text).group(1)
            client.post("/admin/login", data={"name": "bench", "password": PASSWORD, "_csrf_token": token})
            draft = client.post("/admin/j/hefei/drafts", data={"_csrf_token": token}).headers["location"]
            headers = {"X-CSRFToken": client.cookies["gp_csrf"], "HX-Request": "true"}
            check = {"name": "瑶海区", "level": "2", "parent": "hf", "prov": "assumption", "assumption": "bench"}
            pages = {
                "units page": ("GET", f"{draft}/units", {}),
                "children of the city (13)": ("GET", f"{draft}/units/children?parent=hf", {}),
                "children of a township": ("GET", f"{draft}/units/children?parent=hf-l3c-01", {}),
                "search (pinyin)": ("GET", f"{draft}/units/search?q=baohe", {}),
                "unit form": ("GET", f"{draft}/units/form?id=hf-l4-0001", {}),
                "departments page": ("GET", f"{draft}/departments", {}),
                "workflows page": ("GET", f"{draft}/workflows", {}),
                "validate as typed (unit)": ("POST", f"{draft}/e/units/hf-yaohai/check", {"data": check,
                                                                                          "headers": headers}),
            }
            results = {name: timed(client, method, path, args.runs, **kwargs)
                       for name, (method, path, kwargs) in pages.items()}
    report = {"jurisdiction": "hefei", "units": 1649, "target_ms": TARGET_MS, "pages": results,
              "all_p95_under_target": all(r["p95_ms"] < TARGET_MS for r in results.values())}
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"{'page':<28} {'first':>8} {'p50':>8} {'p95':>8} {'max':>8}  (ms, {args.runs} runs)")
    for name, r in results.items():
        print(f"{name:<28} {r['first_ms']:>8} {r['p50_ms']:>8} {r['p95_ms']:>8} {r['max_ms']:>8}")
    print(f"all p95 under {TARGET_MS} ms: {report['all_p95_under_target']}  → {args.out}")


if __name__ == "__main__":
    main()
