"""Grid unit boundaries: GeoJSON per jurisdiction and policy version, and the grid found from a location.

Boundaries are stored beside the version they belong to (a draft copies its base version's set), so they are
edited on a draft, published with it and diffed between versions like the unit tree. Coordinates are
WGS-84/CGCS2000 longitude/latitude (the two differ by centimetres); points sent in GCJ-02 (Gaode, Tencent) or
BD-09 (Baidu) are converted first with `coordtransform`.
"""
from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, select

from store.db import UnitOfWork, reader
from store.errors import Invalid
from store.tables import utcnow
from store.versions import PolicyStore, audit

# accepted spellings → canonical name; WGS-84 and CGCS2000 are the same to map precision
COORD_SYSTEMS = {"wgs84": "wgs84", "wgs-84": "wgs84", "cgcs2000": "wgs84", "gcj02": "gcj02", "gcj-02": "gcj02",
                 "bd09": "bd09", "bd-09": "bd09"}
COORD_LABELS = "wgs84 (GPS/天地图, 同 cgcs2000)、gcj02 (高德/腾讯)、bd09 (百度)"
NEAREST = 3  # units named when a point is in none or on a shared edge
OVERLAP_TOLERANCE = 1e-10  # square degrees (~1 m²): shared edges are not overlaps


class UnitBoundaries(SQLModel, table=True):
    """One version's boundary set: a GeoJSON FeatureCollection whose features carry the unit id."""
    __tablename__ = "unit_boundaries"
    __table_args__ = (UniqueConstraint("jurisdiction", "version_number"),)
    id: int | None = Field(default=None, primary_key=True)
    jurisdiction: str = Field(max_length=64, index=True)
    version_number: int
    content_hash: str = Field(max_length=32)
    geojson: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    author: str = Field(max_length=128)
    updated_at: datetime = Field(default_factory=utcnow)


def to_wgs84(lon: float, lat: float, coord_system: str | None) -> tuple[float, float]:
    """(lon, lat) in WGS-84; Invalid naming the field for an unknown system or a point off the globe."""
    system = COORD_SYSTEMS.get((coord_system or "wgs84").strip().lower())
    if system is None:
        raise Invalid(f"未知坐标系 '{coord_system}'; 可用: {COORD_LABELS} — unknown coord_system",
                      field="location.coord_system", valid=sorted(set(COORD_SYSTEMS)))
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise Invalid(f"经纬度超出范围: 经度 {lon}, 纬度 {lat} — longitude/latitude out of range", field="location")
    import coordTransform  # noqa: PLC0415 - it loads numpy: see check
    if system == "gcj02":
        lon, lat = coordTransform.gcj02_to_wgs84(lon, lat)
    elif system == "bd09":
        lon, lat = coordTransform.bd09_to_wgs84(lon, lat)
    return float(lon), float(lat)


# --- parsing and checking an import
@dataclass
class Preview:
    """What an import would store: matched units, and the problems that refuse it."""
    matched: list[dict] = field(default_factory=list)  # {id, name, level}
    unmatched: list[str] = field(default_factory=list)  # features whose id is no unit
    overlapping: list[tuple[str, str]] = field(default_factory=list)  # same-level units sharing area
    errors: list[str] = field(default_factory=list)  # malformed GeoJSON, per feature
    missing: int = 0  # units of the version without a boundary (allowed: routing falls back to the parent)
    collection: dict | None = None

    @property
    def ok(self) -> bool:
        return not (self.unmatched or self.overlapping or self.errors)

    def problems(self) -> list[str]:
        return [*self.errors, *(f"要素 '{uid}' 不是本版本的网格单元 — no such unit" for uid in self.unmatched),
                *(f"同级网格 {a} 与 {b} 的边界重叠 — overlapping" for a, b in self.overlapping)]


def _feature_id(feature: dict) -> str | None:
    props = feature.get("properties") or {}
    value = props.get("id", props.get("unit", feature.get("id")))
    return str(value) if value not in (None, "") else None


def check(text: str | bytes | dict, units: Mapping[str, Any]) -> Preview:
    """Parse a GeoJSON FeatureCollection against a version's units (`units`: id → policy Unit)."""
    import shapely  # noqa: PLC0415 - shapely and numpy (~0.6 s of imports) load on the first boundary use
    preview = Preview()
    try:
        data = json.loads(text) if isinstance(text, (str, bytes)) else text
    except (ValueError, UnicodeDecodeError) as err:
        preview.errors.append(f"不是有效的 JSON: {err} — invalid JSON")
        return preview
    if (not isinstance(data, dict) or data.get("type") != "FeatureCollection"
            or not isinstance(data.get("features"), list)):
        preview.errors.append("须为 GeoJSON FeatureCollection (type 与 features) — expected a FeatureCollection")
        return preview
    geoms, ids, features = [], [], []
    for i, feature in enumerate(data["features"], 1):
        uid = _feature_id(feature) if isinstance(feature, dict) else None
        where = f"第 {i} 个要素" + (f" ({uid})" if uid else "")
        if uid is None:
            preview.errors.append(f"{where}: 缺少 properties.id (网格单元 id) — missing unit id")
            continue
        try:
            geom = shapely.geometry.shape(feature["geometry"])
        except Exception as err:  # noqa: BLE001 - shapely raises several types for malformed geometry
            preview.errors.append(f"{where}: 几何无效 ({err.__class__.__name__}: {err}) — bad geometry")
            continue
        if geom.geom_type not in ("Polygon", "MultiPolygon") or geom.is_empty:
            preview.errors.append(f"{where}: 须为 Polygon 或 MultiPolygon, 收到 {geom.geom_type}")
            continue
        if not geom.is_valid:
            preview.errors.append(f"{where}: 多边形自相交或不闭合 ({shapely.is_valid_reason(geom)})")
            continue
        minx, miny, maxx, maxy = geom.bounds
        if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
            preview.errors.append(f"{where}: 坐标超出经纬度范围, 须为 WGS-84/CGCS2000 经纬度 (经度在前)")
            continue
        if uid in ids:
            preview.errors.append(f"{where}: 单元 {uid} 出现多次 — duplicate unit id")
            continue
        if uid not in units:
            preview.unmatched.append(uid)
            continue
        ids.append(uid)
        geoms.append(geom)
        features.append({"type": "Feature", "properties": {"id": uid},
                         "geometry": shapely.geometry.mapping(geom)})
        preview.matched.append({"id": uid, "name": units[uid].name, "level": units[uid].level})
    if not features and not preview.errors and not preview.unmatched:
        preview.errors.append("没有任何要素 — the collection is empty")
    preview.overlapping = _overlaps(geoms, [units[u].level for u in ids], ids)
    preview.missing = len(units) - len(ids)
    preview.collection = {"type": "FeatureCollection", "features": features}
    return preview


def _overlaps(geoms: list, levels: list[int], ids: list[str]) -> list[tuple[str, str]]:
    import numpy as np  # noqa: PLC0415 - see check
    import shapely  # noqa: PLC0415
    if not geoms:
        return []
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="intersects")
    pairs = [(a, b) for a, b in zip(left, right) if a < b and levels[a] == levels[b]]
    if not pairs:
        return []
    a_idx, b_idx = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    areas = shapely.area(shapely.intersection(np.array(geoms, dtype=object)[a_idx],
                                              np.array(geoms, dtype=object)[b_idx]))
    return [(ids[a], ids[b]) for (a, b), area in zip(pairs, areas) if area > OVERLAP_TOLERANCE]


def _hash(collection: dict) -> str:
    return hashlib.sha256(json.dumps(collection, sort_keys=True).encode()).hexdigest()[:32]


# --- storing with a version
def stored(engine: Engine, jid: str, number: int) -> UnitBoundaries | None:
    with Session(reader(engine)) as session:
        return session.exec(select(UnitBoundaries).where(UnitBoundaries.jurisdiction == jid,
                                                         UnitBoundaries.version_number == number)).first()


def copy_to(session: Session, jid: str, from_number: int | None, to_number: int) -> None:
    """A new draft starts with its base version's boundaries (inside the caller's transaction)."""
    if from_number is None:
        return
    base = session.exec(select(UnitBoundaries).where(UnitBoundaries.jurisdiction == jid,
                                                     UnitBoundaries.version_number == from_number)).first()
    if base is not None:
        session.add(UnitBoundaries(jurisdiction=jid, version_number=to_number, content_hash=base.content_hash,
                                   geojson=base.geojson, author=base.author))


def import_boundaries(policies: PolicyStore, jid: str, number: int, text: str | bytes | dict, author: str,
                      apply: bool = True) -> Preview:
    """Check a GeoJSON upload against draft `number`; store it (replacing the draft's set) only when `apply`
    and the check found nothing wrong. A published version is never changed."""
    version = policies.get_version(jid, number)
    if version.status != "draft":
        raise Invalid(f"v{number} 已发布, 边界只能导入到草稿 — import onto a draft", field="number")
    preview = check(text, policies.build(version).units)
    if not (apply and preview.ok):
        return preview
    with UnitOfWork(policies.engine) as uow:
        session = uow.session
        row = session.exec(select(UnitBoundaries).where(UnitBoundaries.jurisdiction == jid,
                                                        UnitBoundaries.version_number == number)).first()
        row = row or UnitBoundaries(jurisdiction=jid, version_number=number, content_hash="", geojson={}, author=author)
        collection = preview.collection
        assert collection is not None  # a preview without problems holds the collection
        row.geojson, row.content_hash, row.author, row.updated_at = collection, _hash(collection), author, utcnow()
        session.add(row)
        audit(session, author, "boundaries_imported", jid, number, features=len(preview.matched),
              content_hash=row.content_hash)
    return preview


def diff(engine: Engine, jid: str, old: int, new: int) -> dict:
    """Units whose boundary was added, removed or changed between two versions."""
    def shapes(number: int) -> dict[str, str]:
        row = stored(engine, jid, number)
        return {f["properties"]["id"]: json.dumps(f["geometry"], sort_keys=True)
                for f in (row.geojson["features"] if row else [])}
    a, b = shapes(old), shapes(new)
    return {"added": sorted(set(b) - set(a)), "removed": sorted(set(a) - set(b)),
            "changed": sorted(u for u in set(a) & set(b) if a[u] != b[u])}


# --- the grid from a location
class Locator:
    """The boundaries of one version; `locate` answers the lowest unit containing a point.

    The STRtree is asked once, at build time, which polygons meet each cell of a bucket grid over the extent
    (deepest level first). A bucket wholly inside one lowest unit answers at once; any other lookup is one
    vectorised point-in-polygon test on its bucket's prepared polygons: no Point object or tree query per lookup."""

    def __init__(self, collection: dict, units: Mapping[str, Any]):
        import numpy as np  # noqa: PLC0415 - see check
        import shapely  # noqa: PLC0415
        features = [f for f in collection["features"] if f["properties"]["id"] in units]
        self.ids = [f["properties"]["id"] for f in features]
        self.geoms = np.array([shapely.geometry.shape(f["geometry"]) for f in features], dtype=object)
        shapely.prepare(self.geoms)
        self.levels = np.array([units[u].level for u in self.ids])
        self.names = {u: units[u].name for u in self.ids}
        # a unit whose children have boundaries should not contain a point itself: it lies on a child's edge or in a gap
        parents = {units[u].parent for u in self.ids}
        self.refined = np.array([u in parents for u in self.ids])
        minx, miny, maxx, maxy = shapely.total_bounds(self.geoms)
        self.n = max(1, 4 * math.isqrt(len(self.ids)))  # ~16 buckets per unit: most lie inside one unit
        self.x0, self.y0 = minx, miny
        self.dx, self.dy = (maxx - minx) / self.n or 1.0, (maxy - miny) / self.n or 1.0
        steps = np.arange(self.n)
        bx, by = np.meshgrid(steps, steps, indexing="ij")
        cells = shapely.box(minx + bx.ravel() * self.dx, miny + by.ravel() * self.dy,
                            minx + (bx.ravel() + 1) * self.dx, miny + (by.ravel() + 1) * self.dy)
        cell_of, geom_of = shapely.STRtree(self.geoms).query(cells, predicate="intersects")
        # a bucket inside one unit's interior (not a refined one) answers without any geometry test
        interior = shapely.contains_properly(self.geoms[geom_of], cells[cell_of]) & ~self.refined[geom_of]
        self.buckets: list[tuple[np.ndarray, np.ndarray] | str | None] = [None] * (self.n * self.n)
        order = np.lexsort((-self.levels[geom_of], cell_of))  # by cell, deepest level first within a cell
        cell_of, geom_of, interior = cell_of[order], geom_of[order], interior[order]
        starts = np.flatnonzero(np.r_[True, cell_of[1:] != cell_of[:-1]])
        for start, end in zip(starts, np.r_[starts[1:], len(cell_of)]):
            found = geom_of[start:end]
            self.buckets[cell_of[start]] = self.ids[found[0]] if interior[start] else (self.geoms[found], found)

    def locate(self, lon: float, lat: float) -> str:
        import numpy as np  # noqa: PLC0415 - see check
        import shapely  # noqa: PLC0415
        bx, by = int((lon - self.x0) / self.dx), int((lat - self.y0) / self.dy)
        bucket = None
        if 0 <= bx <= self.n and 0 <= by <= self.n:
            bucket = self.buckets[min(bx, self.n - 1) * self.n + min(by, self.n - 1)]
        if isinstance(bucket, str):
            return bucket
        if bucket is not None:
            geoms, found = bucket
            inside = shapely.contains_xy(geoms, lon, lat)  # interior only: False on an edge
            deepest = found[inside.argmax()] if inside.any() else None
            if deepest is not None and not self.refined[deepest]:
                return self.ids[deepest]
            on_edge = found[shapely.intersects_xy(geoms, lon, lat) & ~inside]
            if len(on_edge):
                named = [self.ids[i] for i in on_edge]
                raise Invalid(f"位置 ({lon:.6f}, {lat:.6f}) 位于网格 {self._named(named)} 的边界上, 无法确定网格; "
                              "请指定 unit — the point is on a unit's edge", field="location", nearest_units=named)
            if deepest is not None:  # in a gap between the children: the lowest unit that contains it
                return self.ids[deepest]
        distances = shapely.distance(self.geoms, shapely.points(lon, lat))
        nearest = [self.ids[i] for i in np.lexsort((-self.levels, distances))[:NEAREST]]  # deepest first on ties
        raise Invalid(f"位置 ({lon:.6f}, {lat:.6f}) 不在任何网格内; 最近的网格: {self._named(nearest)} "
                      "— the point is outside every unit", field="location", nearest_units=nearest)

    def _named(self, ids: list[str]) -> str:
        return "、".join(f"{self.names.get(u, u)} ({u})" for u in ids)


class Locators:
    """One Locator per (jurisdiction, boundary set), built on first use and kept while that set is active."""

    def __init__(self, policies: PolicyStore):
        self.policies = policies
        self._cache: dict[tuple[str, str], Locator] = {}
        self._lock = threading.Lock()

    def for_active(self, jid: str) -> Locator:
        version = self.policies.active_version(jid)
        with Session(reader(self.policies.engine)) as session:  # the hash only: the set itself is read once
            content_hash = session.exec(select(UnitBoundaries.content_hash).where(
                UnitBoundaries.jurisdiction == jid, UnitBoundaries.version_number == version.number)).first()
        if content_hash is None:
            raise Invalid(f"辖区 {jid} 的现行版本 v{version.number} 没有网格边界, 无法按位置确定网格; 请提供 unit "
                          "(边界用 gridpolicy units boundaries import 导入) — no boundaries", field="location")
        key = (jid, content_hash)
        with self._lock:
            if key not in self._cache:
                row = stored(self.policies.engine, jid, version.number)
                assert row is not None  # its hash was just read, and a published version's set never changes
                self._cache[key] = Locator(row.geojson, self.policies.build(version).units)
            return self._cache[key]

    def locate(self, jid: str, lon: float, lat: float, coord_system: str | None) -> tuple[str, float, float]:
        """The unit at a point given in `coord_system`, and the point in WGS-84."""
        lon, lat = to_wgs84(lon, lat, coord_system)
        return self.for_active(jid).locate(lon, lat), lon, lat

