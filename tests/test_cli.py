"""The `gridpolicy` command as a user runs it: a real process, exit codes and output."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

GRIDPOLICY = [str(Path(sys.executable).parent / "gridpolicy")]


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os
    return subprocess.run(GRIDPOLICY + list(args), capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_validate_bundled_exits_zero():
    result = run("validate")
    assert result.returncode == 0, result.stderr
    assert "校验通过" in result.stdout


def test_validate_reports_every_error_and_exits_one(policy_dir):
    data = policy_dir.read()
    data["problem_types"][0]["level"] = 9
    data["problem_types"][1]["departments"] = ["nobody"]
    policy_dir.write(data)
    result = run("validate", str(policy_dir.root))
    assert result.returncode == 1
    assert "karamay.yaml" in result.stderr and "problem_types[0].level" in result.stderr
    assert "problem_types[1].departments" in result.stderr and "共 2 个错误" in result.stderr
    assert "Traceback" not in result.stderr


def test_list_prints_levels_units_and_types():
    result = run("list")
    assert result.returncode == 0, result.stderr
    assert "karamay" in result.stdout and "网格    77" in result.stdout


def test_show_json_is_the_resolved_policy():
    result = run("show", "karamay", "--json")
    data = json.loads(result.stdout)
    assert data["id"] == "karamay" and data["unit_count"] == 85
    assert "deadline_escalate" in [r["id"] for r in data["rules"]]  # inherited from _common


def test_route_prints_decision_with_quotes():
    result = run("route", "karamay", "--type", "医疗废物处置", "--unit", "kmy-l3-01")
    assert result.returncode == 0, result.stderr
    assert "处置网格: 第2级" in result.stdout
    assert "「乡、街道重点监管范围和对象主要包括医疗废物和废水处置」" in result.stdout


def test_route_json_and_fact():
    result = run("route", "karamay", "--type", "waste.medical.disposal", "--unit", "kmy-l3-01",
                 "--fact", "corrected_on_site=true", "--json")
    decision = json.loads(result.stdout)
    assert decision["first_action"] == "record_close" and decision["deadlines"] == []


@pytest.mark.parametrize("args, field", [
    (["--type", "医疗废弃物", "--unit", "kmy-l3-01"], "problem_type"),
    (["--type", "医疗废物处置", "--unit", "nowhere"], "unit"),
    (["--type", "医疗废物处置", "--fact", "persuasion=true"], "facts"),
])
def test_route_bad_input_is_a_clear_error(args, field):
    result = run("route", "karamay", *args)
    assert result.returncode == 2 and field in result.stderr and "Traceback" not in result.stderr


def test_coverage_prints_matrix_and_exits_zero():
    result = run("coverage", "karamay")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "医疗废物处置" in result.stdout and "问题 0 个" in result.stdout


def test_coverage_exits_one_on_unreachable_rule(policy_dir):
    data = policy_dir.read()
    data["rules"].append({"id": "never", "name": "永不命中", "priority": 15,
                          "when": {"entry": "below", "handler_level": 3},  # no type is handled at level 3
                          "then": {"actions": [{"kind": "report", "by": "finder", "to": "handler"}]},
                          "assumption": "测试"})
    policy_dir.write(data)
    result = run("coverage", "karamay", env={"GRIDPOLICY_JURISDICTIONS": str(policy_dir.root)})
    assert result.returncode == 1 and "规则 never" in result.stdout and "unreachable" in result.stdout


def test_units_import_replaces_placeholders_or_changes_nothing(policy_dir, tmp_path):
    env = {"GRIDPOLICY_JURISDICTIONS": str(policy_dir.root)}
    good = tmp_path / "good.csv"
    rows = ["id,name,level,parent"] + [f"street{i},真实街道{i},2,kmy" for i in range(7)]
    good.write_text("\n".join(rows) + "\n", encoding="utf-8")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,name,level,parent\nstreet0,真实街道0,2,kmy\n", encoding="utf-8")

    result = run("units", "import", "karamay", str(bad), env=env)
    assert result.returncode == 1 and "声明 7 个网格, 实有 1 个" in result.stderr
    assert not (policy_dir.root / "karamay.units.csv").exists()

    # the level-3 placeholders hang under the replaced level-2 ids, so a full import must replace both
    result = run("units", "import", "karamay", str(good), env=env)
    assert result.returncode == 1 and "不存在" in result.stderr
    rows += [f"village{i},真实村{i},3,street{i % 7}" for i in range(77)]
    good.write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = run("units", "import", "karamay", str(good), env=env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(run("show", "karamay", "--json", env=env).stdout)
    assert shown["unit_count"] == 85
    decision = json.loads(run("route", "karamay", "--type", "医疗废物处置", "--unit", "真实村8", "--json",
                              env=env).stdout)
    assert decision["handler"]["unit_name"] == "真实街道1"


def test_simulate_then_assess(tmp_path):
    env = {"GRIDPOLICY_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    simulated = run("simulate", "ningjiaping", "--cases", "80", "--days", "180", "--seed", "3", env=env)
    assert simulated.returncode == 0, simulated.stderr
    assert "cases=80" in simulated.stdout
    result = run("assess", "ningjiaping", "--period", "2026-Q2", "--json", "--xlsx", str(tmp_path / "a.xlsx"), env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["score_window"]["label"] == "2026-01-01 至 2026-06-30" and (tmp_path / "a.xlsx").stat().st_size > 0
    # 篇一 五(三)「建立村级网格考核制度」: only the village grids (level 4) are scored
    assert all(0 <= u["score"] <= 12 if u["level"] == 4 else u["score"] is None for u in data["units"])
    bad = run("assess", "ningjiaping", "--period", "2026-Q9", env=env)
    assert bad.returncode == 2 and "格式不正确" in bad.stderr
