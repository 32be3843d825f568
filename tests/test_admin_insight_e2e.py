"""Insight pages end to end in headless Chromium: escalation graph and impact preview on the verify page,
compare chart and .xlsx export, cases dashboard and a case's timeline."""
from __future__ import annotations

from datetime import timedelta

import pytest
from openpyxl import load_workbook
from playwright.sync_api import expect

from engine.router import Case
from store.cases import CaseService, Transition
from store.sweeper import sweep
from store.tables import utcnow
from store.versions import open_policy_store
from tests.admin_browser import database_with_users, htmx_idle, medical_waste_to_level_3, running_server, shot, sign_in

MEDICAL = "waste.medical.disposal"  # karamay: level 2


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """Karamay cases created before the server starts: what the dashboard and the replay must show."""
    url = database_with_users(tmp_path_factory.mktemp("insight"))
    policies = open_policy_store(url)
    cases = CaseService(policies)
    now = utcnow()
    made = [cases.create("karamay", Case(problem_type=MEDICAL, unit="kmy-l3-01"), "intake",
                         now=now - timedelta(days=3)),
            cases.create("karamay", Case(problem_type="waste.medical.wastewater", unit="kmy-l3-02"), "intake",
                         now=now - timedelta(days=2)),
            cases.create("karamay", Case(problem_type=MEDICAL, unit="kmy-l3-02"), "intake",
                         now=now - timedelta(days=1))]
    cases.transition(made[2].id, Transition("close", "王网格员", "劝阻有效, 已整改"), now=now)
    assert sweep(cases, now)["escalated"] == 2  # the two open cases missed their 2-hour report step
    policies.engine.dispose()
    with running_server(url) as base:
        yield base, made


def test_verify_shows_escalation_graph_and_impact_of_a_draft_edit(browser, seeded):
    server, made = seeded
    page = sign_in(browser, server, "admin")
    page.goto(server + "/admin/j/karamay")
    page.get_by_role("button", name="基于生效版本新建草稿").click()
    expect(page).to_have_url(server + "/admin/j/karamay/v/2")
    medical_waste_to_level_3(page)

    page.goto(server + "/admin/j/karamay/v/2/verify")
    graph = page.locator("svg#escalation-graph")
    expect(graph.locator(".level-node")).to_have_count(3)
    expect(graph.locator(".escalation-edge[data-from='3'][data-to='2']")).to_have_count(1)
    expect(graph.locator(".escalation-edge[data-from='2'][data-to='1']")).to_contain_text("超过处置时限")
    assert page.locator("svg#escalation-graph script").count() == 0

    htmx_idle(page)
    page.get_by_label("重放最近天数").fill("abc")
    page.get_by_role("button", name="重放案件").click()
    expect(page.locator("#impact [role=alert]")).to_contain_text("天数须为 1 到 366 之间的整数")
    page.get_by_label("重放最近天数").fill("30")
    page.get_by_role("button", name="重放案件").click()
    expect(page.locator("#impact-replayed")).to_have_text("已回放 3 / 3 件")
    expect(page.locator("#impact-changed")).to_have_text("2")  # both medical-waste cases, not the wastewater one
    rows = page.locator("#impact-table tbody tr")
    expect(rows).to_have_count(2)
    changed = page.locator(f"#impact-table tr[data-case='{made[0].id}']")
    expect(changed.locator("td").nth(4)).to_contain_text("第2级")
    expect(changed.locator("td").nth(5)).to_contain_text("第3级")
    expect(page.locator(f"#impact-table tr[data-case='{made[1].id}']")).to_have_count(0)
    page.evaluate("document.getElementById('escalation-heading').scrollIntoView()")
    shot(page, "verify-escalation")
    page.evaluate("document.getElementById('impact-heading').scrollIntoView()")
    shot(page, "impact-preview")
    page.context.close()


def test_compare_chart_sections_and_xlsx_export(browser, seeded, tmp_path):
    server, _ = seeded
    page = sign_in(browser, server, "admin")
    page.goto(server + "/admin/compare")
    page.get_by_label("karamay").check()
    page.get_by_label("weiyang").check()
    page.get_by_role("button", name="比较").click()
    chart = page.locator("#compare-chart svg")
    expect(chart).to_contain_text("各级网格处置的问题类型数")
    assert chart.locator("script[src]").count() == 0  # nothing fetched: the page works offline
    expect(page.locator("#compare-workflows")).to_contain_text("个工作日")
    expect(page.locator("#compare-departments")).to_contain_text("weiyang")
    expect(page.locator("#compare-scoring tbody tr")).to_have_count(2)
    page.evaluate("document.getElementById('compare-chart').scrollIntoView()")
    shot(page, "compare-chart")

    with page.expect_download() as download:
        page.get_by_role("link", name="导出 Excel (.xlsx)").click()
    path = tmp_path / "compare.xlsx"
    download.value.save_as(path)
    book = load_workbook(path)
    assert book.sheetnames == ["层级与网格", "问题类型处置层级", "职能部门", "流程与时限", "规则与超期升级", "考核评分"]
    levels = [[c.value for c in row] for row in book["层级与网格"].iter_rows()]
    assert levels[0] == ["辖区", "辖区名称", "层级", "层级名称", "网格类型", "网格数", "问题类型数"]
    karamay = {row[2]: row for row in levels[1:] if row[0] == "karamay"}
    assert sorted(karamay) == [1, 2, 3] and karamay[3][5] == 77  # 77 village grids, as on the verify page
    types = [[c.value for c in row] for row in book["问题类型处置层级"].iter_rows()]
    assert types[0][2:4] == ["karamay", "weiyang"]
    medical = next(row for row in types if row[0] == MEDICAL)
    assert medical[2] == 2  # the active karamay version (the draft is not compared)
    assert all(row[-1] in ("是", None) for row in types[1:])
    assert any(row[-1] == "是" for row in types[1:])

    answer = page.request.get(server + "/admin/compare.xlsx?ids=karamay")
    assert answer.status == 422 and "至少选择两个" in answer.text()
    page.context.close()


def test_cases_dashboard_counts_list_and_timeline(browser, seeded):
    server, made = seeded
    page = sign_in(browser, server, "admin")
    page.get_by_role("link", name="karamay 超期案件").click()
    expect(page.locator("#case-count")).to_contain_text("共 2 件")
    expect(page.locator("#case-rows tbody tr")).to_have_count(2)

    page.goto(server + "/admin/cases/karamay")
    totals = page.locator("#case-totals")
    expect(totals.locator("[data-count=open]")).to_have_text("2")
    expect(totals.locator("[data-count=overdue]")).to_have_text("2")
    expect(totals.locator("[data-count=closed]")).to_have_text("1")
    # both open cases were escalated from level 2 to level 1; the closed one stayed at level 2
    expect(page.locator("#cases-by-level tr[data-level='1'] td")).to_have_text(
        ["第1级 一级网格(区政府)", "2", "2", "0"])
    expect(page.locator("#cases-by-level tr[data-level='2'] td").nth(3)).to_have_text("1")
    expect(page.locator("#cases-chart svg")).to_contain_text("受理")
    shot(page, "cases-dashboard")
    page.get_by_label("统计最近天数").fill("0")
    page.get_by_role("button", name="更新图表").click()
    expect(page.get_by_role("alert")).to_contain_text("天数须为 1 到 366 之间的整数")

    page.goto(server + "/admin/cases/karamay/list?state=closed")
    expect(page.locator("#case-rows tbody tr")).to_have_count(1)
    page.goto(server + "/admin/cases/karamay/list?level=x")
    expect(page.get_by_role("alert")).to_contain_text("层级须为不小于 1 的整数")

    page.goto(server + "/admin/cases/karamay/list")
    page.get_by_role("link", name=f"#{made[0].id}").click()
    timeline = page.locator("#case-timeline tbody tr")
    expect(timeline).to_have_count(4)
    expect(timeline.nth(0)).to_contain_text("受理并路由")
    expect(timeline.nth(1)).to_contain_text("已受理 →")
    expect(page.locator("#case-timeline tr[data-action=overdue]")).to_contain_text("sweeper")
    expect(page.locator("#case-timeline tr[data-action=escalated]")).to_contain_text("第2级 → 第1级")
    expect(page.locator("#case-clocks tbody tr")).to_have_count(2)
    expect(page.locator("#decision")).to_contain_text("「")  # the stored decision's trace quotes the document
    shot(page, "case-timeline")

    page.goto(server + f"/admin/cases/karamay/{made[2].id}")
    expect(page.locator("#case-timeline tr[data-action=closed]")).to_contain_text("王网格员")
    expect(page.locator("#case-timeline tr[data-action=closed]")).to_contain_text("劝阻有效, 已整改")
    expect(page.locator("#case-status")).to_have_text("已结案")
    page.goto(server + f"/admin/cases/panjin/{made[2].id}")
    expect(page.get_by_role("alert")).to_contain_text(f"辖区 panjin 没有案件 {made[2].id}")
    page.context.close()


def test_viewer_sees_only_their_jurisdictions_cases(browser, seeded):
    server, made = seeded
    page = sign_in(browser, server, "viewer")
    page.goto(server + "/admin/cases/karamay")
    expect(page.locator("#case-totals [data-count=closed]")).to_have_text("1")
    for path in ("/admin/cases/panjin", "/admin/cases/panjin/list", "/admin/j/panjin/v/1/impact"):
        page.goto(server + path)
        expect(page.get_by_role("alert")).to_contain_text("你在辖区 panjin 没有查看权限")
    page.context.close()
