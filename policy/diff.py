"""Semantic diff of two policy versions and side-by-side comparison of jurisdictions (pure functions)."""
from __future__ import annotations

from collections import Counter

from policy.loader import Jurisdiction
from policy.models import Policy


def _keyed(items, key: str) -> dict:
    return {getattr(item, key): item for item in items}


def _deadlines(policy: Policy) -> dict[str, dict]:
    return {f"{w.id}.{s.id}": {"name": s.name, "duration": s.deadline.duration.total_seconds(),
                               "calendar": s.deadline.calendar.value} for w in policy.workflows for s in w.steps}


def diff(old: Policy, new: Policy) -> dict:
    """What changed, in the policy's own terms: handlers, departments, deadlines, rules, levels."""
    out: dict = {"problem_types": {"added": [], "removed": [], "handler_changed": [], "departments_changed": [],
                                   "persuade_first_changed": []},
                 "deadlines_changed": [], "rules": {"added": [], "removed": [], "changed": []},
                 "levels_changed": [], "departments": {"added": [], "removed": []}, "scoring_changed": False}
    a, b = _keyed(old.problem_types, "code"), _keyed(new.problem_types, "code")
    out["problem_types"]["added"] = sorted(set(b) - set(a))
    out["problem_types"]["removed"] = sorted(set(a) - set(b))
    for code in sorted(set(a) & set(b)):
        if a[code].level != b[code].level:
            out["problem_types"]["handler_changed"].append({"code": code, "from": a[code].level, "to": b[code].level})
        if a[code].departments != b[code].departments:
            out["problem_types"]["departments_changed"].append(
                {"code": code, "from": list(a[code].departments), "to": list(b[code].departments)})
        if a[code].persuade_first != b[code].persuade_first:
            out["problem_types"]["persuade_first_changed"].append({"code": code, "to": b[code].persuade_first})
    da, db = _deadlines(old), _deadlines(new)
    for step in sorted(set(da) | set(db)):
        if da.get(step) != db.get(step):
            out["deadlines_changed"].append({"step": step, "from": da.get(step), "to": db.get(step)})
    ra, rb = _keyed(old.rules, "id"), _keyed(new.rules, "id")
    out["rules"]["added"] = sorted(set(rb) - set(ra))
    out["rules"]["removed"] = sorted(set(ra) - set(rb))
    out["rules"]["changed"] = sorted(r for r in set(ra) & set(rb) if ra[r] != rb[r])
    la, lb = _keyed(old.levels, "number"), _keyed(new.levels, "number")
    out["levels_changed"] = sorted(n for n in set(la) | set(lb) if la.get(n) != lb.get(n))
    pa, pb = _keyed(old.departments, "id"), _keyed(new.departments, "id")
    out["departments"] = {"added": sorted(set(pb) - set(pa)), "removed": sorted(set(pa) - set(pb))}
    out["scoring_changed"] = old.scoring != new.scoring
    ta, tb = _keyed(old.tests, "name"), _keyed(new.tests, "name")
    out["tests"] = {"added": sorted(set(tb) - set(ta)), "removed": sorted(set(ta) - set(tb)),
                    "changed": sorted(n for n in set(ta) & set(tb) if ta[n] != tb[n])}
    out["four_eyes_changed"] = old.publishing.four_eyes != new.publishing.four_eyes
    out["changed"] = any([any(out["problem_types"].values()), out["deadlines_changed"], any(out["rules"].values()),
                          out["levels_changed"], any(out["departments"].values()), out["scoring_changed"],
                          any(out["tests"].values()), out["four_eyes_changed"]])
    return out


def compare(jurisdictions: list[Jurisdiction]) -> dict:
    """Side by side: levels, unit counts, which level handles each shared problem type, departments,
    workflow steps and deadlines, escalation rules, scoring."""
    result: dict[str, list] = {"jurisdictions": [], "problem_types": []}
    codes: dict[str, dict] = {}
    for jur in jurisdictions:
        p = jur.policy
        units = Counter(u.level for u in jur.units.values())
        result["jurisdictions"].append({
            "id": jur.id, "name": p.name, "version": jur.content_hash,
            "levels": [{"number": lv.number, "name": lv.name, "unit_kind": lv.unit_kind, "units": units[lv.number],
                        "problem_types": sum(1 for t in p.problem_types if t.level == lv.number)} for lv in p.levels],
            "departments": [{"id": d.id, "name": d.name} for d in p.departments],
            "workflows": [{"id": w.id, "name": w.name, "steps": [
                {"id": s.id, "name": s.name, "duration": s.deadline.duration.total_seconds(),
                 "calendar": s.deadline.calendar.value, "assumed": s.deadline.assumption is not None}
                for s in w.steps]} for w in p.workflows],
            "escalation": [{"id": r.id, "name": r.name, "priority": r.priority} for r in p.rules],
            "scoring": p.scoring.model_dump(mode="json", include={"scheme", "total", "period", "publish"})
            if p.scoring else None,
        })
        for t in p.problem_types:
            row = codes.setdefault(t.code, {"code": t.code, "name": jur.type_name(t.code), "by_jurisdiction": {}})
            row["by_jurisdiction"][jur.id] = {"level": t.level, "departments": list(t.departments)}
    for row in sorted(codes.values(), key=lambda r: r["code"]):
        levels = {v["level"] for v in row["by_jurisdiction"].values()}
        row["shared"] = len(row["by_jurisdiction"]) == len(jurisdictions)
        # with three or more jurisdictions a type few of them have still differs among those that do
        row["differs"] = len(row["by_jurisdiction"]) >= 2 and len(levels) > 1
        result["problem_types"].append(row)
    return result
