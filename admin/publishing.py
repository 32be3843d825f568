"""Publishing you can see: what the verify page shows before the publish button (the diff against the active
version, the pinned cases, the four-eyes rule), rollback with a reason, and the simulator's "保存为测试用例"."""
from __future__ import annotations

from typing import Any

from litestar import Request, post
from litestar.di import NamedDependency
from litestar.response import Template

from admin.common import FormInvalid, Refused, attempt, page, require, services
from admin.forms import NO_CLAUSE, JurisdictionForm, PinForm, read
from engine.pinned import FIELD_LABELS, observed, show
from engine.router import Case, RoutingError
from policy import words
from policy.diff import diff
from store.errors import NotFound
from store.tables import PolicyVersion
from store.users import Principal

# What the history on a jurisdiction's page lists, with the audit action codes they are stored under.
HISTORY_ACTIONS = {"published": "发布", "rolled_back": "回滚", "pinned_accepted": "接受测试用例新结果"}
# the simulator's and the pin form's fields with a message slot (`err-sim-…`, `err-pin-…`)
CASE_FIELDS = ("jurisdiction", "problem_type", "unit", "enterprise_class")
PIN_FIELDS = ("name", "clause")


def verify_context(request: Request, user: Principal, version: PolicyVersion) -> dict:
    """The verify page's publishing part: diff against the active version, pinned results, four-eyes state."""
    s = services(request).policies
    active = s.active_version(version.jurisdiction)
    jur = s.build(version)
    four_eyes = jur.policy.publishing.four_eyes
    last_editor = s.last_editor(version.jurisdiction, version.number) if version.status == "draft" else None
    return {"active": active, "active_diff": diff(s.build(active).policy, jur.policy),
            "type_names": s.router(version.jurisdiction).jur.type_names,
            "pinned": s.pinned_results(version), "pinned_labels": FIELD_LABELS, "pinned_show": shown,
            "four_eyes": four_eyes, "last_editor": last_editor,
            "four_eyes_blocked": four_eyes and last_editor == user.name}


def history(request: Request, jid: str) -> list:
    return [e for e in services(request).policies.audit_log(jid, limit=200) if e.action in HISTORY_ACTIONS]


def latest_draft(request: Request, jid: str) -> PolicyVersion | None:
    drafts = [v for v in services(request).policies.list_versions(jid) if v.status == "draft"]
    return drafts[-1] if drafts else None


def _clauses(decision) -> list[dict]:
    """The quoted clauses a decision followed (its trace), offered as the pinned case's `clause:`."""
    seen, out = set(), []
    for entry in decision.trace:
        source = entry.source or {}
        if source.get("quote") and source["quote"] not in seen:
            seen.add(source["quote"])
            out.append({"seed": source["seed"], "clause": source["clause"], "quote": source["quote"]})
    return out


def pin_context(request: Request, user: Principal, jid: str, decision) -> dict:
    """What the simulator's decision needs to offer "保存为测试用例" (into the newest draft)."""
    draft = latest_draft(request, jid) if user.can(jid, "editor") else None
    return {"pin_draft": draft, "pin_clauses": _clauses(decision)}


@post("/simulate/pin")
async def pin_case(request: Request, user: NamedDependency[Principal]) -> Template:
    """Save the simulator's inputs and the active version's decision as a pinned case of the newest draft."""
    form = await request.form()
    (where,) = read(form, (JurisdictionForm, ""))  # whose role is checked before the rest of the form is read
    jid = where.jurisdiction
    require(user, jid, "editor")
    s = services(request).policies
    draft = latest_draft(request, jid)
    if draft is None:
        raise NotFound(f"辖区 {jid} 没有草稿; 请先新建草稿再保存测试用例", field="draft")
    try:
        (asked,) = read(form, (PinForm, ""))
        facts = {k: v for k, v in asked.facts().items() if v != "none"}
        router = s.router(jid)
        decision = router.route(Case(problem_type=asked.problem_type, unit=asked.unit, facts=facts))
        unit_id = router.resolve_unit(asked.unit).id if asked.unit else None
        clauses = _clauses(decision)
        if asked.clause >= len(clauses):
            raise FormInvalid({"clause": NO_CLAUSE})
    except FormInvalid as err:
        return _pin_result(422, field_errors=err.errors, error="请修正表单中标出的问题")
    except RoutingError as err:
        return _pin_result(422, error=str(err))
    case = {"name": asked.name, "clause": clauses[asked.clause],
            "given": {"problem_type": decision.problem_type.code, "unit": unit_id, "facts": facts},
            "expect": observed(decision).model_dump(mode="json")}
    document = s.document(draft)
    document["tests"] = [t for t in document.get("tests", []) if t["name"] != asked.name] + [case]
    saved = attempt(lambda: s.update_draft(jid, draft.number, document, draft.revision, user.name,
                                           action="pinned_case_saved", case=asked.name))
    if isinstance(saved, Refused):
        return _pin_result(saved.status, error="; ".join(saved.errors.values()))
    return _pin_result(200, jid=jid, version=saved, name=asked.name, count=len(document["tests"]))


def _pin_result(status: int, **context: Any) -> Template:
    """The outcome of saving a pinned case; messages about the pin form's fields next to them (out of band)."""
    return page("_pin_result.html", status, error_fields=PIN_FIELDS, **context)


def shown(value, field: str) -> str:
    """A pinned case's expected or actual value for people: the first action in words."""
    return words.label(value, "action") if field == "first_action" and value else show(value)


ROUTES = [pin_case]
