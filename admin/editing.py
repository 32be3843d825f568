"""The draft editors, one design for every kind of item (`KINDS`): problem types, levels and the grid-unit tree
(lazy, paginated, searchable, CSV import), departments, workflow steps with their deadlines, escalation rules and
the scoring scheme's deductions. Each kind has a form (a pydantic model), a function applying it to the document
and a template showing the item; one set of routes checks, saves and deletes every kind.

Every change is applied to the draft (a unit, or the document without its units) and saved through
`PolicyStore.change_draft`, which checks what the change touches and refuses a stale revision; a refused change
therefore writes nothing. The page
keeps the draft revision in one hidden input (#revision) that every form includes and every save refreshes.
"""
from __future__ import annotations

import base64
import csv
import io
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Literal

from litestar import Request, Response, get, post
from litestar.concurrency import sync_to_thread
from litestar.datastructures import FormMultiDict
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.plugins.htmx import ClientRedirect, ClientRefresh, HTMXRequest, HTMXTemplate
from pydantic import BeforeValidator, Field, ValidationInfo, field_validator
from litestar.response import Template

from admin.common import (FormInvalid, Number, Refused, attempt, dom_id, field_errors, form_revision, page, services,
                          uploaded)
from admin.forms import Checkbox, FormModel, Lines, NewId, blank_is_none, provenance, read, text
from policy import words
from policy.catalog import search_score
from policy.loader import Jurisdiction
from policy.models import SLUG as SLUG_PATTERN, Trigger
from policy.unit_rows import COLUMNS as UNIT_COLUMNS, RowIssue, check_rows, grouped, materialise_groups, merge
from store.errors import Conflict, Invalid, StoreError
from store.versions import DraftEdit
from store.tables import PolicyVersion
from store.xlsx import MEDIA_TYPE as XLSX, TableError, read_rows, workbook
from store.users import Principal

PAGE_SIZE = 50
SEARCH_LIMIT = 50
PROVENANCE_FIELDS = ("seed", "clause", "quote", "assumption")


# --- one kind of editable item: its form, how the form changes the document, how the item is shown again
@dataclass
class Kind:
    fields: tuple[str, ...]  # the form's fields with a message slot (besides `general`)
    template: str  # the item's form
    # changes the draft — a DraftEdit: the document without its units, and one unit through unit()/put_unit() —
    # and returns the item's path prefix in it
    apply: Callable[[DraftEdit, str, FormMultiDict, "Editing"], str]
    item: Callable[["Editing", PolicyVersion, str], dict]
    remove: Callable[[dict, str, "Editing"], None] | None = None  # None: not removed in the editor
    aliases: dict[str, str] = field(default_factory=dict)  # document paths below the item -> form fields
    view: str | None = None  # shown after a save instead of the form (an item listed as a table row)


@dataclass
class Editing:
    """What an editor request needs: who, which draft, the jurisdiction's type names."""
    request: Request
    user: Principal
    jid: str
    number: int
    loaded: PolicyVersion | None = None
    _head: tuple[tuple[int | None, int], dict] | None = None

    @property
    def policies(self):
        return services(self.request).policies

    def version(self, write: bool = False) -> PolicyVersion:
        """The version edited or shown; `write`: it must be a draft (the editor role is the handler's guard)."""
        version = self.policies.get_version(self.jid, self.number)
        if write and version.status != "draft":
            raise Conflict(f"v{self.number} 已发布, 不可修改; 请先新建草稿", field="number")
        self.loaded = version
        return version

    def units(self) -> dict:
        """The loaded version's units, placeholders expanded (built once per content hash)."""
        return self.policies.build(self.loaded).units

    def head(self, version: PolicyVersion) -> dict:
        """The version's document without its units, read once per request and revision."""
        if self._head is None or self._head[0] != (version.id, version.revision):
            self._head = ((version.id, version.revision), self.policies.head(version))
        return self._head[1]

    def type_names(self) -> dict[str, str]:
        return self.policies.router(self.jid).jur.type_names

    def context(self, version: PolicyVersion, **extra: Any) -> dict:
        document = self.head(version)
        return dict(user=self.user, jid=self.jid, version=version, revision=version.revision,
                    editable=version.status == "draft" and self.user.can(self.jid, "editor"),
                    seeds=[s["seed"] for s in document["sources"]],
                    levels=[lv["number"] for lv in document["levels"]],
                    departments={d["id"]: d["name"] for d in document["departments"]}, **extra)


def _index(items: list[dict], key: str, value: str, what: str) -> int:
    for i, item in enumerate(items):
        if item.get(key) == value:
            return i
    raise StoreError(f"草稿中没有{what} {value}", field=key)


def _put(document: dict, field_name: str, key: str, values: dict, what: str) -> str:
    """Append a new item (key "+") or merge the form's values into the existing one; returns its path."""
    items = document.setdefault(field_name, [])
    if key == "+":
        items.append(values)
        index = len(items) - 1
    else:
        index = _index(items, "id", key, what)
        items[index] = {**items[index], **values}
    return f"{field_name}[{index}]"


def _read(data: FormMultiDict, key: str, items: Any, label: str, *parts: tuple[type[FormModel], str]) -> list[Any]:
    """A form's parts, and for a new item (key "+") first its id, which must be new among `items` (ids)."""
    if key != "+":
        return [{}, *read(data, *parts)]
    new, *values = read(data, (NewId, ""), *parts, context={"taken": items, "label": label})
    return [{"id": new.id}, *values]


# --- grid units
class UnitForm(FormModel):
    name: str = text("名称", 100)
    level: int = Field(title="层级", ge=1, le=6)
    parent: Annotated[str | None, BeforeValidator(blank_is_none)] = Field(None, title="上级单元编号", max_length=64,
                                                                          pattern=SLUG_PATTERN)


def _apply_unit(document: DraftEdit, key: str, data: FormMultiDict, ctx: Editing) -> str:
    new, unit, prov = _read(data, key, ctx.units(), "网格单元", (UnitForm, ""), provenance(data))
    stored = {"id": key} if key == "+" else document.unit(key)  # a placeholder becomes a named unit of its own
    return document.put_unit({**stored, **new, **unit.model_dump(), "placeholder": False, **prov.document()})


def _remove_unit(document: dict, key: str, ctx: Editing) -> None:
    if key not in ctx.units():
        raise StoreError(f"草稿中没有网格单元 {key}", field="id")
    children = [u.id for u in ctx.units().values() if u.parent == key]
    if children:
        raise FormInvalid({"general": f"网格单元 {key} 还有 {len(children)} 个下级单元 (如 {', '.join(children[:3])}), "
                                      "请先删除或移走下级单元"})
    materialise_groups(document, {key})
    document["units"] = [u for u in document["units"] if u["id"] != key]


def _unit_item(ctx: Editing, version: PolicyVersion, key: str) -> dict:
    unit = ctx.policies.build(version).units.get(key)
    if unit is None:
        raise StoreError(f"草稿中没有网格单元 {key}", field="id")
    return unit.model_dump(mode="json")


# --- departments
class DepartmentForm(FormModel):
    name: str = text("部门名称", 100)
    duties: Lines = []


def _references(document: dict, dept: str, names: dict[str, str]) -> list[str]:
    refs = [f"问题类型 {names.get(t['code'], t['code'])}"
            for t in document["problem_types"] if dept in t["departments"]]
    party = f"department:{dept}"
    refs += [f"规则 {r['id']}" for r in document["rules"]
             if any(party in (a["by"], a["to"]) for a in r["then"]["actions"])]
    return refs


def _apply_department(document: dict, key: str, data: FormMultiDict, ctx: Editing) -> str:
    new, department, prov = _read(data, key, {d["id"] for d in document["departments"]}, "职能部门",
                                  (DepartmentForm, ""), provenance(data))
    return _put(document, "departments", key, {**new, **department.model_dump(), **prov.document()}, "职能部门")


def _remove_department(document: dict, key: str, ctx: Editing) -> None:
    refs = _references(document, key, ctx.type_names())
    if refs:
        raise FormInvalid({"general": f"职能部门 {key} 仍被引用, 不能删除: {'、'.join(refs[:8])}"
                                      + (f" 等 {len(refs)} 处" if len(refs) > 8 else "")})
    document["departments"].pop(_index(document["departments"], "id", key, "职能部门"))


def _department_item(ctx: Editing, version: PolicyVersion, key: str) -> dict:
    departments = ctx.head(version)["departments"]
    return {**departments[_index(departments, "id", key, "职能部门")],
            "refs": _references(ctx.head(version), key, ctx.type_names())}


# --- workflow steps and their deadlines (key: workflow:step)
class StepForm(FormModel):
    name: str = text("步骤名称", 200)
    actor: str = text("执行者", 200)
    handling: Checkbox = False
    d_unit: str = ""
    d_duration: str = Field(title="时限")  # number + unit (小时/天/工作日/工作小时), checked together

    @field_validator("d_duration")
    @classmethod
    def _duration(cls, value: str, info: ValidationInfo) -> str:
        words.duration_value(value, info.data.get("d_unit", ""))
        return value

    def deadline(self) -> dict:
        duration, calendar = words.duration_value(self.d_duration, self.d_unit)
        return {"duration": duration, "calendar": calendar}


def _step_at(document: dict, key: str) -> tuple[int, int]:
    wf, _, step = key.partition(":")
    wi = _index(document["workflows"], "id", wf, "流程")
    return wi, _index(document["workflows"][wi]["steps"], "id", step, "流程步骤")


def _apply_step(document: dict, key: str, data: FormMultiDict, ctx: Editing) -> str:
    wi, si = _step_at(document, key)
    step, prov, deadline_prov = read(data, (StepForm, ""), provenance(data), provenance(data, "d_"))
    document["workflows"][wi]["steps"][si] = {
        **document["workflows"][wi]["steps"][si], **step.model_dump(include={"name", "actor", "handling"}),
        "deadline": {**step.deadline(), **deadline_prov.document()}, **prov.document()}
    return f"workflows[{wi}].steps[{si}]"


def _step_item(ctx: Editing, version: PolicyVersion, key: str) -> dict:
    head = ctx.head(version)
    wi, si = _step_at(head, key)
    steps = head["workflows"][wi]["steps"]
    names = {s["id"]: s["name"] for s in steps}
    return {**steps[si], "key": key, "on_failure_name": names.get(steps[si].get("on_failure") or "")}


# --- escalation rules: when a deadline is missed, the case moves to another grid
class RuleForm(FormModel):
    name: str = text("规则名称", 200)
    priority: int = Field(title="优先级", ge=1, le=999)
    mode: Literal["up", "level"] = Field(title="升级方式")
    target: int = Field(title="上移层数或目标层级", ge=1, le=6)
    applies: Annotated[int | None, BeforeValidator(blank_is_none)] = Field(None, title="适用层级", ge=1, le=6)


def is_escalation(rule: dict) -> bool:
    return rule["when"].get("deadline_missed") is True and rule["then"]["handler"] is not None


def _apply_rule(document: dict, key: str, data: FormMultiDict, ctx: Editing) -> str:
    rules = document["rules"]
    new, form, prov = _read(data, key, {r["id"] for r in rules}, "规则", (RuleForm, ""), provenance(data))
    # the rule's other conditions (e.g. major: true) are kept; only the level it applies at is edited here
    when = {"any": []} if key == "+" else dict(rules[_index(rules, "id", key, "规则")]["when"])
    when["deadline_missed"] = True
    when.pop("handler_level", None)
    if form.applies is not None:
        when["handler_level"] = form.applies
    handler = {"to": None, "level": None, "up": None, form.mode: form.target}
    then = ({"handler": handler, "stop": False, "actions": [{"kind": "escalate", "by": "handler", "to": "upper",
                                                              "note": ""}]} if key == "+"
            else {**rules[_index(rules, "id", key, "规则")]["then"], "handler": handler})
    return _put(document, "rules", key, {**new, "name": form.name, "priority": form.priority, "when": when,
                                         **prov.document(), "then": then}, "规则")


def _remove_rule(document: dict, key: str, ctx: Editing) -> None:
    document["rules"].pop(_index(document["rules"], "id", key, "规则"))


def _rule_item(ctx: Editing, version: PolicyVersion, key: str) -> dict:
    rules = ctx.head(version)["rules"]
    rule = rules[_index(rules, "id", key, "规则")]
    handler = rule["then"]["handler"]
    mode = "up" if handler.get("up") is not None else "level"
    other = {k: v for k, v in rule["when"].items() if k not in ("deadline_missed", "handler_level", "any")}
    return {**rule, "mode": mode, "target": handler.get(mode), "applies": rule["when"].get("handler_level"),
            "other": other, "any": rule["when"].get("any") or [],
            "extra_when": {**other, "any": rule["when"].get("any") or []}}


# --- problem types: the editor's table, a row opening its form in place
def _codes(value: Any) -> list[str]:
    """Departments chosen in the multiple select (or typed, separated by commas or spaces), each once."""
    chosen = [d for text_ in ([value] if isinstance(value, str) else value)[:100]
              for d in re.split(r"[,，\s]+", str(text_)[:500]) if d]
    return list(dict.fromkeys(chosen))


class TypeForm(FormModel):
    level: int = Field(title="处置层级", ge=1, le=99)  # which levels exist is the policy's check, naming them
    departments: Annotated[list[Annotated[str, Field(max_length=64, pattern=SLUG_PATTERN)]],
                           BeforeValidator(_codes)] = Field([], title="职能部门")
    persuade_first: Checkbox = False


def _apply_type(document: dict, key: str, data: FormMultiDict, ctx: Editing) -> str:
    index = _index(document["problem_types"], "code", key, "问题类型")
    (ptype,) = read(data, (TypeForm, ""))
    document["problem_types"][index] = {**document["problem_types"][index], **ptype.model_dump()}
    return f"problem_types[{index}]"


def _type_item(ctx: Editing, version: PolicyVersion, key: str) -> dict:
    types = ctx.head(version)["problem_types"]
    return {**types[_index(types, "code", key, "问题类型")], "name": ctx.type_names().get(key, key)}


# --- the scoring scheme's deduction items (key: the item's id)
class DeductionForm(FormModel):
    trigger: Trigger = Field(title="触发事件")
    points: float = Field(title="每次扣分", gt=0, allow_inf_nan=False)
    max_points: Annotated[float | None, BeforeValidator(blank_is_none)] = Field(None, title="本期上限", gt=0,
                                                                                allow_inf_nan=False)


def _deductions(document: dict) -> list[dict]:
    if not document.get("scoring"):
        raise StoreError("此版本没有考核方案 (scoring)", field="scoring")
    return document["scoring"]["deductions"]


def _apply_deduction(document: dict, key: str, data: FormMultiDict, ctx: Editing) -> str:
    index = _index(_deductions(document), "id", key, "扣分项")
    (deduction,) = read(data, (DeductionForm, ""))
    document["scoring"]["deductions"][index] |= deduction.model_dump()
    return f"scoring.deductions[{index}]"


def _deduction_item(ctx: Editing, version: PolicyVersion, key: str) -> dict:
    deductions = _deductions(ctx.head(version))
    return deductions[_index(deductions, "id", key, "扣分项")]


_RULE_ALIASES = {"then.handler": "target", "then.handler.up": "target", "then.handler.level": "target",
                 "when.handler_level": "applies"}
KINDS = {
    "units": Kind(("id", "name", "level", "parent", *PROVENANCE_FIELDS), "edit_unit_form.html",
                  _apply_unit, _unit_item, _remove_unit),
    "departments": Kind(("id", "name", "duties", *PROVENANCE_FIELDS), "edit_department_form.html",
                        _apply_department, _department_item, _remove_department),
    "steps": Kind(("name", "actor", "handling", "d_duration", "d_unit", *PROVENANCE_FIELDS,
                   *("d_" + f for f in PROVENANCE_FIELDS)), "edit_step_form.html", _apply_step, _step_item),
    "rules": Kind(("id", "name", "priority", "mode", "target", "applies", *PROVENANCE_FIELDS), "edit_rule_form.html",
                  _apply_rule, _rule_item, _remove_rule, _RULE_ALIASES),
    "types": Kind(("level", "departments", "persuade_first"), "edit_type_form.html", _apply_type, _type_item,
                  view="edit_type_row.html"),
    "deductions": Kind(("trigger", "points", "max_points"), "edit_deduction_form.html", _apply_deduction,
                       _deduction_item),
}


def _kind(name: str) -> Kind:
    if name not in KINDS:
        raise StoreError(f"未知的编辑对象 {name}", field="kind")
    return KINDS[name]


def _dom(kind: str, key: str) -> str:
    return f"{kind}-{dom_id(key)}"


def _errors_fragment(kind: str, key: str, errors: dict[str, str], status: int) -> Template:
    """Only the error slots change (out of band); the form keeps what the admin typed."""
    return HTMXTemplate(template_name="edit_errors.html", status_code=status, re_swap="none",
                        context={"dom": _dom(kind, key), "fields": (*KINDS[kind].fields, "general"), "errors": errors})


def _change(ctx: Editing, kind: str, key: str, data: FormMultiDict, check_only: bool, remove: bool) -> Response:
    """Apply one form to a copy of the draft and check or save it (in a handler thread: validating a large policy
    takes a while, and saving may wait for the write lock)."""
    spec = _kind(kind)
    version = ctx.version(write=True)
    prefix = ""

    def edit(document: DraftEdit) -> str:
        nonlocal prefix
        prefix = spec.apply(document, key, data, ctx)
        return prefix

    def change() -> PolicyVersion | None:
        if remove:  # a removal may turn a placeholder group into named units: the whole document is checked
            if spec.remove is None:
                raise FormInvalid({"general": "此项不能在此删除"})
            document = ctx.policies.document(version)
            spec.remove(document, key, ctx)
            if check_only:
                ctx.policies.check_draft(ctx.jid, ctx.number, document)
                return None
            return ctx.policies.update_draft(ctx.jid, ctx.number, document, form_revision(data), ctx.user.name)
        if check_only:  # only what the change touches is checked (see PolicyStore.change_draft)
            ctx.policies.check_change(ctx.jid, ctx.number, edit)
            return None
        return ctx.policies.change_draft(ctx.jid, ctx.number, form_revision(data), ctx.user.name, edit)

    saved = attempt(change, lambda err: field_errors(err, prefix, spec.fields, spec.aliases))
    if isinstance(saved, Refused):
        return _errors_fragment(kind, key, saved.errors, saved.status)
    if saved is None:
        return _errors_fragment(kind, key, {}, 200)
    if remove or (key == "+" and kind != "units"):
        return ClientRefresh()  # the list changed shape: show it again
    new_key = str(data.get("id", "")).strip() if key == "+" else key
    return _item_page(ctx, saved, kind, new_key, spec.view or spec.template, saved=True)


def _item_page(ctx: Editing, version: PolicyVersion, kind: str, key: str, template: str, **extra: Any) -> Template:
    return page(template, **ctx.context(version, item=KINDS[kind].item(ctx, version, key), key=key,
                                        dom=_dom(kind, key), **extra))


@get("/j/{jid:str}/v/{number:int}/e/{kind:str}/{key:str}", sync_to_thread=True, opt={"role": "editor"})
def item_form(request: Request, user: NamedDependency[Principal], jid: FromPath[str], number: Number,
              kind: FromPath[str], key: FromPath[str]) -> Template:
    """An item's form (a table row opens it in place)."""
    ctx = Editing(request, user, jid, number)
    return _item_page(ctx, ctx.version(write=True), kind, key, _kind(kind).template)


@get("/j/{jid:str}/v/{number:int}/e/{kind:str}/{key:str}/view", sync_to_thread=True)
def item_view(request: Request, user: NamedDependency[Principal], jid: FromPath[str], number: Number,
              kind: FromPath[str], key: FromPath[str]) -> Template:
    """An item as listed (its form's "cancel")."""
    ctx = Editing(request, user, jid, number)
    spec = _kind(kind)
    return _item_page(ctx, ctx.version(), kind, key, spec.view or spec.template)


async def _posted(request: Request, user: Principal, jid: str, number: int, kind: str, key: str,
                  check_only: bool = False, remove: bool = False) -> Response:
    data = await request.form()
    return await sync_to_thread(_change, Editing(request, user, jid, number), kind, key, data, check_only, remove)


@post("/j/{jid:str}/v/{number:int}/e/{kind:str}/{key:str}/check", opt={"role": "editor"})
async def item_check(request: Request, user: NamedDependency[Principal], jid: FromPath[str], number: Number,
                     kind: FromPath[str], key: FromPath[str]) -> Response:
    """Validation as the admin types: only the messages next to the fields are swapped."""
    return await _posted(request, user, jid, number, kind, key, check_only=True)


@post("/j/{jid:str}/v/{number:int}/e/{kind:str}/{key:str}", opt={"role": "editor"})
async def item_save(request: Request, user: NamedDependency[Principal], jid: FromPath[str], number: Number,
                    kind: FromPath[str], key: FromPath[str]) -> Response:
    return await _posted(request, user, jid, number, kind, key)


@post("/j/{jid:str}/v/{number:int}/e/{kind:str}/{key:str}/delete", opt={"role": "editor"})
async def item_delete(request: Request, user: NamedDependency[Principal], jid: FromPath[str], number: Number,
                      kind: FromPath[str], key: FromPath[str]) -> Response:
    return await _posted(request, user, jid, number, kind, key, remove=True)


# --- the problem-type table and the scoring scheme's deductions
@get("/j/{jid:str}/v/{number:int}", sync_to_thread=True)
def types_page(request: HTMXRequest, user: NamedDependency[Principal], jid: FromPath[str], number: Number,
               q: Annotated[str | None, QueryParameter(max_length=100)] = None) -> Template:
    ctx = Editing(request, user, jid, number)
    version = ctx.version()
    names = ctx.type_names()
    rows = [{**t, "name": names.get(t["code"], t.get("name") or t["code"])} for t in ctx.head(version)["problem_types"]]
    rows = [t for t in rows if not q or search_score(q, t["code"], t["name"]) >= 1.0]
    template = "_type_rows.html" if request.htmx.target == "type-rows" else "editor.html"
    return page(template, **ctx.context(version, rows=rows, q=q or ""))


@get("/j/{jid:str}/v/{number:int}/scoring", sync_to_thread=True)
def scoring_page(request: Request, user: NamedDependency[Principal], jid: FromPath[str], number: Number) -> Template:
    ctx = Editing(request, user, jid, number)
    version = ctx.version()
    return page("assessment_scoring.html", **ctx.context(version, scoring=ctx.head(version).get("scoring") or {}))


# --- the units page: levels, lazy tree, search, unit form, CSV import
def _nodes(built: Jurisdiction, parent: str, page_: int = 1) -> dict:
    """One page of a node's children (the tree is built once per build), with their own child counts."""
    siblings = built.children.get(parent or None, [])
    start = (page_ - 1) * PAGE_SIZE
    nodes = siblings[start:start + PAGE_SIZE]
    return {"nodes": nodes, "counts": {u.id: len(built.children.get(u.id, ())) for u in nodes}, "parent": parent,
            "next_page": page_ + 1 if start + PAGE_SIZE < len(siblings) else None}


def _level_rows(ctx: Editing, version: PolicyVersion, built: Jurisdiction) -> list[dict]:
    actual, placeholders = built.level_counts
    return [{**lv, "actual": actual[lv["number"]], "placeholders": placeholders[lv["number"]],
             "stated": sum(c["count"] for c in lv["unit_counts"]) if lv["unit_counts"] else None}
            for lv in ctx.head(version)["levels"]]


@get("/j/{jid:str}/v/{number:int}/units", sync_to_thread=True)
def units_page(request: Request, user: NamedDependency[Principal], jid: FromPath[str], number: Number,
               imported: Annotated[int | None, QueryParameter(ge=0)] = None) -> Template:
    ctx = Editing(request, user, jid, number)
    version = ctx.version()
    built = ctx.policies.build(version)
    return page("edit_units.html", **ctx.context(version, level_rows=_level_rows(ctx, version, built),
                                                 **_nodes(built, ""), total=len(built.units), imported=imported))


@get("/j/{jid:str}/v/{number:int}/units/children", sync_to_thread=True)
def unit_children(request: Request, user: NamedDependency[Principal], jid: FromPath[str], number: Number,
                  parent: Annotated[str, QueryParameter(max_length=64)] = "",
                  page_: Annotated[int, QueryParameter(name="page", ge=1, le=10_000)] = 1) -> Template:
    """One page of a node's children: a node with hundreds of children never renders them all."""
    ctx = Editing(request, user, jid, number)
    version = ctx.version()
    return page("edit_unit_nodes.html", **ctx.context(version, **_nodes(ctx.policies.build(version), parent, page_)))


@get("/j/{jid:str}/v/{number:int}/units/search", sync_to_thread=True)
def unit_search(request: Request, user: NamedDependency[Principal], jid: FromPath[str], number: Number,
                q: Annotated[str, QueryParameter(max_length=100)] = "") -> Template:
    ctx = Editing(request, user, jid, number)
    version = ctx.version()
    built = ctx.policies.build(version)
    units = built.units
    hits = [units[uid] for _, uid in ctx.policies.unit_index(built).search(q, SEARCH_LIMIT)]
    paths = {u.id: _ancestors(units, u.id) for u in hits}
    return page("edit_unit_search.html", **ctx.context(version, hits=hits, paths=paths, q=q))


def _ancestors(units: dict, uid: str) -> list[str]:
    chain: list[str] = []
    cur = units[uid].parent
    while cur in units and len(chain) < 8:
        chain.append(units[cur].name)
        cur = units[cur].parent
    return list(reversed(chain))


@get("/j/{jid:str}/v/{number:int}/units/form", sync_to_thread=True)
def unit_form(request: Request, user: NamedDependency[Principal], jid: FromPath[str], number: Number,
              id_: Annotated[str | None, QueryParameter(name="id", max_length=64)] = None,
              parent: Annotated[str | None, QueryParameter(max_length=64)] = None) -> Template:
    """The side panel: an existing unit's form, or an empty one for a new child of `parent`."""
    ctx = Editing(request, user, jid, number)
    version = ctx.version()
    if id_:
        item, key = _unit_item(ctx, version, id_), id_
    else:
        above = ctx.policies.build(version).units.get(parent or "")
        item = {"id": "", "name": "", "level": above.level + 1 if above else 1, "parent": parent or None,
                "source": None, "assumption": "", "placeholder": False}
        key = "+"
    return page("edit_unit_form.html", **ctx.context(version, item=item, dom=_dom("units", key), key=key))


@post("/j/{jid:str}/v/{number:int}/units/import", opt={"role": "editor"})
async def unit_import(request: Request, user: NamedDependency[Principal], jid: FromPath[str],
                      number: Number) -> Response:
    """A CSV or .xlsx of id,name,level,parent onto the draft: merged (add, rename, move the rows given) unless
    "replace the levels" is chosen. Shows a preview of what changes, or every problem by line and column (each
    once); nothing is saved unless the admin confirms a clean preview (and the draft was not changed meanwhile)."""
    data = await request.form()
    raw, name = await uploaded(data, "units.csv")
    return await sync_to_thread(_import_units, Editing(request, user, jid, number), data, raw, name)


def _import_units(ctx: Editing, data: FormMultiDict, raw: bytes, name: str) -> Response:
    """Reading, checking and saving the rows: seconds of CPU and a wait for the write lock, off the event loop."""
    version = ctx.version(write=True)
    replace = data.get("mode") == "replace"
    shown: dict[str, Any] = dict(name=name, mode="replace" if replace else "merge")
    if not raw.strip():
        return _import_result(ctx, version, errors=["请选择 CSV 或 .xlsx 文件 (表头 id,name,level,parent)"], **shown)
    try:
        rows = read_rows(raw, name, UNIT_COLUMNS)
    except TableError as err:
        return _import_result(ctx, version, errors=[str(err)], **shown)
    old = ctx.units()
    checked = check_rows(rows, ctx.context(version)["levels"], {u.id: u.level for u in old.values()})
    if checked.issues:
        return _import_result(ctx, version, errors=grouped(checked.issues), **shown)
    document = ctx.policies.document(version)  # a fresh dict
    at = merge(document, checked.units, shown["name"], replace)

    def issues(err: Invalid) -> list[str]:
        return _import_issues(err, {i: checked.lines[uid] for i, uid in at.items()})

    try:
        new = ctx.policies.check_draft(ctx.jid, ctx.number, document).units
    except Invalid as err:
        return _import_result(ctx, version, errors=issues(err), **shown)
    if data.get("action") != "apply":
        changes = {"added": [new[u] for u in new if u not in old], "removed": [old[u] for u in old if u not in new],
                   "renamed": [(old[u], new[u]) for u in new if u in old and old[u].name != new[u].name],
                   "moved": [(old[u], new[u]) for u in new if u in old and old[u].parent != new[u].parent]}
        return _import_result(ctx, version, changes=changes, total=len(new), rows=len(checked.units),
                              data=base64.b64encode(raw).decode(), **shown)
    saved = attempt(lambda: ctx.policies.update_draft(ctx.jid, ctx.number, document, form_revision(data),
                                                      ctx.user.name, action="units_imported", file=shown["name"],
                                                      mode=shown["mode"], rows=len(checked.units)),
                    lambda err: {"general": "; ".join(issues(err))})
    if isinstance(saved, Refused):
        return _import_result(ctx, version, errors=list(saved.errors.values()), status=saved.status, **shown)
    return ClientRedirect(f"/admin/j/{ctx.jid}/v/{ctx.number}/units?imported={len(new)}")


def _import_issues(err: Invalid, lines: dict[int, int]) -> list[str]:
    """Validation issues on imported units by file line (`lines`: position in document units -> line), grouped
    like the row checks; other issues once each, with their path."""
    rows, other = [], []
    for issue in err.extra.get("issues", []):
        path = issue["path"]
        index = int(path[6:path.index("]")]) if path.startswith("units[") else None
        if index in lines:
            column = path[path.index("]") + 1:].lstrip(".") or None
            rows.append(RowIssue(lines[index], column, issue["message"]))
        else:
            other.append(f"{path}: {issue['message']}" if path else issue["message"])
    return grouped(rows) + list(dict.fromkeys(other)) or [err.message]


def _import_result(ctx: Editing, version: PolicyVersion, status: int | None = None, **extra: Any) -> Template:
    errors = extra.get("errors")
    return page("edit_import.html", status or (422 if errors else 200), **ctx.context(version, **extra))


@get("/j/{jid:str}/v/{number:int}/units/table", sync_to_thread=True)
def unit_table(request: Request, user: NamedDependency[Principal], jid: FromPath[str], number: Number,
               kind: Annotated[Literal["export", "template"], QueryParameter()] = "export",
               fmt: Annotated[Literal["csv", "xlsx"], QueryParameter(name="format")] = "csv") -> Response:
    """The draft's units (export) or a template with one example row, as CSV (UTF-8 with BOM, for Excel) or .xlsx:
    the same columns the import reads."""
    ctx = Editing(request, user, jid, number)
    units = ctx.policies.build(ctx.version()).units
    if kind == "export":
        rows = [[u.id, u.name, u.level, u.parent or ""] for u in units.values()]
    else:
        deepest = max(u.level for u in units.values())
        parent = next((u.id for u in units.values() if u.level == deepest - 1), "")
        rows = [[f"{jid[:3]}-new-01", "新网格单元名称 (示例, 请替换)", deepest, parent]]
    filename = f"{jid}-v{number}-{'units' if kind == 'export' else 'units-template'}.{fmt}"
    disposition = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if fmt == "xlsx":
        body = workbook([{"title": "网格单元", "headers": list(UNIT_COLUMNS), "rows": rows}])
        return Response(body, media_type=XLSX, headers=disposition)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([list(UNIT_COLUMNS), *rows])
    return Response("\ufeff" + out.getvalue(), media_type="text/csv; charset=utf-8", headers=disposition)


# --- departments, workflows and escalation
@get("/j/{jid:str}/v/{number:int}/departments", sync_to_thread=True)
def departments_page(request: Request, user: NamedDependency[Principal], jid: FromPath[str],
                     number: Number) -> Template:
    ctx = Editing(request, user, jid, number)
    version = ctx.version()
    items = [_department_item(ctx, version, d["id"]) for d in ctx.head(version)["departments"]]
    blank: dict[str, Any] = {"id": "", "name": "", "duties": [], "source": None, "assumption": ""}
    return page("edit_departments.html", **ctx.context(version, items=items, blank=blank))


@get("/j/{jid:str}/v/{number:int}/workflows", sync_to_thread=True)
def workflows_page(request: Request, user: NamedDependency[Principal], jid: FromPath[str],
                   number: Number) -> Template:
    ctx = Editing(request, user, jid, number)
    version = ctx.version()
    workflows = [{**w, "steps": [_step_item(ctx, version, f"{w['id']}:{s['id']}") for s in w["steps"]]}
                 for w in ctx.head(version)["workflows"]]
    rules = [_rule_item(ctx, version, r["id"]) for r in ctx.head(version)["rules"] if is_escalation(r)]
    blank = {"id": "", "name": "", "priority": 90, "mode": "up", "target": 1, "applies": None, "source": None,
             "assumption": ""}
    return page("edit_workflows.html", **ctx.context(version, workflows=workflows, rules=rules, blank=blank))


ROUTES = [types_page, scoring_page, item_form, item_view, item_check, item_save, item_delete, units_page, unit_children,
          unit_search, unit_form, unit_import, unit_table, departments_page, workflows_page]
