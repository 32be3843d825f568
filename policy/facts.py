"""The vocabulary rule conditions may test: case facts sent by intake, and facts the engine derives."""
from __future__ import annotations

# Boolean facts an intake system reports about a case.
CASE_FACTS: dict[str, str] = {
    "persuasion_failed": "告知劝阻无效",
    "persuasion_impossible": "无法告知劝阻",
    "corrected_on_site": "已现场纠正",
    "suspected_crime": "涉嫌环境犯罪",
    "major": "重大或区域性问题",
    "beyond_authority": "超出本级监管权限",
    "inside_reserve": "位于自然保护区内",
    "no_platform": "无数字化城管平台",
    "verification_failed": "现场核查未解决",
    "deadline_missed": "超过办理时限",
    "leader_ordered_joint": "网格责任领导决定联合执法",
}

# Facts with a fixed set of values.
ENUM_FACTS: dict[str, tuple[str, dict[str, str]]] = {
    "enterprise_class": ("污染源监管类别", {
        "none": "未分类", "A": "A类(简化管理)", "B": "B类(常规管理)", "C": "C类(强化管理)"}),
    "entry": ("发现层级相对处置层级", {"below": "下级网格发现", "at": "处置层级发现", "above": "上级网格发现"}),
}

# Facts the engine derives from the problem type, the units and the case facts.
DERIVED_FACTS: dict[str, str] = {
    "persuade_first": "须先告知劝阻",
    "cross_boundary": "跨界问题",
    "multi_department": "涉及多个职能部门",
    "has_department": "有责任职能部门",
    "assist_only": "本级只报告并协助处置",
}

# Integer facts: the level currently holding the case.
LEVEL_FACTS: dict[str, str] = {"handler_level": "当前处置网格层级"}

BOOLEAN_FACTS = {**CASE_FACTS, **DERIVED_FACTS}
ALL_FACTS = sorted([*BOOLEAN_FACTS, *ENUM_FACTS, *LEVEL_FACTS])


def fact_label(name: str) -> str:
    if name in BOOLEAN_FACTS:
        return BOOLEAN_FACTS[name]
    if name in ENUM_FACTS:
        return ENUM_FACTS[name][0]
    return LEVEL_FACTS.get(name, name)
