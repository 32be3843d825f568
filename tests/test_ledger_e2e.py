"""The ledger pages in headless Chromium: a real server over a database with a simulated Panjin ledger."""
from __future__ import annotations

from datetime import date, datetime

import pytest
from playwright.sync_api import expect

from store.ledger import CST, LedgerService
from store.simulate_ledger import simulate_ledger
from store.versions import open_policy_store
from tests.admin_browser import database_with_users, htmx_idle, running_server, shot, sign_in


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    url = database_with_users(tmp_path_factory.mktemp("ledger"))
    policies = open_policy_store(url)
    simulate_ledger(policies, "panjin", 300, date(2026, 1, 1), 330, seed=3, now=datetime(2026, 11, 27, tzinfo=CST))
    LedgerService(policies).create_object("panjin", {
        "name": "辽河化工有限公司", "unit": "pj-l3-01", "kind": "pollution_source", "identifier": "91211100MA0001",
        "source_class": "C", "class_reason": "省控源", "registered_on": "2026-01-01"}, "张科长")
    policies.engine.dispose()
    with running_server(url) as base:
        yield base


def test_objects_search_class_change_and_import(browser, server, tmp_path):
    page = sign_in(browser, server, "admin")
    page.get_by_role("link", name="监管台账").click()
    page.goto(server + "/admin/j/panjin/ledger")
    expect(page.get_by_role("heading", name="监管对象台账")).to_be_visible()
    expect(page.locator("#object-count")).to_contain_text("共 301 个监管对象")
    page.get_by_label("搜索").fill("lhhg")  # pinyin initials of 辽河化工, filtered as the admin types (htmx)
    expect(page.locator("#object-count")).to_contain_text("共 1 个监管对象")
    page.get_by_label("类别").select_option("C")
    htmx_idle(page)
    expect(page.locator("#objects tbody tr")).to_have_count(1)
    page.get_by_role("link", name="辽河化工有限公司").click()

    expect(page.locator("#object-class")).to_contain_text("C 类 · 强化监管")
    page.locator("#source_class").select_option("B")
    page.get_by_role("button", name="保存修改").click()
    expect(page.get_by_role("alert")).to_contain_text("定类须说明理由")
    page.locator("#source_class").select_option("B")
    page.get_by_label("变更理由").fill("三年内无环境违法, 改为常规管理")
    page.get_by_role("button", name="保存修改").click()
    expect(page.get_by_role("status")).to_have_text("已保存")
    expect(page.locator("#object-class")).to_contain_text("admin 于")
    expect(page.get_by_role("table").filter(has_text="变更理由")).to_contain_text("类别: C → B")
    shot(page, "ledger-object")

    bad = tmp_path / "bad.csv"
    bad.write_text("名称,网格,类型,类别,分类理由,许可证号\n"
                   "甲厂,pj-l3-02,污染源,E,,X1\n乙厂,没有的网格,污染源,,,X2\n", encoding="utf-8")
    page.goto(server + "/admin/j/panjin/ledger/import")
    page.get_by_label("文件").set_input_files(str(bad))
    page.get_by_role("button", name="预览").click()
    errors = page.locator("#import-errors tbody tr")
    expect(errors).to_have_count(2)
    expect(errors.first).to_contain_text("类别 'E' 未在规则中定义")
    expect(page.get_by_role("button", name="确认导入")).to_have_count(0)
    good = tmp_path / "good.csv"
    good.write_text("名称,网格,类型,类别,分类理由,许可证号\n甲厂,pj-l3-02,污染源,A,小型守法,X1\n", encoding="utf-8")
    page.get_by_label("文件").set_input_files(str(good))
    page.get_by_role("button", name="预览").click()
    expect(page.get_by_role("heading", name="预览: 1 行 · 新增 1 · 更新 0 · 不变 0")).to_be_visible()
    page.get_by_role("button", name="确认导入").click()
    expect(page.locator("#object-count")).to_contain_text("共 302 个监管对象")


def test_patrol_form_opens_a_case_and_the_compliance_dashboard(browser, server):
    page = sign_in(browser, server, "admin")
    page.goto(server + "/admin/j/panjin/patrols")
    page.get_by_text("登记巡查").click()
    form = page.locator("#patrol-form")
    form.get_by_label("网格").fill("pj-l3-01")
    form.get_by_label("巡查时间").fill("2099-01-01T09:00")
    form.get_by_label("巡查人").fill("王五")
    form.get_by_label("签字人").fill("王五")
    form.get_by_role("button", name="登记").click()
    expect(page.get_by_role("alert")).to_contain_text("不能登记未来的巡查")
    form = page.locator("#patrol-form")
    form.get_by_label("巡查时间").fill("2026-11-20T09:30")
    form.get_by_label("签字人").fill("钱七")
    form.get_by_role("button", name="登记").click()
    expect(page.get_by_role("alert")).to_contain_text("谁巡查谁签字谁负责")
    form = page.locator("#patrol-form")
    form.get_by_label("签字人").fill("王五")
    form.get_by_label("发现问题", exact=True).fill("雨水排口有废水外排")
    form.get_by_label("立案: 问题类型").fill("工业生产企业排污")
    form.get_by_role("button", name="登记").click()
    expect(page.get_by_role("status")).to_contain_text("已登记巡查记录")
    saved = page.locator("#patrols tbody tr", has_text="雨水排口有废水外排")
    expect(saved).to_contain_text("王五")
    saved.get_by_role("link", name="案件").click()
    expect(page.get_by_text("工业生产企业排污").first).to_be_visible()

    page.goto(server + "/admin/j/panjin/cadences?period=2026-Q3")
    expect(page.get_by_role("heading", name="巡查与检查频次完成情况")).to_be_visible()
    levels = page.locator("#levels tbody tr")
    expect(levels).to_have_count(3)
    assert page.locator("figure svg").count() == 2
    expect(page.locator("#cadence-rows tbody tr").first).to_contain_text("未完成")  # worst first: lax grids missed
    shot(page, "ledger-cadences")
    with page.expect_download() as download:
        page.get_by_role("link", name="导出巡查记录汇总表").click()
    assert download.value.suggested_filename == "patrol-summary-panjin-2026-Q3.xlsx"
    assert page.goto(server + "/admin/j/panjin/cadences?period=2026-Q7").status == 422
    assert page.goto(server + "/admin/j/panjin/cadences?unit=nowhere").status == 422
