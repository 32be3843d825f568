"""Point → grid lookups against a generated lattice of Hefei's 1,649 units (`make bench`).

Baseline in the same run: the same prepared polygons tested one after another (no index), so the figure
can be read on a machine whose speed varies."""
from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import shapely  # noqa: E402

from policy.loader import Loader  # noqa: E402
from store.boundaries import Locator, check  # noqa: E402
from tests.lattice import lattice  # noqa: E402

LOOKUPS = 50_000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path)
    parser.add_argument("--jurisdiction", default="hefei")
    args = parser.parse_args()
    units = Loader().build(args.jurisdiction).units
    collection, cells = lattice(units)
    preview = check(collection, units)
    assert preview.ok, preview.problems()
    started = time.perf_counter()
    locator = Locator(preview.collection, units)
    build_s = time.perf_counter() - started
    rng = random.Random(1)
    leaves = sorted(cells)
    points = []
    for _ in range(LOOKUPS):
        minx, miny, maxx, maxy = cells[rng.choice(leaves)]
        points.append((minx + rng.uniform(0.01, 0.99) * (maxx - minx), miny + rng.uniform(0.01, 0.99) * (maxy - miny)))
    started = time.perf_counter()
    for x, y in points:
        locator.locate(x, y)
    indexed = LOOKUPS / (time.perf_counter() - started)
    sample = points[:2000]
    started = time.perf_counter()
    for x, y in sample:
        inside = shapely.contains_xy(locator.geoms, x, y)
        locator.levels[inside].argmax()
    linear = len(sample) / (time.perf_counter() - started)
    result = {"when": datetime.now(timezone.utc).isoformat(), "machine": platform.platform(),
              "jurisdiction": args.jurisdiction, "polygons": len(locator.ids), "lookups": LOOKUPS,
              "build_s": round(build_s, 3), "lookups_per_s": round(indexed),
              "baseline_linear_scan_per_s": round(linear), "target_per_s": 20_000}
    print(json.dumps(result, ensure_ascii=False, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
