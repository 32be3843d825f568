"""`make bench` (province scale, issue #17): Hefei's rules with scaled unit trees, served by a real `gridpolicy serve`
on SQLite. Each size is measured beside a same-run baseline: the same measure at Hefei's own size (1,649 units)
and GET /health. Writes bench/scale_results.json.

Sizes: 20k (1 / 20 / 400 / 19,579 units) by default; `--big` adds 200k (1 / 100 / 2,000 / 197,899, minutes).
The tree is generated as a CSV and imported as named units (`gridpolicy units import` is timed on it too; the
document's stated unit counts, which a scaled tree contradicts, are dropped first; its baseline is a tree of Hefei's
size). `--writes` measures the write path's targets only: the units import and one-item PATCHes.

Each measure is a function taking a `Server` and returning a dict, so more can be added (MEASURES).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.admin_bench import PASSWORD, sign_in  # noqa: E402
from bench.http_bench import cli, free_port  # noqa: E402
from store.db import make_engine  # noqa: E402
from store.users import create_user  # noqa: E402
from store.versions import open_policy_store  # noqa: E402
from tests.scaled import scaled_document, scaled_units_csv  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"20k": (1, 20, 400, 19579), "200k": (1, 100, 2000, 197899)}
HEFEI_TREE = (1, 12, 120, 1516)  # as many units as Hefei's own 1,649: the units import's baseline
JID = "hefei"


@dataclass
class Server:
    """A `gridpolicy serve` (one worker) on a SQLite database in `scratch`, with an API key for everything."""
    scratch: Path
    env: dict
    key: str = ""
    url: str = ""
    process: subprocess.Popen | None = None
    started_seconds: float = 0.0
    started_cpu_seconds: float = 0.0  # the server's CPU time until then: what a start costs whatever the load
    notes: dict = field(default_factory=dict)

    @property
    def db(self) -> Path:
        return self.scratch / "bench.db"

    @property
    def headers(self) -> dict:
        return {"X-API-Key": self.key}

    def start(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = (self.scratch / "serve.log").open("w")
        began = time.perf_counter()
        self.process = cli(ROOT, self.env, "serve", "--port", str(port), background=True, stdout=log,
                           stderr=subprocess.STDOUT)
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.perf_counter() - began > 600:
                raise SystemExit("server did not start:\n" + (self.scratch / "serve.log").read_text())
            time.sleep(0.05)
        self.started_seconds = time.perf_counter() - began
        self.started_cpu_seconds = self.cpu_seconds()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:  # a server holding 200,000-unit builds may take longer to stop
                self.process.kill()
                self.process.wait()
            self.process = None

    def pids(self) -> list[int]:
        """The server and its children (uvicorn may fork)."""
        assert self.process is not None
        out, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            children = Path(f"/proc/{pid}/task/{pid}/children")
            todo += [int(c) for c in children.read_text().split()] if children.exists() else []
        return out

    def rss_mb(self) -> float:
        total = 0
        for pid in self.pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        return round(total / 1024, 1)

    def cpu_seconds(self) -> float:
        ticks = 0
        for pid in self.pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime + stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def db_used_bytes(self) -> int:
        """Bytes the database's pages hold (free pages left by deleted rows do not count)."""
        with sqlite3.connect(self.db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            page, count, free = (conn.execute(f"PRAGMA {p}").fetchone()[0]
                                 for p in ("page_size", "page_count", "freelist_count"))
        return page * (count - free)

    def active_hash(self) -> str:
        return httpx.get(self.url + "/health", timeout=30).json()["versions"][JID]


def timed(call: Callable[[], httpx.Response], n: int) -> dict:
    times = []
    for _ in range(n):
        began = time.perf_counter()
        call().raise_for_status()
        times.append((time.perf_counter() - began) * 1000)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 1), "p95_ms": round(times[int(0.95 * (n - 1))], 1), "n": n}


# --- measures: each takes the server (serving the size being measured) and returns its figures
def health(s: Server) -> dict:
    return timed(lambda: httpx.get(s.url + "/health", timeout=60), 20)


def version_list(s: Server) -> dict:
    return timed(lambda: httpx.get(f"{s.url}/v1/jurisdictions/{JID}/versions", timeout=60), 20)


def _draft(s: Server) -> tuple[str, str]:
    draft = httpx.post(f"{s.url}/v1/jurisdictions/{JID}/drafts", json={"actor": "bench", "note": "bench"},
                       headers=s.headers, timeout=600)
    draft.raise_for_status()
    return f"{s.url}/v1/jurisdictions/{JID}/versions/{draft.json()['number']}", draft.headers["etag"]


def one_item_edit(s: Server) -> dict:
    """PATCH one unit's name (5 times, If-Match chaining), and PUT of the whole document where it fits 256 KB."""
    url, etag = _draft(s)
    unit = s.notes["units"][0]
    times = []
    for n in range(5):
        began = time.perf_counter()
        answer = httpx.patch(f"{url}/units/{unit}", json={"author": "bench", "name": f"改名网格{n}"},
                             headers={**s.headers, "If-Match": etag}, timeout=600)
        answer.raise_for_status()
        times.append((time.perf_counter() - began) * 1000)
        etag = answer.headers["etag"]
    out = {"patch_unit_p50_ms": round(statistics.median(times), 1), "patch_unit_max_ms": round(max(times), 1)}
    code = httpx.get(url, timeout=600).json()["document"]["problem_types"][0]["code"]
    times = []
    for n in range(5):  # a problem type: the head changes, the units are not checked again
        began = time.perf_counter()
        answer = httpx.patch(f"{url}/types/{code}", json={"author": "bench", "persuade_first": n % 2 == 0},
                             headers={**s.headers, "If-Match": etag}, timeout=600)
        answer.raise_for_status()
        times.append((time.perf_counter() - began) * 1000)
        etag = answer.headers["etag"]
    out |= {"patch_type_p50_ms": round(statistics.median(times), 1), "patch_type_max_ms": round(max(times), 1)}
    document = httpx.get(url, timeout=600).json()["document"]
    body = json.dumps({"author": "bench", "document": document}, ensure_ascii=False).encode()
    out["put_body_kb"] = round(len(body) / 1024, 1)
    began = time.perf_counter()
    answer = httpx.put(url, content=body, headers={**s.headers, "If-Match": etag, "Content-Type": "application/json"},
                       timeout=600)
    out["put_status"] = answer.status_code
    out["put_ms"] = round((time.perf_counter() - began) * 1000, 1)
    return out


def _publish_one_change(s: Server, n: int) -> str:
    """A new version renaming one unit (draft, PATCH, publish); its content hash."""
    url, etag = _draft(s)
    unit = s.notes["units"][n % len(s.notes["units"])]
    httpx.patch(f"{url}/units/{unit}", json={"author": "bench", "name": f"第{n}次改名"},
                headers={**s.headers, "If-Match": etag}, timeout=600).raise_for_status()
    published = httpx.post(f"{url}/publish", json={"actor": "bench", "note": f"改名 {n}"}, headers=s.headers,
                           timeout=600)
    published.raise_for_status()
    return published.json()["content_hash"]


def db_growth(s: Server) -> dict:
    """Database growth for one published version that renames one unit (draft, PATCH, publish)."""
    before = s.db_used_bytes()
    _publish_one_change(s, 0)
    return {"db_total_mb": round(before / 2**20, 2),
            "growth_per_version_kb": round((s.db_used_bytes() - before) / 1024, 1)}


def rss_after_publishes(s: Server, publishes: int = 10) -> dict:
    """Server RSS with the size active (one build) and after `publishes` more one-change versions."""
    one = s.rss_mb()
    last = [_publish_one_change(s, n + 1) for n in range(publishes)][-1]
    while s.active_hash() != last:
        time.sleep(0.5)
    after = s.rss_mb()
    return {"rss_one_build_mb": one, f"rss_after_{publishes}_publishes_mb": after, "ratio": round(after / one, 2)}


def idle_cpu(s: Server, seconds: float = 10.0) -> dict:
    time.sleep(3)  # what the last request left behind settles
    before = s.cpu_seconds()
    time.sleep(seconds)
    return {"idle_cpu_percent": round(100 * (s.cpu_seconds() - before) / seconds, 2), "seconds": seconds}


def start_to_healthy(s: Server) -> dict:
    s.stop()
    s.start()
    return {"start_to_healthy_s": round(s.started_seconds, 2), "cpu_s": round(s.started_cpu_seconds, 2)}


MEASURES: list[Callable[[Server], dict]] = [health, version_list, one_item_edit, db_growth, rss_after_publishes,
                                            idle_cpu, start_to_healthy]
WRITE_MEASURES: list[Callable[[Server], dict]] = [health, one_item_edit]  # `--writes`: the write path's targets only


# --- the read path (#17): admin pages, unknown units, a start; each size names its units in `Server.notes`
PAGE_TARGET_MS = 200


def _pages(s: Server, number: int) -> dict[str, str]:
    n = s.notes
    base = f"/admin/j/{JID}/v/{number}"
    return {"version list": f"/admin/j/{JID}", "editor": base, "verify": f"{base}/verify",
            "unit tree": f"{base}/units",
            "unit tree: the top unit's children": f"{base}/units/children?parent={n['root']}",
            "unit tree: a township's children": f"{base}/units/children?parent={n['town']}",
            "unit tree: page 2": f"{base}/units/children?parent={n['town']}&page=2",
            "unit form": f"{base}/units/form?id={n['units'][0]}",
            **{f"unit search {q!r}": f"{base}/units/search?q={q}" for q in n["queries"]}}


def _timed_pages(client: httpx.Client, pages: dict[str, str], repeats: int) -> dict:
    out = {}
    for name, path in pages.items():
        times, cold = [], None
        for _ in range(repeats + 1):
            began = time.perf_counter()
            answer = client.get(path)
            while cold is None and answer.status_code == 503:  # the first request may find a build under way
                time.sleep(float(answer.headers.get("retry-after", 1)))
                answer = client.get(path)
            elapsed = (time.perf_counter() - began) * 1000
            if answer.status_code != 200:
                raise SystemExit(f"{path}: HTTP {answer.status_code}: {answer.text[:300]}")
            if cold is None:
                cold = elapsed
            else:
                times.append(elapsed)
        times.sort()
        p95 = times[int(0.95 * (len(times) - 1))]
        out[name] = {"cold_ms": round(cold, 1), "p50_ms": round(statistics.median(times), 1), "p95_ms": round(p95, 1),
                     "meets_target": p95 < PAGE_TARGET_MS}
    return out


def admin_pages(s: Server, repeats: int = 20) -> dict:
    """Every admin page of the read path on the active version (GET), then check-while-typing on a draft (POST)."""
    active = httpx.get(f"{s.url}/v1/jurisdictions/{JID}/versions", timeout=60).json()
    number = next(v["number"] for v in active if v["active"])
    with httpx.Client(base_url=s.url, timeout=120) as client:
        sign_in(client)
        out = _timed_pages(client, _pages(s, number), repeats)
        url, _ = _draft(s)
        draft = url.rsplit("/", 1)[1]
        unit = s.notes["units"][1]
        form = {"name": "改名中的网格", "level": "4", "parent": s.notes["parent"], "prov": "assumption",
                "assumption": "bench"}
        times = []
        for _ in range(3):
            began = time.perf_counter()
            answer = client.post(f"/admin/j/{JID}/v/{draft}/e/units/{unit}/check", data=form,
                                 headers={"X-CSRFToken": client.cookies["gp_csrf"], "HX-Request": "true"})
            times.append((time.perf_counter() - began) * 1000)
            answer.raise_for_status()
        out["check while typing (POST, 3 runs)"] = {"p50_ms": round(statistics.median(times), 1),
                                                    "max_ms": round(max(times), 1),
                                                    "meets_target": max(times) < PAGE_TARGET_MS}
    return out


def unknown_unit(s: Server, n: int = 20) -> dict:
    """POST /v1/route naming a unit that does not exist: the 422 with close matches, on one connection as an intake
    system keeps it (a new httpx client per request, as `health` uses, measures mostly the client's own setup)."""
    body = {"jurisdiction": JID, "problem_type": s.notes["type"], "unit": s.notes["units"][2] + "x"}
    times = []
    with httpx.Client(base_url=s.url, headers=s.headers, timeout=60) as client:
        for _ in range(n):
            began = time.perf_counter()
            answer = client.post("/v1/route", json=body)
            times.append((time.perf_counter() - began) * 1000)
            assert answer.status_code == 422 and answer.json()["suggestions"], answer.text[:300]
    times.sort()
    return {"p50_ms": round(statistics.median(times), 1), "p95_ms": round(times[int(0.95 * (n - 1))], 1), "n": n,
            "suggestions": answer.json()["suggestions"]}


def start_and_serve(s: Server) -> dict:
    """A restart: seconds to a healthy /health, then until every active version is built and served here (health's
    `loading` empty), and the first unit-tree page after that."""
    s.stop()
    s.start()
    began = time.perf_counter()
    while httpx.get(s.url + "/health", timeout=60).json()["loading"]:
        time.sleep(0.2)
    served = time.perf_counter() - began
    return {"start_to_healthy_s": round(s.started_seconds, 2), "cpu_s": round(s.started_cpu_seconds, 2),
            "then_all_served_s": round(served, 2)}


READ_MEASURES: list[Callable[[Server], dict]] = [health, version_list, admin_pages, unknown_unit, idle_cpu,
                                                 start_and_serve]


# --- building a size
def units_import(scratch: Path, counts: tuple[int, ...]) -> dict:
    """`gridpolicy units import hefei scaled.csv` into a copy of the rules (stated counts dropped): time and RSS."""
    rules = scratch / "jurisdictions"
    if not rules.exists():
        shutil.copytree(ROOT / "jurisdictions", rules)
        data = yaml.safe_load((rules / f"{JID}.yaml").read_text(encoding="utf-8"))
        for level in data["levels"]:
            level["unit_counts"] = []
        (rules / f"{JID}.yaml").write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    csv_path = scratch / f"scaled-{sum(counts)}.units.csv"
    csv_path.write_text(scaled_units_csv(counts), encoding="utf-8")
    env = {**os.environ, "GRIDPOLICY_JURISDICTIONS": str(rules)}
    peak = scratch / "import.maxrss"
    # GNU time reports the command's own peak: getrusage's peak of this process's children also counts this process
    # (the fork's copy before the exec: a child running `pass` "peaks" at this process's size)
    began = time.perf_counter()
    subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(peak), sys.executable, "-c",
                    "from cli.main import app; app()", "units", "import", JID, str(csv_path)],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    seconds = time.perf_counter() - began
    return {"units": sum(counts), "seconds": round(seconds, 2),
            "max_rss_mb": round(int(peak.read_text().split()[-1]) / 1024, 1)}


# the units the read measures use: Hefei's own, and those of scaled_units_csv
HEFEI_NOTES = {"root": "hf", "town": "hf-l3c-01", "parent": "hf-l3c-01", "type": "air.dust.general",
               "queries": ["baohe", "hf-l4-0001", "社区"]}
SCALED_NOTES = {"root": "s1-0", "town": "s3-5", "parent": "s3-0", "type": "air.dust.general",
                "queries": ["000123", "s4-19999", "disijiwangge", "zzz"]}


def _admin_user(scratch: Path) -> None:
    """The admin_bench's superuser, to sign in to the admin."""
    engine = make_engine(f"sqlite:///{scratch / 'bench.db'}")
    try:
        create_user(engine, "bench", PASSWORD, True, {}, "bench")
    finally:
        engine.dispose()


def publish_size(s: Server, counts: tuple[int, ...]) -> dict:
    """The scaled tree imported as named units into a draft and published (in this process: the document is far
    over the API's 256 KB body limit); the server switches to it on its refresh loop."""
    began = time.perf_counter()
    store = open_policy_store(f"sqlite:///{s.db}")
    try:
        draft = store.create_draft(JID, "bench")
        document = scaled_document(store.document(draft), counts)
        store.update_draft(JID, draft.number, document, draft.revision, "bench")
        version = store.publish(JID, draft.number, "bench", f"导入 {sum(counts)} 个网格")
    finally:
        store.engine.dispose()
    deadline = time.time() + 900
    while s.active_hash() != version.content_hash:
        if time.time() > deadline:
            raise SystemExit("the server never switched to the scaled version")
        time.sleep(0.5)
    return {"units": sum(counts), "import_and_publish_s": round(time.perf_counter() - began, 1)}


def measure_all(s: Server, measures: list[Callable[[Server], dict]]) -> dict:
    out = {}
    for measure in measures:
        out[measure.__name__] = measure(s)
        print(f"    {measure.__name__}: {out[measure.__name__]}", flush=True)
    return out


def run(sizes: list[str], measures: list[Callable[[Server], dict]]) -> dict:
    results: dict = {}
    for size in sizes:
        scratch = Path(tempfile.mkdtemp(prefix="gp-scale-bench-"))
        # a deployment writes its bytecode on the first start; a shell that turned that off would make every start
        # compile the project's modules again (~1 s)
        env = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
               "GRIDPOLICY_DATABASE_URL": f"sqlite:///{scratch / 'bench.db'}",
               "GRIDPOLICY_SEEDS": os.environ.get("GRIDPOLICY_SEEDS", str(ROOT.parent / "shared" / "seeds"))}
        server = Server(scratch, env)
        try:
            server.key = cli(ROOT, env, "apikey", "create", "--all").stdout.strip().splitlines()[-1]
            _admin_user(scratch)
            print(f"  {size}: units import (first a tree of Hefei's size, the baseline)", flush=True)
            entry = {"units_import_baseline": units_import(scratch, HEFEI_TREE),
                     "units_import": units_import(scratch, SIZES[size])}
            print(f"    {entry['units_import_baseline']}\n    {entry['units_import']}", flush=True)
            server.start()
            print(f"  {size}: baseline at Hefei's own size", flush=True)
            server.notes.update(units=[f"hf-l4-{n:04d}" for n in range(1, 8)], **HEFEI_NOTES)
            entry["baseline_hefei"] = measure_all(server, measures)
            entry["build"] = publish_size(server, SIZES[size])
            print(f"  {size}: {entry['build']}", flush=True)
            server.notes.update(units=[f"s4-{n}" for n in range(7)], **SCALED_NOTES)
            entry["scaled"] = measure_all(server, measures)
            results[size] = entry
        finally:
            server.stop()
            shutil.rmtree(scratch, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "scale_results.json")
    parser.add_argument("--big", action="store_true", help="also 200,000 units (takes minutes)")
    parser.add_argument("--only", choices=["20k", "200k"], help="one size only")
    parser.add_argument("--reads", action="store_true", help="the read path only (admin pages, unknown units, a start)")
    parser.add_argument("--writes", action="store_true",
                        help="the write path's targets only (units import, one-item PATCH; "
                             "bench/scale_write_results.json)")
    args = parser.parse_args()
    if args.writes and args.out == parser.get_default("out"):
        args.out = ROOT / "bench" / "scale_write_results.json"
    sizes = [args.only] if args.only else ["20k", "200k"] if args.big else ["20k"]
    report = {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "load_average": os.getloadavg()},
              "setup": "gridpolicy serve, 1 worker, SQLite; Hefei with scaled named units; baseline: Hefei's own "
                       "1,649 units in the same run",
              "results": run(sizes, READ_MEASURES if args.reads else WRITE_MEASURES if args.writes
                             else MEASURES + READ_MEASURES)}
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    args.out.write_text(json.dumps({**previous, **report}, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
