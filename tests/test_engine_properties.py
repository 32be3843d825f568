"""Invariants, for every bundled jurisdiction and for generated policies: one handler from every entry
level, determinism, terminating escalation, and agreement with an independent reference evaluator."""
from __future__ import annotations

import copy
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.compiler import compile_policy, default_facts
from engine.router import Case, PolicyRouter, entry_of, evaluate, type_features
from policy.errors import PolicyError
from policy.facts import CASE_FACTS
from policy.loader import Loader
from tests.reference import reference_evaluate, reference_workflow
from tests.strategies import MUTATIONS, policies

WHEN = datetime(2026, 9, 28, 9, 0, tzinfo=timezone.utc)  # just before the National Day holiday


def check_invariants(router: PolicyRouter, facts: dict | None = None) -> None:
    jur = router.jur
    levels = sorted(lv.number for lv in jur.policy.levels)
    for ptype in jur.policy.problem_types:
        for level in levels:
            unit = jur.units_at(level)[0]
            case = Case(problem_type=ptype.code, unit=unit.id, facts=facts or {}, reported_at=WHEN)
            decision = router.route(case)
            handler = decision.handler
            assert handler.level in levels
            if level >= handler.level or len(jur.units_at(handler.level)) == 1:
                assert handler.unit in jur.units and jur.units[handler.unit].level == handler.level
            else:  # found above the handling level: which lower grid handles it needs units_involved
                assert handler.unit is None
            assert decision == router.route(case), "routing must be deterministic"
            path = [hop.level for hop in decision.escalation_path]
            assert path == sorted(path, reverse=True) and len(set(path)) == len(path)
            assert len(path) < len(levels)
            if path:
                assert path[-1] == 1, "missed deadlines climb to level 1"


def test_bundled_every_type_from_every_level(bundled):
    for jur in bundled.values():
        router = PolicyRouter(compile_policy(jur))
        check_invariants(router)
        check_invariants(router, {"persuasion_failed": True, "suspected_crime": True})


def _build(tmp_path_factory, data: dict):
    import shutil

    import yaml

    from tests.conftest import BUNDLED
    root = tmp_path_factory.mktemp("gen")
    for name in ("_catalog.yaml", "_common.yaml"):
        shutil.copy(BUNDLED / name, root / name)
    (root / "generated.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return Loader(root).build("generated")


SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(policies())
def test_generated_policies_route_every_type(tmp_path_factory, data):
    check_invariants(PolicyRouter(compile_policy(_build(tmp_path_factory, data))))


@SETTINGS
@given(policies(), st.data())
def test_durable_rules_agree_with_reference_evaluator(tmp_path_factory, data, draw):
    jur = _build(tmp_path_factory, data)
    compiled = compile_policy(jur)
    for ptype in jur.policy.problem_types:
        found = draw.draw(st.integers(1, len(jur.policy.levels)))
        facts = default_facts() | {name: draw.draw(st.booleans()) for name in CASE_FACTS} | type_features(ptype) | {
            "problem_type": ptype.code, "entry": entry_of(found, ptype.level),
            "cross_boundary": draw.draw(st.booleans())}
        ev = evaluate(compiled, facts)
        applied, level, to_ancestor = reference_evaluate(jur.policy, facts)
        assert [r.id for r in ev.applied] == applied
        assert (ev.handler_level, ev.to_common_ancestor) == (level, to_ancestor)
        assert (ev.workflow.id if ev.workflow else None) == reference_workflow(jur.policy, facts)


def test_bundled_agree_with_reference_on_all_tested_fact_combinations(bundled):
    from engine.verify import combinations
    for jur in bundled.values():
        compiled = compile_policy(jur)
        profiles = {tuple(type_features(t).items()): t for t in jur.policy.problem_types}
        for ptype in profiles.values():  # types with equal features behave identically in the rules table
            for _, facts in combinations(compiled, ptype):
                ev = evaluate(compiled, facts)
                applied, level, _ = reference_evaluate(jur.policy, facts)
                assert ([r.id for r in ev.applied], ev.handler_level) == (applied, level), (jur.id, facts)


@SETTINGS
@given(policies(), st.sampled_from(MUTATIONS))
def test_mutations_are_rejected(tmp_path_factory, data, mutate):
    bad = copy.deepcopy(data)
    mutate(bad)
    with pytest.raises(PolicyError) as info:
        _build(tmp_path_factory, bad)
    assert all(issue.file and issue.file.endswith("generated.yaml") for issue in info.value.issues)
