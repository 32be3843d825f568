"""Bulk editing of a draft's problem-type table: filter (level, category, department, quoted or assumed), set the
level, departments or persuade-first of many rows in one revision-checked save, and the table as an .xlsx workbook
to export and import back (a preview of the changes, or every problem by row and column; nothing saved until a
clean preview is confirmed)."""
from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from litestar import Request, Response, get, post
from litestar.concurrency import sync_to_thread
from litestar.datastructures import FormMultiDict
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.response import Template
from pydantic import BeforeValidator, Field

from admin.common import Number, Refused, attempt, form_revision, page, uploaded
from admin.editing import Editing
from admin.forms import FormModel, blank_is_none, read
from policy.unit_rows import RowIssue, grouped
from store.errors import Invalid
from store.tables import PolicyVersion
from store.users import Principal
from store.xlsx import MEDIA_TYPE as XLSX, TableError, read_rows, workbook

COLUMNS = ("code", "name", "category", "level", "departments", "persuade_first")
HEADERS = ("编码 code", "名称 name", "类别 category", "处置层级 level", "职能部门 departments",
           "先告知劝阻 persuade_first")
COLUMN_LABELS = dict(zip(COLUMNS, HEADERS))
YES, NO = ("是", "yes", "true", "1", "y"), ("否", "no", "false", "0", "n", "")
Filter = Annotated[str | None, QueryParameter(max_length=100)]


class Table(Editing):
    """A draft's problem types as rows with the names and categories an admin reads."""

    def rows(self, version: PolicyVersion) -> list[dict]:
        jur = self.policies.build(version)
        categories = jur.catalog.categories
        return [{**t, "name": jur.type_names.get(t["code"], t["code"]), "category": t["code"].rsplit(".", 1)[0],
                 "category_name": categories.get(t["code"].rsplit(".", 1)[0], "")}
                for t in self.head(version)["problem_types"]]


def matches(row: dict, level: str | None, category: str | None, department: str | None, prov: str | None) -> bool:
    return ((not level or str(row["level"]) == level) and (not category or row["category"] == category)
            and (not department or department in row["departments"])
            and (not prov or (prov == "quoted") == (row.get("source") is not None)))


def _page(table: Table, version: PolicyVersion, status: int = 200, level: str | None = None,
          category: str | None = None, department: str | None = None, prov: str | None = None,
          **extra: Any) -> Template:
    rows = table.rows(version)
    shown = [r for r in rows if matches(r, level, category, department, prov)]
    categories = sorted({(r["category"], r["category_name"]) for r in rows})
    return page("bulk_types.html", status, **table.context(
        version, rows=shown, total=len(rows), categories=categories,
        filters={"level": level or "", "category": category or "", "department": department or "",
                 "prov": prov or ""}, **extra))


@get("/j/{jid:str}/v/{number:int}/types/bulk", sync_to_thread=True)
def bulk_page(request: Request, user: NamedDependency[Principal], jid: FromPath[str], number: Number,
              level: Filter = None, category: Filter = None, department: Filter = None,
              prov: Annotated[Literal["quoted", "assumption", ""] | None, QueryParameter()] = None) -> Template:
    table = Table(request, user, jid, number)
    return _page(table, table.version(), level=level, category=category, department=department, prov=prov)


def _issues(err: Invalid, lines: dict[int, int] | None, codes: list[str]) -> list[str]:
    """Validation issues on problem types: by workbook row and column when imported, else by type code."""
    rows, other = [], []
    for issue in err.extra.get("issues", []):
        path = issue["path"]
        index = int(path[14:path.index("]")]) if path.startswith("problem_types[") else None
        column = path[path.index("]") + 1:].lstrip(".").split(".")[0] if index is not None else ""
        if index is not None and lines is not None and index in lines:
            rows.append(RowIssue(lines[index], column if column in COLUMNS else None, issue["message"]))
        elif index is not None and index < len(codes):
            label = f" ({COLUMN_LABELS.get(column, column)})" if column else ""
            other.append(f"{codes[index]}{label}: {issue['message']}")
        else:
            other.append(f"{path}: {issue['message']}" if path else issue["message"])
    return grouped(rows, COLUMN_LABELS) + list(dict.fromkeys(other)) or [err.message]


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else value


class BulkForm(FormModel):
    """What to set on the selected types (`keep`: unchanged), and the table's filters to show again."""
    code: Annotated[list[Annotated[str, Field(max_length=100)]], BeforeValidator(_listed)] = Field(
        [], title="问题类型", max_length=1000)
    set_level: Annotated[int | None, BeforeValidator(blank_is_none)] = Field(None, title="处置层级", ge=1, le=99)
    dept_mode: Literal["keep", "set", "add"] = Field("keep", title="职能部门")
    set_departments: Annotated[list[Annotated[str, Field(max_length=64)]], BeforeValidator(_listed)] = Field(
        [], title="职能部门", max_length=100)
    set_persuade: Literal["keep", "yes", "no"] = Field("keep", title="先告知劝阻")
    f_level: str | None = Field(None, max_length=100)
    f_category: str | None = Field(None, max_length=100)
    f_department: str | None = Field(None, max_length=100)
    f_prov: str | None = Field(None, max_length=100)

    def values(self) -> dict[str, Any]:
        return ({} if self.set_level is None else {"level": self.set_level}) | (
            {} if self.set_persuade == "keep" else {"persuade_first": self.set_persuade == "yes"})


@post("/j/{jid:str}/v/{number:int}/types/bulk", opt={"role": "editor"})
async def bulk_save(request: Request, user: NamedDependency[Principal], jid: FromPath[str],
                    number: Number) -> Template:
    """Set level, departments and/or persuade-first on every selected type: one save, or a message and no change."""
    data = await request.form()
    return await sync_to_thread(_bulk_save, Table(request, user, jid, number), data)


def _bulk_save(table: Table, data: FormMultiDict) -> Template:
    version = table.version(write=True)
    (form,) = read(data, (BulkForm, ""))
    codes, values, departments = form.code, form.values(), form.set_departments
    filters: dict[str, Any] = {k: getattr(form, f"f_{k}") or None for k in ("level", "category", "department", "prov")}
    nothing_set = not values and form.dept_mode not in ("set", "add")
    error = ("请至少选择一个问题类型" if not codes else
             "请至少设置一项: 处置层级、职能部门或先告知劝阻" if nothing_set else None)
    document = table.policies.document(version)  # a fresh dict
    positions = {t["code"]: i for i, t in enumerate(document["problem_types"])}
    unknown = [c for c in codes if c not in positions]
    if unknown:
        error = f"草稿中没有问题类型 {'、'.join(unknown[:5])}"
    if error:
        return _page(table, version, 422, error=error, selected=codes, **filters)
    for code in codes:
        ptype = document["problem_types"][positions[code]]
        new = dict(values)
        if form.dept_mode == "set":
            new["departments"] = departments
        elif form.dept_mode == "add":
            new["departments"] = ptype["departments"] + [d for d in departments if d not in ptype["departments"]]
        document["problem_types"][positions[code]] = {**ptype, **new}
    all_codes = [t["code"] for t in document["problem_types"]]
    changes = {**values, **({"departments": departments, "mode": form.dept_mode}
                            if form.dept_mode in ("set", "add") else {})}
    saved = attempt(lambda: table.policies.update_draft(
        table.jid, table.number, document, form_revision(data), table.user.name, action="bulk_types_updated",
        codes=codes, changes=changes),
        lambda err: {"general": "; ".join(_issues(err, None, all_codes)) if isinstance(err, Invalid) else err.message})
    if isinstance(saved, Refused):
        return _page(table, version, saved.status, error=saved.errors["general"], selected=codes, **filters)
    return _page(table, saved, done=f"已更新 {len(codes)} 个问题类型", selected=codes, **filters)


@get("/j/{jid:str}/v/{number:int}/types.xlsx", sync_to_thread=True)
def types_xlsx(request: Request, user: NamedDependency[Principal], jid: FromPath[str], number: Number) -> Response:
    table = Table(request, user, jid, number)
    rows = [[r["code"], r["name"], r["category_name"] or r["category"], r["level"], ", ".join(r["departments"]),
             "是" if r["persuade_first"] else "否"] for r in table.rows(table.version())]
    body = workbook([{"title": "问题类型", "headers": list(HEADERS), "rows": rows}])
    return Response(body, media_type=XLSX,
                    headers={"Content-Disposition": f'attachment; filename="{jid}-v{number}-problem-types.xlsx"'})


def _apply_rows(document: dict, rows: list[tuple[int, dict[str, str]]], levels: list[int],
                departments: dict[str, str]) -> tuple[dict[int, int], list[RowIssue], list[dict]]:
    """The workbook's rows onto the document (in place): level, departments (ids or names), persuade-first of the
    types they name; returns type position -> row line, the row problems, and what changes."""
    positions = {t["code"]: i for i, t in enumerate(document["problem_types"])}
    by_name = {name: did for did, name in departments.items()}
    lines: dict[int, int] = {}
    issues: list[RowIssue] = []
    changes: list[dict] = []
    for line, row in rows:
        code = row["code"]
        if code not in positions:
            issues.append(RowIssue(line, "code", f"问题类型 {code or '(空)'} 不在草稿中 (导入只修改已有的问题类型)"))
            continue
        if positions[code] in lines:
            issues.append(RowIssue(line, "code", f"问题类型 {code} 在第 {lines[positions[code]]} 行已出现"))
            continue
        lines[positions[code]] = line
        ptype = document["problem_types"][positions[code]]
        new: dict[str, Any] = {}
        level = row["level"].removeprefix("第").removesuffix("级")
        if not level.isdigit() or int(level) not in levels:
            issues.append(RowIssue(line, "level", f"处置层级须为 {'、'.join(map(str, levels))} 之一"))
        else:
            new["level"] = int(level)
        wanted = [d.strip() for d in row["departments"].replace("，", ",").replace("、", ",").split(",") if d.strip()]
        bad = [d for d in wanted if d not in departments and d not in by_name]
        if bad:
            issues.append(RowIssue(line, "departments", f"未声明的职能部门 {'、'.join(bad)}"))
        else:
            new["departments"] = [d if d in departments else by_name[d] for d in wanted]
        flag = row["persuade_first"].strip().lower()
        if flag not in YES + NO:
            issues.append(RowIssue(line, "persuade_first", "先告知劝阻须填 是 或 否"))
        else:
            new["persuade_first"] = flag in YES
        changed = {k: (ptype[k], v) for k, v in new.items() if ptype[k] != v}
        if changed:
            document["problem_types"][positions[code]] = {**ptype, **new}
            changes.append({"code": code, "line": line, "changed": changed})
    return lines, issues, changes


@post("/j/{jid:str}/v/{number:int}/types/import", opt={"role": "editor"})
async def types_import(request: Request, user: NamedDependency[Principal], jid: FromPath[str],
                       number: Number) -> Template:
    """An edited workbook back onto the draft: a preview, or every problem by row and column; `action=apply`
    saves a clean one (revision-checked)."""
    form = await request.form()
    raw, name = await uploaded(form, "types.xlsx")
    return await sync_to_thread(_types_import, Table(request, user, jid, number), form, raw, name)


def _types_import(table: Table, form: FormMultiDict, raw: bytes, name: str) -> Template:
    """Reading, checking and saving the workbook: CPU and a wait for the write lock, off the event loop."""
    version = table.version(write=True)

    def result(status: int = 200, **extra: Any) -> Template:
        return page("bulk_import.html", 422 if extra.get("errors") and status == 200 else status,
                    **table.context(version, name=name, **extra))

    if not raw.strip():
        return result(errors=["请选择从此页导出并编辑过的 .xlsx 文件"])
    try:
        rows = read_rows(raw, name if name.endswith(".xlsx") else name + ".xlsx", HEADERS)
    except TableError as err:
        return result(errors=[str(err)])
    document = table.policies.document(version)  # a fresh dict
    lines, issues, changes = _apply_rows(document, [(n, dict(zip(COLUMNS, r.values()))) for n, r in rows],
                                         table.context(version)["levels"],
                                         {d["id"]: d["name"] for d in document["departments"]})
    if issues:
        return result(errors=grouped(issues, COLUMN_LABELS))
    codes = [t["code"] for t in document["problem_types"]]
    try:
        table.policies.check_draft(table.jid, table.number, document)
    except Invalid as err:
        return result(errors=_issues(err, lines, codes))
    if form.get("action") != "apply":
        return result(changes=changes, rows=len(rows), data=base64.b64encode(raw).decode())
    saved = attempt(lambda: table.policies.update_draft(
        table.jid, table.number, document, form_revision(form), table.user.name, action="types_imported", file=name,
        codes=[c["code"] for c in changes]),
        lambda err: {"general": "; ".join(_issues(err, lines, codes)) if isinstance(err, Invalid) else err.message})
    if isinstance(saved, Refused):
        return result(saved.status, errors=list(saved.errors.values()))
    version = saved
    return result(applied=len(changes))


ROUTES = [bulk_page, bulk_save, types_xlsx, types_import]
