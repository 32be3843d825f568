"""Verification still reports every combination's problem with its own description (the rules table is
evaluated once per distinct fact set)."""
from __future__ import annotations

from engine.compiler import compile_policy
from engine.verify import verify
from policy.loader import load_jurisdictions


def test_equal_priority_handler_changes_are_conflicts_at_every_entry_level(policy_dir):
    data = policy_dir.read()
    rule = {"priority": 50, "when": {"persuasion_failed": True}, "assumption": "测试用冲突规则"}
    data["rules"] += [{**rule, "id": "up_one", "name": "上移一级", "then": {"handler": {"up": 1}}},
                      {**rule, "id": "to_top", "name": "直达一级", "then": {"handler": {"level": 1}}}]
    policy_dir.write(data)
    compiled = compile_policy(load_jurisdictions(policy_dir.root)["karamay"])
    try:
        report = verify(compiled)
    finally:
        compiled.close()
    assert not report.ok
    conflicts = [c for c in report.conflicts if "up_one" in c and "to_top" in c]
    for level in (1, 2, 3):  # found at each level: a message naming where, with the fact that triggers it
        assert any(f"第{level}级发现" in c and "persuasion_failed" in c for c in conflicts), level
    assert not any("persuasion_failed" not in c.split(":")[0] for c in conflicts)
