"""Compile a resolved policy into durable-rules rulesets (their JSON form), generated from the YAML.

Two tables per policy version, named `<jurisdiction>@<content hash>#…`:
- `#types`: one rule per problem type, matched on the type code (which type, with its handler);
- `#rules`: the jurisdiction's routing/escalation rules and workflow selectors, matched on the case's
  facts plus the attributes of the type found by the first table.
One rule per type plus a small modifier table is far faster than a rule per modifier combination.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from engine.runtime import Ruleset
from policy.facts import BOOLEAN_FACTS
from policy.loader import Jurisdiction
from policy.models import Condition, ProblemType, Rule, Workflow

TYPE_PREFIX = "type:"
RULE_PREFIX = "rule:"
WORKFLOW_PREFIX = "workflow:"
_ALWAYS = {"kind": "case"}  # every asserted fact carries it; an empty condition matches on it


def _condition(cond: Condition | None) -> dict:
    terms: list[dict] = [_ALWAYS] + [{name: value} for name, value in sorted((cond.tests if cond else {}).items())]
    if cond is not None and cond.any:
        terms.append({"$or": [{"$and": [_ALWAYS] + [{k: v} for k, v in sorted(group.items())]}
                              for group in cond.any]})
    return {"$and": terms} if len(terms) > 1 else terms[0]


def types_definition(jur: Jurisdiction) -> dict:
    return {f"{TYPE_PREFIX}{t.code}": {"all": [{"m": {"$and": [_ALWAYS, {"problem_type": t.code}]}}]}
            for t in jur.policy.problem_types}


def rules_definition(jur: Jurisdiction) -> dict:
    definition = {f"{RULE_PREFIX}{r.id}": {"all": [{"m": _condition(r.when)}], "pri": r.priority}
                  for r in jur.policy.rules}
    for wf in jur.policy.workflows:
        definition[f"{WORKFLOW_PREFIX}{wf.id}"] = {"all": [{"m": _condition(wf.when)}], "pri": 1000}
    return definition


@dataclass
class CompiledPolicy:
    jurisdiction: Jurisdiction
    types: Ruleset
    rules: Ruleset
    escalation_cache: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.jurisdiction.id

    @property
    def version(self) -> str:
        return self.jurisdiction.content_hash

    @property
    def ruleset_name(self) -> str:
        return f"{self.id}@{self.version}"

    @cached_property
    def types_by_code(self) -> dict[str, ProblemType]:
        return {t.code: t for t in self.jurisdiction.policy.problem_types}

    @cached_property
    def rules_by_name(self) -> dict[str, Rule]:
        """Keyed by the name the rule has in the ruleset, as `fire` reports it."""
        return {f"{RULE_PREFIX}{r.id}": r for r in self.jurisdiction.policy.rules}

    @cached_property
    def workflows_by_id(self) -> dict[str, Workflow]:
        return {w.id: w for w in self.jurisdiction.policy.workflows}

    @cached_property
    def tested_facts(self) -> list[str]:
        """Facts any rule or workflow selector tests, in a stable order (what verification enumerates)."""
        names: set[str] = set()
        for rule in self.jurisdiction.policy.rules:
            names |= rule.when.facts()
        for wf in self.jurisdiction.policy.workflows:
            if wf.when is not None:
                names |= wf.when.facts()
        return sorted(names)

    @cached_property
    def keeps_finder(self) -> bool:
        """Whether some rule hands the case to the grid that found it (the outcome then depends on it)."""
        return any(r.then.handler is not None and r.then.handler.to == "finder" for r in self.jurisdiction.policy.rules)

    @cached_property
    def deadline_facts(self) -> list[str]:
        """Facts the deadline-escalation rules test: the key of the escalation memo."""
        names: set[str] = set()
        for rule in self.jurisdiction.policy.rules:
            if rule.when.tests.get("deadline_missed") is True:
                names |= rule.when.facts()
        return sorted(names - {"deadline_missed", "handler_level"})

    def close(self) -> None:
        self.types.close()
        self.rules.close()


def compile_policy(jur: Jurisdiction) -> CompiledPolicy:
    name = f"{jur.id}@{jur.content_hash}"
    types = Ruleset(f"{name}#types", types_definition(jur))
    try:
        rules = Ruleset(f"{name}#rules", rules_definition(jur))
    except Exception:
        types.close()
        raise
    return CompiledPolicy(jur, types, rules)


def default_facts() -> dict:
    return {name: False for name in BOOLEAN_FACTS} | {"enterprise_class": "none"}
