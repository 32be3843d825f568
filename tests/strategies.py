"""Hypothesis strategies: valid generated policies (as YAML-ready dicts) and mutations that must fail."""
from __future__ import annotations

import yaml
from hypothesis import strategies as st

CATALOG_CODES = sorted(yaml.safe_load(open(__import__("policy.loader", fromlist=["x"]).REPO_ROOT
                                          / "jurisdictions" / "_catalog.yaml", encoding="utf-8"))["types"])
ASSUME = "生成的测试策略"


@st.composite
def policies(draw) -> dict:
    """A valid jurisdiction extending _common: 2–4 levels, a unit tree, departments, typed rules."""
    n_levels = draw(st.integers(2, 4))
    levels = [{"number": n, "name": f"第{n}级网格", "unit_kind": "网格", "head_role": "网格长",
               "unit_counts": [], "assumption": ASSUME} for n in range(1, n_levels + 1)]
    units = [{"id": "root", "name": "一级网格", "level": 1, "assumption": ASSUME}]
    parents = ["root"]
    for n in range(2, n_levels + 1):
        count = draw(st.integers(1, 4))
        ids = [f"u{n}-{i}" for i in range(count)]
        units += [{"id": uid, "name": f"第{n}级网格{i}", "level": n, "parent": parents[i % len(parents)],
                   "assumption": ASSUME} for i, uid in enumerate(ids)]
        parents = ids
    departments = [{"id": f"d{i}", "name": f"部门{i}", "assumption": ASSUME} for i in range(draw(st.integers(1, 3)))]
    codes = draw(st.lists(st.sampled_from(CATALOG_CODES), min_size=1, max_size=8, unique=True))
    types = [{"code": code, "level": draw(st.integers(1, n_levels)),
              "departments": draw(st.lists(st.sampled_from([d["id"] for d in departments]), max_size=2, unique=True)),
              "persuade_first": draw(st.booleans()), "assumption": ASSUME} for code in codes]
    rules = []
    if draw(st.booleans()):
        rules.append({"id": "persuade", "name": "先劝阻", "priority": 10,
                      "when": {"entry": "below", "persuade_first": True, "persuasion_failed": False},
                      "then": {"actions": [{"kind": "persuade", "by": "finder"}], "stop": True}, "assumption": ASSUME})
    if draw(st.booleans()):
        rules.append({"id": "report", "name": "上报", "priority": 30, "when": {"entry": "below"},
                      "then": {"actions": [{"kind": "report", "by": "finder", "to": "handler"}]}, "assumption": ASSUME})
    if draw(st.booleans()):
        rules.append({"id": "cross", "name": "跨界上移", "priority": 5, "when": {"cross_boundary": True},
                      "then": {"handler": {"to": "common_ancestor"}}, "assumption": ASSUME})
    if draw(st.booleans()):
        rules.append({"id": "major", "name": "重大问题", "priority": 6, "when": {"major": True},
                      "then": {"handler": {"level": 1}}, "assumption": ASSUME})
    return {
        "id": "generated", "name": "生成辖区", "extends": "_common",
        "sources": [], "levels": levels, "units": units, "departments": departments,
        "problem_types": types, "rules": rules,
        "workflows": [{"id": "main", "name": "流程", "assumption": ASSUME, "steps": [
            {"id": "handle", "name": "处置", "actor": "处置网格", "handling": True, "assumption": ASSUME,
             "deadline": {"duration": f"P{draw(st.integers(1, 10))}D",
                          "calendar": draw(st.sampled_from(["natural", "working"])), "assumption": ASSUME}}]}],
    }


def _drop_type_level(p):
    del p["problem_types"][0]["level"]


def _bad_level(p):
    p["problem_types"][0]["level"] = len(p["levels"]) + 1


def _bad_department(p):
    p["problem_types"][0]["departments"] = ["nobody"]


def _orphan(p):
    p["units"][-1]["parent"] = "missing"


def _no_provenance(p):
    del p["departments"][0]["assumption"]


def _zero_deadline(p):
    p["workflows"][0]["steps"][0]["deadline"]["duration"] = "PT0S"


def _unknown_code(p):
    p["problem_types"][0]["code"] = "air.nothing.such"


def _downward_escalation(p):
    p["rules"].append({"id": "down", "name": "向下", "priority": 80, "when": {"deadline_missed": True},
                       "then": {"handler": {"level": len(p["levels"])}}, "assumption": ASSUME})


MUTATIONS = [_drop_type_level, _bad_level, _bad_department, _orphan, _no_provenance, _zero_deadline,
             _unknown_code, _downward_escalation]
