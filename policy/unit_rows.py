"""Grid units imported as table rows (id, name, level, parent) — an admin's upload or a jurisdiction's
`*.units.csv`: every row checked, every problem named by line and column, the same problem on many rows said once;
then merged into a policy document (add, rename, move the rows given) or, when asked, replacing the levels the
rows cover."""
from __future__ import annotations

import csv
import io
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from policy.errors import PolicyError, PolicyIssue
from policy.models import SLUG as SLUG_PATTERN, UnitGroup
from policy.validate import expand_group
from policy.yamlio import Origin, OriginMap

COLUMNS = ("id", "name", "level", "parent")
COLUMN_LABELS = {"id": "编号 id", "name": "名称 name", "level": "层级 level", "parent": "上级编号 parent"}
SLUG = re.compile(SLUG_PATTERN)
MAX_NAME = 100


@dataclass(frozen=True)
class RowIssue:
    line: int  # 1 = the header
    column: str | None
    message: str


@dataclass
class Rows:
    units: list[dict]  # checked rows, in file order
    lines: dict[str, int]  # unit id -> its line
    issues: list[RowIssue]


def check_rows(rows: list[tuple[int, dict[str, str]]], levels: list[int] | None = None,
               known: dict[str, int] | None = None) -> Rows:
    """`rows` are (line, {column: text}); `known` maps the draft's unit ids to their levels. A parent may be a
    known unit or one of the rows; its level must be the row's level minus one. Without `levels` (a jurisdiction's
    file, read before its policy is validated) only each row's own values are checked."""
    issues: list[RowIssue] = []
    units: list[dict] = []
    lines: dict[str, int] = {}
    given = {str(r.get("id") or "").strip(): r for _, r in rows} if levels is not None and known is not None else {}
    for line, row in rows:
        uid, name = str(row.get("id") or "").strip(), str(row.get("name") or "").strip()
        level_text, parent = str(row.get("level") or "").strip(), str(row.get("parent") or "").strip() or None
        before = len(issues)
        if not uid:
            issues.append(RowIssue(line, "id", "编号不能为空"))
        elif not SLUG.fullmatch(uid) or len(uid) > 64:
            issues.append(RowIssue(line, "id", "编号只能由小写字母、数字、_ 或 - 组成 (如 kmy-l3-01), 最长 64 个字符"))
        elif uid in lines:
            issues.append(RowIssue(line, "id", f"编号 {uid} 在第 {lines[uid]} 行已出现"))
        if not name:
            issues.append(RowIssue(line, "name", "名称不能为空"))
        elif len(name) > MAX_NAME:
            issues.append(RowIssue(line, "name", f"名称最多 {MAX_NAME} 个字符"))
        level = int(level_text) if level_text.isdigit() else None
        if level is None:
            issues.append(RowIssue(line, "level", "层级须为整数" + (
                f" (本辖区层级为 {'、'.join(map(str, levels))})" if levels is not None else "")))
        if levels is not None and known is not None:
            issues += _placement(line, level, parent, levels, known, given)
        if len(issues) == before:
            lines[uid] = line
            # one string per parent id, not one per row naming it (~11 MB at 200,000 rows)
            units.append({"id": uid, "name": name, "level": level, "parent": parent and sys.intern(parent)})
    return Rows(units, lines, issues)


def _placement(line: int, level: int | None, parent: str | None, levels: list[int], known: dict[str, int],
               given: dict[str, dict[str, str]]) -> list[RowIssue]:
    """A row's level among the jurisdiction's, and its parent (a known unit or another row) one level above."""
    if level is None:
        return []
    if level not in levels:
        return [RowIssue(line, "level", f"层级 {level} 不存在; 本辖区层级为 {'、'.join(map(str, levels))}")]
    if parent is None:
        return [RowIssue(line, "parent", f"第 {level} 级单元须填写上级单元编号")] if level != min(levels) else []
    parent_row = given.get(parent)
    parent_level = known.get(parent) if parent_row is None else (
        int(parent_row["level"]) if str(parent_row.get("level") or "").strip().isdigit() else None)
    if parent_row is None and parent not in known:
        return [RowIssue(line, "parent", f"上级单元 {parent} 不存在 (草稿中和本文件中都没有)")]
    if parent_level is not None and parent_level != level - 1:
        return [RowIssue(line, "parent", f"上级单元须在第 {level - 1} 级, {parent} 在第 {parent_level} 级")]
    return []


def grouped(issues: list[RowIssue], labels: dict[str, str] = COLUMN_LABELS, first_lines: int = 8) -> list[str]:
    """One message per distinct problem and column, naming the lines it occurs on (the first few, then a count)."""
    lines: dict[tuple[str | None, str], list[int]] = defaultdict(list)
    for issue in issues:
        lines[issue.column, issue.message].append(issue.line)
    out = []
    for (column, message), at in sorted(lines.items(), key=lambda item: item[1][0]):
        where = "、".join(map(str, at[:first_lines])) + (f" 等 {len(at)}" if len(at) > first_lines else "")
        out.append(f"第 {where} 行{f' · {labels.get(column, column)} 列' if column else ''}: {message}")
    return out


def parse_units_csv(text: str, name: str, origins: OriginMap | None = None) -> list[dict]:
    """A jurisdiction's units file (header id,name,level,parent), its rows checked as an upload's are: every problem
    by line and column, as a PolicyError. Real unit names replace placeholders."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    try:  # each row read straight into its dict: no table of lists beside them
        header = next(reader, None)
        rows = [(line, dict(zip(COLUMNS, row)))  # a short row's missing columns read as empty
                for line, row in enumerate(reader, start=2) if any(row)]
    except csv.Error as exc:
        raise PolicyError([PolicyIssue(file=name, message=f"无法读取 CSV cannot read CSV: {exc}")]) from None
    if header is None or tuple(header[:len(COLUMNS)]) != COLUMNS:
        raise PolicyError([PolicyIssue(file=name, line=1, message=(
            f"表头须为 {','.join(COLUMNS)} — the header must be {','.join(COLUMNS)}"))])
    checked = check_rows(rows)
    del rows
    if checked.issues:
        raise PolicyError([PolicyIssue(file=name, line=i.line, path=i.column or "", message=i.message)
                           for i in checked.issues])
    units, lines = imported(checked.units, Path(name).name), checked.lines
    del checked  # the rows as checked, now copied into units
    if origins is not None:
        for unit in units:
            origins.record(unit, Origin(name, lines[unit["id"]]))
    return units


def imported(units: list[dict], source: str) -> list[dict]:
    """Rows as units of a document, each an assumption naming the file it came from."""
    note = f"由 {source} 导入的网格单元 (imported unit)"  # one string shared by every row
    return [{**u, "assumption": note} for u in units]


def overlay_units(data: dict, units: list[dict]) -> int:
    """Imported units replace the named units and placeholders of every level they cover (in place);
    returns the index of the first imported unit in `data["units"]`."""
    levels = {u["level"] for u in units}
    data["unit_groups"] = [g for g in data.get("unit_groups", []) if g.get("level") not in levels]
    keep = [u for u in data.get("units", []) if u.get("level") not in levels]
    data["units"] = keep + units
    return len(keep)


def materialise_groups(document: dict, ids: set[str]) -> None:
    """Turn the placeholder groups that generated any of `ids` into named units, so they can be renamed or moved."""
    keep = []
    for raw in document.get("unit_groups", []):
        units = expand_group(UnitGroup.model_validate(raw))
        if any(u.id in ids for u in units):
            document["units"] = document.get("units", []) + [u.model_dump(mode="json") for u in units]
        else:
            keep.append(raw)
    document["unit_groups"] = keep


def merge(document: dict, units: list[dict], source: str, replace: bool = False) -> dict[int, str]:
    """Apply the checked rows to the document (in place): merge adds new ids and renames/moves the given ones;
    `replace` first drops every unit and placeholder of the levels the rows cover. Returns, for each row's
    position in `document["units"]`, its unit id (to name validation issues by line)."""
    if replace:
        first = overlay_units(document, imported(units, source))
        return {first + i: u["id"] for i, u in enumerate(units)}
    materialise_groups(document, {u["id"] for u in units})
    position = {u["id"]: i for i, u in enumerate(document.setdefault("units", []))}
    for row in units:
        if row["id"] in position:
            index = position[row["id"]]
            document["units"][index] = {**document["units"][index], **row, "placeholder": False}
        else:
            position[row["id"]] = len(document["units"])
            document["units"].extend(imported([row], source))
    wanted = {u["id"] for u in units}
    return {i: uid for uid, i in position.items() if uid in wanted}
