"""CPU per case of intake (CaseService.create, no HTTP) and of the case-history simulator, on a fresh SQLite
database: intake one case at a time and from 16 threads (sharing transactions through GroupCommit), the simulator
with its batches. CPU time, not wall time, so that a shared machine's load moves the figures less. Run it from a
checkout (`python bench/intake_cpu.py`; with `--root` another checkout's code is measured by this interpreter) and
compare against a run of the other in the same minutes."""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

UNITS = [f"kmy-l3-{n:02d}" for n in range(1, 10)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--simulate", type=int, default=2000)
    args = parser.parse_args()
    sys.path.insert(0, str(args.root.resolve()))
    from engine.router import Case  # noqa: PLC0415 - from the checkout being measured
    from store.cases import CaseService  # noqa: PLC0415
    from store.simulate import simulate  # noqa: PLC0415
    from store.versions import open_policy_store  # noqa: PLC0415

    scratch = Path(tempfile.mkdtemp(prefix="gp-intake-cpu-"))
    cases = CaseService(open_policy_store(f"sqlite:///{scratch / 'intake.db'}"))

    def one(i: int) -> None:
        cases.create("karamay", Case(problem_type="医疗废物处置", unit=UNITS[i % len(UNITS)]), actor="bench")

    for i in range(50):  # warm-up: the router's first cases, the statement caches
        one(i)
    began = time.process_time()
    for i in range(args.cases // 4):
        one(i)
    print(f"intake, one at a time: {(time.process_time() - began) / (args.cases // 4) * 1000:.2f} ms CPU per case")

    def worker(k: int) -> None:
        for i in range(k, args.cases, 16):
            one(i)
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(16)]
    began = time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"intake, 16 threads: {(time.process_time() - began) / args.cases * 1000:.2f} ms CPU per case")

    other = CaseService(open_policy_store(f"sqlite:///{scratch / 'simulate.db'}"))
    began = time.process_time()
    counts = simulate(other, "karamay", args.simulate, 90, seed=7)
    cpu = time.process_time() - began
    print(f"simulator: {cpu / args.simulate * 1000:.2f} ms CPU per case, "
          f"{args.simulate / counts['seconds']:.0f} cases/s")


if __name__ == "__main__":
    main()
