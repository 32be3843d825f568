"""The assessment page in headless Chromium: a real server over a database filled by the case simulator."""
from __future__ import annotations

from datetime import datetime

import pytest
from playwright.sync_api import expect

from store.assessment import CST
from store.cases import CaseService
from store.simulate import Simulator
from store.versions import open_policy_store
from tests.admin_browser import database_with_users, htmx_idle, running_server, shot, sign_in


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    url = database_with_users(tmp_path_factory.mktemp("assess"))
    policies = open_policy_store(url)
    Simulator(CaseService(policies), "karamay", 5).run(400, 180, datetime(2026, 4, 1, tzinfo=CST))
    policies.engine.dispose()
    with running_server(url) as base:
        yield base


def test_ranking_charts_drill_down_export_and_records(browser, server):
    page = sign_in(browser, server, "admin")
    page.get_by_role("link", name="综合评价").click()
    page.goto(server + "/admin/j/karamay/assessment?period=2026-Q3&level=2")
    expect(page.get_by_role("heading", name="排名 · 第2级 (7 个网格)")).to_be_visible()
    ranking = page.locator("#ranking tbody tr")
    expect(ranking).to_have_count(7)
    assert page.locator("figure svg").count() == 2  # score by unit, on-time trend: inline SVG, no script
    # the first row with a deduction: its score and its explanation agree
    row = page.locator("#ranking tbody tr", has=page.get_by_role("link", name="扣分明细")).first
    loss = float(row.locator("td").nth(3).inner_text())
    row.get_by_role("link", name="扣分明细").click()
    htmx_idle(page)
    detail = page.locator("#detail")
    expect(detail.get_by_role("heading", name="扣分明细", exact=False)).to_be_visible()
    counted = sum(float(h.inner_text().split("×")[1].split("分")[0]) * int(h.inner_text().split("·")[1].split("次")[0])
                  for h in detail.locator("h3 .muted").all())
    assert counted == pytest.approx(loss) and detail.locator("tbody tr").count() >= 1
    shot(page, "assessment")

    with page.expect_download() as download:
        page.get_by_role("link", name="导出 Excel").click()
    assert download.value.suggested_filename == "assessment-karamay-2026-Q3.xlsx"

    page.get_by_label("评分 (0–100.0)").fill("120")
    page.get_by_role("button", name="保存").click()
    expect(page.get_by_role("alert")).to_contain_text("评分 120.0 超出范围, 须在 0–100 之间")
    page.go_back()
    page.get_by_label("网格", exact=True).select_option(index=0)
    page.get_by_label("评分 (0–100.0)").fill("93")
    page.get_by_role("button", name="保存").click()
    expect(page.locator("#ranking")).to_contain_text("— / 93.0")

    bad = page.goto(server + "/admin/j/karamay/assessment?period=2026-Q9")
    assert bad.status == 422
    expect(page.locator("main")).to_contain_text("考核期 '2026-Q9' 格式不正确")


def test_viewer_sees_but_cannot_record(browser, server):
    page = sign_in(browser, server, "viewer")
    page.goto(server + "/admin/j/karamay/assessment?period=2026-Q3")
    expect(page.locator("#ranking")).to_be_visible()
    expect(page.get_by_role("button", name="保存")).to_have_count(0)
    denied = page.goto(server + "/admin/j/hefei/assessment?period=2026-Q3")
    assert denied.status == 403


def test_deduction_points_edited_on_a_draft_change_nothing_when_invalid(browser, server):
    page = sign_in(browser, server, "admin")
    page.goto(server + "/admin/j/karamay")
    page.get_by_role("button", name="基于生效版本新建草稿").click()
    page.goto(server + "/admin/j/karamay/assessment?period=2026-Q3")
    page.get_by_role("link", name="在草稿", exact=False).first.click()
    field = page.get_by_label("迟报、瞒报、谎报 每次扣分")
    item = page.locator("#deductions-late_report")
    expect(field).to_have_value("2.0")
    htmx_idle(page)
    field.fill("-1")  # checked as the admin types, and refused on saving
    expect(page.locator("#err-deductions-late_report-points")).to_have_text("每次扣分须为正数, 而非 '-1'")
    item.get_by_role("button", name="保存").click()
    expect(page.locator("#err-deductions-late_report-points")).to_have_text("每次扣分须为正数, 而非 '-1'")
    expect(field).to_have_attribute("aria-invalid", "true")
    page.goto(page.url)  # the form's own address: GET the stored draft again
    expect(page.get_by_label("迟报、瞒报、谎报 每次扣分")).to_have_value("2.0")  # nothing was saved
    htmx_idle(page)
    page.get_by_label("迟报、瞒报、谎报 每次扣分").fill("3")
    item.get_by_role("button", name="保存").click()
    expect(item.get_by_role("status")).to_contain_text("已保存")
    expect(page.get_by_label("迟报、瞒报、谎报 每次扣分")).to_have_value("3.0")
