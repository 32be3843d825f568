"""Insight pages: the escalation graph and impact preview on the verify page, compare chart and .xlsx export,
and the cases dashboard."""
from __future__ import annotations

from collections import Counter
from typing import Annotated

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from admin.common import Number, is_htmx, page, require, services
from engine.compiler import CompiledPolicy
from engine.verify import escalation_edges
from store.replay import DEFAULT_DAYS, parse_days, replay_version
from store.users import Principal

NODE_W, NODE_H, GAP, LEFT, TOP = 300, 54, 46, 20, 16


def duration_label(seconds: float, calendar: str) -> str:
    days, rest = divmod(int(seconds), 86400)
    working = calendar == "working"
    if not rest:
        return f"{days}个工作日" if working else f"{days}天"
    return f"{seconds / 3600:g}{'工作' if working else ''}小时"


def escalation_graph(compiled: CompiledPolicy) -> dict:
    """Coordinates for the escalation graph SVG: one box per level (with its grid count, or its only grid's
    name), one arrow per escalation hop, labelled with the deadline rule and the handling deadline it follows."""
    jur = compiled.jurisdiction
    levels = sorted(jur.policy.levels, key=lambda lv: lv.number)
    counts = Counter(u.level for u in jur.units.values())
    y = {lv.number: TOP + i * (NODE_H + GAP) for i, lv in enumerate(levels)}
    nodes = []
    for lv in levels:
        only = jur.units_at(lv.number)[0].name if counts[lv.number] == 1 else None
        nodes.append({"number": lv.number, "title": f"第{lv.number}级 {lv.name}", "y": y[lv.number],
                      "detail": only or f"{counts[lv.number]} 个{lv.unit_kind}"})
    steps = sorted({f"「{s.name}」{duration_label(s.deadline.duration.total_seconds(), s.deadline.calendar.value)}"
                    for w in jur.policy.workflows for s in w.steps if s.handling})
    deadline = "超过处置时限 " + " / ".join(steps) if steps else "超期"
    edges = []
    for edge in escalation_edges(compiled):
        start, end = y[edge["from"]] + NODE_H / 2, y[edge["to"]] + NODE_H / 2
        bulge = LEFT + NODE_W + 40 + 24 * (edge["from"] - edge["to"])
        edges.append(edge | {"path": f"M {LEFT + NODE_W} {start} C {bulge} {start}, {bulge} {end}, {LEFT + NODE_W + 4} {end}",
                             "label_x": bulge + 6, "label_y": (start + end) / 2, "deadline": deadline})
    return {"nodes": nodes, "edges": edges, "node_w": NODE_W, "node_h": NODE_H, "left": LEFT,
            "height": TOP * 2 + len(levels) * (NODE_H + GAP) - GAP, "width": 980}


# --- impact preview (fragment on the verify page; a page of its own without htmx)
@get("/j/{jid:str}/v/{number:int}/impact", sync_to_thread=False)
def impact(request: Request, user: NamedDependency[Principal], jid: FromPath[str], number: Number,
           days: Annotated[str | None, QueryParameter(max_length=20)] = None) -> Template:
    require(user, jid, "viewer")
    s = services(request).policies
    version = s.get_version(jid, number)
    report = replay_version(s, version, parse_days(days))
    context = dict(user=user, jid=jid, version=version, impact=report, days=report.days)
    return page("insight_impact.html" if is_htmx(request) else "insight_impact_page.html", **context)


def setup_templates(env) -> None:
    env.globals["impact_default_days"] = DEFAULT_DAYS


ROUTES = [impact]
