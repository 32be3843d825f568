"""Insight pages end to end in headless Chromium: escalation graph and impact preview on the verify page,
compare chart and .xlsx export, cases dashboard and a case's timeline."""
from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect

from engine.router import Case
from policy.loader import Loader
from store.cases import CaseService, Transition
from store.db import make_engine, migrate
from store.tables import utcnow
from store.users import create_user
from store.versions import PolicyStore
from tests.live import PASSWORD, htmx_idle, live_server, shot, sign_in

MEDICAL = "waste.medical.disposal"  # karamay: level 2


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """Karamay cases created before the server starts: what the dashboard and the replay must show."""
    url = f"sqlite:///{tmp_path_factory.mktemp('insight') / 'insight.db'}"
    engine = make_engine(url)
    migrate(engine)
    policies = PolicyStore(engine, Loader().catalog)
    policies.bootstrap(Loader())
    cases = CaseService(policies)
    now = utcnow()
    made = [cases.create("karamay", Case(problem_type=MEDICAL, unit="kmy-l3-01"), "intake", now=now - timedelta(days=3)),
            cases.create("karamay", Case(problem_type="waste.medical.wastewater", unit="kmy-l3-02"), "intake",
                         now=now - timedelta(days=2)),
            cases.create("karamay", Case(problem_type=MEDICAL, unit="kmy-l3-02"), "intake", now=now - timedelta(days=1))]
    cases.transition(made[2].id, Transition("close", "王网格员", "劝阻有效, 已整改"), now=now)
    create_user(engine, "admin", PASSWORD, True, {}, "test")
    engine.dispose()
    with live_server(url) as base:
        yield base, made


def test_verify_shows_escalation_graph_and_impact_of_a_draft_edit(browser, seeded):
    server, made = seeded
    page = sign_in(browser, server, "admin")
    page.goto(server + "/admin/j/karamay")
    page.get_by_role("button", name="基于生效版本新建草稿").click()
    expect(page).to_have_url(server + "/admin/j/karamay/v/2")
    page.get_by_role("button", name="编辑 医疗废物处置").click()
    htmx_idle(page)
    page.get_by_label("处置层级").fill("3")
    page.get_by_role("button", name="保存").click()
    expect(page.locator("#type-waste-medical-disposal .level")).to_have_text("第3级")

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
    expect(page.locator("#impact-summary")).to_contain_text("重放 3 件")
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
