"""Publishing you can see (#14 item 3) and pinned cases in the admin (item 4), in headless Chromium at laptop
(1366 px) and phone (390 px) widths: the diff and impact preview before the button, pinned cases accepted one by
one, the four-eyes rule, rollback with a reason in the history, and "保存为测试用例" in the simulator."""
from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect

from engine.router import Case
from store.cases import CaseService
from store.tables import utcnow
from store.users import create_user
from store.versions import open_policy_store
from tests.admin_browser import (PASSWORD, database_with_users, draft_page, htmx_idle, medical_waste_to_level_3,
                                 running_server, shot, sign_in)
from tests.test_pinned import MEDICAL_WASTE_CASE

pytestmark = pytest.mark.browser
PANJIN_CASES = 205  # more than the impact preview replays (REPLAY_CAP = 200)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A server whose Panjin has more recent cases than the preview replays, and a second publisher."""
    url = database_with_users(tmp_path_factory.mktemp("publish"))
    policies = open_policy_store(url)
    create_user(policies.engine, "reviewer", PASSWORD, False, {"karamay": "publisher"}, "test")
    cases, now = CaseService(policies), utcnow()
    for i in range(PANJIN_CASES):
        cases.create("panjin", Case(problem_type="air.dust.construction_site", unit="pj-l3-01"), "intake",
                     now=now - timedelta(hours=i + 1))
    policies.engine.dispose()
    with running_server(url) as base:
        yield base, url


def fits(page: Page, selector: str, width: int) -> None:
    """The element lies inside the viewport's width (no sideways scrolling needed to use it)."""
    box = page.locator(selector).bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width + 1, (selector, box)


def test_publish_shows_diff_impact_pinned_and_enforces_four_eyes_at_1366(browser, site):
    server, url = site
    page = draft_page(browser, server, "karamay")
    medical_waste_to_level_3(page)

    # the simulator saves the active version's decision as a pinned case of the newest draft (v2)
    page.goto(server + "/admin/simulate?jurisdiction=karamay")
    page.get_by_label("问题类型").fill("医疗废水处置")
    page.get_by_label("发现网格").fill("kmy-l3-02")
    page.get_by_role("button", name="路由").click()
    page.get_by_label("用例名称").fill("医疗废水在二号网格发现")
    page.get_by_role("button", name="保存为测试用例 (草稿 v2)").click()
    expect(page.locator("#pin-saved")).to_contain_text("共 5 个用例")

    page.goto(server + "/admin/j/karamay/v/2/verify")
    diff = page.locator("#active-diff")
    expect(diff).to_contain_text("医疗废物处置: 第2级 → 第3级")
    expect(diff).to_contain_text("新增: 医疗废水在二号网格发现")
    expect(page.locator("#impact-replayed")).to_have_text("已回放 0 / 0 件")  # loaded without a click
    expect(page.locator("#pinned-summary")).to_contain_text("共 5 个用例, 4 个结果不变")
    row = page.locator(f"#pinned-table tr[data-case='{MEDICAL_WASTE_CASE}']").first
    expect(row).to_contain_text("处置层级")
    # everything the publisher must see comes before the button
    order = page.evaluate("""() => ['#active-diff', '#impact', '#pinned-table', '#publish-form']
        .map(s => document.querySelector(s).getBoundingClientRect().top)""")
    assert order == sorted(order), order

    page.get_by_label("变更说明").fill("医疗废物处置下放到三级网格")
    page.get_by_role("button", name="发布 v2").click()
    expect(page.locator("#publish-error")).to_contain_text("1 个固定测试用例的结果将改变")
    assert page.locator("#publish-error").count() == 1

    # four eyes: switched on in this draft (policy data), the last editor may not publish
    policies = open_policy_store(url)
    draft = policies.get_version("karamay", 2)
    document = policies.document(draft) | {"publishing": {"four_eyes": True}}
    policies.update_draft("karamay", 2, document, draft.revision, "admin")
    policies.engine.dispose()
    page.goto(server + "/admin/j/karamay/v/2/verify")
    expect(page.locator("#four-eyes-blocked")).to_contain_text("你是此草稿的最后编辑人")
    expect(diff).to_contain_text("四眼原则")
    page.get_by_label(f"接受用例 “{MEDICAL_WASTE_CASE}” 的新结果").check()
    page.get_by_label("变更说明").fill("医疗废物处置下放到三级网格")
    page.get_by_role("button", name="发布 v2").click()
    expect(page.locator("#publish-error")).to_contain_text("四眼原则")
    expect(page.get_by_label(f"接受用例 “{MEDICAL_WASTE_CASE}” 的新结果")).to_be_checked()  # kept for the retry

    reviewer = sign_in(browser, server, "reviewer")
    reviewer.goto(server + "/admin/j/karamay/v/2/verify")
    expect(reviewer.locator("#four-eyes-note")).to_contain_text("最后编辑人: admin")
    reviewer.get_by_label(f"接受用例 “{MEDICAL_WASTE_CASE}” 的新结果").check()
    reviewer.get_by_label("变更说明").fill("医疗废物处置下放到三级网格")
    shot(reviewer, "publish-review", full_page=True)
    reviewer.get_by_role("button", name="发布 v2").click()
    expect(reviewer).to_have_url(server + "/admin/j/karamay")
    expect(reviewer.locator("#version-2")).to_contain_text("生效中")
    history = reviewer.locator("#history")
    expect(history.locator("tr[data-action=pinned_accepted]")).to_contain_text(MEDICAL_WASTE_CASE)
    expect(history.locator("tr[data-action=published]")).to_contain_text("医疗废物处置下放到三级网格")

    # rollback: a reason and a confirmation, both checked by the server too
    reviewer.locator("#version-1 summary").click()
    reviewer.get_by_label("回滚原因 (必填)").fill("三级网格尚未配备处置力量")
    reviewer.locator("#version-1 form").evaluate(
        "f => f.querySelectorAll('[required]').forEach(e => e.required = false)")
    reviewer.get_by_role("button", name="确认回滚到 v1").click()
    expect(reviewer.locator("#err-rollback-1-confirm")).to_contain_text("确认回滚")
    expect(reviewer.locator("#version-2")).to_contain_text("生效中")
    reviewer.get_by_label("回滚原因 (必填)").fill("三级网格尚未配备处置力量")
    reviewer.locator("#version-1").get_by_label("确认回滚", exact=False).check()
    reviewer.get_by_role("button", name="确认回滚到 v1").click()
    expect(reviewer.locator("#rollback-done")).to_contain_text("已回滚到 v1")
    expect(reviewer.locator("#version-1")).to_contain_text("生效中")
    rolled = history.locator("tr[data-action=rolled_back]")
    expect(rolled).to_contain_text("三级网格尚未配备处置力量")
    expect(rolled).to_contain_text("(自 v2)")


def test_verify_and_rollback_fit_a_phone_at_390(browser, site):
    server, _ = site
    page = draft_page(browser, server, "panjin", 390)
    page.goto(server + "/admin/simulate?jurisdiction=panjin")
    page.get_by_label("问题类型").fill("建筑工地扬尘")
    page.get_by_label("发现网格").fill("pj-l3-01")
    page.get_by_label("告知劝阻无效").check()
    page.get_by_role("button", name="路由").click()
    page.get_by_label("用例名称").fill("工地扬尘劝阻无效")
    fits(page, "#pin-form button", 390)
    page.get_by_role("button", name="保存为测试用例 (草稿 v2)").click()
    expect(page.locator("#pin-saved")).to_contain_text("共 5 个用例")
    page.goto(server + "/admin/j/panjin/v/2/verify")
    expect(page.locator("#active-diff")).to_contain_text("新增: 工地扬尘劝阻无效")
    expect(page.locator("#impact-replayed")).to_have_text(f"已回放 200 / {PANJIN_CASES} 件")
    expect(page.locator("#impact-cap")).to_contain_text("每次只回放最新的 200 件")
    expect(page.locator("#pinned-summary")).to_contain_text("共 5 个用例, 5 个结果不变")
    for selector in ("#publish-form textarea", "#publish-form button", "#impact-summary", "#pinned-summary"):
        fits(page, selector, 390)
    page.get_by_label("变更说明").fill("新增一个固定测试用例")
    shot(page, "publish-phone", full_page=True)
    page.get_by_role("button", name="发布 v2").click()
    expect(page.locator("#version-2")).to_contain_text("生效中")
    page.locator("#version-1 summary").click()
    for selector in ("#version-1 textarea", "#version-1 button"):
        page.locator(selector).scroll_into_view_if_needed()
    htmx_idle(page)
    page.get_by_label("回滚原因 (必填)").fill("核对原文后撤回")
    page.locator("#version-1").get_by_label("确认回滚", exact=False).check()
    page.get_by_role("button", name="确认回滚到 v1").click()
    expect(page.locator("#history tr[data-action=rolled_back]")).to_contain_text("核对原文后撤回")
