"""Open311 GeoReport v2 exercised as a 311 client (FixMyStreet-style) would: XML first, JSON too."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from litestar.testing import TestClient

from api.app import create_app
from store.apikeys import create_key

# Field lists from the GeoReport v2 specification's response tables (the XML is schemaless but fixed).
SERVICE_FIELDS = {"service_code", "service_name", "description", "metadata", "type", "keywords", "group"}
ATTRIBUTE_FIELDS = {"variable", "code", "datatype", "required", "datatype_description", "order", "description",
                    "values"}
REQUEST_FIELDS = {"service_request_id", "status", "status_notes", "service_name", "service_code", "description",
                  "agency_responsible", "service_notice", "requested_datetime", "updated_datetime",
                  "expected_datetime", "address", "address_id", "zipcode", "lat", "long", "media_url"}
POST_FIELDS = {"service_request_id", "service_notice", "account_id"}
W3C = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"


@pytest.fixture
def client(tmp_path):
    app = create_app(f"sqlite:///{tmp_path / 'o311.db'}", background=False)
    key = create_key(app.state.services.policies.engine, ["karamay"], "311", "test")
    with TestClient(app) as test_client:
        test_client.api_key = key
        yield test_client


def xml_of(response):
    assert response.headers["content-type"].startswith("text/xml")
    return ET.fromstring(response.content)


def children(element) -> set[str]:
    return {child.tag for child in element}


def test_discovery_lists_the_endpoint_and_formats(client):
    root = xml_of(client.get("/open311/v2/karamay/discovery.xml"))
    assert root.tag == "discovery" and children(root) == {"changeset", "contact", "key_service", "endpoints"}
    endpoint = root.find("endpoints/endpoint")
    assert endpoint.findtext("specification") == "http://wiki.open311.org/GeoReport_v2"
    assert [f.text for f in endpoint.findall("formats/format")] == ["text/xml", "application/json"]


def test_services_xml_and_json_agree(client):
    root = xml_of(client.get("/open311/v2/karamay/services.xml"))
    assert root.tag == "services" and all(s.tag == "service" and children(s) == SERVICE_FIELDS for s in root)
    as_json = client.get("/open311/v2/karamay/services.json").json()
    assert [s["service_code"] for s in as_json] == [s.findtext("service_code") for s in root]
    medical = next(s for s in root if s.findtext("service_code") == "waste.medical.disposal")
    assert medical.findtext("service_name") == "医疗废物处置" and medical.findtext("metadata") == "true"


def test_service_definition_attributes_are_the_facts_rules_test(client):
    root = xml_of(client.get("/open311/v2/karamay/services/waste.medical.disposal.xml"))
    assert root.tag == "service_definition" and root.findtext("service_code") == "waste.medical.disposal"
    attributes = root.findall("attributes/attribute")
    assert attributes and all(children(a) == ATTRIBUTE_FIELDS for a in attributes)
    codes = [a.findtext("code") for a in attributes]
    assert "corrected_on_site" in codes and "deadline_missed" not in codes
    assert xml_of(client.get("/open311/v2/karamay/services/no.such.xml")).find("error/code").text == "404"


def test_post_request_then_query_it(client):
    response = client.post("/open311/v2/karamay/requests.xml", data={
        "api_key": client.api_key, "service_code": "waste.medical.disposal", "address_id": "kmy-l3-03",
        "attribute[corrected_on_site]": "false", "description": "医院后门倾倒医疗废物", "account_id": "u-7"})
    assert response.status_code == 201
    root = xml_of(response)
    assert root.tag == "service_requests" and children(root[0]) == POST_FIELDS
    request_id = root.findtext("request/service_request_id")
    one = xml_of(client.get(f"/open311/v2/karamay/requests/{request_id}.xml"))
    request = one.find("request")  # public: what the reporter wrote is not shown
    assert children(request) == REQUEST_FIELDS - {"description"} and request.findtext("status") == "open"
    keyed = xml_of(client.get(f"/open311/v2/karamay/requests/{request_id}.xml", params={"api_key": client.api_key}))
    assert children(keyed.find("request")) == REQUEST_FIELDS
    assert keyed.findtext("request/description") == "医院后门倾倒医疗废物"
    assert request.findtext("agency_responsible") == "市生态环境局克拉玛依区分局"
    import re
    assert (re.match(W3C, request.findtext("expected_datetime"))
            and re.match(W3C, request.findtext("requested_datetime")))
    listed = client.get("/open311/v2/karamay/requests.json", params={"status": "open"}).json()
    assert [r["service_request_id"] for r in listed] == [int(request_id)]
    assert client.get("/open311/v2/karamay/requests.json", params={"status": "closed"}).json() == []
    assert client.get("/open311/v2/karamay/requests.json",
                      params={"service_code": "waste.medical.wastewater"}).json() == []


def test_corrected_on_site_request_is_closed(client):
    response = client.post("/open311/v2/karamay/requests.json", data={
        "api_key": client.api_key, "service_code": "waste.medical.disposal", "address_id": "kmy-l3-03",
        "attribute[corrected_on_site]": "true"})
    request_id = response.json()[0]["service_request_id"]
    assert client.get(f"/open311/v2/karamay/requests/{request_id}.json").json()[0]["status"] == "closed"


@pytest.mark.parametrize("form, code", [
    ({"service_code": "waste.medical.disposal", "address_id": "kmy-l3-03"}, "403"),  # no api_key
    ({"api_key": "KEY", "address_id": "kmy-l3-03"}, "400"),
    ({"api_key": "KEY", "service_code": "no.such", "address_id": "kmy-l3-03"}, "404"),
    ({"api_key": "KEY", "service_code": "waste.medical.disposal"}, "400"),
    ({"api_key": "KEY", "service_code": "waste.medical.disposal", "address_id": "nowhere"}, "400"),
    ({"api_key": "KEY", "service_code": "waste.medical.disposal", "address_id": "kmy-l3-03",
      "attribute[persuasion]": "true"}, "400"),
])
def test_errors_use_the_spec_format(client, form, code):
    form = {k: (client.api_key if v == "KEY" else v) for k, v in form.items()}
    response = client.post("/open311/v2/karamay/requests.xml", data=form)
    root = xml_of(response)
    assert root.tag == "errors" and root.findtext("error/code") == code and root.findtext("error/description")
    assert str(response.status_code) == code


def test_unknown_jurisdiction_and_format(client):
    assert client.get("/open311/v2/nowhere/services.xml").status_code == 404
    assert client.get("/open311/v2/karamay/services.csv").status_code == 404
