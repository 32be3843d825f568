"""The OpenAPI document describes every field an integrator reads: the decision, cases, versions and the
assessment are typed models (engine/decision.py, api/responses.py), not `{"type": "object"}`."""
from __future__ import annotations

import shutil

import pytest

from api.app import create_app


@pytest.fixture(scope="module")
def schema(prepared_sqlite, tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("openapi") / "openapi.db"
    shutil.copy(prepared_sqlite, path)
    app = create_app(f"sqlite:///{path}", background=False)
    return app.openapi_schema.to_schema()


def _ok(schema: dict, path: str, method: str) -> dict:
    responses = schema["paths"][path][method]["responses"]
    content = next(r for code, r in responses.items() if code.startswith("2"))["content"]
    return content["application/json"]["schema"]


def _model(schema: dict, ref: dict) -> dict:
    if "items" in ref:
        ref = ref["items"]
    return schema["components"]["schemas"][ref["$ref"].rsplit("/", 1)[-1]]


@pytest.mark.parametrize(("path", "method", "fields"), [
    ("/v1/route", "post", {"handler", "actions", "deadlines", "escalation_path", "trace", "policy_version"}),
    ("/v1/cases", "post", {"decision", "allowed_actions", "events", "clocks", "status", "due_at"}),
    ("/v1/cases/{case_id}", "get", {"decision", "allowed_actions", "events", "clocks"}),
    ("/v1/cases", "get", {"total", "items"}),
    ("/v1/jurisdictions/{jid}/versions", "get", {"number", "revision", "content_hash"}),
    ("/v1/jurisdictions/{jid}/versions/{number}", "get", {"number", "revision", "document"}),
    ("/v1/jurisdictions/{jid}/assessment", "get", {"units", "levels", "departments", "scheme", "period"}),
    ("/v1/jurisdictions/{jid}/assessment/trend", "get", {"period", "on_time_handling_rate"}),
    ("/v1/jurisdictions/{jid}/assessment/units/{unit}", "get", {"deductions", "score_window"}),
])
def test_success_responses_are_typed_models(schema, path, method, fields):
    model = _model(schema, _ok(schema, path, method))
    assert fields <= set(model["properties"]), sorted(model["properties"])


def test_the_decision_describes_its_parts(schema):
    decision = _model(schema, _ok(schema, "/v1/route", "post"))
    handler = _model(schema, decision["properties"]["handler"])
    assert {"level", "unit", "unit_name", "departments"} <= set(handler["properties"])
    hop = _model(schema, decision["properties"]["escalation_path"])
    assert {"level", "unit", "after", "rule"} <= set(hop["properties"])
