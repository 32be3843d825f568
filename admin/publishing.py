"""Publishing you can see: what the verify page shows before the publish button (the diff against the active
version, the pinned cases, the four-eyes rule), rollback with a reason, and the simulator's "保存为测试用例"."""
from __future__ import annotations

from litestar import Request, post
from litestar.di import NamedDependency
from litestar.response import Template

from admin.common import Refused, attempt, page, require, services
from engine.pinned import FIELD_LABELS, observed, show
from engine.router import Case, RoutingError
from policy import words
from policy.diff import diff
from policy.facts import CASE_FACTS, ENUM_FACTS
from store.errors import Invalid, NotFound
from store.tables import PolicyVersion
from store.users import Principal

# What the history on a jurisdiction's page lists, with the audit action codes they are stored under.
HISTORY_ACTIONS = {"published": "发布", "rolled_back": "回滚", "pinned_accepted": "接受测试用例新结果"}


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
    jid = str(form.get("jurisdiction", ""))[:64]
    require(user, jid, "editor")
    s = services(request).policies
    draft = latest_draft(request, jid)
    if draft is None:
        raise NotFound(f"辖区 {jid} 没有草稿; 请先新建草稿再保存测试用例", field="draft")
    facts = {k: v for k, v in simulated_facts(form).items() if v != "none"}
    unit = str(form.get("unit", "")).strip()[:200] or None
    name = str(form.get("name", "")).strip()[:200]
    try:
        router = s.router(jid)
        decision = router.route(Case(problem_type=str(form.get("problem_type", ""))[:200] or " ", unit=unit,
                                     facts=facts))
        unit_id = router.resolve_unit(unit).id if unit else None
    except RoutingError as err:
        return page("_pin_result.html", 422, error=str(err))
    clauses = _clauses(decision)
    choice = str(form.get("clause", ""))
    if not name:
        return page("_pin_result.html", 422, error="请填写用例名称")
    if not choice.isdigit() or int(choice) >= len(clauses):
        return page("_pin_result.html", 422, error="请选择用例依据的条款原文")
    case = {"name": name, "clause": clauses[int(choice)],
            "given": {"problem_type": decision.problem_type.code, "unit": unit_id, "facts": facts},
            "expect": observed(decision).model_dump(mode="json")}
    document = s.document(draft)
    document["tests"] = [t for t in document.get("tests", []) if t["name"] != name] + [case]
    saved = attempt(lambda: s.update_draft(jid, draft.number, document, draft.revision, user.name,
                                           action="pinned_case_saved", case=name))
    if isinstance(saved, Refused):
        return page("_pin_result.html", saved.status, error="; ".join(saved.errors.values()))
    return page("_pin_result.html", jid=jid, version=saved, name=name, count=len(document["tests"]))


def simulated_facts(form) -> dict[str, bool | str]:
    """The simulator form's facts: the checked boxes and the enterprise class."""
    facts: dict[str, bool | str] = {name: True for name in CASE_FACTS if form.get(f"fact_{name}") == "on"}
    if form.get("enterprise_class") in ENUM_FACTS["enterprise_class"][1]:
        facts["enterprise_class"] = str(form.get("enterprise_class"))
    return facts


def shown(value, field: str) -> str:
    """A pinned case's expected or actual value for people: the first action in words."""
    return words.label(value, "action") if field == "first_action" and value else show(value)


def rollback_reason(form) -> str:
    """A rollback asks for a reason and an explicit confirmation (refused with a message otherwise)."""
    reason = str(form.get("reason", "")).strip()[:2000]
    if not reason:
        raise Invalid("回滚须填写原因", field="reason")
    if form.get("confirm") != "on":
        raise Invalid("请勾选“确认回滚”后再提交", field="confirm")
    return reason


ROUTES = [pin_case]
