"""PolicyRouter.route(case) -> Decision: the rules decide, this module resolves grids, deadlines and the trace."""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from operator import attrgetter
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from engine.calendar import WorkCalendar
from engine.compiler import TYPE_PREFIX, WORKFLOW_PREFIX, CompiledPolicy, default_facts
from engine.decision import (CompetentBodyParty, Decision, DepartmentParty, GridParty, HeadParty, LeaderParty,
                             ProblemTypeRef, TraceEntry)
from engine.runtime import Ruleset
from policy.catalog import close_matches
from policy.facts import CASE_FACTS, ENUM_FACTS
from policy.models import ACTION_LABELS, Action, CalendarKind, ProblemType, Rule, Unit, Workflow
from policy.validate import escalation_target


class RoutingError(ValueError):
    """A case the policy cannot route as given: says which field and what would be valid."""

    def __init__(self, field_name: str, message: str, suggestions: list[str] | None = None):
        self.field = field_name
        self.suggestions = suggestions or []
        super().__init__(message + (f"; 相近 close matches: {', '.join(self.suggestions)}" if self.suggestions else ""))


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")
    problem_type: str = Field(min_length=1, max_length=200)
    unit: str | None = Field(None, max_length=200)
    found_at_level: int | None = Field(None, ge=1, le=6)
    units_involved: list[str] = Field(default_factory=list, max_length=100)
    facts: dict[str, bool | str] = Field(default_factory=dict)
    reported_at: datetime | None = None

    @field_validator("facts")
    @classmethod
    def _known(cls, facts: dict) -> dict:
        for name, value in facts.items():
            if name in CASE_FACTS:
                if not isinstance(value, bool):
                    raise ValueError(f"事实 '{name}' 须为 true/false")
            elif name == "enterprise_class":
                if value not in ENUM_FACTS[name][1]:
                    raise ValueError(f"enterprise_class 须为 {sorted(ENUM_FACTS[name][1])} 之一")
            else:
                valid = ", ".join(sorted([*CASE_FACTS, "enterprise_class"]))
                raise ValueError(f"未知的事实 unknown fact '{name}'; 可用 valid: {valid}")
        return facts


@dataclass
class Evaluation:
    """What the rules table decided for one set of facts, before grids are resolved."""
    fired: list[Rule]
    applied: list[Rule]
    workflow: Workflow | None
    handler_level: int
    to_common_ancestor: bool = False
    actions: list[tuple[Rule, Action]] = field(default_factory=list)


DEFAULT_FACTS = default_facts()
# grid parties kept per version (~0.8 KB each): every unit of a city, not all 200,000 of a province (#17)
GRID_PARTIES = 4096
ROUND_TRIPS = 20_000  # compact forms (less their times) known to round-trip, kept per version
_PRIORITY_ORDER = attrgetter("priority", "id")


def entry_of(found_level: int, handler_level: int) -> str:
    return "below" if found_level > handler_level else "at" if found_level == handler_level else "above"


def type_level(ptype: ProblemType) -> int:
    """The level handling a problem type: set in every validated policy (policy.validate refuses a type without)."""
    if ptype.level is None:
        raise ValueError(f"问题类型 {ptype.code} 没有处置层级 — the policy was not validated")
    return ptype.level


def type_features(ptype: ProblemType) -> dict:
    return {"persuade_first": ptype.persuade_first, "assist_only": ptype.assist_only,
            "has_department": bool(ptype.departments),
            "multi_department": len(ptype.departments) > 1, "handler_level": ptype.level}


def evaluate(compiled: CompiledPolicy, facts: dict) -> Evaluation:
    """Fire the rules table on one complete fact set and apply the fired rules in priority order."""
    names = compiled.rules.fire({"kind": "case"} | {name: facts[name] for name in compiled.tested_facts})
    rules = sorted((compiled.rules_by_name[n] for n in names if n in compiled.rules_by_name), key=_PRIORITY_ORDER)
    selected = [compiled.workflows_by_id[n[len(WORKFLOW_PREFIX):]] for n in names if n.startswith(WORKFLOW_PREFIX)]
    workflow = next((w for w in selected if w.when is not None), selected[0] if selected else None)
    result = Evaluation(fired=rules, applied=[], workflow=workflow, handler_level=facts["handler_level"])
    for rule in rules:
        result.applied.append(rule)
        change = rule.then.handler
        if change is not None:
            if change.to == "common_ancestor":
                result.to_common_ancestor = True
            elif change.to == "finder":  # the grid that found the case keeps it (e.g. 限时办结 in its own grid)
                result.handler_level = facts["found_level"]
            elif change.level is not None:
                result.handler_level = change.level
            elif change.up is not None:  # exactly one of to, level and up is set (HandlerChange)
                result.handler_level = max(1, result.handler_level - change.up)
        result.actions.extend((rule, action) for action in rule.then.actions)
        if rule.then.stop:
            break
    return result


class PolicyRouter:
    """Routes cases for one compiled policy version."""

    def __init__(self, compiled: CompiledPolicy, calendar: WorkCalendar | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.compiled = compiled
        self.clock = clock  # the moment of a case that gives none (its deadlines run from it)
        self.jur = compiled.jurisdiction
        self.calendar = calendar or WorkCalendar()
        self.units = self.jur.units
        self._names = {t.code: self.jur.type_name(t.code) for t in self.jur.policy.problem_types}
        self._by_name = {name: code for code, name in self._names.items()}
        self._features = {t.code: type_features(t) for t in self.jur.policy.problem_types}
        self._type_messages = {code: Ruleset.message({"kind": "case", "problem_type": code}) for code in self._names}
        for t in self.jur.policy.problem_types:
            entry = self.jur.catalog.types.get(t.code) if self.jur.catalog else None
            for alias in entry.aliases if entry else []:
                self._by_name.setdefault(alias, t.code)
        self._unit_by_name: dict[str, str] = {}
        for unit in self.units.values():
            self._unit_by_name.setdefault(unit.name, unit.id)
        self._levels = {lv.number: lv for lv in self.jur.policy.levels}
        per_level = Counter(u.level for u in self.units.values())
        self._sole_unit = {u.level: u for u in self.units.values() if per_level[u.level] == 1}
        # the parts of a decision fixed per version, as the (frozen) models a decision holds: validating a decision
        # takes a model as it is, where a dict is validated field by field (most of a decision's validation)
        self._departments = {d.id: DepartmentParty(id=d.id, name=d.name) for d in self.jur.policy.departments}
        self._type_refs = {code: ProblemTypeRef(code=code, name=name) for code, name in self._names.items()}
        self._grids: dict[tuple[int, str | None], GridParty] = {}
        self._trace = self._trace_entries()
        self._escalation_trace = {r.id: self._trace[r.id].model_copy(update={"phase": "escalation"})
                                  for r in self.jur.policy.rules}
        self._chains: dict[str, list[Unit]] = {}
        self._action_entries: dict[int, dict] = {}
        # the compact forms, less their times, that `expand` gave back exactly for a decision `route` made (see compact)
        self._round_trips: set[tuple] = set()
        # per workflow, the fixed part of each deadline entry: only the due time varies per case
        self._plans = {w.id: [(step, {"step": step.id, "name": step.name, "actor": step.actor,
                                      "duration": _iso_duration(step.deadline.duration),
                                      "calendar": step.deadline.calendar.value, "source": step.deadline.provenance},
                               step.deadline.duration, step.deadline.calendar) for step in w.steps]
                       for w in self.jur.policy.workflows}

    def _trace_entries(self) -> dict[str, TraceEntry]:
        """Trace lines are fixed per rule: built once, shared by every decision."""
        policy = self.jur.policy
        entries: dict[str, dict[str, Any]] = {
            f"{TYPE_PREFIX}{t.code}": {"rule": f"{TYPE_PREFIX}{t.code}",
                                       "name": f"问题类型 {self._names[t.code]} 由第{t.level}级网格处置",
                                       "source": t.provenance} for t in policy.problem_types}
        entries.update({r.id: {"rule": r.id, "name": r.name, "priority": r.priority, "source": r.provenance}
                        for r in policy.rules})
        entries.update({f"{WORKFLOW_PREFIX}{w.id}": {"rule": f"{WORKFLOW_PREFIX}{w.id}", "name": w.name,
                                                      "source": w.provenance} for w in policy.workflows})
        return {key: TraceEntry.model_validate(entry) for key, entry in entries.items()}

    # --- resolving the case's words to the policy's objects
    def resolve_type(self, text: str) -> ProblemType:
        code = text if text in self._names else self._by_name.get(text.strip())
        fired = self.compiled.types.fire_message(self._type_messages[code]) if code else []
        if len(fired) != 1:
            raise RoutingError("problem_type", f"未知的问题类型 unknown problem type '{text}' (辖区 {self.jur.id})",
                               close_matches(text, self._names))
        return self.compiled.types_by_code[fired[0][len(TYPE_PREFIX):]]

    def resolve_unit(self, text: str, field_name: str = "unit") -> Unit:
        uid = text if text in self.units else self._unit_by_name.get(text.strip())
        if uid is None:
            raise RoutingError(field_name, f"网格单元 '{text}' 不属于辖区 {self.jur.id} — unknown unit",
                               self.jur.unit_index.close_matches(text, limit=3))
        return self.units[uid]

    def ancestors(self, unit: Unit) -> list[Unit]:
        chain = self._chains.get(unit.id)
        if chain is None:
            chain = [unit]
            while chain[-1].parent is not None:
                chain.append(self.units[chain[-1].parent])
            self._chains[unit.id] = chain
        return chain

    def ancestor_at(self, unit: Unit | None, level: int) -> Unit | None:
        """The grid at `level` above `unit`; below it only the level's sole unit is determined."""
        if unit is not None and unit.level >= level:
            return self.ancestors(unit)[unit.level - level]
        return self._sole_unit.get(level)

    def common_ancestor(self, units: list[Unit]) -> Unit | None:
        chains = [self.ancestors(u) for u in units]
        shared = set(u.id for u in chains[0]).intersection(*[{u.id for u in c} for c in chains[1:]])
        return next((u for u in chains[0] if u.id in shared), None)

    def finder(self, case: Case) -> tuple[int | None, Unit | None]:
        """Who found the case: `unit` is the grid where the problem is, found by that grid itself or, with
        `found_at_level` above it, by its ancestor at that level (an upper grid's patrol)."""
        place = self.resolve_unit(case.unit) if case.unit else None
        if place is None or case.found_at_level is None:
            return (place.level, place) if place else (case.found_at_level, None)
        if case.found_at_level > place.level:
            raise RoutingError("found_at_level", f"发现层级 {case.found_at_level} 低于问题所在网格 {place.name} 的层级 "
                               f"{place.level}; found_at_level 是发现问题的上级网格的层级, unit 是问题所在网格")
        return case.found_at_level, self.ancestor_at(place, case.found_at_level)

    # --- the decision
    def route(self, case: Case) -> Decision:
        ptype = self.resolve_type(case.problem_type)
        found = self.resolve_unit(case.unit) if case.unit else None  # where the problem is
        involved = [self.resolve_unit(u, "units_involved") for u in case.units_involved]
        if found is not None and found not in involved and involved:
            involved.insert(0, found)
        found_level, finder_unit = self.finder(case)
        if found_level is None:
            found_level = max(self._levels) if not involved else max(u.level for u in involved)
        if found_level not in self._levels:
            raise RoutingError("found_at_level", f"层级 {found_level} 不存在; 本辖区层级为 {sorted(self._levels)}")
        ancestor = self.common_ancestor(involved) if len(involved) > 1 else None
        facts = DEFAULT_FACTS | case.facts | self._features[ptype.code] | {
            "problem_type": ptype.code,
            "entry": entry_of(found_level, type_level(ptype)),
            "cross_boundary": bool(ancestor is not None and ancestor.level < type_level(ptype)),
            "found_level": found_level,
        }
        ev = evaluate(self.compiled, facts)
        anchor = found or (involved[0] if involved else None)
        handler_unit: Unit | None
        if ev.to_common_ancestor and ancestor is not None and ancestor.level < ev.handler_level:
            handler_level, handler_unit = ancestor.level, ancestor
        else:
            handler_level = ev.handler_level
            handler_unit = self.ancestor_at(anchor, handler_level)
        finder, handler = self._grid(found_level, finder_unit), self._grid(handler_level, handler_unit)
        when = case.reported_at or self.clock()
        # the grids a cross-boundary case involves, at the handling level (协商共同完成)
        at_level = {u.id: u for u in (self.ancestor_at(u, handler_level) for u in involved) if u is not None}
        grids = [self._grid(handler_level, u) for u in at_level.values()]
        actions = [a for rule, action in ev.actions
                   for a in self._actions(rule, action, ptype, finder, handler, grids, when)]
        closed = any(a["kind"] == "record_close" for a in actions)
        deadlines, handling_due, handling_step = ([], None, None) if closed else self._deadlines(ev.workflow, when)
        escalation, esc_trace = ([], []) if closed or handling_due is None else self._escalation(
            facts, handler_level, handler_unit, handling_due, handling_step)
        trace = [self._trace[f"{TYPE_PREFIX}{ptype.code}"]]
        trace += [self._trace[r.id] for r in ev.applied]
        if ev.workflow is not None and not closed:
            trace.append(self._trace[f"{WORKFLOW_PREFIX}{ev.workflow.id}"])
        trace += esc_trace
        return Decision.model_validate({
            "jurisdiction": self.jur.id,
            "policy_version": self.compiled.version,
            "problem_type": self._type_refs[ptype.code],
            "handler": {"level": handler_level, "unit": handler_unit.id if handler_unit else None,
                        "unit_name": handler_unit.name if handler_unit else None,
                        "departments": [self._departments[d] for d in ptype.departments]},
            "first_action": actions[0]["kind"] if actions else None,
            "actions": actions,
            "workflow": ev.workflow.id if ev.workflow is not None and not closed else None,
            "deadlines": deadlines,
            "escalation_path": escalation,
            "trace": trace,
        })

    # --- a stored decision keeps what this version cannot restate (#17: ~9 KB → under 2 KB a case)
    def compact(self, decision: Decision, routed: bool = False) -> dict:
        """The decision as ids, levels and due times: names, labels, reasons and quotes come back from this version
        (content-addressed, so they are the texts that decided) in `expand`. A decision `expand` would not give back
        exactly is kept whole. `routed`: the decision is this router's own `route` answer, whose every other field
        is this version's text for what the compact form keeps; its times are copied both ways, so once one such form
        came back exactly, another that differs only in its times does too, and is not expanded again."""
        rules = {r.id: r for r in self.jur.policy.rules}
        actions = []
        for a in decision.actions:
            fixed = {k: getattr(a, k) for k in ("kind", "label", "reason", "rule", "parallel")}
            rule = rules.get(a.rule)
            index = next((i for i, act in enumerate(rule.then.actions) if self._action_entry(rule, act) == fixed),
                         None) if rule else None
            if index is None:
                return decision.model_dump(mode="json")
            actions.append([a.rule, index, _party_ref(a.by), _party_ref(a.to), a.within.due if a.within else None])
        stored = {"compact": 1, "jurisdiction": decision.jurisdiction, "policy_version": decision.policy_version,
                  "problem_type": decision.problem_type.code,
                  "handler": [decision.handler.level, decision.handler.unit],
                  "first_action": decision.first_action, "actions": actions, "workflow": decision.workflow,
                  "deadlines": [d.due for d in decision.deadlines],
                  "escalation_path": [[h.level, h.unit, h.after, h.rule] for h in decision.escalation_path],
                  "trace": [[t.rule, t.phase] if t.phase else t.rule for t in decision.trace]}
        shape = _without_times(stored) if routed else None
        if shape in self._round_trips:
            return stored
        try:
            same = self.expand(stored) == decision
        except (KeyError, IndexError, ValueError):
            same = False
        if not same:
            return decision.model_dump(mode="json")
        if shape is not None:
            if len(self._round_trips) >= ROUND_TRIPS:  # bounded: a version with many units has many shapes
                self._round_trips.clear()
            self._round_trips.add(shape)
        return stored

    def restore(self, stored: dict) -> Decision:
        """The whole decision from what `compact` stored: its compact form, or the decision kept whole."""
        return self.expand(stored) if stored.get("compact") else Decision.model_validate(stored)

    def expand(self, stored: dict) -> Decision:
        """The whole decision from `compact`'s form."""
        rules = {r.id: r for r in self.jur.policy.rules}
        code = stored["problem_type"]
        level, unit = stored["handler"]
        actions = []
        for rule_id, index, by, to, due in stored["actions"]:
            rule = rules[rule_id]
            action = rule.then.actions[index]
            within = None
            if due is not None:
                within = {"duration": _iso_duration(action.within.duration), "calendar": action.within.calendar.value,
                          "due": due, "source": action.within.provenance}
            actions.append(self._action_entry(rule, action) | {"by": self._party_of(by), "to": self._party_of(to),
                                                                "within": within})
        plan = self._plans[stored["workflow"]] if stored["workflow"] else []
        departments = self.compiled.types_by_code[code].departments
        return Decision.model_validate({
            "jurisdiction": stored["jurisdiction"], "policy_version": stored["policy_version"],
            "problem_type": self._type_refs[code],
            "handler": {"level": level, "unit": unit, "unit_name": self.units[unit].name if unit else None,
                        "departments": [self._departments[d] for d in departments]},
            "first_action": stored["first_action"], "actions": actions, "workflow": stored["workflow"],
            "deadlines": [entry | {"due": due} for (_, entry, _, _), due in zip(plan, stored["deadlines"],
                                                                                    strict=True)],
            "escalation_path": [{"level": lv, "unit": u, "name": self.units[u].name if u else None, "after": after,
                                 "rule": rule} for lv, u, after, rule in stored["escalation_path"]],
            "trace": [self._trace[t] if isinstance(t, str) else self._escalation_trace[t[0]]
                      for t in stored["trace"]],
        })

    def _party_of(self, ref: list | dict | None) -> GridParty | DepartmentParty | dict | None:
        if isinstance(ref, list) and ref[0] == "grid":
            return self._grid(ref[1], self.units[ref[2]] if ref[2] else None)
        if isinstance(ref, list):
            return self._departments[ref[1]]
        return ref

    def _grid(self, level: int, unit: Unit | None) -> GridParty:
        key = (level, unit.id if unit else None)
        party = self._grids.get(key)
        if party is None:
            party = GridParty(level=level, unit=key[1], name=unit.name if unit else None)
            if len(self._grids) < GRID_PARTIES:
                self._grids[key] = party
        return party

    def _party(self, party: str, ptype: ProblemType, finder: GridParty, handler: GridParty,
               involved: list[GridParty]) -> list:
        if party == "finder":
            return [finder]
        if party == "involved":
            return involved or [finder]
        if party == "competent":
            return [_COMPETENT]
        if party == "head":
            return [HeadParty(name=self._levels[finder.level].head_role, of=finder.name or f"第{finder.level}级网格")]
        if party == "handler":
            return [handler]
        if party == "departments":
            return [self._departments[d] for d in ptype.departments]
        if party.startswith("department:"):
            return [self._departments[party.split(":", 1)[1]]]
        if party == "leader":
            return [LeaderParty(name="包抓领导", of=handler.name or f"第{handler.level}级网格")]
        level = max(1, handler.level - 1) if party == "upper" else int(party.split(":", 1)[1])
        return [self._grid(level, self.ancestor_at(self.units.get(handler.unit or ""), level))]

    def _actions(self, rule: Rule, action: Action, ptype: ProblemType, finder: GridParty, handler: GridParty,
                 involved: list[GridParty], when: datetime) -> list[dict]:
        fixed = self._action_entry(rule, action)
        by = self._party(action.by, ptype, finder, handler, involved)[0]
        targets = self._party(action.to, ptype, finder, handler, involved) if action.to else [None]
        within = None
        if action.within is not None:  # the action's own deadline (立即报告, 及时上报)
            limit = action.within
            within = {"duration": _iso_duration(limit.duration), "calendar": limit.calendar.value,
                      "due": self.calendar.add(when, limit.duration, limit.calendar).isoformat(),
                      "source": limit.provenance}
        return [fixed | {"by": by, "to": to, "within": within} for to in targets]

    def _action_entry(self, rule: Rule, action: Action) -> dict:
        fixed = self._action_entries.get(id(action))
        if fixed is None:  # the rule's own words, built once per action
            reason = rule.name + (f" ({action.note})" if action.note else "")
            fixed = self._action_entries[id(action)] = {
                "kind": action.kind.value, "label": ACTION_LABELS[action.kind.value], "reason": reason, "rule": rule.id,
                "parallel": action.parallel}
        return fixed

    def _deadlines(self, workflow: Workflow | None, start: datetime):
        if workflow is None:
            return [], None, None
        out, due, handling_due, handling_step = [], start, None, None
        # natural steps add inline: one call less per step on the routing hot path (see bench/results.json)
        add, natural = self.calendar.add, CalendarKind.natural
        for step, entry, duration, calendar in self._plans[workflow.id]:
            due = due + duration if calendar is natural else add(due, duration, calendar)
            out.append(entry | {"due": due.isoformat()})
            if step.handling and handling_due is None:
                handling_due, handling_step = due, step
        return out, handling_due, handling_step

    def _escalation(self, facts: dict, level: int, unit: Unit | None, due: datetime, step) -> tuple[list, list]:
        """Who takes over each time the handling deadline is missed, until level 1."""
        path, trace = [], []
        for hop in escalation_chain(self.compiled, level, facts):
            unit = self.ancestor_at(unit, hop.to_level)
            path.append({"level": hop.to_level, "unit": unit.id if unit else None, "name": unit.name if unit else None,
                         "after": due.isoformat(), "rule": hop.rule.id})
            trace.append(self._escalation_trace[hop.rule.id])
            due = self.calendar.add(due, step.deadline.duration, step.deadline.calendar)
        return path, trace


_COMPETENT = CompetentBodyParty(name="有相应监管权限的部门或机关")


def _without_times(stored: dict) -> tuple:
    """`compact`'s form without its due times (hashable): whether an action has one stays, it is the rule's."""
    return (stored["jurisdiction"], stored["policy_version"], stored["problem_type"], tuple(stored["handler"]),
            stored["first_action"], stored["workflow"], len(stored["deadlines"]),
            tuple((rule, index, _frozen(by), _frozen(to), due is None)
                  for rule, index, by, to, due in stored["actions"]),
            tuple((level, unit, rule) for level, unit, _, rule in stored["escalation_path"]),
            tuple(t if isinstance(t, str) else tuple(t) for t in stored["trace"]))


def _frozen(ref: list | dict | None) -> tuple | None:
    return None if ref is None else tuple(ref.items() if isinstance(ref, dict) else ref)


def _party_ref(party) -> list | dict | None:
    """A grid or a department by id (its name is the version's); the other parties as they are."""
    if party is None:
        return None
    if party.kind == "grid":
        return ["grid", party.level, party.unit]
    if party.kind == "department":
        return ["department", party.id]
    return party.model_dump(mode="json")


@dataclass(frozen=True)
class Hop:
    """One escalation step: the deadline rule that hands a case held at `from_level` to `to_level`."""
    rule: Rule
    from_level: int
    to_level: int


def escalation_hop(compiled: CompiledPolicy, level: int, facts: dict) -> Hop | None:
    """The deadline rule that fires for a case held at `level` (a phase of its own: stop rules of the intake
    phase do not block it). Memoised on the facts the deadline rules test: the rules table decides once per
    distinct combination."""
    key = (level, tuple(facts.get(name) for name in compiled.deadline_facts))
    if key not in compiled.escalation_cache:
        fired = evaluate(compiled, DEFAULT_FACTS | facts | {"deadline_missed": True, "handler_level": level,
                                                             "entry": "at", "cross_boundary": False,
                                                             "found_level": level}).fired
        hop = next(((r, to) for r in fired if (to := escalation_target(r, level)) is not None), None)
        compiled.escalation_cache[key] = Hop(hop[0], level, hop[1]) if hop else None
    return compiled.escalation_cache[key]


def escalation_chain(compiled: CompiledPolicy, level: int, facts: dict) -> list[Hop]:
    """The hops a case with `facts` held at `level` takes as deadlines keep being missed, up to level 1: one
    definition for routing, verification and the escalation graph. Stops where no deadline rule applies or a
    hop would not move strictly up (validation refuses such rules; verification reports where a chain stops)."""
    chain: list[Hop] = []
    while level > 1:
        hop = escalation_hop(compiled, level, facts)
        if hop is None or hop.to_level >= level:
            break
        chain.append(hop)
        level = hop.to_level
    return chain


def _iso_duration(delta: timedelta) -> str:
    days, seconds = delta.days, delta.seconds
    hours, rem = divmod(seconds, 3600)
    minutes = rem // 60
    out = "P" + (f"{days}D" if days else "")
    if hours or minutes or not days:
        out += "T" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes or not hours else "")
    return out
