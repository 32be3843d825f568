"""Intake carries the report; the grid is found from a location (boundaries on a generated lattice, never real data)."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import coordTransform
import pytest
from hypothesis import assume, given, settings, strategies as st
from litestar.testing import TestClient
from sqlmodel import Session, func, select
from typer.testing import CliRunner

from api.app import create_app
from api.intake import EMAIL, PHONE, Reporter
from cli.main import app as cli
from store.apikeys import create_key
from store.boundaries import Locator, check, import_boundaries, stored
from store.tables import CaseRecord
from tests.lattice import centre, lattice

JID = "karamay"
MEDICAL = "医疗废物处置"


@pytest.fixture
def client(database_url):
    """The app over real HTTP (ASGI) on a fresh database, with its services and an all-jurisdiction key."""
    app = create_app(database_url, background=False)
    services = app.state.services
    with TestClient(app) as test_client:
        test_client.services, test_client.engine = services, services.policies.engine
        test_client.headers_ = {"X-API-Key": create_key(services.policies.engine, [], "all", "test")}
        yield test_client
    services.policies.engine.dispose()


def publish_lattice(policies, jid: str = JID) -> dict:
    """Generated boundaries for every unit of `jid`, imported onto a draft and published; returns the leaf cells."""
    draft = policies.create_draft(jid, "测试")
    collection, cells = lattice(policies.build(draft).units)
    preview = import_boundaries(policies, jid, draft.number, json.dumps(collection), "测试")
    assert preview.ok, preview.problems()
    policies.publish(jid, draft.number, "发布人", "导入网格边界")
    return cells


def case_count(policies) -> int:
    with Session(policies.engine) as session:
        return session.exec(select(func.count()).select_from(CaseRecord)).one()


def test_a_case_carries_the_report_and_times_carry_the_offset(client):
    observed = "2026-11-20T09:30:00+08:00"
    body = {"jurisdiction": JID, "problem_type": MEDICAL, "unit": "kmy-l3-01", "description": "医院后门倾倒医疗废物",
            "channel": "热线", "reporter": {"name": "王女士", "phone": "138 0000 0000", "email": "wang@example.cn"},
            "location": {"lat": 45.6, "long": 84.9, "coord_system": "wgs84", "address": "准噶尔路 12 号"},
            "attachments": ["https://img.example.cn/a.jpg"], "observed_at": observed}
    response = client.post("/v1/cases", json=body, headers=client.headers_)
    assert response.status_code == 201, response.text
    case = response.json()
    assert case["description"] == "医院后门倾倒医疗废物" and case["channel"] == "热线"
    assert case["reporter"] == {"name": "王女士", "phone": "138 0000 0000", "email": "wang@example.cn"}
    assert (case["lat"], case["lon"], case["address"]) == (45.6, 84.9, "准噶尔路 12 号")
    assert case["attachments"] == ["https://img.example.cn/a.jpg"]
    assert datetime.fromisoformat(case["observed_at"]) == datetime.fromisoformat(observed)
    for stamp in (case["observed_at"], case["created_at"], case["events"][0]["at"], case["clocks"][0]["due_at"]):
        assert stamp.endswith("+08:00"), stamp
    # stored in UTC
    record = client.services.cases.get(case["id"])[0]
    assert record.observed_at.replace(tzinfo=timezone.utc) == datetime(2026, 11, 20, 1, 30, tzinfo=timezone.utc)
    # the reporter is never published: Open311 and the event feed leave the contact out
    public = client.get(f"/open311/v2/{JID}/requests/{case['id']}.json").text
    feed = client.get("/v1/events", params={"jurisdiction": JID}, headers=client.headers_).text
    assert "王女士" not in public and "138 0000 0000" not in public and "wang@example.cn" not in feed


@pytest.mark.parametrize("change, status, field", [
    ({"channel": "微博"}, 400, "channel"),
    ({"location": {"lat": 45.6, "long": 84.9, "coord_system": "mercator"}}, 422, "location.coord_system"),
    ({"location": {"lat": 95, "long": 84.9}}, 400, "location.lat"),
    ({"attachments": ["ftp://x/y.jpg"]}, 400, "attachments"),
    ({"observed_at": "2026-11-20T09:30:00"}, 400, "observed_at"),
    ({"observed_at": "2099-01-01T00:00:00+08:00"}, 422, "observed_at"),
    ({"reporter": {"email": "not-an-address"}}, 400, "reporter.email"),
])
def test_bad_report_fields_are_refused_and_change_nothing(client, change, status, field):
    before = case_count(client.services.policies)
    body = {"jurisdiction": JID, "problem_type": MEDICAL, "unit": "kmy-l3-01", **change}
    response = client.post("/v1/cases", json=body, headers=client.headers_)
    assert response.status_code == status, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in (problem.get("field") or "") + json.dumps(problem.get("errors", []))
    if status == 422:
        assert any("\u4e00" <= ch <= "\u9fff" for ch in problem["detail"])  # a Chinese message
    assert case_count(client.services.policies) == before


def test_the_grid_is_found_from_a_location_in_any_coordinate_system(client):
    cells = publish_lattice(client.services.policies)
    unit, cell = "kmy-l3-05", cells["kmy-l3-05"]
    lon, lat = centre(cell)
    systems = {"wgs84": (lon, lat), "CGCS2000": (lon, lat), "gcj02": tuple(coordTransform.wgs84_to_gcj02(lon, lat)),
               "BD-09": tuple(coordTransform.wgs84_to_bd09(lon, lat))}
    assert systems["gcj02"] != (lon, lat)  # the offset is real (hundreds of metres), so conversion matters
    for system, (x, y) in systems.items():
        body = {"jurisdiction": JID, "problem_type": MEDICAL, "location": {"lat": y, "long": x, "coord_system": system}}
        response = client.post("/v1/cases", json=body, headers=client.headers_)
        assert response.status_code == 201, (system, response.text)
        case = response.json()
        assert case["unit"] == unit, system
        assert abs(case["lon"] - lon) < 1e-4 and abs(case["lat"] - lat) < 1e-4  # stored in WGS-84


def test_a_point_on_a_shared_edge_or_outside_every_unit_is_422_naming_the_nearest(client):
    cells = publish_lattice(client.services.policies)
    left = cells["kmy-l3-05"]
    neighbour = next(u for u, c in cells.items() if c[0] == left[2] and c[1] == left[1])
    before = case_count(client.services.policies)
    on_edge = {"jurisdiction": JID, "problem_type": MEDICAL,
               "location": {"lat": (left[1] + left[3]) / 2, "long": left[2]}}
    response = client.post("/v1/cases", json=on_edge, headers=client.headers_)
    assert response.status_code == 422 and response.json()["field"] == "location"
    assert set(response.json()["nearest_units"]) == {"kmy-l3-05", neighbour} and "边界上" in response.json()["detail"]
    outside = {"jurisdiction": JID, "problem_type": MEDICAL, "location": {"lat": left[1] - 1, "long": left[0]}}
    response = client.post("/v1/cases", json=outside, headers=client.headers_)
    assert response.status_code == 422 and "不在任何网格内" in response.json()["detail"]
    assert len(response.json()["nearest_units"]) == 3
    assert case_count(client.services.policies) == before


def test_without_boundaries_a_location_alone_is_a_clear_422(client):
    body = {"jurisdiction": JID, "problem_type": MEDICAL, "location": {"lat": 45.6, "long": 84.9}}
    response = client.post("/v1/cases", json=body, headers=client.headers_)
    assert response.status_code == 422 and "没有网格边界" in response.json()["detail"]


def test_open311_post_maps_its_fields_onto_the_report(client):
    cells = publish_lattice(client.services.policies)
    lon, lat = centre(cells["kmy-l3-02"])
    key = client.headers_["X-API-Key"]
    response = client.post(f"/open311/v2/{JID}/requests.json", data={
        "api_key": key, "service_code": "waste.medical.disposal", "lat": str(lat), "long": str(lon),
        "address_string": "准噶尔路 12 号", "email": "li@example.cn", "phone": "13900000000", "first_name": "李",
        "media_url": "https://img.example.cn/b.jpg", "description": "垃圾桶旁有针头"})
    assert response.status_code == 201, response.text
    case_id = response.json()[0]["service_request_id"]
    record = client.services.cases.get(case_id)[0]
    assert record.unit == "kmy-l3-02" and record.address == "准噶尔路 12 号" and record.description == "垃圾桶旁有针头"
    assert record.reporter == {"name": "李", "email": "li@example.cn", "phone": "13900000000"}
    assert record.attachments == ["https://img.example.cn/b.jpg"] and record.channel == "公众举报"
    bad = client.post(f"/open311/v2/{JID}/requests.json", data={
        "api_key": key, "service_code": "waste.medical.disposal", "lat": "abc", "long": str(lon)})
    assert bad.status_code == 400 and "lat/long" in bad.json()[0]["description"]


def test_boundaries_belong_to_a_version_are_copied_to_drafts_and_diffed(client):
    policies = client.services.policies
    publish_lattice(policies)
    active = policies.active_version(JID)
    draft = policies.create_draft(JID, "编辑")
    assert (stored(policies.engine, JID, draft.number).content_hash
            == stored(policies.engine, JID, active.number).content_hash)
    collection, _ = lattice(policies.build(draft).units, origin=(117.0, 31.7))  # moved north
    collection["features"] = collection["features"][:-1]
    assert import_boundaries(policies, JID, draft.number, collection, "编辑").ok
    diff = client.get(f"/v1/jurisdictions/{JID}/diff", params={"from": active.number, "to": draft.number}).json()
    assert len(diff["boundaries"]["removed"]) == 1 and diff["boundaries"]["changed"] and not diff["boundaries"]["added"]
    # the published version is unchanged and still routes from its own boundaries
    with pytest.raises(Exception, match="草稿"):
        import_boundaries(policies, JID, active.number, collection, "编辑")


def test_bad_geojson_is_listed_and_nothing_is_saved(client):
    policies = client.services.policies
    draft = policies.create_draft(JID, "编辑")
    units = policies.build(draft).units
    collection, cells = lattice(units)
    square = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    cases = {
        "{not json": "不是有效的 JSON",
        json.dumps({"type": "Feature"}): "FeatureCollection",
        json.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {}, "geometry": square}]}): "缺少 properties.id",
        json.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {"id": "kmy-l3-01"}, "geometry": bowtie}]}): "自相交",
        json.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {"id": "nowhere"}, "geometry": square}]}): "不是本版本的网格单元",
        json.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {"id": "kmy-l3-01"}, "geometry": square},
            {"type": "Feature", "properties": {"id": "kmy-l3-02"}, "geometry": square}]}): "重叠",
        json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"id": "kmy-l3-01"},
                    "geometry": {"type": "Polygon", "coordinates": [[[31, 117], [31, 200], [32, 200], [31, 117]]]}}]}):
            "超出经纬度范围",
    }
    for text, message in cases.items():
        preview = import_boundaries(policies, JID, draft.number, text, "编辑")
        assert not preview.ok and any(message in p for p in preview.problems()), (message, preview.problems())
        assert stored(policies.engine, JID, draft.number) is None


def test_cli_imports_boundaries_onto_a_draft(client, tmp_path, monkeypatch):
    policies = client.services.policies
    monkeypatch.setenv("GRIDPOLICY_DATABASE_URL", str(policies.engine.url.render_as_string(hide_password=False)))
    collection, _ = lattice(policies.build(policies.active_version(JID)).units)
    good, bad = tmp_path / "units.geojson", tmp_path / "bad.geojson"
    good.write_text(json.dumps(collection), encoding="utf-8")
    collection["features"][0]["properties"]["id"] = "nowhere"
    bad.write_text(json.dumps(collection), encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(cli, ["units", "boundaries", "import", JID, str(bad)])
    assert result.exit_code == 1 and "nowhere" in result.output and "未导入" in result.output
    drafts = [v for v in policies.list_versions(JID) if v.status == "draft"]
    assert all(stored(policies.engine, JID, v.number) is None for v in drafts)
    result = runner.invoke(cli, ["units", "boundaries", "import", JID, str(good)])
    assert result.exit_code == 0, result.output
    draft = [v for v in policies.list_versions(JID) if v.status == "draft"][-1]
    assert len(stored(policies.engine, JID, draft.number).geojson["features"]) == len(collection["features"])


@pytest.fixture(scope="module")
def hefei_locator():
    from policy.loader import Loader
    units = Loader().build("hefei").units
    collection, cells = lattice(units)
    preview = check(collection, units)
    assert preview.ok
    return Locator(preview.collection, units), cells


@settings(max_examples=300, deadline=None)
@given(st.floats(0.01, 0.99), st.floats(0.01, 0.99), st.data())
def test_every_point_inside_a_cell_is_located_to_that_cell(hefei_locator, fx, fy, data):
    locator, cells = hefei_locator
    unit = data.draw(st.sampled_from(sorted(cells)))
    minx, miny, maxx, maxy = cells[unit]
    assert locator.locate(minx + fx * (maxx - minx), miny + fy * (maxy - miny)) == unit


@settings(max_examples=300, deadline=None)
@given(email=st.from_regex(EMAIL), phone=st.from_regex(PHONE))
def test_a_contact_the_schema_pattern_admits_is_accepted(email, phone):
    """The schema's generators (schemathesis, from_regex) read a pattern as Python does, where `$` also matches before a
    final newline: what they make from the published pattern must not be refused."""
    assume(len(email) <= 254 and len(phone) <= 32)
    assert Reporter(email=email, phone=phone).email == email
    assert Reporter(email="gridman@example.cn\n").email == "gridman@example.cn\n"
