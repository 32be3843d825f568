"""Scaled unit trees for the province-scale tests and benchmark (tests small, bench/scale_bench.py big)."""
from __future__ import annotations

import csv
import io

from policy.unit_rows import overlay_units, parse_units_csv


def scaled_units_csv(counts: tuple[int, ...], prefix: str = "s") -> str:
    """A units CSV with counts[k] units at level k+1, each level spread evenly over the one above."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "name", "level", "parent"])
    for level, count in enumerate(counts, start=1):
        above = counts[level - 2] if level > 1 else 0
        for n in range(count):
            parent = f"{prefix}{level - 1}-{n * above // count}" if level > 1 else ""
            writer.writerow([f"{prefix}{level}-{n}", f"第{level}级网格{n:06d}号", level, parent])
    return out.getvalue()


def scaled_document(document: dict, counts: tuple[int, ...]) -> dict:
    """`document` with its units replaced by a scaled tree imported as named units; the document's stated unit
    counts, which a scaled tree contradicts, are dropped."""
    document = {**document, "levels": [{**lv, "unit_counts": []} for lv in document["levels"]]}
    overlay_units(document, parse_units_csv(scaled_units_csv(counts), "scaled.units.csv"))
    return document
