"""The integration admin pages in headless Chromium against a real server: GeoJSON upload with preview, the grid map
(click a grid → its unit page) and webhook subscriptions."""
from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from engine.router import Case
from store.boundaries import stored
from store.cases import CaseService
from store.versions import open_policy_store
from tests.admin_browser import database_with_users, free_port, running_server, shot, sign_in
from tests.lattice import centre, lattice
from tests.receiver import receiving

JID = "karamay"


@pytest.fixture(scope="module")
def geo_server(tmp_path_factory):
    url = database_with_users(tmp_path_factory.mktemp("geo"))
    with running_server(url) as base:
        yield base, url


def test_upload_boundaries_see_the_map_and_open_a_grid(geo_server, browser, tmp_path):
    base, url = geo_server
    policies = open_policy_store(url)
    draft = policies.create_draft(JID, "编辑")
    collection, cells = lattice(policies.build(draft).units)
    bad, good = tmp_path / "bad.geojson", tmp_path / "karamay.geojson"
    good.write_text(json.dumps(collection), encoding="utf-8")
    collection["features"][3]["properties"]["id"] = "no-such-unit"
    bad.write_text(json.dumps(collection), encoding="utf-8")

    page = sign_in(browser, base, "admin")
    page.goto(f"{base}/admin/j/{JID}/v/{draft.number}/boundaries")
    page.get_by_label("GeoJSON 文件").set_input_files(str(bad))
    page.get_by_role("button", name="预览").click()
    expect(page.locator("#boundaries-errors")).to_contain_text("no-such-unit")
    assert stored(policies.engine, JID, draft.number) is None  # nothing saved on error
    page.get_by_label("GeoJSON 文件").set_input_files(str(good))
    page.get_by_role("button", name="预览").click()
    expect(page.locator("#boundaries-preview")).to_contain_text(f"匹配 {len(collection['features'])} 个网格单元")
    page.get_by_role("button", name="确认导入").click()
    expect(page.get_by_text(f"本版本有 {len(collection['features'])} 个网格单元的边界")).to_be_visible()

    policies.publish(JID, draft.number, "发布人", "导入网格边界")
    lon, lat = centre(cells["kmy-l3-05"])
    CaseService(policies).create(JID, Case(problem_type="医疗废物处置", unit="kmy-l3-05"), "测试",
                                 report={"lat": lat, "lon": lon, "coord_system": "wgs84"})
    page.goto(f"{base}/admin/j/{JID}/map")
    expect(page.locator("#grid-map circle.case")).to_have_count(1)
    shot(page, "grid-map")
    page.locator('#grid-map a[data-unit="kmy-l3-05"] path').click(position={"x": 2, "y": 2}, force=True)
    expect(page).to_have_url(f"{base}/admin/j/{JID}/assessment/units/kmy-l3-05")
    policies.engine.dispose()


def test_webhook_subscription_in_the_admin(geo_server, browser):
    base, _ = geo_server
    page = sign_in(browser, base, "admin")
    page.goto(f"{base}/admin/j/{JID}/webhooks")
    page.get_by_label("接收地址").fill(f"http://127.0.0.1:{free_port()}/hooks")
    page.get_by_role("button", name="订阅").click()
    expect(page.get_by_role("alert")).to_contain_text("无法连接")
    expect(page.locator("#subscription-1")).to_have_count(0)
    with receiving() as receiver:
        page.get_by_label("接收地址").fill(receiver.url)
        page.get_by_label("升级", exact=True).check()
        page.get_by_role("button", name="订阅").click()
        expect(page.locator("#created-secret")).to_contain_text("whsec_")
        expect(page.locator("#subscription-1")).to_contain_text("case.escalated")
    shot(page, "webhooks")
