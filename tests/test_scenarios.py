"""Scenarios taken from the seed texts, routed through the real engine."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from engine.compiler import compile_policy
from engine.router import Case, PolicyRouter

WHEN = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def routers(bundled):
    return {jid: PolicyRouter(compile_policy(jur)) for jid, jur in bundled.items()}


def route(routers, jid, problem_type, unit=None, level=None, **facts) -> dict:
    """The decision's JSON form, as an intake system reads it."""
    return routers[jid].route(Case(problem_type=problem_type, unit=unit, found_at_level=level, facts=facts,
                                   reported_at=WHEN)).model_dump(mode="json")


def departments(decision) -> set[str]:
    return {d["id"] for d in decision["handler"]["departments"]}


def kinds(decision) -> list[str]:
    return [a["kind"] for a in decision["actions"]]


def cited(decision) -> set[str]:
    return {t["source"].get("clause") for t in decision["trace"] if "clause" in t["source"]}


# --- Karamay (003): correct on the spot, else report at once; key targets handled by towns/streets
def test_karamay_corrected_on_the_spot_is_recorded_and_closed(routers):
    d = route(routers, "karamay", "医疗废物处置", "kmy-l3-10", corrected_on_site=True)
    assert kinds(d) == ["record_close"] and d["deadlines"] == [] and d["escalation_path"] == []


def test_karamay_uncorrected_is_reported_at_once_to_the_town(routers):
    # 五「立即报告本级网格长,并及时上报上一级网格」: the report to the town runs beside the one to the grid head
    d = route(routers, "karamay", "医疗废物处置", "kmy-l3-10")
    assert d["first_action"] == "report" and d["handler"]["level"] == 2
    to_town = next(a for a in d["actions"] if a["kind"] == "report" and a["to"].get("level") == 2)
    assert to_town["parallel"] and to_town["to"]["unit"] == routers["karamay"].units["kmy-l3-10"].parent
    assert d["deadlines"][0]["duration"] == "PT2H" and "五" in cited(d)
    assert [hop["level"] for hop in d["escalation_path"]] == [1]


# --- Hefei (001): platform workflow, persuade or report, major cases to the city, no-platform path
def test_hefei_platform_workflow_has_the_six_case_steps(routers):
    # 六(一) names eight steps; 7 综合评价 and 8「定期对环保网格员工作开展情况进行绩效考核」 are periodic, so a
    # case closes at 核实结项 (they used to add ~35 days to every case)
    d = route(routers, "hefei", "air.dust.general", level=4)
    steps = ["信息采集", "事件立卷", "任务派遣", "任务处理", "结果反馈", "核实结项"]
    assert len(d["deadlines"]) == 6
    assert all(s["name"].startswith(name) for s, name in zip(d["deadlines"], steps))


def test_hefei_grid_officer_persuades_then_reports_when_ignored(routers):
    first = route(routers, "hefei", "air.dust.general", level=4)
    assert first["first_action"] == "persuade"
    ignored = route(routers, "hefei", "air.dust.general", level=4, persuasion_failed=True)
    assert ignored["first_action"] == "report" and ignored["handler"]["level"] == 2


def test_hefei_major_case_goes_to_city_enforcement(routers):
    d = route(routers, "hefei", "air.dust.general", level=4, major=True, persuasion_failed=True)
    assert d["handler"]["level"] == 1


def test_hefei_without_platform_uses_the_other_workflow(routers):
    with_platform = route(routers, "hefei", "air.dust.general", level=4, persuasion_failed=True)
    without = route(routers, "hefei", "air.dust.general", level=4, persuasion_failed=True, no_platform=True)
    assert with_platform["workflow"] != without["workflow"]
    assert len(without["deadlines"]) < len(with_platform["deadlines"])


def test_hefei_suspected_crime_is_transferred_to_public_security(routers):
    d = route(routers, "hefei", "crime.environment.suspected", level=4, suspected_crime=True)
    assert "public_security" in departments(d)
    assert any(a["kind"] == "transfer" and a["to"].get("id") == "public_security" for a in d["actions"])


def test_hefei_units_follow_the_stated_counts(bundled):
    units = bundled["hefei"].units
    by_level = {n: sum(1 for u in units.values() if u.level == n) for n in (1, 2, 3, 4)}
    assert by_level == {1: 1, 2: 13, 3: 213 + 87, 4: 1335}


# --- Panjin (002): the department duty list is the routing table
@pytest.mark.parametrize("problem, department", [
    ("建筑工地扬尘", "housing_construction"),
    ("露天烧烤", "comprehensive_enforcement"),
    ("船舶污染", "maritime"),
    ("医疗废物处置", "health"),
    ("非法采矿", "land_resources"),
    ("粘土砖生产", "land_resources"),
    ("涉嫌环境犯罪", "public_security"),
])
def test_panjin_department_routing(routers, problem, department):
    d = route(routers, "panjin", problem, level=3, persuasion_failed=True)
    assert department in departments(d)
    assert any(a["kind"] in ("dispatch", "transfer") and a["to"] and a["to"].get("id") == department
               for a in d["actions"])


def test_panjin_pollution_inside_the_liao_river_reserve_goes_to_liaohe(routers):
    d = route(routers, "panjin", "industry.pollution.production", level=3, inside_reserve=True)
    assert any(a["to"] and a["to"].get("id") == "liaohe" for a in d["actions"])
    assert d["escalation_path"], "a stop rule must not block deadline escalation"


def test_panjin_named_grids_and_classes(bundled):
    panjin = bundled["panjin"]
    names = {u.name for u in panjin.units_at(2)}
    assert names == {"盘山县", "大洼县", "兴隆台区", "双台子区", "辽东湾新区", "辽河口生态经济区"}
    assert [c.id for c in panjin.policy.source_classes] == ["A", "B", "C"]


def test_panjin_cross_boundary_goes_to_the_common_ancestor(routers, bundled):
    l3 = bundled["panjin"].units_at(3)
    a, b = next((x, y) for x in l3 for y in l3 if x.parent != y.parent)
    d = routers["panjin"].route(Case(problem_type="air.area.straw_burning", unit=a.id, units_involved=[a.id, b.id],
                                     reported_at=WHEN))
    assert d.handler.level == 1


# --- Weiyang (000): 45 types at level 2, 56 at level 3; village persuades first, then reports straight up
def test_weiyang_problem_type_counts(bundled):
    levels = [t.level for t in bundled["weiyang"].policy.problem_types]
    # 五(一)5: the pipe-network delay is the 一级网格's, outside the 45 and 56
    assert levels.count(2) == 45 and levels.count(3) == 56 and levels.count(1) == 1 and len(levels) == 102


def test_weiyang_straw_burning_at_a_village_persuades_then_reports_to_the_street(routers):
    first = route(routers, "weiyang", "秸秆焚烧", "wy-l4-001")
    assert kinds(first) == ["persuade"] and first["actions"][0]["by"]["level"] == 4
    failed = route(routers, "weiyang", "秸秆焚烧", "wy-l4-001", persuasion_failed=True)
    report = failed["actions"][0]
    assert report["kind"] == "report" and report["to"]["level"] == 3
    assert report["to"]["unit"] == routers["weiyang"].units["wy-l4-001"].parent


def test_weiyang_industrial_over_discharge_goes_straight_to_the_district(routers):
    d = route(routers, "weiyang", "industry.pollution.production", "wy-l4-050", persuasion_failed=True)
    assert d["handler"]["level"] == 2 and d["first_action"] == "report"
    assert d["actions"][0]["to"]["level"] == 2  # skips the street (五(四)3)


def test_weiyang_cross_street_dust_goes_to_the_district(routers, bundled):
    l4 = bundled["weiyang"].units_at(4)
    a, b = next((x, y) for x in l4 for y in l4 if x.parent != y.parent)
    d = routers["weiyang"].route(Case(problem_type="air.dust.construction_site", unit=a.id, units_involved=[a.id, b.id],
                                      facts={"persuasion_failed": True}, reported_at=WHEN))
    assert d.handler.level == 2 and d.handler.unit == "weiyang"


def test_weiyang_failed_verification_re_reports(routers):
    d = route(routers, "weiyang", "秸秆焚烧", "wy-l4-001", persuasion_failed=True, verification_failed=True)
    assert "re_report" in kinds(d)
