"""`make bench`: the unit search index (policy/search.py) over a generated 200,000-unit tree: build time (fresh,
and reusing an earlier version's pinyin), search and close-match latency, beside the full scan with
policy.catalog.search_score the admin search used before (timed on a 20,000-unit slice and scaled)."""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policy.catalog import search_score  # noqa: E402
from policy.search import UnitIndex  # noqa: E402
from tests.test_search_index import _tree  # noqa: E402

QUERIES = ["东风", "dongfeng", "df", "d", "村", "shequ", "zzz", "c-07-t047-v01247", "第9网格", "v0124", "重庆路",
           "xihu"]
UNKNOWN = ["c-07-t047-v1247", "c_07-t047-v01247", "东风西湖村社区第6网", "completely-unrelated", "dongfengxihu",
           "东风西糊村"]


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", type=int, default=200_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    names = {uid: name for uid, (name, _, _) in _tree(args.units).items()}
    start = time.perf_counter()
    index = UnitIndex(names)
    fresh = time.perf_counter() - start
    start = time.perf_counter()
    UnitIndex(names, previous=index)
    reused = time.perf_counter() - start
    search = {q: statistics.median(timed(index.search, q, 50) for _ in range(5)) for q in QUERIES}
    close = {q: statistics.median(timed(index.close_matches, q, 3) for _ in range(5)) for q in UNKNOWN}
    sample = list(names.items())[:20_000]
    scan = (timed(lambda: [search_score("dongfeng", uid, name, fuzzy=False) for uid, name in sample])
            * len(names) / 20_000)
    result = {"units": len(names), "build_fresh_s": round(fresh, 2), "build_reusing_pinyin_s": round(reused, 2),
              "search_ms": {q: round(v, 2) for q, v in search.items()},
              "close_matches_ms": {q: round(v, 2) for q, v in close.items()},
              "search_max_ms": round(max(search.values()), 2), "close_matches_max_ms": round(max(close.values()), 2),
              "old_full_scan_ms_estimate": round(scan), "load_average": Path("/proc/loadavg").read_text().split()[:3]}
    print(json.dumps(result, ensure_ascii=False, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n")


if __name__ == "__main__":
    main()
