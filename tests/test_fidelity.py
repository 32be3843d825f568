"""Each clause the policies had misread, quoted, and the decision the engine now takes for it (handler level and
unit, first and parallel actions, departments, deadlines, escalation)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from engine.compiler import compile_policy
from engine.router import Case, PolicyRouter
from policy.loader import Loader
from policy.provenance import ASSUMED, QUOTED, entries

WHEN = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def routers(bundled):
    return {jid: PolicyRouter(compile_policy(jur)) for jid, jur in bundled.items()}


def route(routers, jid, problem_type, unit=None, level=None, involved=(), **facts):
    """The decision in its JSON form, as `POST /v1/route` answers it."""
    return routers[jid].route(Case(
        problem_type=problem_type, unit=unit, found_at_level=level, units_involved=list(involved), facts=facts,
        reported_at=WHEN)).model_dump(mode="json")


def kinds(d) -> list[str]:
    return [a["kind"] for a in d["actions"]]


def action(d, kind, **match) -> dict:
    return next(a for a in d["actions"] if a["kind"] == kind and all(
        (a["to"] or {}).get(k) == v for k, v in match.items()))


def departments(d) -> set[str]:
    return {x["id"] for x in d["handler"]["departments"]}


def field(bundled, jid, code, name):
    jur = bundled[jid]
    path = f"problem_types[{[t.code for t in jur.policy.problem_types].index(code)}]"
    return next(e for e in entries(jur.policy, jur.type_names) if e.path == path and e.field == name)


# --- 篇九/十五 五 保障3 ------------------------------------------------------------------------------------
def test_pian09_veto_is_decided_in_the_assessment_not_triggered(bundled):
    """「将此项工作纳入环保目标考核,实行环保“一票否决”措施」: an item of the target-responsibility assessment."""
    [veto] = bundled["pian09"].policy.scoring.vetoes
    assert veto.trigger is None and "考核" in veto.name


# --- 宁家坪镇 篇一 五(三), 三(一)(4), 四(三) ---------------------------------------------------------------
def test_ningjiaping_scoring_scores_the_village_grids(bundled):
    """「建立村级网格考核制度。按年度12分计,实行倒扣分制」"""
    scoring = bundled["ningjiaping"].policy.scoring
    assert scoring.level == 4 and scoring.total == 12
    level_prov = scoring.fields["level"].source
    assert level_prov.clause == "篇一 五(三)" and "村级网格考核" in level_prov.quote


def test_ningjiaping_joint_enforcement_only_when_the_leader_orders_it(routers):
    """「联合执法行动由网格责任领导决定」: a decision fact, never added because several departments are involved."""
    code = "water.river.waterborne_violation"  # two departments
    without = route(routers, "ningjiaping", code, "nj-ningjiaping")
    assert "joint_enforcement" not in kinds(without) and kinds(without)[0] == "dispose"
    ordered = route(routers, "ningjiaping", code, "nj-ningjiaping", leader_ordered_joint=True)
    joint = [a for a in ordered["actions"] if a["kind"] == "joint_enforcement"]
    assert {a["to"]["id"] for a in joint} == {"environment_bureau", "township_offices"}
    assert all(a["by"]["kind"] == "leader" for a in joint)


def test_ningjiaping_assists_the_upper_grid_with_enterprise_cases(routers):
    """三(一)(4)「协助上级网格完成对环境违法案件的调查取证及处理工作」: the town reports and assists,
    it does not handle."""
    d = route(routers, "ningjiaping", "industry.pollution.production", "nj-ningjiaping")
    assert kinds(d) == ["report", "assist"] and d["first_action"] == "report"
    report, assist = d["actions"]
    assert report["to"]["unit"] == "nj-youxian" and assist["to"]["unit"] == "nj-youxian"
    assert assist["parallel"] is True and "dispose" not in kinds(d)


# --- 篇九 四(一)2 -----------------------------------------------------------------------------------------
def test_pian09_sudden_events_are_reported_up_and_assisted_not_handled(routers):
    """「负责突发环境事件的报告工作,协助上级部门进行应急调查处置工作」"""
    d = route(routers, "pian09", "emergency.event.sudden", "p09-township")
    assert kinds(d) == ["report", "assist"] and d["handler"]["level"] == 1
    assert [a["to"]["id"] for a in d["actions"]] == ["environment_bureau", "environment_bureau"]
    assert d["actions"][1]["parallel"] and "dispose" not in kinds(d)


# --- 铜梁区 篇十二 -----------------------------------------------------------------------------------------
def test_tongliang_cross_boundary_tasks_are_settled_by_the_grids_involved(bundled, tmp_path):
    """「各级网格责任单位分别负责本级网格的环保监督管理,跨区域监管任务由相应网格协商共同完成」"""
    csv = tmp_path / "tongliang.units.csv"
    csv.write_text("id,name,level,parent\ntl-a,甲镇,3,tl-departments\ntl-b,乙镇,3,tl-departments\n"
                   "tl-a1,甲村,4,tl-a\ntl-b1,乙村,4,tl-b\n", encoding="utf-8")
    jur = Loader(units_csv={"tongliang": csv}).build("tongliang")
    code = next(t.code for t in jur.policy.problem_types if t.level == 3)
    d = PolicyRouter(compile_policy(jur)).route(Case(problem_type=code, unit="tl-a1", units_involved=["tl-b1"],
                                                     reported_at=WHEN)).model_dump(mode="json")
    assert d["handler"]["level"] == 3 and d["handler"]["unit"] == "tl-a"  # not the common ancestor (level 2)
    consult = [a for a in d["actions"] if a["kind"] == "consult"]
    assert {a["to"]["unit"] for a in consult} == {"tl-a", "tl-b"}
    assert not any(r.id == "cross_boundary_common_ancestor" for r in jur.policy.rules)


# --- 克拉玛依 五 ------------------------------------------------------------------------------------------
def test_karamay_reports_at_once_to_the_grid_head_and_in_time_to_the_upper_grid(routers):
    """「无法现场解决的,应立即报告本级网格长,并及时上报上一级网格」: two actions with their own deadlines."""
    d = route(routers, "karamay", "医疗废物处置", "kmy-l3-10")
    head, upper = d["actions"][:2]
    assert head["kind"] == upper["kind"] == "report" and d["first_action"] == "report"
    assert head["to"] == {"kind": "head", "name": "村、社区主任", "of": "三级网格(村/社区)10"}
    assert head["within"]["duration"] == "PT1H" and head["within"]["due"] == "2026-11-02T10:00:00+00:00"
    assert "立即" in head["within"]["source"]["assumption"]
    assert upper["parallel"] and upper["to"]["level"] == 2 and upper["within"]["duration"] == "PT2H"
    assert d["handler"]["level"] == 2 and [h["level"] for h in d["escalation_path"]] == [1]


# --- 未央区 五(一)5, 五(二)3, 五(三)2, 五(二)4 ------------------------------------------------------------
def test_weiyang_pipe_network_delay_is_a_level_1_duty(routers, bundled):
    """五(一)5「督促解决城市污水处理厂和污水处理管网建设进展缓慢等问题」 is an item of the 一级网格."""
    d = route(routers, "weiyang", "water.sewage.pipe_network_delay", "wy-l4-001", persuasion_failed=True)
    assert d["handler"]["level"] == 1 and d["handler"]["unit"] == "xian"
    assert field(bundled, "weiyang", "water.sewage.pipe_network_delay", None).clause == "五(一)5"


def test_weiyang_types_keep_the_totals_and_only_named_ones_are_quoted(bundled):
    """五(二)3「…等45项问题」, 五(三)2「…等56项问题」: six groups named each; departments never named per item."""
    policy = bundled["weiyang"].policy
    levels = [t.level for t in policy.problem_types]
    assert levels.count(2) == 45 and levels.count(3) == 56
    named = {lv: [t for t in policy.problem_types if t.level == lv and t.source is not None] for lv in (2, 3)}
    assert len(named[2]) == 15 and len(named[3]) == 20
    for lv, types in named.items():
        for t in types:
            assert field(bundled, "weiyang", t.code, "level").status == QUOTED
            assert field(bundled, "weiyang", t.code, "departments").status == ASSUMED
    unnamed = [t for t in policy.problem_types if t.level in (2, 3) and t.source is None]
    assert len(unnamed) == 101 - 35 and all("总数" in t.assumption for t in unnamed)


def test_weiyang_level_2_beyond_authority_tells_the_city_departments(routers):
    """五(二)4「应迅速将情况上报到一级网格协调处理处置,同时上报市级相关职能部门」"""
    d = route(routers, "weiyang", "industry.pollution.production", "wy-l3-01", persuasion_failed=True,
              beyond_authority=True)
    assert d["handler"]["level"] == 1
    to_grid = action(d, "report", level=1)
    to_city = action(d, "report", id="city_departments")
    assert to_city["parallel"] and not to_grid["parallel"] and to_city["by"]["level"] == 2


def test_weiyang_street_reports_to_the_upper_grid_and_departments_at_once(routers):
    """五(三)3「应迅速将情况上报到一级、二级网格及市、区相关职能部门协调处置,同时上报包抓领导」"""
    d = route(routers, "weiyang", "air.dust.construction_site", "wy-l3-01", beyond_authority=True)
    reports = [a for a in d["actions"] if a["kind"] == "report" and a["by"]["level"] == 3]
    assert reports[0]["to"]["level"] == 2 and not reports[0]["parallel"]
    assert (all(a["parallel"] for a in reports[1:])
            and {a["to"]["kind"] for a in reports[1:]} == {"department", "leader"})


# --- 合肥 五(一)3, 六(一)3, 六(二), 五(四)2 vs 六(一)1, 六(一)7–8 ---------------------------------------------
def test_hefei_types_go_to_the_department_whose_duty_covers_them(routers, bundled):
    """六(一)3「根据法定职责将案件派遣至相关责任主体部门受理」: 扬尘 to construction and city management, not 环保."""
    d = route(routers, "hefei", "扬尘", "hf-l4-0001", persuasion_failed=True)
    assert departments(d) == {"urban_rural_construction", "urban_management"}
    assert {a["to"]["id"] for a in d["actions"] if a["kind"] == "dispatch"} == departments(d)
    note = field(bundled, "hefei", "air.dust.general", "departments")
    assert note.status == ASSUMED and "管理职责" in note.note
    receiving = {dep for t in bundled["hefei"].policy.problem_types for dep in t.departments}
    assert (len(receiving) >= 8
            and any("environment" not in t.departments for t in bundled["hefei"].policy.problem_types))


def test_hefei_without_platform_the_finding_grid_handles_within_its_time_limit(routers):
    """六(二)「能在本级网格内处理的要限时办结,不能处理的上报上一级网格,上一级网格…根据法定职责将案件派遣至相关责任主体部门处理」"""
    own = route(routers, "hefei", "扬尘", "hf-l4-0001", persuasion_failed=True, no_platform=True)
    assert own["handler"]["level"] == 4 and own["handler"]["unit"] == "hf-l4-0001"
    assert own["first_action"] == "dispose" and "report" not in kinds(own) and "dispatch" not in kinds(own)
    assert own["workflow"] == "no_platform" and [h["level"] for h in own["escalation_path"]] == [3, 2, 1]
    up = route(routers, "hefei", "扬尘", "hf-l4-0001", persuasion_failed=True, no_platform=True, beyond_authority=True)
    assert up["handler"]["level"] == 3 and up["handler"]["unit"] == "hf-l3c-01"  # one grid up, not level 2 then 1
    assert kinds(up)[:2] == ["report", "dispatch"] and up["actions"][0]["to"]["unit"] == "hf-l3c-01"
    assert {a["to"]["id"] for a in up["actions"] if a["kind"] == "dispatch"} == departments(up)


def test_hefei_grid_officer_persuades_and_reports_at_the_same_time(routers, bundled):
    """五(四)2「告知问题单位和个人立即整改,同时迅速将环境违法行为或环境污染问题通过数字化城市管理环境监管系统平台…反馈上报」;
    六(一)1「将现场无法告知或不听劝阻的问题上报数字化城市管理环境监管系统平台」
    files a case only when persuasion fails."""
    d = route(routers, "hefei", "扬尘", "hf-l4-0001")
    assert kinds(d) == ["persuade", "report"] and d["actions"][1]["parallel"]
    assert "dispatch" not in kinds(d)
    failed = route(routers, "hefei", "扬尘", "hf-l4-0001", persuasion_failed=True)
    assert failed["first_action"] == "report" and "dispatch" in kinds(failed) and "persuade" not in kinds(failed)
    hefei = bundled["hefei"].files[-1]
    text = open(hefei, encoding="utf-8").read()
    assert "五(四)2 与 六(一)1 的取舍" in text  # the reasoning is written beside the rule


def test_hefei_case_closes_at_verification_evaluation_is_periodic(routers, bundled):
    """六(一)7「对事件从发现受理到最终处置结案全过程开展综合评价」, 8「定期对环保网格员工作开展情况进行绩效考核」"""
    d = route(routers, "hefei", "扬尘", "hf-l4-0001", persuasion_failed=True)
    assert [s["step"] for s in d["deadlines"]] == ["collect", "file", "dispatch", "handle", "feedback", "verify"]
    assert d["deadlines"][-1]["due"] < "2026-11-20"  # no ~35 days of evaluation and appraisal per case
    cadences = {c.id: c for c in bundled["hefei"].policy.cadences}
    assert cadences["platform_evaluation"].activity == "assessment"
    assert cadences["grid_officer_appraisal"].activity == "assessment"


# --- 盘锦 四(四)2, 四(三)3 -----------------------------------------------------------------------------------
def test_panjin_beyond_authority_is_transferred_to_the_competent_body(routers):
    """四(四)2「对不属于本级本部门管辖的,要及时依法移交、移送,并配合相关单位进行调查」"""
    d = route(routers, "panjin", "industry.pollution.production", "pj-l3-01", beyond_authority=True)
    transfer, assist = [a for a in d["actions"] if a["kind"] in ("transfer", "assist")]
    assert (transfer["to"]["kind"] == "competent_body"
            and assist["parallel"] and assist["to"]["kind"] == "competent_body")
    assert "dispatch" not in kinds(d) and "dispose" not in kinds(d)
    crime = route(routers, "panjin", "industry.pollution.production", "pj-l3-01", beyond_authority=True,
                  suspected_crime=True)
    first_transfer = next(a for a in crime["actions"] if a["kind"] == "transfer")
    assert first_transfer["to"]["id"] == "public_security"


@pytest.mark.parametrize("code, department, quote", [
    ("waste.solid.construction_waste", {"housing_construction"}, "配合相关部门查处私堆乱放违法行为"),
    ("waste.hazardous.hazardous_chemicals", {"public_security", "transport", "port"},
     "负责危险化学品和放射性物品公共安全管理"),
    ("water.river.pollution", {"water"}, "负责河道清淤及水环境治理"),
    ("agri.rural.straw_utilization", {"agriculture"}, "指导和管理秸秆等农业废弃物综合利用"),
])
def test_panjin_listed_duties_have_routed_types_with_assumed_levels(routers, bundled, code, department, quote):
    """四(三)3 lists each department's duties and sets no handling level."""
    d = route(routers, "panjin", code, "pj-l3-01", persuasion_failed=True)
    assert departments(d) == department
    assert quote in field(bundled, "panjin", code, None).quote
    assert field(bundled, "panjin", code, "level").status == ASSUMED
