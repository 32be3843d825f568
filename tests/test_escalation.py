"""Escalation is worked out once (`engine.router.escalation_chain`): routing, verification and the escalation
graph agree, including for deadline rules conditioned on a case fact such as `major` (before, verification and
the graph used default facts only, so such a rule routed cases but was never drawn or verified)."""
from __future__ import annotations

import pytest

from admin.insight import escalation_graph
from engine.compiler import compile_policy
from engine.router import Case, PolicyRouter, escalation_chain
from engine.verify import escalation_edges, verify
from policy.loader import load_jurisdictions

MAJOR_TO_TOP = {"id": "major_deadline_to_district", "name": "重大问题超期直报区级网格", "priority": 10,
                "when": {"deadline_missed": True, "major": True, "handler_level": 2}, "then": {"handler": {"level": 1}},
                "assumption": "测试用: 重大问题超期直接交区级"}


@pytest.fixture
def compiled_with(policy_dir):
    made = []

    def build(*rules: dict, replace_default: dict | None = None):
        data = policy_dir.read()
        data["rules"] += list(rules)
        if replace_default is not None:  # karamay inherits `deadline_escalate` from _common: override it
            data["rules"].append(replace_default)
        policy_dir.write(data)
        compiled = compile_policy(load_jurisdictions(policy_dir.root)["karamay"])
        made.append(compiled)
        return compiled

    yield build
    for compiled in made:
        compiled.close()


def test_a_major_deadline_rule_is_routed_drawn_and_verified_alike(compiled_with):
    compiled = compiled_with(MAJOR_TO_TOP)
    assert [(h.rule.id, h.to_level) for h in escalation_chain(compiled, 3, {"major": True})] == [
        ("deadline_escalate", 2), ("major_deadline_to_district", 1)]
    assert [(h.rule.id, h.to_level) for h in escalation_chain(compiled, 3, {})] == [
        ("deadline_escalate", 2), ("deadline_escalate", 1)]

    router = PolicyRouter(compiled)
    unit = next(u for u in compiled.jurisdiction.units.values() if u.level == 3)
    ptype = next(t for t in compiled.jurisdiction.policy.problem_types if t.level == 2)
    for major, path in ((True, [(1, "major_deadline_to_district")]), (False, [(1, "deadline_escalate")])):
        decision = router.route(Case(problem_type=ptype.code, unit=unit.id, facts={"major": major}))
        assert decision.handler.level == 2
        assert [(e.level, e.rule) for e in decision.escalation_path] == path

    edges = {(e["from"], e["to"], e["rule"]): e for e in escalation_edges(compiled)}
    assert set(edges) == {(2, 1, "major_deadline_to_district"), (3, 2, "deadline_escalate"),
                          (2, 1, "deadline_escalate")}
    assert edges[2, 1, "major_deadline_to_district"]["when"] == {"major": True}
    drawn = [e for e in escalation_graph(compiled)["edges"] if e["rule"] == "major_deadline_to_district"]
    assert drawn and all(e["condition"] == "重大或区域性问题" for e in drawn)  # the condition in words
    assert verify(compiled).escalation == []


def test_verification_reports_a_chain_that_stops_only_for_major_cases(compiled_with):
    """Major cases go from level 3 to 2 and no deadline rule takes them further; others climb to level 1."""
    major_to_two = {**MAJOR_TO_TOP, "id": "major_to_township", "then": {"handler": {"level": 2}},
                    "when": {"deadline_missed": True, "major": True, "handler_level": 3}}
    not_major = {"id": "deadline_escalate", "name": "超期升级上一级网格", "priority": 90,
                 "when": {"deadline_missed": True, "major": False}, "then": {"handler": {"up": 1}},
                 "assumption": "测试用: 非重大问题逐级升级"}
    compiled = compiled_with(major_to_two, replace_default=not_major)
    problems = verify(compiled).escalation
    assert problems and all("major" in p for p in problems), problems
    assert any("第2级超期后没有升级规则" in p for p in problems)
    assert escalation_chain(compiled, 3, {"major": False})[-1].to_level == 1
