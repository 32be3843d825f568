"""Draft editors beyond the problem-type table: levels and the grid-unit tree (lazy, paginated, searchable,
CSV import), departments, workflow steps with their deadlines, and escalation rules.

Every change is applied to a copy of the draft document and saved through `PolicyStore.update_draft`, which
validates the whole policy and refuses a stale revision; a refused change therefore writes nothing. The page
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
from litestar.plugins.htmx import ClientRedirect, ClientRefresh, HTMXTemplate
from litestar.response import Template

from admin.common import (FormInvalid, Number, Refused, attempt, dom_id, field_errors, form_revision, page, require,
                          services, uploaded)
from policy import words
from policy.unit_rows import COLUMNS as UNIT_COLUMNS, RowIssue, check_rows, grouped, merge
from policy.loader import Jurisdiction
from policy.models import Slug, UnitGroup
from policy.validate import expand_group
from store.errors import Conflict, Invalid, StoreError
from store.versions import named_unit
from store.tables import PolicyVersion
from store.xlsx import MEDIA_TYPE as XLSX, TableError, read_rows, workbook
from store.users import Principal

PAGE_SIZE = 50
SEARCH_LIMIT = 50
PROVENANCE_FIELDS = ("seed", "clause", "quote", "assumption")
SLUG = re.compile(Slug.__metadata__[0].pattern)


class Form:
    """Reads one submitted form, collecting a Chinese message per bad field instead of stopping at the first."""

    def __init__(self, data: FormMultiDict):
        self.data = data
        self.errors: dict[str, str] = {}

    def text(self, name: str, label: str, required: bool = True, limit: int = 500) -> str:
        value = str(self.data.get(name, "")).strip()
        if required and not value:
            self.errors[name] = f"{label}不能为空"
        elif len(value) > limit:
            self.errors[name] = f"{label}最多 {limit} 个字符, 现有 {len(value)} 个"
        return value[:limit]

    def slug(self, name: str, label: str, required: bool = True) -> str:
        value = self.text(name, label, required, limit=64)
        if value and not SLUG.fullmatch(value):
            self.errors[name] = f"{label}只能由小写字母、数字、_ 或 - 组成 (如 water_bureau), 而非 “{value}”"
        return value

    def integer(self, name: str, label: str, low: int, high: int, required: bool = True) -> int | None:
        value = str(self.data.get(name, "")).strip()
        if not value and not required:
            return None
        if not value.isdigit() or not low <= int(value) <= high:
            self.errors[name] = f"{label}须为 {low}–{high} 的整数, 而非 “{value[:20]}”"
            return None
        return int(value)

    def duration(self, name: str, unit: str) -> tuple[str, str]:
        """A deadline entered as number + unit (小时/天/工作日/工作小时): its ISO 8601 duration and calendar."""
        try:
            return words.duration_value(str(self.data.get(name, "")), str(self.data.get(unit, "")))
        except ValueError as err:
            self.errors[name] = str(err)
            return "", "natural"

    def choice(self, name: str, label: str, options: list[str] | tuple[str, ...]) -> str:
        value = str(self.data.get(name, ""))
        if value not in options:
            self.errors[name] = f"{label}须为 {', '.join(options)} 之一"
        return value

    def flag(self, name: str) -> bool:
        return self.data.get(name) == "on"

    def provenance(self, p: str = "") -> dict:
        """`source` (seed, clause, quote) or an `assumption` note, as the admin chose with the `prov` radio."""
        if self.data.get(p + "prov") == "source":
            source = {"seed": self.text(p + "seed", "出处文件"), "clause": self.text(p + "clause", "条款"),
                      "quote": self.text(p + "quote", "原文引文", limit=2000)}
            return {"source": source, "assumption": None}
        return {"source": None, "assumption": self.text(p + "assumption", "假设说明", limit=2000)}

    def done(self) -> None:
        if self.errors:
            raise FormInvalid(self.errors)


# --- one kind of editable item: how a form changes the document, and how the item is shown again
@dataclass
class Kind:
    fields: tuple[str, ...]
    template: str
    apply: Callable[[dict, str, Form, "Editing"], str]  # returns the item's path prefix in the document
    remove: Callable[[dict, str, "Editing"], None]
    item: Callable[["Editing", PolicyVersion, str], dict]
    aliases: dict[str, str] = field(default_factory=dict)


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
        if write:
            require(self.user, self.jid, "editor")
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

    def context(self, version: PolicyVersion, **extra: Any) -> dict:
        document = self.head(version)
        return dict(user=self.user, jid=self.jid, version=version, revision=version.revision,
                    editable=version.status == "draft" and self.user.can(self.jid, "editor"),
                    seeds=[s["seed"] for s in document["sources"]],
                    levels=[lv["number"] for lv in document["levels"]], **extra)


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


def _new_id(form: Form, items: list[dict], label: str) -> str:
    value = form.slug("id", f"{label}编号")
    if value and any(i.get("id") == value for i in items):
        form.errors["id"] = f"{label}编号 {value} 已存在"
    return value


# --- grid units
def materialise(document: dict, unit_id: str) -> None:
    """Turn the placeholder group that generated `unit_id` into named units, so one of them can be removed."""
    for gi, raw in enumerate(document.get("unit_groups", [])):
        units = expand_group(UnitGroup.model_validate(raw))
        if any(u.id == unit_id for u in units):
            document["units"] = document.get("units", []) + [u.model_dump(mode="json") for u in units]
            document["unit_groups"] = document["unit_groups"][:gi] + document["unit_groups"][gi + 1:]
            return


def _apply_unit(document: dict, key: str, form: Form, ctx: Editing) -> str:
    if key == "+":
        values = {"id": _new_id(form, [{"id": u} for u in ctx.units()], "网格单元")}
    else:
        named_unit(document, ctx.units(), key)
        values = {"id": key}
    values |= {"name": form.text("name", "名称", limit=100), "level": form.integer("level", "层级", 1, 6),
               "parent": form.slug("parent", "上级单元编号", required=False) or None,
               "placeholder": False, **form.provenance()}
    form.done()
    return _put(document, "units", key, values, "网格单元")


def _remove_unit(document: dict, key: str, ctx: Editing) -> None:
    if key not in ctx.units():
        raise StoreError(f"草稿中没有网格单元 {key}", field="id")
    children = [u.id for u in ctx.units().values() if u.parent == key]
    if children:
        raise FormInvalid({"general": f"网格单元 {key} 还有 {len(children)} 个下级单元 (如 {', '.join(children[:3])}), "
                                      "请先删除或移走下级单元"})
    materialise(document, key)
    document["units"] = [u for u in document["units"] if u["id"] != key]


def _unit_item(ctx: Editing, version: PolicyVersion, key: str) -> dict:
    unit = ctx.policies.build(version).units.get(key)
    if unit is None:
        raise StoreError(f"草稿中没有网格单元 {key}", field="id")
    return unit.model_dump(mode="json")


# --- departments
def _references(document: dict, dept: str, names: dict[str, str]) -> list[str]:
    refs = [f"问题类型 {names.get(t['code'], t['code'])}"
            for t in document["problem_types"] if dept in t["departments"]]
    party = f"department:{dept}"
    refs += [f"规则 {r['id']}" for r in document["rules"]
             if any(party in (a["by"], a["to"]) for a in r["then"]["actions"])]
    return refs


def _apply_department(document: dict, key: str, form: Form, ctx: Editing) -> str:
    values = {"id": _new_id(form, document["departments"], "职能部门")} if key == "+" else {}
    values |= {"name": form.text("name", "部门名称", limit=100),
               "duties": [d.strip() for d in str(form.data.get("duties", "")).splitlines() if d.strip()],
               **form.provenance()}
    form.done()
    return _put(document, "departments", key, values, "职能部门")


def _remove_department(document: dict, key: str, ctx: Editing) -> None:
    refs = _references(document, key, ctx.policies.router(ctx.jid).jur.type_names)
    if refs:
        raise FormInvalid({"general": f"职能部门 {key} 仍被引用, 不能删除: {'、'.join(refs[:8])}"
                                      + (f" 等 {len(refs)} 处" if len(refs) > 8 else "")})
    document["departments"].pop(_index(document["departments"], "id", key, "职能部门"))


def _department_item(ctx: Editing, version: PolicyVersion, key: str) -> dict:
    departments = ctx.head(version)["departments"]
    return {**departments[_index(departments, "id", key, "职能部门")],
            "refs": _references(ctx.head(version), key, ctx.policies.router(ctx.jid).jur.type_names)}


# --- workflow steps and their deadlines (key: workflow:step)
def _step_at(document: dict, key: str) -> tuple[int, int]:
    wf, _, step = key.partition(":")
    wi = _index(document["workflows"], "id", wf, "流程")
    return wi, _index(document["workflows"][wi]["steps"], "id", step, "流程步骤")


def _apply_step(document: dict, key: str, form: Form, ctx: Editing) -> str:
    wi, si = _step_at(document, key)
    step = document["workflows"][wi]["steps"][si]
    duration, calendar = form.duration("d_duration", "d_unit")
    deadline = {"duration": duration, "calendar": calendar, **form.provenance("d_")}
    values = {"name": form.text("name", "步骤名称", limit=200), "actor": form.text("actor", "执行者", limit=200),
              "handling": form.flag("handling"), "deadline": deadline, **form.provenance()}
    form.done()
    document["workflows"][wi]["steps"][si] = {**step, **values}
    return f"workflows[{wi}].steps[{si}]"


def _no_remove(document: dict, key: str, ctx: Editing) -> None:
    raise FormInvalid({"general": "流程步骤不能在此删除"})


def _step_item(ctx: Editing, version: PolicyVersion, key: str) -> dict:
    head = ctx.head(version)
    wi, si = _step_at(head, key)
    steps = head["workflows"][wi]["steps"]
    names = {s["id"]: s["name"] for s in steps}
    return {**steps[si], "key": key, "on_failure_name": names.get(steps[si].get("on_failure") or "")}


# --- escalation rules: when a deadline is missed, the case moves to another grid
def is_escalation(rule: dict) -> bool:
    return rule["when"].get("deadline_missed") is True and rule["then"]["handler"] is not None


def _apply_rule(document: dict, key: str, form: Form, ctx: Editing) -> str:
    rules = document["rules"]
    mode = form.choice("mode", "升级方式", ("up", "level"))
    target = form.integer("target", "上移层数" if mode == "up" else "目标层级", 1, 6)
    # the rule's other conditions (e.g. major: true) are kept; only the level it applies at is edited here
    when = {"any": []} if key == "+" else dict(rules[_index(rules, "id", key, "规则")]["when"])
    when["deadline_missed"] = True
    when.pop("handler_level", None)
    applies = form.integer("applies", "适用层级", 1, 6, required=False)
    if applies is not None:
        when["handler_level"] = applies
    values = {"name": form.text("name", "规则名称", limit=200), "priority": form.integer("priority", "优先级", 1, 999),
              "when": when, **form.provenance()}
    if key == "+":
        values = {"id": _new_id(form, rules, "规则"), **values}
    form.done()
    handler = {"to": None, "level": None, "up": None, mode: target}
    then = ({"handler": handler, "stop": False, "actions": [{"kind": "escalate", "by": "handler", "to": "upper",
                                                              "note": ""}]} if key == "+"
            else {**rules[_index(rules, "id", key, "规则")]["then"], "handler": handler})
    return _put(document, "rules", key, {**values, "then": then}, "规则")


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


_RULE_ALIASES = {"then.handler": "target", "then.handler.up": "target", "then.handler.level": "target",
                 "when.handler_level": "applies"}
KINDS = {
    "units": Kind(("id", "name", "level", "parent", *PROVENANCE_FIELDS), "edit_unit_form.html",
                  _apply_unit, _remove_unit, _unit_item),
    "departments": Kind(("id", "name", "duties", *PROVENANCE_FIELDS), "edit_department_form.html",
                        _apply_department, _remove_department, _department_item),
    "steps": Kind(("name", "actor", "handling", "d_duration", "d_unit", *PROVENANCE_FIELDS,
                   *("d_" + f for f in PROVENANCE_FIELDS)), "edit_step_form.html",
                  _apply_step, _no_remove, _step_item),
    "rules": Kind(("id", "name", "priority", "mode", "target", "applies", *PROVENANCE_FIELDS), "edit_rule_form.html",
                  _apply_rule, _remove_rule, _rule_item, _RULE_ALIASES),
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


async def _change(request: Request, user: Principal, jid: str, number: int, kind: str, key: str,
                  check_only: bool, remove: bool = False) -> Response:
    ctx = Editing(request, user, jid, number)
    spec = _kind(kind)
    version = ctx.version(write=True)
    form = Form(await request.form())
    document = ctx.policies.document(version)
    prefix = ""

    def change() -> PolicyVersion | None:
        nonlocal prefix
        if remove:
            spec.remove(document, key, ctx)
        else:
            prefix = spec.apply(document, key, form, ctx)
        if check_only:
            ctx.policies.check_draft(jid, number, document)
            return None
        return ctx.policies.update_draft(jid, number, document, form_revision(form.data), user.name)

    saved = await sync_to_thread(attempt, change, lambda err: field_errors(err, prefix, spec.fields, spec.aliases))
    if isinstance(saved, Refused):
        return _errors_fragment(kind, key, saved.errors, saved.status)
    if saved is None:
        return _errors_fragment(kind, key, {}, 200)
    if remove or (key == "+" and kind != "units"):
        return ClientRefresh()  # the list changed shape: show it again
    new_key = str(form.data.get("id", "")).strip() if key == "+" else key
    return page(spec.template, **ctx.context(saved, item=spec.item(ctx, saved, new_key), saved=True,
                                             key=new_key, dom=_dom(kind, new_key)))


@post("/j/{jid:str}/v/{number:int}/e/{kind:str}/{key:str}/check")
async def item_check(request: Request, user: NamedDependency[Principal], jid: FromPath[str], number: Number,
                     kind: FromPath[str], key: FromPath[str]) -> Response:
    """Validation as the admin types: only the messages next to the fields are swapped."""
    return await _change(request, user, jid, number, kind, key, check_only=True)


@post("/j/{jid:str}/v/{number:int}/e/{kind:str}/{key:str}")
async def item_save(request: Request, user: NamedDependency[Principal], jid: FromPath[str], number: Number,
                    kind: FromPath[str], key: FromPath[str]) -> Response:
    return await _change(request, user, jid, number, kind, key, check_only=False)


@post("/j/{jid:str}/v/{number:int}/e/{kind:str}/{key:str}/delete")
async def item_delete(request: Request, user: NamedDependency[Principal], jid: FromPath[str], number: Number,
                      kind: FromPath[str], key: FromPath[str]) -> Response:
    return await _change(request, user, jid, number, kind, key, check_only=False, remove=True)


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
    chain, cur = [], units[uid].parent
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


@post("/j/{jid:str}/v/{number:int}/units/import")
async def unit_import(request: Request, user: NamedDependency[Principal], jid: FromPath[str],
                      number: Number) -> Response:
    """A CSV or .xlsx of id,name,level,parent onto the draft: merged (add, rename, move the rows given) unless
    "replace the levels" is chosen. Shows a preview of what changes, or every problem by line and column (each
    once); nothing is saved unless the admin confirms a clean preview (and the draft was not changed meanwhile)."""
    ctx = Editing(request, user, jid, number)
    version = ctx.version(write=True)
    data = await request.form()
    raw, name = await uploaded(data, "units.csv")
    replace = data.get("mode") == "replace"
    shown = dict(name=name, mode="replace" if replace else "merge")
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
        new = ctx.policies.check_draft(jid, number, document).units
    except Invalid as err:
        return _import_result(ctx, version, errors=issues(err), **shown)
    if data.get("action") != "apply":
        changes = {"added": [new[u] for u in new if u not in old], "removed": [old[u] for u in old if u not in new],
                   "renamed": [(old[u], new[u]) for u in new if u in old and old[u].name != new[u].name],
                   "moved": [(old[u], new[u]) for u in new if u in old and old[u].parent != new[u].parent]}
        return _import_result(ctx, version, changes=changes, total=len(new), rows=len(checked.units),
                              data=base64.b64encode(raw).decode(), **shown)
    saved = attempt(lambda: ctx.policies.update_draft(jid, number, document, form_revision(data), user.name,
                                                      action="units_imported", file=shown["name"], mode=shown["mode"],
                                                      rows=len(checked.units)),
                    lambda err: {"general": "; ".join(issues(err))})
    if isinstance(saved, Refused):
        return _import_result(ctx, version, errors=list(saved.errors.values()), status=saved.status, **shown)
    return ClientRedirect(f"/admin/j/{jid}/v/{number}/units?imported={len(new)}")


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
    blank = {"id": "", "name": "", "duties": [], "source": None, "assumption": ""}
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


ROUTES = [item_check, item_save, item_delete, units_page, unit_children, unit_search, unit_form, unit_import,
          unit_table, departments_page, workflows_page]
