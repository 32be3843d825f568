"""An independent reference evaluator for the tests: reads the policy's rules directly, no durable-rules."""
from __future__ import annotations

from policy.models import Condition, Policy


def matches(cond: Condition | None, facts: dict) -> bool:
    if cond is None:
        return True
    if any(facts.get(k) != v for k, v in cond.tests.items()):
        return False
    return not cond.any or any(all(facts.get(k) == v for k, v in group.items()) for group in cond.any)


def reference_evaluate(policy: Policy, facts: dict) -> tuple[list[str], int, bool]:
    """(ids of applied rules in order, handler level, moved to the common ancestor)."""
    level, to_ancestor, applied = facts["handler_level"], False, []
    for rule in sorted((r for r in policy.rules if matches(r.when, facts)), key=lambda r: (r.priority, r.id)):
        applied.append(rule.id)
        change = rule.then.handler
        if change is not None:
            if change.to == "common_ancestor":
                to_ancestor = True
            elif change.to == "finder":
                level = facts["found_level"]
            elif change.level is not None:
                level = change.level
            else:
                level = max(1, level - change.up)
        if rule.then.stop:
            break
    return applied, level, to_ancestor


def reference_workflow(policy: Policy, facts: dict) -> str | None:
    chosen = [w for w in policy.workflows if w.when is not None and matches(w.when, facts)]
    default = [w for w in policy.workflows if w.when is None]
    return (chosen or default or [None])[0].id if (chosen or default) else None
