"""Issue #14 items 1, 2, 7 and the audit log in headless Chromium, at a laptop (1366 px) and a phone (390 px) width:
words instead of codes, 北京时间 everywhere, what a single-jurisdiction editor sees, the simulator, the layout,
the audit log and the offline API docs."""
from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
from playwright.sync_api import Page, expect

from policy.words import TIME_ZONE
from store.assessment import CST
from store.cases import CaseService
from store.db import make_engine
from store.simulate import Simulator
from store.tables import CaseRecord
from store.users import create_user
from store.versions import open_policy_store
from tests.admin_browser import PASSWORD, database_with_users, htmx_idle, running_server, shot, sign_in

WIDTHS = {"laptop": 1366, "phone": 390}
# codes an admin must not read where words are expected
STEP_CODES = {"file", "find", "dispatch", "appraise", "handle", "report", "verify", "close", "patrol", "received"}
ACTION_CODES = re.compile(r"\b(assign|dispose|persuade|report|record_close|dispatch|transfer)\b")
BEIJING = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}( 北京时间)?$")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    url = database_with_users(tmp_path_factory.mktemp("words"))
    engine = make_engine(url)
    create_user(engine, "wy_editor", PASSWORD, False, {"weiyang": "editor"}, "test")
    engine.dispose()
    policies = open_policy_store(url)
    Simulator(CaseService(policies), "karamay", 7).run(300, 120, datetime(2026, 6, 1, tzinfo=CST))
    policies.engine.dispose()
    with running_server(url) as base:
        yield base, url


@pytest.fixture(params=list(WIDTHS))
def width(request) -> int:
    return WIDTHS[request.param]


def no_page_overflow(page: Page) -> None:
    """The page body never scrolls sideways (wide tables scroll inside their own box)."""
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), page.url


def texts(page: Page, selector: str) -> list[str]:
    return [t.strip() for t in page.locator(selector).all_inner_texts()]


def test_words_not_codes(browser, server, width):
    base, _ = server
    page = sign_in(browser, base, "admin", width)
    # case statuses are step names; the timeline's events and steps are words
    page.goto(base + "/admin/cases/karamay/list")
    statuses = [s.replace("超期", "").strip() for s in texts(page, "#case-rows tbody td:nth-child(6)")]
    assert statuses and not STEP_CODES & set(statuses), statuses
    assert all(re.search(r"[\u4e00-\u9fff]", s) for s in statuses)
    page.locator("#case-rows tbody a").first.click()
    assert all(re.search(r"[\u4e00-\u9fff]", s) for s in texts(page, "#case-timeline tbody td:nth-child(3)"))
    no_page_overflow(page)
    # the coverage matrix names actions in Chinese
    page.goto(base + "/admin/j/karamay/v/1/verify")
    matrix = page.locator("h2:has-text('覆盖矩阵') + table")
    assert not ACTION_CODES.search(matrix.inner_text())
    expect(matrix).to_contain_text("告知劝阻" if "告知劝阻" in matrix.inner_text() else "第")
    # workflow conditions read as sentences, deadlines as number + unit, step codes only in grey
    page.goto(base + "/admin/j/weiyang/v/1/workflows")
    body = page.locator("main").inner_text()
    assert "{'any'" not in body and "persuade_first" not in body
    expect(page.locator("main")).to_contain_text("适用于不须先告知劝阻，或须先告知劝阻且无法告知劝阻时")
    expect(page.locator("#steps-patrol_persuade-dispose")).to_contain_text("现为 5 个工作日")
    expect(page.locator("#steps-patrol_persuade-dispose").get_by_label("单位")).to_have_value("working_days")
    # provenance names the document and its clause, not the seed file
    page.goto(base + "/admin/j/karamay/v/1")
    rows = page.locator("#type-rows, main table").first.inner_text()
    assert ".txt" not in rows and "克拉玛依区网格化环境监管工作做法" in rows
    # periods in words
    page.goto(base + "/admin/j/karamay/assessment?period=2026-Q3")
    expect(page.locator("main")).to_contain_text("周期 季度")
    no_page_overflow(page)
    page.context.close()


def test_assessment_drill_down_words_and_links(browser, server, width):
    base, _ = server
    page = sign_in(browser, base, "admin", width)
    page.goto(base + "/admin/j/karamay/assessment?period=2026-Q3&level=2")
    link = page.get_by_role("link", name="扣分明细").first
    page.goto(base + link.get_attribute("href"))
    table = page.locator("table.deduction-events").first
    first = table.locator("tbody tr").first
    case_link = first.locator("td").nth(0).get_by_role("link")
    expect(case_link).to_have_text(re.compile(r"^#\d+$"))
    cells = first.locator("td").all_inner_texts()
    assert BEIJING.match(cells[1]), cells
    assert re.search(r"[\u4e00-\u9fff]", cells[2]) and cells[2] not in CASE_EVENT_CODES
    assert "." not in cells[4] and re.search(r"[\u4e00-\u9fff]", cells[4]), cells  # the type's name, not its code
    no_page_overflow(page)
    case_link.click()
    expect(page).to_have_url(re.compile(r"/admin/cases/karamay/\d+$"))
    page.context.close()


CASE_EVENT_CODES = {"created", "entered", "completed", "closed", "reopened", "returned", "overdue", "escalated"}


def test_departments_multiselect_and_duration_units(browser, server):
    base, _ = server
    page = sign_in(browser, base, "admin", 1366)
    page.goto(base + "/admin/j/weiyang")
    page.get_by_role("button", name="基于生效版本新建草稿").click()
    expect(page).to_have_url(re.compile(r"/admin/j/weiyang/v/\d+$"))
    draft = page.url
    row = page.locator("main table tbody tr").first
    row.get_by_role("button", name="编辑").click()
    select = page.locator("select[multiple][name=departments]")
    expect(select).to_be_visible()
    options = select.locator("option")
    assert options.count() >= 2 and all(re.search(r"[\u4e00-\u9fff]", t) for t in options.all_inner_texts())
    # the filter box hides the departments whose name does not match
    first_name = options.nth(1).inner_text()
    page.get_by_label("筛选职能部门").fill(first_name[:4])
    htmx_idle(page)
    hidden = page.evaluate("[...document.querySelectorAll('select[multiple] option')].filter(o => o.hidden).length")
    assert hidden >= 1
    page.get_by_label("筛选职能部门").fill("")
    values = [options.nth(0).get_attribute("value"), options.nth(1).get_attribute("value")]
    select.select_option(values)
    page.locator("main form").get_by_role("button", name="保存").click()
    saved = page.locator("tr.saved")
    expect(saved).to_contain_text(first_name)  # read before saving: the saved row replaces the form
    expect(saved).to_contain_text("、")
    assert not any(v in saved.locator("td").nth(2).inner_text() for v in values)  # names, not ids
    # a deadline entered as number + unit is stored as ISO 8601 and shown in words
    page.goto(draft + "/workflows")
    step = page.locator("#steps-patrol_persuade-persuade")  # its deadline is an assumption: any number is allowed
    step.get_by_label("时限", exact=True).fill("abc")
    htmx_idle(page)
    expect(step.locator("[id$=-d_duration].error")).to_contain_text("时限须为正数")
    step.get_by_label("时限", exact=True).fill("3")
    step.get_by_label("单位").select_option("working_days")
    step.get_by_role("button", name="保存").click()
    expect(step.locator("[role=status]")).to_have_text("已保存")
    page.goto(draft + "/workflows")
    expect(page.locator("#steps-patrol_persuade-persuade")).to_contain_text("现为 3 个工作日")
    page.context.close()


def test_times_are_beijing_time(browser, server, width):
    base, url = server
    page = sign_in(browser, base, "admin", width)
    page.goto(base + "/admin/cases/karamay/list?state=all")
    expect(page.locator("#case-rows thead")).to_contain_text("受理时间 (北京时间)")
    assert "UTC" not in page.locator("main").inner_text()
    first = page.locator("#case-rows tbody tr").first
    case_id = int(first.get_attribute("data-case"))
    shown = first.locator("td").nth(1).inner_text()
    engine = make_engine(url)
    with engine.connect() as conn:
        created = conn.execute(
            CaseRecord.__table__.select().where(CaseRecord.__table__.c.id == case_id)).one().created_at
    engine.dispose()
    expected = (created if created.tzinfo else created.replace(tzinfo=timezone.utc)).astimezone(TIME_ZONE)
    assert shown == expected.strftime("%Y-%m-%d %H:%M"), (shown, created)
    # 超期: a due time ahead of now belongs to the fresh clock started by the escalation, and says so
    page.goto(base + "/admin/cases/karamay/list?state=overdue")
    now = datetime.now(TIME_ZONE).replace(tzinfo=None)
    for row in page.locator("#case-rows tbody tr[data-case]").all()[:20]:
        due = row.locator("td").nth(6).inner_text().split("\n")
        when = datetime.strptime(due[0], "%Y-%m-%d %H:%M")
        assert when <= now or "重新计时" in due[-1], due
    page.goto(base + f"/admin/cases/karamay/{case_id}")
    expect(page.locator("main")).to_contain_text(expected.strftime("%Y-%m-%d %H:%M") + " 北京时间")
    no_page_overflow(page)
    page.context.close()


def test_single_jurisdiction_editor_sees_what_they_can_use(browser, server, width):
    base, _ = server
    page = sign_in(browser, base, "wy_editor", width)
    # the index links no other jurisdiction's cases (they would answer 403)
    assert page.locator("a[href^='/admin/cases/karamay']").count() == 0
    expect(page.locator("a[href^='/admin/cases/weiyang']").first).to_be_visible()
    page.get_by_role("navigation", name="主导航").get_by_role("link", name="综合评价").click()
    expect(page).to_have_url(re.compile(r"/admin/j/weiyang/assessment"))
    # another jurisdiction's page links nothing that would answer 403
    page.goto(base + "/admin/j/karamay")
    for href in page.locator("main a").evaluate_all("as => as.map(a => a.getAttribute('href'))"):
        if href.startswith("/admin/"):
            assert page.request.get(base + href).status != 403, href
    # a forbidden page keeps the navigation
    answer = page.goto(base + "/admin/cases/karamay")
    assert answer.status == 403
    expect(page.get_by_role("navigation", name="主导航")).to_be_visible()
    # the Weiyang page shows its levels
    page.goto(base + "/admin/j/weiyang")
    expect(page.locator("#levels")).to_contain_text("第4级")
    assert page.locator("#levels tbody tr").count() == 4
    no_page_overflow(page)
    page.context.close()


def test_simulator_version_pinyin_and_single_lines(browser, server, width):
    base, _ = server
    page = sign_in(browser, base, "admin", width)
    page.goto(base + "/admin/simulate?jurisdiction=weiyang")
    page.get_by_label("问题类型 (名称、拼音或编码)").fill("jiegan")
    page.get_by_label("告知劝阻无效").check()
    page.get_by_role("button", name="路由").click()
    expect(page.locator("#decision-version")).to_have_text("v1 (已发布)")
    actions = texts(page, "#decision-actions li")
    assert len(actions) == len(set(actions)) and sum(a.startswith("上报") for a in actions) == 1, actions
    trace = texts(page, "#decision-trace li strong")
    assert len(trace) == len(set(trace)), trace
    assert "告知劝阻无效与否" in page.locator("#deadline-note").inner_text()
    assert ".txt" not in page.locator("#decision").inner_text()
    no_page_overflow(page)
    page.context.close()


def test_compare_three_highlights_differences_among_those_that_have_a_type(browser, server):
    base, _ = server
    page = sign_in(browser, base, "admin", 1366)
    page.goto(base + "/admin/compare?ids=hefei&ids=weiyang&ids=karamay")
    differing = page.locator("#compare-types tr[data-differs]")
    assert differing.count() >= 1
    # a highlighted row: at least two of the three have the type, at different levels
    cells = differing.first.locator("td").all_inner_texts()[1:]
    levels = {c for c in cells if c != "—"}
    assert len(levels) >= 2
    page.context.close()


def test_layout_phone_and_laptop(browser, server):
    base, _ = server
    phone = sign_in(browser, base, "admin", 390)
    for path in ("/admin/", "/admin/j/hefei/v/1", "/admin/j/hefei/v/1/units", "/admin/cases/karamay/list",
                 "/admin/j/karamay/v/1/verify", "/admin/compare?ids=hefei&ids=weiyang", "/admin/audit"):
        phone.goto(base + path)
        no_page_overflow(phone)
    # nav links keep their words on one line
    heights = phone.locator("header nav a").evaluate_all("as => as.map(a => a.getBoundingClientRect().height)")
    assert max(heights) < 40, heights
    phone.goto(base + "/admin/j/hefei/v/1/units")
    tracks = phone.locator(".split").evaluate("e => getComputedStyle(e).gridTemplateColumns")
    assert len(tracks.split()) == 1, tracks
    shot(phone, "phone-units")
    phone.context.close()
    laptop = sign_in(browser, base, "admin", 1366)
    laptop.goto(base + "/admin/j/panjin")
    laptop.get_by_role("button", name="基于生效版本新建草稿").click()  # a draft: its rows have 编辑 buttons
    expect(laptop).to_have_url(re.compile(r"/admin/j/panjin/v/\d+$"))
    for locator in (laptop.locator("td.level").first, laptop.get_by_role("button", name="编辑").first):
        box = locator.evaluate(
            "e => [e.getBoundingClientRect().height, parseFloat(getComputedStyle(e).lineHeight) || 20]")
        assert box[0] < 2 * box[1] + 12, box
    # the favicon is served
    assert laptop.request.get(base + "/admin/static/favicon.svg").status == 200
    assert laptop.locator("link[rel=icon]").get_attribute("href") == "/admin/static/favicon.svg"
    laptop.context.close()


def test_audit_log(browser, server, width):
    base, _ = server
    page = sign_in(browser, base, "admin", width)
    page.get_by_role("navigation", name="主导航").get_by_role("link", name="审计日志").click()
    expect(page.get_by_role("heading", name="审计日志")).to_be_visible()
    rows = page.locator("#audit-rows tbody tr[data-action]")
    assert rows.count() >= 16
    first = rows.first.locator("td").all_inner_texts()
    assert BEIJING.match(first[0]), first
    expect(page.locator("#audit-rows")).to_contain_text("首次导入规则文件")
    page.get_by_label("操作", exact=True).select_option("user_created")
    page.get_by_role("button", name="筛选").click()
    expect(page.locator("#audit-rows tbody tr[data-action]")).to_have_count(3)
    expect(page.locator("#audit-rows")).to_contain_text("创建用户")
    page.goto(base + "/admin/audit?jurisdiction=karamay")
    assert set(page.locator("#audit-rows tbody td:nth-child(4) a").all_inner_texts()) == {"karamay"}
    no_page_overflow(page)
    shot(page, f"audit-log-{width}")
    page.context.close()
    # an editor of one jurisdiction sees its entries only, and cannot ask for another's
    editor = sign_in(browser, base, "wy_editor", width)
    editor.goto(base + "/admin/audit")
    assert set(editor.locator("#audit-rows tbody td:nth-child(4) a").all_inner_texts()) == {"weiyang"}
    assert editor.goto(base + "/admin/audit?jurisdiction=karamay").status == 403
    expect(editor.get_by_role("navigation", name="主导航")).to_be_visible()
    editor.context.close()


def test_api_docs_render_offline(browser, server, width):
    base, _ = server
    context = browser.new_context(viewport={"width": width, "height": 900})
    foreign: list[str] = []

    def only_local(route):
        if route.request.url.startswith(base):
            route.continue_()
        else:
            foreign.append(route.request.url)
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    page.goto(base + "/schema")
    expect(page.locator(".swagger-ui .opblock-summary-path").filter(has_text="/v1/route").first).to_be_visible(
        timeout=20000)
    assert foreign == [], foreign
    assert page.request.get(base + "/schema/openapi.json").ok
    context.close()

