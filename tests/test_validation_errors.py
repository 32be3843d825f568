"""One test per kind of policy mistake: the message names the file, the field and what is wrong."""
from __future__ import annotations

import pytest

from policy.errors import PolicyError
from policy.loader import Loader


def errors_for(policy_dir, jid: str = "karamay") -> list:
    loader = Loader(policy_dir.root)
    assert not loader.issues, loader.issues
    with pytest.raises(PolicyError) as info:
        loader.build(jid)
    return info.value.issues


def only(issues, needle: str):
    matching = [i for i in issues if needle in i.message]
    assert matching, f"no issue mentions {needle!r}: {[str(i) for i in issues]}"
    return matching[0]


def test_unknown_problem_code(policy_dir):
    data = policy_dir.read()
    data["problem_types"][0]["code"] = "waste.medical.disposl"
    path = policy_dir.write(data)
    issue = only(errors_for(policy_dir), "不在基础目录")
    assert issue.file == str(path) and issue.path == "problem_types[0].code" and issue.line
    assert "waste.medical.disposal" in issue.message  # names the close match


def test_handler_level_the_jurisdiction_lacks(policy_dir):
    data = policy_dir.read()
    data["problem_types"][2]["level"] = 5
    policy_dir.write(data)
    issue = only(errors_for(policy_dir), "层级 5 不存在")
    assert issue.path == "problem_types[2].level" and "[1, 2, 3]" in issue.message


def test_problem_type_without_handler(policy_dir):
    data = policy_dir.read()
    del data["problem_types"][1]["level"]
    policy_dir.write(data)
    assert only(errors_for(policy_dir), "没有处置层级").path == "problem_types[1]"


def test_undeclared_department(policy_dir):
    data = policy_dir.read()
    data["problem_types"][0]["departments"] = ["ecology_bureau", "housing"]
    policy_dir.write(data)
    issue = only(errors_for(policy_dir), "'housing' 未声明")
    assert issue.path == "problem_types[0].departments" and "ecology_bureau" in issue.message


def test_orphan_unit(policy_dir):
    data = policy_dir.read()
    data["units"].append({"id": "lost", "name": "孤立网格", "level": 2, "assumption": "测试"})
    data["levels"][1]["unit_counts"][0]["count"] = 8
    policy_dir.write(data)
    issue = only(errors_for(policy_dir), "缺少上级单元")
    assert issue.path == "units[1].parent"


def test_wrong_parent_level(policy_dir):
    data = policy_dir.read()
    data["unit_groups"][1]["parents"] = ["kmy"]
    policy_dir.write(data)
    assert only(errors_for(policy_dir), "wrong parent level")


def test_unit_cycle(policy_dir):
    data = policy_dir.read()
    data["units"] += [
        {"id": "a", "name": "甲", "level": 2, "parent": "b", "assumption": "测试"},
        {"id": "b", "name": "乙", "level": 2, "parent": "a", "assumption": "测试"},
    ]
    policy_dir.write(data)
    assert only(errors_for(policy_dir), "循环 cycle")


def test_count_contradicts_stated_count(policy_dir):
    data = policy_dir.read()
    data["unit_groups"][1]["generate"] = 76
    policy_dir.write(data)
    issue = only(errors_for(policy_dir), "声明 77 个网格, 实有 76 个")
    assert issue.path == "levels[2].unit_counts"


def test_non_positive_deadline(policy_dir):
    data = policy_dir.read()
    data["workflows"][0]["steps"][1]["deadline"]["duration"] = "PT0S"
    policy_dir.write(data)
    issue = only(errors_for(policy_dir), "时限必须为正")
    assert issue.path == "workflows[0].steps[1].deadline.duration"


def test_escalation_that_can_cycle(policy_dir):
    data = policy_dir.read()
    data["rules"].append({"id": "loop", "name": "超期退回三级", "priority": 80,
                          "when": {"deadline_missed": True, "handler_level": 2},
                          "then": {"handler": {"level": 3}}, "assumption": "测试"})
    path = policy_dir.write(data)
    issue = only(errors_for(policy_dir), "可能形成循环")
    # the path is in the resolved policy (inherited rules first); file and line point at the edit
    assert issue.file == str(path) and issue.path.endswith("then.handler") and "2 → 3" in issue.message
    assert path.read_text(encoding="utf-8").splitlines()[issue.line - 1].strip() == "level: 3"


def test_extends_cycle(policy_dir):
    common = policy_dir.read("_common.yaml")
    common["extends"] = "karamay"
    policy_dir.write(common, "_common.yaml")
    assert only(errors_for(policy_dir), "extends 形成循环").path == "extends"


def test_unknown_extends_parent(policy_dir):
    data = policy_dir.read()
    data["extends"] = "_township_missing"
    policy_dir.write(data)
    issue = only(errors_for(policy_dir), "不存在的辖区或模板")
    assert "_common" in issue.message


def test_missing_provenance(policy_dir):
    data = policy_dir.read()
    del data["departments"][0]["source"]
    policy_dir.write(data)
    issue = only(errors_for(policy_dir), "exactly one of `source` or `assumption`")
    assert issue.path == "departments[0]"


def test_quote_not_in_seed(policy_dir):
    data = policy_dir.read()
    data["problem_types"][0]["source"]["quote"] = "医疗废物由区长亲自处置"
    policy_dir.write(data)
    assert only(errors_for(policy_dir),
                "引文在 003_e40382d56c17d7bc.txt 中找不到").path == "problem_types[0].source.quote"


def test_unknown_field(policy_dir):
    data = policy_dir.read()
    data["problem_types"][0]["handler"] = 2
    policy_dir.write(data)
    assert only(errors_for(policy_dir), "未知字段").path == "problem_types[0].handler"


def test_unknown_fact_in_condition(policy_dir):
    data = policy_dir.read()
    data["rules"][0]["when"] = {"persuasion_faild": True}
    policy_dir.write(data)
    issue = only(errors_for(policy_dir), "未知的事实")
    assert "persuasion_failed" in issue.message


def test_duplicate_key_and_syntax_errors_name_the_line(policy_dir):
    path = policy_dir.root / "karamay.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "\nname: 重复\n", encoding="utf-8")
    loader = Loader(policy_dir.root)
    [issue] = loader.issues
    assert issue.file == str(path) and "duplicate key 'name'" in issue.message and issue.line > 100
    path.write_text("id: karamay\nlevels: [\n", encoding="utf-8")
    [issue] = Loader(policy_dir.root).issues
    assert "YAML 语法错误" in issue.message and issue.line


def test_id_must_match_file_name(policy_dir):
    data = policy_dir.read()
    policy_dir.write(data, "karamay2.yaml")
    assert any("与文件名 'karamay2' 不一致" in i.message for i in Loader(policy_dir.root).issues)


def test_valid_copy_loads(policy_dir):
    """The scratch copy itself is valid, so the failures above come from the mutations alone."""
    jur = Loader(policy_dir.root).build("karamay")
    assert len(jur.units) == 85
