"""The work one API request repeats, counted rather than timed (issue #10 §6: a route request's CPU was mostly the
handling around the engine): the handler copies Litestar makes for guards, the parses of a JSON body, the query
models built per request, the parts of a decision built per case; and the one guard's key check where the schema
declares it."""
from __future__ import annotations

import json
import re
import shutil

import litestar.connection.request as litestar_request
import litestar.handlers.base as litestar_handlers
import pytest
from litestar.testing import TestClient

from api import guards
from api.app import create_app
from engine import router as router_module
from engine.router import Case
from store.apikeys import create_key


@pytest.fixture
def client(prepared_sqlite, tmp_path):
    path = tmp_path / "test.db"
    shutil.copy(prepared_sqlite, path)
    app = create_app(f"sqlite:///{path}", background=False)
    engine = app.state.services.policies.engine
    with TestClient(app) as test_client:
        test_client.key_headers = {"X-API-Key": create_key(engine, [], "all", "test")}
        yield test_client
    engine.dispose()


ROUTE = {"jurisdiction": "karamay", "problem_type": "医疗废物处置", "unit": "kmy-l3-01"}


def test_a_route_request_copies_its_handler_once(client, monkeypatch):
    """Litestar hands each guard its own copy of the handler (~70 attributes): the input limits and the key check
    are one guard, so one copy (two were a fifth of a route request's CPU)."""
    copies = []
    real_copy = litestar_handlers.copy
    monkeypatch.setattr(litestar_handlers, "copy", lambda handler: copies.append(handler) or real_copy(handler))
    response = client.post("/v1/route", json=ROUTE, headers=client.key_headers)
    assert response.status_code == 200 and len(copies) == 1


def test_a_json_body_is_parsed_once(client, monkeypatch):
    """The guard reads the body with Litestar's own parser, which keeps the document for the handler's `data`."""
    assert client.post("/v1/route", json=ROUTE, headers=client.key_headers).status_code == 200  # karamay loaded
    parses: list[str] = []
    real_decode_json, real_decode = litestar_request.decode_json, json.JSONDecoder.decode
    monkeypatch.setattr(litestar_request, "decode_json",
                        lambda *args, **kwargs: parses.append("litestar") or real_decode_json(*args, **kwargs))
    monkeypatch.setattr(json.JSONDecoder, "decode",
                        lambda self, text, *args: parses.append("json") or real_decode(self, text, *args))
    status = client.post("/v1/route", json=ROUTE, headers=client.key_headers).status_code
    assert status == 200 and parses == ["litestar"]


def test_the_unknown_query_check_builds_each_operations_model_once(client):
    """The parameters an operation takes are read from its handler once, not per request (the cache was keyed by
    the guard's copy of the handler, so it missed every time and filled with copies)."""
    params = {"jurisdiction": "karamay", "limit": "1"}
    assert client.get("/v1/cases", params=params, headers=client.key_headers).status_code == 200
    before = guards._query_params_taken.cache_info()
    for _ in range(3):
        assert client.get("/v1/cases", params=params, headers=client.key_headers).status_code == 200
    after = guards._query_params_taken.cache_info()
    assert after.hits - before.hits == 3 and after.currsize == before.currsize


def test_the_key_is_checked_exactly_where_the_schema_declares_it(client):
    """One guard checks the key on every operation whose OpenAPI security names it, so the document and the check
    cannot disagree: without a key each such operation is a 403 naming X-API-Key, and no other /v1 operation is."""
    schema = client.get("/schema/openapi.json").json()
    keyed = 0
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            url = re.sub(r"\{[^}]+\}", "1", path.replace("{jid}", "karamay"))
            response = client.request(method.upper(), url)
            if {"apiKey": []} in operation.get("security", []):
                keyed += 1
                assert response.status_code == 403 and response.json()["field"] == "X-API-Key", (method, path)
            elif path.startswith("/v1/"):
                assert response.status_code != 403, (method, path)
    assert keyed >= 30


def test_a_decisions_fixed_parts_are_shared_not_rebuilt(client):
    """Trace lines, departments and the problem type are built once per version and shared by every decision (they
    are frozen), so validating a decision takes them as they are; the answer is the same JSON."""
    router = client.app.state.services.policies.router("karamay")
    first, second = (router.route(Case(problem_type=ROUTE["problem_type"], unit=ROUTE["unit"])) for _ in range(2))
    assert first.trace and all(a is b for a, b in zip(first.trace, second.trace, strict=True))
    assert first.problem_type is second.problem_type
    assert all(a is b for a, b in zip(first.handler.departments, second.handler.departments, strict=True))
    answer = client.post("/v1/route", json=ROUTE, headers=client.key_headers).json()
    assert answer["trace"] == [t.model_dump(mode="json", exclude_none=True) for t in first.trace]
    assert all("phase" not in t or t["phase"] == "escalation" for t in answer["trace"])


def test_grid_parties_kept_per_version_are_bounded(client, monkeypatch):
    """A province routes over 200,000 units: the grid parties a version keeps stop at GRID_PARTIES, and a party
    past the bound is built for its decision all the same."""
    monkeypatch.setattr(router_module, "GRID_PARTIES", 2)
    router = client.app.state.services.policies.router("karamay")
    router._grids.clear()
    units = [u for u in router.units.values() if u.level == 3][:4]
    decisions = [router.route(Case(problem_type=ROUTE["problem_type"], unit=u.id)) for u in units]
    assert len(router._grids) == 2
    assert [d.actions[0].by.unit for d in decisions] == [u.id for u in units]
