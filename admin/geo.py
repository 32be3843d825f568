"""Admin pages for integration: the grid map (server-rendered SVG, no tile server), the GeoJSON boundary upload
with its preview, and webhook subscriptions with their failed deliveries."""
from __future__ import annotations

import asyncio
import math

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.plugins.htmx import ClientRedirect
from litestar.response import Redirect, Template
from sqlmodel import Session, col, select

from admin.common import FormInvalid, Number, page, services
from admin.forms import BoundaryForm, WebhookForm, read
from store import boundaries, webhooks
from store.cases import CLOSED
from store.db import reader
from store.errors import StoreError
from store.outbox import KINDS
from store.tables import CaseRecord
from store.users import Principal

MAP_WIDTH = 960
MAX_CASES = 2000  # points drawn on the map: the newest open cases with a location
MAX_UPLOAD = 32 * 1024 * 1024  # GeoJSON of a city's grids is several MB


# --- the map
def _projection(bounds: tuple[float, float, float, float]):
    """Equirectangular, shrunk in longitude by cos(latitude): fine at city scale."""
    minx, miny, maxx, maxy = bounds
    squeeze = math.cos(math.radians((miny + maxy) / 2))
    scale = MAP_WIDTH / max((maxx - minx) * squeeze, 1e-9)
    height = max(1.0, (maxy - miny) * scale)
    return (lambda x, y: ((x - minx) * squeeze * scale, (maxy - y) * scale)), height


def _path(geometry, project) -> str:
    polygons = getattr(geometry, "geoms", [geometry])
    parts = []
    for polygon in polygons:
        for ring in (polygon.exterior, *polygon.interiors):
            points = [project(x, y) for x, y in ring.coords]
            parts.append("M" + "L".join(f"{x:.1f},{y:.1f}" for x, y in points) + "Z")
    return "".join(parts)


def grid_map(request: Request, jid: str) -> dict:
    """The active version's boundaries as SVG paths (upper levels under lower ones) and its open cases as points."""
    policies = services(request).policies
    version = policies.active_version(jid)
    row = boundaries.stored(policies.engine, jid, version.number)
    if row is None:
        return {"version": version, "units": [], "cases": [], "height": 0}
    units = policies.build(version).units
    from shapely.geometry import shape  # noqa: PLC0415 - loaded on the first map (see store/boundaries.py:check)
    shapes = [(f["properties"]["id"], shape(f["geometry"])) for f in row.geojson["features"]
              if f["properties"]["id"] in units]
    xs = [g.bounds for _, g in shapes]
    project, height = _projection((min(b[0] for b in xs), min(b[1] for b in xs), max(b[2] for b in xs),
                                   max(b[3] for b in xs)))
    deepest = max(units[u].level for u, _ in shapes)
    drawn = [{"id": uid, "name": units[uid].name, "level": units[uid].level, "leaf": units[uid].level == deepest,
              "d": _path(geom, project)} for uid, geom in sorted(shapes, key=lambda s: units[s[0]].level)]
    with Session(reader(policies.engine)) as session:
        rows = session.exec(select(CaseRecord).where(CaseRecord.jurisdiction == jid, CaseRecord.status != CLOSED,
                                                     col(CaseRecord.lat).is_not(None))
                            .order_by(col(CaseRecord.id).desc()).limit(MAX_CASES)).all()
    cases = [{"id": r.id, "overdue": r.overdue, "unit": r.unit, "xy": project(r.lon, r.lat)} for r in rows]
    return {"version": version, "units": drawn, "cases": cases, "height": height}


@get("/j/{jid:str}/map", sync_to_thread=True, opt={"role": "viewer"})
def map_page(request: Request, user: NamedDependency[Principal], jid: FromPath[str]) -> Template:
    name = services(request).policies.router(jid).jur.policy.name
    return page("geo_map.html", user=user, jid=jid, name=name, width=MAP_WIDTH, max_cases=MAX_CASES,
                **grid_map(request, jid))


# --- boundary upload onto a draft
@get("/j/{jid:str}/v/{number:int}/boundaries", sync_to_thread=True, opt={"role": "viewer"})
def boundaries_page(request: Request, user: NamedDependency[Principal], jid: FromPath[str], number: Number) -> Template:
    policies = services(request).policies
    version = policies.get_version(jid, number)
    row = boundaries.stored(policies.engine, jid, number)
    return page("geo_boundaries.html", user=user, jid=jid, version=version,
                features=len(row.geojson["features"]) if row else 0, units=len(policies.build(version).units),
                editable=version.status == "draft" and user.can(jid, "editor"))


@post("/j/{jid:str}/v/{number:int}/boundaries", request_max_body_size=MAX_UPLOAD, opt={"role": "editor"})
async def boundaries_upload(request: Request, user: NamedDependency[Principal], jid: FromPath[str],
                            number: Number) -> Response:
    """A preview (matched units, unmatched or overlapping features, errors); saved only on a confirmed clean one."""
    policies = services(request).policies
    try:
        (asked,) = read(await request.form(), (BoundaryForm, ""))
        text = await asked.content()
    except FormInvalid as err:
        return page("geo_boundaries_result.html", 422, jid=jid, number=number, errors=list(err.errors.values()),
                    error_fields=("file",), field_errors={"file": err.errors.get("file", "")})
    apply = asked.action == "apply"
    try:
        preview = boundaries.import_boundaries(policies, jid, number, text, user.name, apply=apply)
    except StoreError as err:
        return page("geo_boundaries_result.html", err.status, jid=jid, number=number, errors=[err.message])
    if not preview.ok:
        return page("geo_boundaries_result.html", 422, jid=jid, number=number, errors=preview.problems(),
                    preview=preview)
    if apply:
        return ClientRedirect(f"/admin/j/{jid}/v/{number}/boundaries")
    return page("geo_boundaries_result.html", jid=jid, number=number, preview=preview, geojson=text.decode("utf-8"),
                revision=asked.revision)


# --- webhooks
def _webhooks_page(request: Request, user: Principal, jid: str, status: int = 200, error: str = "",
                   form: dict | None = None) -> Template:
    engine = services(request).policies.engine
    return page("geo_webhooks.html", status, user=user, jid=jid, subscriptions=webhooks.subscriptions(engine, jid),
                failures=webhooks.failures(engine, jid), kinds=KINDS, labels=webhooks.STATUS_LABELS, error=error,
                form=form or {}, editable=user.can(jid, "publisher"))


@get("/j/{jid:str}/webhooks", sync_to_thread=True, opt={"role": "viewer"})
def webhooks_page(request: Request, user: NamedDependency[Principal], jid: FromPath[str]) -> Template:
    services(request).policies.router(jid)  # 404 for an unknown jurisdiction
    return _webhooks_page(request, user, jid)


@post("/j/{jid:str}/webhooks", opt={"role": "publisher"})
async def webhooks_create(request: Request, user: NamedDependency[Principal], jid: FromPath[str]) -> Response:
    data = await request.form()
    form = {"url": str(data.get("url") or ""), "kinds": [str(k) for k in data.getall("kinds", [])],
            "description": str(data.get("description") or "")}  # shown again as sent
    try:
        (asked,) = read(data, (WebhookForm, ""))
        # the ping waits on the network, not on the event loop
        sub = await asyncio.to_thread(webhooks.subscribe, services(request).policies.engine, jid, asked.url,
                                      asked.kinds, user.name, None, asked.description)
    except StoreError as err:
        return _webhooks_page(request, user, jid, 422, err.message, form)
    page_ = _webhooks_page(request, user, jid)
    page_.context["created"] = sub  # its secret is shown this once
    return page_


@post("/j/{jid:str}/webhooks/{sub_id:int}/delete", sync_to_thread=True, opt={"role": "publisher"})
def webhooks_delete(request: Request, user: NamedDependency[Principal], jid: FromPath[str], sub_id: Number) -> Redirect:
    webhooks.unsubscribe(services(request).policies.engine, jid, sub_id, user.name)
    return Redirect(f"/admin/j/{jid}/webhooks")


@post("/j/{jid:str}/webhooks/deliveries/{delivery_id:int}/redeliver", sync_to_thread=True, opt={"role": "publisher"})
def webhooks_redeliver(request: Request, user: NamedDependency[Principal], jid: FromPath[str],
                       delivery_id: Number) -> Response:
    try:
        webhooks.redeliver(services(request).policies.engine, jid, delivery_id, user.name)
    except StoreError as err:
        return _webhooks_page(request, user, jid, err.status, err.message)
    return Redirect(f"/admin/j/{jid}/webhooks")


ROUTES = [map_page, boundaries_page, boundaries_upload, webhooks_page, webhooks_create, webhooks_delete,
          webhooks_redeliver]
