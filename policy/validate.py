"""Semantic checks on a resolved policy: references, the unit tree, counts, escalation cycles, provenance."""
from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Callable, Iterator

from policy.errors import PolicyIssue, format_path
from policy.models import Policy, Provenanced, Rule, Unit, UnitGroup
from policy.provenance import (FIELD_LABELS, numeric_quote, provenanced_items, show_value, states,
                               states_value)
from policy.yamlio import OriginMap

if TYPE_CHECKING:
    from policy.loader import Jurisdiction

_NOT_TEXT = re.compile(r"[\s\W_]+", re.UNICODE)


def expand_units(policy: Policy) -> dict[str, Unit]:
    """Named units plus the placeholders generated from counts, in a stable order; a named unit with a
    placeholder's id replaces that placeholder (how one placeholder is edited without naming its whole group)."""
    units: dict[str, Unit] = {u.id: u for u in policy.units}
    for group in policy.unit_groups:
        units.update((u.id, u) for u in expand_group(group) if u.id not in units)
    return units


def expand_group(group: UnitGroup) -> list[Unit]:
    """A group's placeholders, spread evenly over its parents."""
    width = len(str(group.generate))
    units = []
    for n in range(1, group.generate + 1):
        parent = group.parents[(n - 1) * len(group.parents) // group.generate] if group.parents else None
        units.append(Unit(id=f"{group.id_prefix}-{n:0{width}d}", name=group.name.format(n=n), level=group.level,
                          parent=parent, placeholder=True, source=group.source, assumption=group.assumption))
    return units


def normalise(text: str) -> str:
    """A quote or a seed as they are compared: only the text, no spacing or punctuation differences."""
    return _NOT_TEXT.sub("", text)


SeedText = Callable[[str], "str | None"]  # a seed's text by file name, normalised (`normalise`); None if missing


class _Checker:
    def __init__(self, jur: "Jurisdiction", data: dict, origins: OriginMap, default_file: str, seed_text: SeedText):
        # head: a change's units are looked up
        self.jur, self.policy, self.data, self.origins = jur, jur.head, data, origins
        self.default_file = default_file
        self.seed_text = seed_text
        self.issues: list[PolicyIssue] = []
        self.levels = sorted(lv.number for lv in self.policy.levels)

    def add(self, loc: tuple, message: str) -> None:
        file, line = self.origins.locate(self.data, loc)
        self.issues.append(PolicyIssue(message=message, file=file or self.default_file, line=line,
                                       path=format_path(loc)))

    def level_ok(self, loc: tuple, level: object, what: str) -> None:
        if level is not None and level not in self.levels:
            self.add(loc, f"{what}层级 {level} 不存在; 本辖区层级为 {self.levels} — level {level} is not declared")

    def duplicates(self, field: str, key: str) -> None:
        items = getattr(self.policy, field)
        keys = [getattr(item, key) for item in items]
        if len(set(keys)) == len(keys):  # the usual case, counted only when some key repeats
            return
        counts = Counter(keys)
        for i, item in enumerate(items):
            if counts[getattr(item, key)] > 1:
                self.add((field, i, key), f"重复的 {key} '{getattr(item, key)}' — duplicate {key}")

    def run(self) -> list[PolicyIssue]:
        """Every check: a whole document (a file, a PUT, an import)."""
        return self.checked(units=True)

    def checked(self, units: bool) -> list[PolicyIssue]:
        """`units=False`: all but what depends only on the units, the levels, the placeholder groups and the
        sources, for a change that left those as they were in a valid version (see run_head)."""
        if self.policy.template:
            return self.issues
        for field, key in (("levels", "number"), ("departments", "id"), ("problem_types", "code"),
                           ("rules", "id"), ("workflows", "id"), ("cadences", "id"), ("units", "id")):
            if units or field != "units":
                self.duplicates(field, key)
        self.check_levels()
        if units:
            self.check_units()
        self.check_problem_types()
        self.check_rules()
        self.check_workflows()
        self.check_cadences()
        self.check_scoring()
        self.check_provenance(_items(self.policy, units))
        self.check_tests()
        return self.issues

    def run_unit_change(self, uid: str, before: Unit | None, added: bool) -> list[PolicyIssue]:
        """The checks one named unit's change (or addition, `added`) can fail, over what it touches: the unit, its
        children when its level moved, parent cycles through it, the level counts, its provenance, id uniqueness.
        The rest of a valid version cannot fail by it: this gives the same issues as `run` on the whole."""
        if self.policy.template:
            return self.issues
        units, unit = self.jur.units, self.jur.units[uid]
        named = self.jur.positions
        if added:
            self.duplicates("units", "id")
        moved = before is None or before.level != unit.level
        touched = [x for x, u in units.items() if x == uid or u.parent == uid] if moved else [uid]
        for x in touched:
            self.check_unit(x, units[x], named)
        if (before is None or before.parent != unit.parent) and uid in _ancestors(units, unit.parent, limit=len(units)):
            self.check_cycles(named)
        if moved:
            self.check_counts()
        self.check_item_provenance(("units", named[uid]), unit)
        return self.issues

    def check_levels(self) -> None:
        if self.levels != list(range(1, len(self.levels) + 1)):
            self.add(("levels",), f"层级须从 1 连续编号, 实为 {self.levels} — levels must be numbered 1..n")

    def check_units(self) -> None:
        units = self.jur.units
        for i, group in enumerate(self.policy.unit_groups):
            self.level_ok(("unit_groups", i, "level"), group.level, "网格单元")
            for parent in group.parents:
                if parent not in units:
                    self.add(("unit_groups", i, "parents"), f"上级单元 '{parent}' 不存在 — unknown parent unit")
        named = self.jur.positions
        for uid, unit in units.items():
            self.check_unit(uid, unit, named)
        self.check_cycles(named)
        self.check_counts()

    def check_unit(self, uid: str, unit: Unit, named: dict[str, int]) -> None:
        units = self.jur.units
        loc = ("units", named[uid]) if uid in named else ("unit_groups",)
        self.level_ok(loc + ("level",), unit.level, "网格单元")
        if unit.level == 1:
            if unit.parent is not None:
                self.add(loc + ("parent",), f"一级网格 '{uid}' 不应有上级 — a level-1 unit has no parent")
            return
        if unit.parent is None:
            self.add(loc + ("parent",), f"网格单元 '{uid}' (第{unit.level}级) 缺少上级单元 — orphan unit")
        elif unit.parent not in units:
            self.add(loc + ("parent",), f"上级单元 '{unit.parent}' 不存在 — unknown parent of '{uid}'")
        elif units[unit.parent].level != unit.level - 1:
            self.add(loc + ("parent",), (
                f"'{uid}' 在第{unit.level}级, 其上级 '{unit.parent}' 须在第{unit.level - 1}级, "
                f"实在第{units[unit.parent].level}级 — wrong parent level"))

    def check_cycles(self, named: dict[str, int]) -> None:
        units = self.jur.units
        rooted: set[str] = set()  # units whose parent chain ends: a chain reaching one ends too
        for uid in units:  # a parent chain that comes back to a unit on it is a cycle
            seen, cur = [uid], units[uid].parent
            while cur is not None and cur in units and cur not in rooted and cur not in seen:
                seen.append(cur)
                cur = units[cur].parent
            if cur in seen:
                self.add(("units", named.get(uid, 0), "parent"),
                         f"网格单元上下级形成循环 cycle: {' → '.join(seen + [cur])}")
                break
            rooted.update(seen)

    def check_counts(self) -> None:
        units = self.jur.units
        group_levels = {g.level for g in self.policy.unit_groups}
        counts = Counter(u.level for u in units.values())
        for i, level in enumerate(self.policy.levels):
            stated = level.stated_count
            if stated is not None and counts[level.number] != stated:
                self.add(("levels", i, "unit_counts"), (
                    f"第{level.number}级声明 {stated} 个网格, 实有 {counts[level.number]} 个 "
                    f"— the stated count contradicts the units "
                    f"({'placeholders' if level.number in group_levels else 'named'})"))
            if counts[level.number] == 0:
                self.add(("levels", i), f"第{level.number}级没有任何网格单元 — a level needs at least one unit")

    def check_problem_types(self) -> None:
        catalog = self.jur.catalog
        departments = {d.id for d in self.policy.departments}
        for i, ptype in enumerate(self.policy.problem_types):
            if catalog is not None and ptype.code not in catalog.types:
                hint = difflib.get_close_matches(ptype.code, list(catalog.types), n=3)
                self.add(("problem_types", i, "code"), (
                    f"问题类型代码 '{ptype.code}' 不在基础目录 _catalog.yaml 中 — unknown code"
                    + (f"; 相近 close: {', '.join(hint)}" if hint else "")))
            if ptype.level is None:
                self.add(("problem_types", i), f"问题类型 '{ptype.code}' 没有处置层级 — no handler level")
            self.level_ok(("problem_types", i, "level"), ptype.level, "处置")
            for dept in ptype.departments:
                if dept not in departments:
                    self.add(("problem_types", i, "departments"), (
                        f"职能部门 '{dept}' 未声明; 已声明 declared: {', '.join(sorted(departments)) or '无'}"))

    def check_party(self, loc: tuple, party: str | None) -> None:
        if party and party.startswith("department:"):
            dept = party.split(":", 1)[1]
            if dept not in {d.id for d in self.policy.departments}:
                self.add(loc, f"职能部门 '{dept}' 未声明 — undeclared department")
        if party and party.startswith("level:"):
            self.level_ok(loc, int(party.split(":", 1)[1]), "目标")

    def check_rules(self) -> None:
        for i, rule in enumerate(self.policy.rules):
            if rule.then.handler is not None:
                self.level_ok(("rules", i, "then", "handler", "level"), rule.then.handler.level, "目标")
            for j, action in enumerate(rule.then.actions):
                self.check_party(("rules", i, "then", "actions", j, "to"), action.to)
                self.check_party(("rules", i, "then", "actions", j, "by"), action.by)
            if "handler_level" in rule.when.tests:
                self.level_ok(("rules", i, "when", "handler_level"), rule.when.tests["handler_level"], "条件")
        self.check_escalation_cycles()

    def check_escalation_cycles(self) -> None:
        """Deadline escalation must move strictly up: otherwise a missed deadline could loop forever."""
        for level in self.levels:
            for i, rule in enumerate(self.policy.rules):
                target = escalation_target(rule, level)
                if target is not None and target >= level:
                    self.add(("rules", i, "then", "handler"), (
                        f"超期升级规则 '{rule.id}' 会把第{level}级的案件交给第{target}级, 可能形成循环 — "
                        f"escalation can cycle: level {level} → {target} → …; use `up: 1` or a higher level"))

    def check_workflows(self) -> None:
        defaults = [w.id for w in self.policy.workflows if w.when is None]
        if self.policy.workflows and len(defaults) != 1:
            self.add(("workflows",),
                     f"须恰好有一个无 when 条件的默认流程, 实有 {len(defaults)} 个 — need one default workflow")
        for i, workflow in enumerate(self.policy.workflows):
            ids = [s.id for s in workflow.steps]
            for j, step in enumerate(workflow.steps):
                if ids.count(step.id) > 1:
                    self.add(("workflows", i, "steps", j, "id"), f"重复的步骤 id '{step.id}'")
                if step.on_failure and step.on_failure not in ids[:j]:
                    self.add(("workflows", i, "steps", j, "on_failure"), (
                        f"on_failure 须指向此前的步骤 {ids[:j]}, 而非 '{step.on_failure}'"))

    def check_cadences(self) -> None:
        classes = {c.id for c in self.policy.source_classes}
        for i, cadence in enumerate(self.policy.cadences):
            self.level_ok(("cadences", i, "level"), cadence.level, "频次")
            if cadence.source_class and cadence.source_class not in classes:
                self.add(("cadences", i, "source_class"),
                         f"污染源类别 '{cadence.source_class}' 未声明 — undeclared class")

    def check_scoring(self) -> None:
        scoring = self.policy.scoring
        if scoring is None:
            return
        for field in ("deductions", "vetoes"):
            ids = Counter(item.id for item in getattr(scoring, field))
            for i, item in enumerate(getattr(scoring, field)):
                if ids[item.id] > 1:
                    self.add(("scoring", field, i, "id"), f"重复的 id '{item.id}' — duplicate id")
        for i, item in enumerate(scoring.deductions):
            if scoring.scheme == "deduction" and item.points > scoring.total:
                self.add(("scoring", "deductions", i, "points"), (
                    f"单次扣分 {item.points} 超过总分 {scoring.total} — a deduction exceeds the total"))

    def check_provenance(self, items: Iterator[tuple[tuple, Provenanced]]) -> None:
        for loc, item in items:
            self.check_item_provenance(loc, item)

    def check_item_provenance(self, loc: tuple, item: Provenanced) -> None:
        self.check_source(loc, item.source)
        for name, own in item.fields.items():
            self.check_source(loc + ("fields", name), own.source)
        for name in item.NUMERIC:
            self.check_number(loc, item, name)

    def check_tests(self) -> None:
        """Pinned cases name what the policy declares and quote their clause from a seed."""
        codes = {t.code for t in self.policy.problem_types}
        departments = {d.id for d in self.policy.departments}
        for i, case in enumerate(self.policy.tests):
            loc = ("tests", i)
            self.check_source(loc, case.clause, "clause")
            if case.given.problem_type not in codes:
                self.add(loc + ("given", "problem_type"), (
                    f"问题类型 '{case.given.problem_type}' 不在本辖区的问题类型表中 — unknown problem type"))
            for key, unit in (("given", case.given.unit), ("expect", case.expect.unit)):
                if unit is not None and unit not in self.jur.units:
                    self.add(loc + (key, "unit"), f"网格单元 '{unit}' 不存在 — unknown unit")
            self.level_ok(loc + ("given", "found_at_level"), case.given.found_at_level, "发现")
            self.level_ok(loc + ("expect", "level"), case.expect.level, "处置")
            for dept in case.expect.departments:
                if dept not in departments:
                    self.add(loc + ("expect", "departments"), f"职能部门 '{dept}' 未声明 — undeclared department")
        names = Counter(case.name for case in self.policy.tests)
        for i, case in enumerate(self.policy.tests):
            if names[case.name] > 1:
                self.add(("tests", i, "name"), f"重复的用例名称 '{case.name}' — duplicate test name")

    def check_source(self, loc: tuple, source, key: str = "source") -> None:
        if source is None:
            return
        declared = {s.seed for s in self.policy.sources}
        if source.seed not in declared:
            self.add(loc + (key, "seed"), f"出处文件 '{source.seed}' 未在 sources 中声明; 已声明 {sorted(declared)}")
            return
        text = self.seed_text(source.seed)
        if text is not None and normalise(source.quote) not in text:
            self.add(loc + (key, "quote"), (
                f"引文在 {source.seed} 中找不到 — quote not found in the seed: '{source.quote[:40]}'"))

    def check_number(self, loc: tuple, item, name: str) -> None:
        """A number under a source must be written in its quote (12 or 十二, 5个工作日, 半月 …)."""
        value = getattr(item, name)
        source = numeric_quote(item, name)
        if source is None or not states(item, name):
            return
        if not states_value(source.quote, name, value):
            own = name in item.fields
            shown = show_value(value)
            self.add(loc + (("fields", name, "source", "quote") if own else (name,)), (
                f"{FIELD_LABELS.get(name, name)} {shown} 不在引文中 (\u201c{source.quote[:40]}\u201d): "
                "原文未给出此数时, "
                f"请写 fields: {{{name}: {{assumption: 理由}}}} — the {name} {shown} is not in its quote; "
                f"a number the text does not give is an assumption"))


def escalation_target(rule: Rule, level: int) -> int | None:
    """The level a deadline-missed rule hands a case at `level` to, or None if it does not apply."""
    tests = rule.when.tests
    if tests.get("deadline_missed") is not True or rule.then.handler is None:
        return None
    if "handler_level" in tests and tests["handler_level"] != level:
        return None
    change = rule.then.handler
    if change.up is not None:
        return level - change.up
    return change.level


def _items(policy: Policy, units: bool) -> Iterator[tuple[tuple, Provenanced]]:
    """The policy's provenanced items in order (provenance.provenanced_items), the named units only if `units`."""
    for name in type(policy).model_fields:
        if name != "units":
            yield from provenanced_items(getattr(policy, name), (name,))
        elif units:  # a unit holds no other item: 200,000 of them are not walked field by field
            yield from ((("units", i), unit) for i, unit in enumerate(policy.units))


def _ancestors(units: Mapping[str, Unit], uid: str | None, limit: int) -> Iterator[str]:
    """`uid` and its parents upwards (at most `limit`: a chain may be a cycle)."""
    while uid is not None and uid in units and limit > 0:
        yield uid
        uid, limit = units[uid].parent, limit - 1


def validate_policy(jur: "Jurisdiction", data: dict, origins: OriginMap, default_file: str,
                    seed_text: SeedText) -> list[PolicyIssue]:
    return _Checker(jur, data, origins, default_file, seed_text).run()


def validate_head_change(jur: "Jurisdiction", default_file: str, seed_text: SeedText) -> list[PolicyIssue]:
    """A change outside the units that keeps the levels, the placeholder groups and the sources: the units of
    the valid version it changes cannot fail by it (the same issues as `validate_policy`)."""
    return _Checker(jur, {}, OriginMap(), default_file, seed_text).checked(units=False)


def validate_unit_change(jur: "Jurisdiction", uid: str, before: Unit | None, added: bool,
                         default_file: str, seed_text: SeedText) -> list[PolicyIssue]:
    """One named unit of a valid version changed or added (see _Checker.run_unit_change)."""
    return _Checker(jur, {}, OriginMap(), default_file, seed_text).run_unit_change(uid, before, added)
