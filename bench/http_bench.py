"""`make bench` (HTTP): wrk against a real `gridpolicy serve` on a fresh SQLite database, with 1 and 2 workers:
GET /health (the baseline: the framework and the network, no rules, no writes), POST /v1/route, POST /v1/cases
(a new case each request), GET /health over one keep-alive connection (shows a per-response stall), and a
mixed soak: routing on 6 connections alone and beside intake on 2 (`--soak` seconds, default 60).
Writes bench/http_results.json and prints a table. `--root` measures another checkout with this interpreter."""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
ROUTE = {"jurisdiction": "karamay", "problem_type": "医疗废物处置", "unit": "kmy-l3-01"}
UNITS = [f"kmy-l3-{n:02d}" for n in range(1, 10)]
# wrk's Lua: every request a POST with the key; /v1/cases cycles through grids so cases differ
LUA = """
local bodies = {%s}
local n = 0
request = function()
  n = n + 1
  local headers = {["Content-Type"] = "application/json", ["X-API-Key"] = "%s"}
  return wrk.format("POST", nil, headers, bodies[n %% #bodies + 1])
end
"""
MEASURES = [  # name, method, path, bodies, connections
    ("health", "GET", "/health", None, 16),
    ("health_1_connection", "GET", "/health", None, 1),
    ("route", "POST", "/v1/route", [ROUTE], 16),
    ("cases", "POST", "/v1/cases", [{**ROUTE, "unit": unit} for unit in UNITS], 16),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(root: Path, env: dict, *args: str, **kwargs) -> subprocess.Popen | subprocess.CompletedProcess:
    command = [sys.executable, "-c", "from cli.main import app; app()", *args]
    if kwargs.pop("background", False):
        return subprocess.Popen(command, cwd=root, env=env, **kwargs)
    return subprocess.run(command, cwd=root, env=env, check=True, capture_output=True, text=True)


def wait_started(server: subprocess.Popen, log: Path, workers: int, url: str) -> None:
    deadline = time.time() + 180
    while log.read_text().count("Application startup complete") < workers:
        if server.poll() is not None or time.time() > deadline:
            raise SystemExit("server did not start:\n" + log.read_text())
        time.sleep(0.5)
    while not _built(url):  # measure the server, not its start-up builds
        if time.time() > deadline:
            raise SystemExit("the active versions were not built in time:\n" + log.read_text())
        time.sleep(0.5)


def _built(url: str) -> bool:
    """Whether the server answers and has built its active versions (one worker logs its start-up before it
    listens)."""
    try:
        return not httpx.get(url + "/health", timeout=10).json()["loading"]
    except httpx.ConnectError:
        return False


def wrk(url: str, path: str, bodies: list | None, key: str, connections: int, seconds: int, scratch: Path) -> dict:
    return _parse(subprocess.run(_command(url, path, bodies, key, connections, seconds, scratch), check=True,
                                 capture_output=True, text=True).stdout, connections)


def _command(url: str, path: str, bodies: list | None, key: str, connections: int, seconds: int,
             scratch: Path) -> list[str]:
    command = ["wrk", f"-t{min(connections, 2)}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if bodies is not None:
        script = scratch / f"post-{path.strip('/').replace('/', '-')}.lua"
        # Lua string literals of the JSON bodies (LuaJIT has no \u escapes: keep the UTF-8)
        literals = (json.dumps(json.dumps(body, ensure_ascii=False), ensure_ascii=False) for body in bodies)
        script.write_text(LUA % (", ".join(literals), key))
        command += ["-s", str(script)]
    return [*command, url + path]


def _parse(out: str, connections: int) -> dict:
    percent = {p: _ms(v, u) for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests_per_second": round(float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))),
            "p50_ms": percent.get("50"), "p99_ms": percent.get("99"), "connections": connections,
            "non_2xx": int(errors.group(1)) if errors else 0}


def soak(url: str, key: str, seconds: int, scratch: Path) -> dict:
    """Routing on 6 connections alone, then beside intake on 2 (both at once, `seconds` each): read-only routing
    must not wait behind intake's writes (#17: its p99 beside intake within 1.5× of alone)."""
    route = [ROUTE]
    cases = [{**ROUTE, "unit": unit} for unit in UNITS]
    alone = wrk(url, "/v1/route", route, key, 6, seconds, scratch)
    runs = [subprocess.Popen(_command(url, path, bodies, key, n, seconds, scratch), stdout=subprocess.PIPE, text=True)
            for path, bodies, n in (("/v1/route", route, 6), ("/v1/cases", cases, 2))]
    (route_mixed, _), (cases_mixed, _) = [run.communicate() for run in runs]
    beside, intake = _parse(route_mixed, 6), _parse(cases_mixed, 2)
    return {"seconds": seconds, "route_alone": alone, "route_beside_intake": beside, "intake_beside_route": intake,
            "p99_ratio": round(beside["p99_ms"] / alone["p99_ms"], 2) if alone["p99_ms"] and beside["p99_ms"] else None}


def _ms(value: str, unit: str) -> float:
    return round(float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60_000}[unit], 2)


def run(root: Path, workers: int, seconds: int, soak_seconds: int = 0) -> dict:
    scratch = Path(tempfile.mkdtemp(prefix="gp-http-bench-"))
    env = {**os.environ, "GRIDPOLICY_DATABASE_URL": f"sqlite:///{scratch / 'bench.db'}",
           "GRIDPOLICY_SEEDS": os.environ.get("GRIDPOLICY_SEEDS", str(ROOT.parent / "shared" / "seeds"))}
    key = cli(root, env, "apikey", "create", "--all").stdout.strip().splitlines()[-1]
    port, log = free_port(), scratch / "serve.log"
    with log.open("w") as out:
        server = cli(root, env, "serve", "--port", str(port), "--workers", str(workers), background=True,
                     stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_started(server, log, workers, url)
        results = {}
        for name, _method, path, bodies, connections in MEASURES:
            wrk(url, path, bodies, key, connections, 2, scratch)  # warm-up: first requests, background start-up work
            results[name] = wrk(url, path, bodies, key, connections, seconds, scratch)
            print(f"  workers={workers} {name}: {results[name]}", flush=True)
        if soak_seconds:
            results["soak"] = soak(url, key, soak_seconds, scratch)
            print(f"  workers={workers} soak: {results['soak']}", flush=True)
        return results
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "http_results.json")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to serve (default: this one)")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--soak", type=int, default=60, help="seconds of the mixed soak per worker count (0: none)")
    args = parser.parse_args()
    report = {"measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine":
              {"python": platform.python_version(), "cpus": os.cpu_count(), "load_average": os.getloadavg()},
              "tool": f"wrk, {args.seconds} s per measure, 2 threads; SQLite", "results": {}}
    for workers in args.workers:
        report["results"][f"workers={workers}"] = run(args.root.resolve(), workers, args.seconds, args.soak)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"\n| measure | {' | '.join(report['results'])} |\n|---|" + "---:|" * len(report["results"]))
    for name, *_ in MEASURES:
        cells = [f"{r[name]['requests_per_second']:,} rps, p99 {r[name]['p99_ms']} ms"
                 for r in report["results"].values()]
        print(f"| {name} | {' | '.join(cells)} |")
    for label, r in report["results"].items():
        if "soak" in r:
            k = r["soak"]
            print(f"soak {label}: route alone p99 {k['route_alone']['p99_ms']} ms, beside intake "
                  f"{k['route_beside_intake']['p99_ms']} ms (×{k['p99_ratio']}); intake "
                  f"{k['intake_beside_route']['requests_per_second']} cases/s "
                  f"p99 {k['intake_beside_route']['p99_ms']} ms")


if __name__ == "__main__":
    main()
