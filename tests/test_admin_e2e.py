"""The admin UI end to end: a real server (uvicorn, temp SQLite) driven by real headless Chromium."""
from __future__ import annotations

from playwright.sync_api import expect

from tests.admin_browser import htmx_idle, shot, sign_in
from tests.test_pinned import MEDICAL_WASTE_CASE


def test_wrong_password_is_refused(browser, server):
    page = browser.new_page()
    page.goto(server + "/admin/login")
    page.get_by_label("用户名").fill("admin")
    page.get_by_label("密码").fill("wrong-password")
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_role("alert")).to_have_text("用户名或密码错误")
    page.close()


def test_edit_validate_publish_simulate_compare(browser, server):
    page = sign_in(browser, server, "admin")
    expect(page.locator("tr", has_text="karamay")).to_contain_text("第3级")
    shot(page, "jurisdictions")

    page.goto(server + "/admin/j/karamay")
    page.get_by_role("button", name="基于生效版本新建草稿").click()
    expect(page).to_have_url(server + "/admin/j/karamay/v/2")
    page.wait_for_load_state()  # htmx wires the search box on load
    page.get_by_label("搜索").fill("yiliao")  # pinyin search narrows the table through htmx
    expect(page.locator("#type-rows tr")).not_to_have_count(0)
    expect(page.locator("#type-rows")).not_to_contain_text("畜禽")
    page.get_by_role("button", name="编辑 医疗废物处置").click()
    level = page.get_by_label("处置层级")
    error = page.locator("#err-types-waste-medical-disposal-level")
    expect(level).to_be_visible()
    htmx_idle(page)
    level.fill("9")  # checked as the admin types, before any save
    expect(error).to_contain_text("处置层级 9 不存在")
    page.get_by_role("button", name="保存").click()
    expect(level).to_have_attribute("aria-invalid", "true")  # the refused save marked the field
    expect(error).to_contain_text("处置层级 9 不存在")
    htmx_idle(page)
    level.fill("3")
    expect(error).to_have_text("")
    shot(page, "editor")
    page.get_by_role("button", name="保存").click()
    row = page.locator("#type-waste-medical-disposal")
    expect(row.locator(".level")).to_have_text("第3级")
    expect(row).to_contain_text("已保存")

    page.goto(server + "/admin/j/karamay/v/2/verify")
    expect(page.locator("p.ok[role=status]")).to_contain_text("校验通过")
    # a form stripped of its CSRF token is refused and changes nothing
    page.locator("form[action$='/publish'] input[name=_csrf_token]").evaluate("e => e.remove()")
    page.get_by_label("变更说明").fill("不应生效")
    page.get_by_role("button", name="发布 v2").click()
    expect(page.get_by_role("alert")).to_contain_text("CSRF")
    page.goto(server + "/admin/j/karamay")
    expect(page.locator("#version-2")).to_contain_text("草稿")

    page.goto(server + "/admin/j/karamay/v/2/verify")
    page.get_by_role("button", name="发布 v2").click()  # no note: refused, next to the field
    expect(page.locator("#note-error")).to_contain_text("变更说明")
    page.get_by_label("变更说明").fill("医疗废物处置下放到三级网格")
    page.get_by_role("button", name="发布 v2").click()  # the pinned case would change: refused until accepted
    expect(page.locator("#publish-error")).to_contain_text("1 个固定测试用例的结果将改变")
    expect(page.locator("#pinned-table")).to_contain_text(MEDICAL_WASTE_CASE)
    page.get_by_label(f"接受用例 “{MEDICAL_WASTE_CASE}” 的新结果").check()
    shot(page, "verify")
    page.get_by_role("button", name="发布 v2").click()
    expect(page).to_have_url(server + "/admin/j/karamay")
    expect(page.locator("#version-2")).to_contain_text("生效中")
    expect(page.locator("#version-2")).to_contain_text("医疗废物处置下放到三级网格")
    shot(page, "history")

    page.goto(server + "/admin/j/karamay/diff?from=1&to=2")
    expect(page.get_by_text("医疗废物处置: 第2级 → 第3级")).to_be_visible()

    page.goto(server + "/admin/simulate?jurisdiction=karamay")
    page.get_by_label("问题类型").fill("医疗废物处置")
    page.get_by_label("发现网格").fill("kmy-l3-01")
    page.get_by_role("button", name="路由").click()
    expect(page.locator("#handler")).to_contain_text("第3级")
    expect(page.locator("#decision")).to_contain_text("「")  # the trace quotes the document
    shot(page, "simulator")
    page.get_by_label("问题类型").fill("不存在的问题")
    page.get_by_role("button", name="路由").click()
    expect(page.locator("#decision [role=alert]")).to_contain_text("未知的问题类型")

    page.goto(server + "/admin/compare")
    page.get_by_label("karamay").check()
    page.get_by_label("panjin").check()
    page.get_by_role("button", name="比较").click()
    table = page.locator("#compare-types")
    expect(table.locator("th")).to_contain_text(["问题类型", "karamay", "panjin"])
    expect(table.locator("tr[data-differs]").first).to_be_visible()
    shot(page, "compare")

    page.goto(server + "/admin/j/karamay")
    page.get_by_role("button", name="基于生效版本新建草稿").click()
    expect(page).to_have_url(server + "/admin/j/karamay/v/3")
    page.context.close()


def test_viewer_cannot_edit(browser, server):
    page = sign_in(browser, server, "viewer")
    page.goto(server + "/admin/j/karamay")
    expect(page.get_by_role("button", name="基于生效版本新建草稿")).to_have_count(0)
    page.goto(server + "/admin/j/karamay/v/3")
    expect(page.get_by_role("note")).to_contain_text("只有查看权限")
    expect(page.get_by_role("button", name="编辑 医疗废物处置")).to_have_count(0)
    token = page.locator("input[name=_csrf_token]").first.get_attribute("value")
    response = page.request.post(server + "/admin/j/karamay/v/3/e/types/waste.medical.disposal",
                                 form={"level": "1", "departments": "", "revision": "1", "_csrf_token": token})
    assert response.status == 403 and "编辑权限" in response.text()
    page.goto(server + "/admin/j/karamay/v/3")
    expect(page.locator("#type-waste-medical-disposal .level")).to_have_text("第3级")
    page.context.close()
