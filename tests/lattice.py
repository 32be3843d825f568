"""Generated unit boundaries for tests and benchmarks (no real boundary data is invented): every unit without
children gets one square cell of a lattice, in depth-first order; a parent's boundary is the union of its
children's. Neighbouring cells share edges exactly, so same-level units never overlap."""
from __future__ import annotations

import math
from collections import defaultdict

import shapely
from shapely.geometry import box, mapping

ORIGIN = (117.0, 31.6)  # an arbitrary point in China, so GCJ-02/BD-09 offsets apply
SIZE = 0.01  # degrees: ~1 km cells


def lattice(units: dict, origin: tuple[float, float] = ORIGIN, size: float = SIZE) -> tuple[dict, dict]:
    """(FeatureCollection of every unit, {leaf id: its cell as (minx, miny, maxx, maxy)})."""
    children = defaultdict(list)
    for unit in units.values():
        children[unit.parent if unit.parent in units else None].append(unit.id)
    leaves: list[str] = []

    def walk(uid: str) -> None:
        if not children[uid]:
            leaves.append(uid)
        for child in children[uid]:
            walk(child)
    for root in children[None]:
        walk(root)
    columns = math.ceil(math.sqrt(len(leaves)))
    cells = {uid: (origin[0] + (i % columns) * size, origin[1] + (i // columns) * size,
                   origin[0] + (i % columns + 1) * size, origin[1] + (i // columns + 1) * size)
             for i, uid in enumerate(leaves)}
    geoms: dict[str, object] = {}

    def shape_of(uid: str):
        if uid not in geoms:
            geoms[uid] = box(*cells[uid]) if uid in cells else shapely.union_all([shape_of(c) for c in children[uid]])
        return geoms[uid]
    features = [{"type": "Feature", "properties": {"id": uid}, "geometry": mapping(shape_of(uid))} for uid in units]
    return {"type": "FeatureCollection", "features": features}, cells


def centre(cell: tuple[float, float, float, float]) -> tuple[float, float]:
    return (cell[0] + cell[2]) / 2, (cell[1] + cell[3]) / 2
