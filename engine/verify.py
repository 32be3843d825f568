"""Verification run at compile time (blocks publishing): coverage, conflicts, shadowing, escalation.

Types that share (handling level, persuade-first, department count) behave identically in the rules
table, so the fact combinations are enumerated once per such profile; every type's own rule in the
types table is checked separately.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from engine.compiler import TYPE_PREFIX, CompiledPolicy, default_facts
from engine.router import entry_of, escalation_chain, escalation_hop, evaluate, type_features, type_level
from policy.facts import BOOLEAN_FACTS, DERIVED_FACTS, ENUM_FACTS
from policy.models import ProblemType


@dataclass
class VerifyReport:
    jurisdiction: str
    version: str
    combinations: int = 0
    gaps: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)
    shadowed: list[str] = field(default_factory=list)
    escalation: list[str] = field(default_factory=list)
    matrix: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.gaps or self.conflicts or self.unreachable or self.shadowed or self.escalation)

    def problems(self) -> list[str]:
        return [*self.gaps, *self.conflicts, *self.unreachable, *self.shadowed, *self.escalation]


def _fact_space(compiled: CompiledPolicy) -> list[str]:
    """Case facts the rules test (derived facts come from the type and the entry level)."""
    return [f for f in compiled.tested_facts
            if (f in BOOLEAN_FACTS and f not in DERIVED_FACTS) or f == "enterprise_class"]


def combinations(compiled: CompiledPolicy, ptype: ProblemType) -> Iterator[tuple[int, dict]]:
    levels = [lv.number for lv in compiled.jurisdiction.policy.levels]
    names = _fact_space(compiled)
    domains = [list(ENUM_FACTS[n][1]) if n in ENUM_FACTS else [False, True] for n in names]
    level = type_level(ptype)
    cross = [False, True] if level > 1 else [False]
    for found_level in levels:
        for crossing in cross:
            for values in itertools.product(*domains):
                facts = default_facts() | dict(zip(names, values)) | type_features(ptype) | {
                    "problem_type": ptype.code, "entry": entry_of(found_level, level),
                    "cross_boundary": crossing, "found_level": found_level}
                yield found_level, facts


def verify(compiled: CompiledPolicy) -> VerifyReport:
    jur = compiled.jurisdiction
    report = VerifyReport(jur.id, compiled.version)
    levels = sorted(lv.number for lv in jur.policy.levels)
    for ptype in jur.policy.problem_types:
        fired = compiled.types.fire({"kind": "case", "problem_type": ptype.code})
        if fired != [f"{TYPE_PREFIX}{ptype.code}"]:
            report.gaps.append(f"问题类型 {ptype.code} 在类型表中命中 {fired}, 应恰好命中自身 — type table gap")
    fired_ever: set[str] = set()
    applied_ever: set[str] = set()
    profiles: dict[tuple, ProblemType] = {}
    for ptype in jur.policy.problem_types:
        profile = (ptype.level, ptype.persuade_first, ptype.assist_only, len(ptype.departments) > 1,
                   bool(ptype.departments))
        profiles.setdefault(profile, ptype)
    outcomes: dict[tuple, list[tuple[str, str]]] = {}  # the rules table decides once per distinct tested-fact set
    for ptype in profiles.values():
        for found_level, facts in combinations(compiled, ptype):
            report.combinations += 1
            key = (facts["handler_level"], facts["found_level"] if compiled.keeps_finder else None,
                   *(facts[name] for name in compiled.tested_facts))
            issues = outcomes.get(key)
            if issues is None:
                ev = evaluate(compiled, facts)
                fired_ever.update(r.id for r in ev.fired)
                applied_ever.update(r.id for r in ev.applied)
                issues = outcomes[key] = _issues(ev, levels, bool(jur.policy.workflows))
            if issues:  # described only when there is something to say: describing costs more than evaluating
                where = f"{ptype.code} 第{found_level}级发现 {_describe(facts)}"
                for kind, text in issues:
                    getattr(report, kind).append(f"{where}: {text}")
    for rule in jur.policy.rules:
        if rule.id not in fired_ever:
            report.unreachable.append(f"规则 {rule.id} 在任何事实组合下都不会命中 — unreachable")
        elif rule.id not in applied_ever:
            report.shadowed.append(f"规则 {rule.id} 总被更高优先级的终止规则遮蔽 — shadowed by a stop rule")
    report.conflicts = sorted(set(report.conflicts))[:50]
    for level in levels[1:]:
        for facts in deadline_combinations(compiled):
            report.escalation.extend(_escalation_problems(compiled, level, facts))
    report.matrix = coverage_matrix(compiled)
    return report


def _issues(ev, levels: list[int], has_workflows: bool) -> list[tuple[str, str]]:
    """(report list, message) for what is wrong with one evaluation of the rules table."""
    issues = []
    if not ev.actions:
        issues.append(("gaps", "没有任何动作 — no action results"))
    if ev.workflow is None and has_workflows:
        issues.append(("gaps", "没有匹配的流程 — no workflow applies"))
    if ev.handler_level not in levels:
        issues.append(("gaps", f"处置层级 {ev.handler_level} 不存在"))
    for a, b in itertools.combinations(ev.applied, 2):
        if a.priority == b.priority and a.then.handler and b.then.handler and a.then.handler != b.then.handler:
            issues.append(("conflicts",
                           f"规则 {a.id} 与 {b.id} 优先级相同({a.priority})但改变处置网格的方式不同 — conflict"))
    return issues


def deadline_combinations(compiled: CompiledPolicy) -> list[dict]:
    """Every combination of the facts the deadline rules test (one empty combination when they test none):
    escalation depends on these alone, so each is verified and drawn."""
    names = [n for n in compiled.deadline_facts if n in BOOLEAN_FACTS or n == "enterprise_class"]
    names = [n for n in names if n != "cross_boundary"]  # a held case is never crossing: the hop fixes it
    domains = [list(ENUM_FACTS[n][1]) if n in ENUM_FACTS else [False, True] for n in names]
    return [dict(zip(names, values)) for values in itertools.product(*domains)]


def _escalation_problems(compiled: CompiledPolicy, start: int, facts: dict) -> list[str]:
    """Missed deadlines must climb to level 1 (every hop moves strictly up, so the chain terminates)."""
    chain = escalation_chain(compiled, start, facts)
    end = chain[-1].to_level if chain else start
    if end == 1:
        return []
    shown = [name if value is True else f"{name}={value}"
             for name, value in facts.items() if value not in (False, "none")]
    where = f"从第{start}级开始" + (f" [{', '.join(shown)}]" if shown else "")
    stuck = escalation_hop(compiled, end, facts)
    if stuck is None:
        return [f"{where}: 第{end}级超期后没有升级规则, 无法到达第1级 — escalation does not reach level 1"]
    return [f"{where}: 规则 {stuck.rule.id} 把第{end}级的案件交给第{stuck.to_level}级 — escalation does not terminate"]


def escalation_edges(compiled: CompiledPolicy) -> list[dict]:
    """One edge per (level, deadline rule) any fact combination takes: where a missed handling deadline sends
    the case, by which rule, and on which facts (`when`, empty for the unconditional rule)."""
    edges: dict[tuple[int, str], dict] = {}
    for lv in sorted(compiled.jurisdiction.policy.levels, key=lambda lv: lv.number)[1:]:
        for facts in deadline_combinations(compiled):
            hop = escalation_hop(compiled, lv.number, facts)
            if hop is not None and (lv.number, hop.rule.id) not in edges:
                when = {k: v for k, v in hop.rule.when.tests.items() if k not in ("deadline_missed", "handler_level")}
                edges[lv.number, hop.rule.id] = {
                    "from": lv.number, "to": hop.to_level, "rule": hop.rule.id, "name": hop.rule.name,
                    "source": hop.rule.provenance, "when": when}
    return list(edges.values())


def _describe(facts: dict) -> str:
    on = [k for k in BOOLEAN_FACTS if facts.get(k) and k not in DERIVED_FACTS]
    extra = [f"{k}={facts[k]}" for k in ("enterprise_class",) if facts.get(k) not in (None, "none")]
    return "[" + ", ".join(on + extra + ["cross_boundary" if facts.get("cross_boundary") else ""]).strip(", ") + "]"


def coverage_matrix(compiled: CompiledPolicy) -> list[dict]:
    """Problem type × entry level → handler level, departments and first action (default facts)."""
    jur = compiled.jurisdiction
    rows = []
    for ptype in jur.policy.problem_types:
        row: dict[str, Any] = {"code": ptype.code, "name": jur.type_name(ptype.code), "level": ptype.level,
                               "departments": list(ptype.departments), "entries": {}}
        for lv in jur.policy.levels:
            facts = default_facts() | type_features(ptype) | {
                "problem_type": ptype.code, "entry": entry_of(lv.number, type_level(ptype)),
                "cross_boundary": False, "found_level": lv.number}
            ev = evaluate(compiled, facts)
            row["entries"][lv.number] = {"handler_level": ev.handler_level,
                                         "first_action": ev.actions[0][1].kind.value if ev.actions else None}
        rows.append(row)
    return rows
