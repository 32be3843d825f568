"""Bulk editing of a draft's problem-type table: filter (level, category, department, quoted or assumed), set the
level, departments or persuade-first of many rows in one revision-checked save, and the table as an .xlsx workbook
to export and import back (a preview of the changes, or every problem by row and column; nothing saved until a
clean preview is confirmed)."""
from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from admin.common import Number, Refused, attempt, form_revision, page, require, services, uploaded
from policy.unit_rows import RowIssue, grouped
from store.errors import Conflict, Invalid
from store.tables import PolicyVersion
from store.users import Principal
from store.xlsx import MEDIA_TYPE as XLSX, TableError, read_rows, workbook

COLUMNS = ("code", "name", "category", "level", "departments", "persuade_first")
HEADERS = ("编码 code", "名称 name", "类别 category", "处置层级 level", "职能部门 departments",
           "先告知劝阻 persuade_first")
COLUMN_LABELS = dict(zip(COLUMNS, HEADERS))
YES, NO = ("是", "yes", "true", "1", "y"), ("否", "no", "false", "0", "n", "")
Filter = Annotated[str | None, QueryParameter(max_length=100)]


@dataclass
class Table:
    """A draft's problem types as rows with the names and categories an admin reads."""
    request: Request
    user: Principal
    jid: str
    number: int

    def version(self, write: bool = False) -> PolicyVersion:
        if write:
            require(self.user, self.jid, "editor")
        version = services(self.request).policies.get_version(self.jid, self.number)
        if write and version.status != "draft":
            raise Conflict(f"v{self.number} 已发布, 不可修改; 请先新建草稿", field="number")
        return version

    def rows(self, version: PolicyVersion) -> list[dict]:
        jur = services(self.request).policies.build(version)
        categories = jur.catalog.categories
        return [{**t, "name": jur.type_names.get(t["code"], t["code"]), "category": t["code"].rsplit(".", 1)[0],
                 "category_name": categories.get(t["code"].rsplit(".", 1)[0], "")}
                for t in services(self.request).policies.head(version)["problem_types"]]

    def context(self, version: PolicyVersion, **extra: Any) -> dict:
        document = services(self.request).policies.head(version)
        return dict(user=self.user, jid=self.jid, version=version, revision=version.revision,
                    editable=version.status == "draft" and self.user.can(self.jid, "editor"),
                    levels=[lv["number"] for lv in document["levels"]],
                    departments=[(d["id"], d["name"]) for d in document["departments"]], **extra)


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


@post("/j/{jid:str}/v/{number:int}/types/bulk")
async def bulk_save(request: Request, user: NamedDependency[Principal], jid: FromPath[str],
                    number: Number) -> Template:
    """Set level, departments and/or persuade-first on every selected type: one save, or a message and no change."""
    table = Table(request, user, jid, number)
    version = table.version(write=True)
    form = await request.form()
    codes = [str(c)[:100] for c in form.getall("code", [])][:1000]
    level = str(form.get("set_level", "")).strip()
    dept_mode = str(form.get("dept_mode", "keep"))
    departments = [str(d)[:64] for d in form.getall("set_departments", [])][:100]
    persuade = str(form.get("set_persuade", "keep"))
    filters: dict[str, Any] = {k: str(form.get(f"f_{k}", "")) or None
                               for k in ("level", "category", "department", "prov")}
    values: dict[str, Any] = {}
    if level:
        values["level"] = int(level) if level.isdigit() else level
    if persuade in ("yes", "no"):
        values["persuade_first"] = persuade == "yes"
    nothing_set = not values and dept_mode not in ("set", "add")
    error = ("请至少选择一个问题类型" if not codes else
             "请至少设置一项: 处置层级、职能部门或先告知劝阻" if nothing_set else None)
    document = services(request).policies.document(version)  # a fresh dict
    positions = {t["code"]: i for i, t in enumerate(document["problem_types"])}
    unknown = [c for c in codes if c not in positions]
    if unknown:
        error = f"草稿中没有问题类型 {'、'.join(unknown[:5])}"
    if error:
        return _page(table, version, 422, error=error, selected=codes, **filters)
    for code in codes:
        ptype = document["problem_types"][positions[code]]
        new = dict(values)
        if dept_mode == "set":
            new["departments"] = departments
        elif dept_mode == "add":
            new["departments"] = ptype["departments"] + [d for d in departments if d not in ptype["departments"]]
        document["problem_types"][positions[code]] = {**ptype, **new}
    all_codes = [t["code"] for t in document["problem_types"]]
    saved = attempt(lambda: services(request).policies.update_draft(
        jid, number, document, form_revision(form), user.name, action="bulk_types_updated", codes=codes,
        changes={**values, **({"departments": departments, "mode": dept_mode} if dept_mode in ("set", "add") else {})}),
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


@post("/j/{jid:str}/v/{number:int}/types/import")
async def types_import(request: Request, user: NamedDependency[Principal], jid: FromPath[str],
                       number: Number) -> Template:
    """An edited workbook back onto the draft: a preview, or every problem by row and column; `action=apply`
    saves a clean one (revision-checked)."""
    table = Table(request, user, jid, number)
    version = table.version(write=True)
    form = await request.form()
    raw, name = await uploaded(form, "types.xlsx")

    def result(status: int = 200, **extra: Any) -> Template:
        return page("bulk_import.html", 422 if extra.get("errors") and status == 200 else status,
                    **table.context(version, name=name, **extra))

    if not raw.strip():
        return result(errors=["请选择从此页导出并编辑过的 .xlsx 文件"])
    try:
        rows = read_rows(raw, name if name.endswith(".xlsx") else name + ".xlsx", HEADERS)
    except TableError as err:
        return result(errors=[str(err)])
    document = services(request).policies.document(version)  # a fresh dict
    lines, issues, changes = _apply_rows(document, [(n, dict(zip(COLUMNS, r.values()))) for n, r in rows],
                                         table.context(version)["levels"],
                                         {d["id"]: d["name"] for d in document["departments"]})
    if issues:
        return result(errors=grouped(issues, COLUMN_LABELS))
    codes = [t["code"] for t in document["problem_types"]]
    try:
        services(request).policies.check_draft(jid, number, document)
    except Invalid as err:
        return result(errors=_issues(err, lines, codes))
    if form.get("action") != "apply":
        return result(changes=changes, rows=len(rows), data=base64.b64encode(raw).decode())
    saved = attempt(lambda: services(request).policies.update_draft(
        jid, number, document, form_revision(form), user.name, action="types_imported", file=name,
        codes=[c["code"] for c in changes]),
        lambda err: {"general": "; ".join(_issues(err, lines, codes)) if isinstance(err, Invalid) else err.message})
    if isinstance(saved, Refused):
        return result(saved.status, errors=list(saved.errors.values()))
    version = saved
    return result(applied=len(changes))


ROUTES = [bulk_page, bulk_save, types_xlsx, types_import]
