"""The HTTP API through Litestar's test client (real ASGI requests, real SQLite database)."""
from __future__ import annotations

import time

import pytest
from litestar.testing import TestClient
from sqlalchemy import event

from api.app import create_app
from engine.router import PolicyRouter
from store.apikeys import create_key
from tests.test_pinned import MEDICAL_WASTE_CASE


@pytest.fixture
def client(database_url):
    app = create_app(database_url, background=False)
    engine = app.state.services.policies.engine
    keys = {"all": create_key(engine, [], "all", "test"), "other": create_key(engine, ["nowhere"], "scoped", "test")}
    with TestClient(app) as test_client:
        test_client.keys = keys
        test_client.key_headers = {"X-API-Key": keys["all"]}
        yield test_client
    engine.dispose()


def route_body(**extra):
    return {"jurisdiction": "karamay", "problem_type": "医疗废物处置", "unit": "kmy-l3-01", **extra}


def test_health_asks_the_database_once(client):
    engine = client.app.state.services.policies.engine
    statements: list[str] = []

    def record(_connection, _cursor, statement, *_):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        health = client.get("/health").json()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    # a probe polled every few seconds by a load balancer costs one round trip, not a refresh of every version
    assert [s for s in statements if s != "BEGIN"] == ["SELECT 1"] and health["status"] == "ok"


def test_health_and_openapi(client):
    health = client.get("/health").json()
    assert health["status"] == "ok"
    client.app.state.services.policies.warm()  # what a server's background loop does at start
    for _ in range(600):  # healthy before the versions are built: they are, in the background, and then listed
        if not health["loading"]:
            break
        time.sleep(0.1)
        health = client.get("/health").json()
    assert health["versions"]["karamay"] and not health["loading"]
    schema = client.get("/schema/openapi.json").json()
    assert "/v1/route" in schema["paths"] and "/v1/cases/{case_id}/transitions" in schema["paths"]


def test_route_returns_the_engine_decision_with_version(client):
    response = client.post("/v1/route", json=route_body(), headers=client.key_headers)
    assert response.status_code == 200
    decision = response.json()
    assert (decision["handler"]["level"] == 2
            and decision["policy_version"] == client.get("/health").json()["versions"]["karamay"])
    assert {"jurisdiction", "problem_type", "handler", "first_action", "actions", "deadlines",
            "escalation_path", "trace"} <= set(decision)


@pytest.mark.parametrize("body, status, field", [
    (route_body(problem_type="医疗"), 422, "problem_type"),
    (route_body(unit="nowhere"), 422, "unit"),
    (route_body(jurisdiction="nope"), 404, "jurisdiction"),
    (route_body(problem_type=5), 400, "problem_type"),
    (route_body(facts={"persuasion_faild": True}), 400, "facts"),
    ({"problem_type": "x"}, 400, "jurisdiction"),
])
def test_bad_input_is_problem_json_never_500(client, body, status, field):
    response = client.post("/v1/route", json=body, headers=client.key_headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status and field in (problem.get("field") or "") + problem["detail"]


def test_oversized_body_is_413(client):
    response = client.post("/v1/route", content=b'{"x": "' + b"a" * 300_000 + b'"}',
                           headers={**client.key_headers, "Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["status"] == 413


def test_api_keys_are_required_and_scoped(client):
    assert client.post("/v1/route", json=route_body()).status_code == 403
    assert client.post("/v1/route", json=route_body(), headers={"X-API-Key": "gp_bad_key"}).status_code == 403
    scoped = client.post("/v1/route", json=route_body(), headers={"X-API-Key": client.keys["other"]})
    assert scoped.status_code == 403 and "karamay" in scoped.json()["detail"]
    assert client.get("/v1/jurisdictions").status_code == 200  # read-only policy endpoints are public


def test_a_keyed_path_naming_an_unknown_jurisdiction_is_404(client):
    """Found by schemathesis: with a key for every jurisdiction, `GET /v1/jurisdictions/<unknown>/patrols` listed
    nothing with a 200, as if the jurisdiction existed. Every keyed path with a `jid` answers 404 for one that does
    not (and a key scoped elsewhere still gets its 403 first, so scope is not probed through it)."""
    for path in ("/v1/jurisdictions/nowhere-at-all/patrols", "/v1/jurisdictions/nowhere-at-all/objects",
                 "/v1/jurisdictions/nowhere-at-all/cadences", "/v1/jurisdictions/nowhere-at-all/assessment"):
        answer = client.get(path, headers=client.key_headers)
        assert answer.status_code == 404, (path, answer.text)
        assert answer.json()["field"] == "jid" and "nowhere-at-all" in answer.json()["detail"]
        assert client.get(path, headers={"X-API-Key": client.keys["other"]}).status_code == 403
    assert client.get("/v1/jurisdictions/panjin/patrols", headers=client.key_headers).status_code == 200


def test_the_key_is_checked_before_anything_is_looked_up_and_the_schema_says_which_need_one(client):
    """One guard checks the key for every keyed endpoint (#15 §4): without a valid key a case that does not exist
    is a 403 like one that does (no probing case numbers), and a key out of scope for the path's jurisdiction is
    refused before the handler runs. OpenAPI declares the key as a security scheme on exactly those operations."""
    created = client.post("/v1/cases", json=route_body(), headers=client.key_headers).json()
    for path in (f"/v1/cases/{created['id']}", "/v1/cases/999999"):
        assert client.get(path).status_code == 403
        assert client.get(path, headers={"X-API-Key": "gp_bad_key_x"}).status_code == 403
    assert client.get("/v1/cases/999999", headers=client.key_headers).status_code == 404
    scoped = {"X-API-Key": client.keys["other"]}
    assert client.get(f"/v1/cases/{created['id']}", headers=scoped).status_code == 403
    assert client.get("/v1/jurisdictions/karamay/assessment", headers=scoped).status_code == 403
    from store.apikeys import revoke_key  # noqa: PLC0415
    engine = client.app.state.services.policies.engine
    revoke_key(engine, client.keys["all"].split("_")[1], "test")
    assert client.post("/v1/route", json=route_body(), headers=client.key_headers).status_code == 403  # at once
    schema = client.get("/schema/openapi.json").json()
    assert schema["components"]["securitySchemes"]["apiKey"] == {
        "type": "apiKey", "name": "X-API-Key", "in": "header",
        "description": "接入系统的 API key (gridpolicy apikey create)"}
    keyed = {(path, method) for path, item in schema["paths"].items() for method, op in item.items()
             if op.get("security") == [{"apiKey": []}]}
    assert {("/v1/route", "post"), ("/v1/cases", "post"), ("/v1/cases/{case_id}", "get"),
            ("/v1/jurisdictions/{jid}/versions/{number}", "put")} <= keyed
    assert ("/v1/jurisdictions/{jid}/versions/{number}", "get") not in keyed and ("/health", "get") not in keyed


def test_problem_type_search_by_pinyin_and_name(client):
    by_pinyin = client.get("/v1/jurisdictions/karamay/problem-types", params={"q": "yiliao"}).json()
    assert {r["code"] for r in by_pinyin} >= {"waste.medical.disposal", "waste.medical.wastewater"}
    by_initials = client.get("/v1/jurisdictions/karamay/problem-types", params={"q": "slw"}).json()
    assert by_initials[0]["code"] == "industry.scattered.sanluanwu"


def test_idempotent_intake(client):
    headers = {**client.key_headers, "Idempotency-Key": "intake-42"}
    first = client.post("/v1/cases", json=route_body(), headers=headers)
    again = client.post("/v1/cases", json=route_body(), headers=headers)
    assert first.status_code == again.status_code == 201 and first.json()["id"] == again.json()["id"]
    listed = client.get("/v1/cases", params={"jurisdiction": "karamay"}, headers=client.key_headers).json()
    assert listed["total"] == 1


def test_intake_answers_with_the_decision_it_routed(client, monkeypatch):
    """#10: the answer to an intake is the decision routed for it, not the stored form expanded again; the same as a
    read of the case gives."""
    client.post("/v1/cases", json=route_body(), headers=client.key_headers)  # the compact form's shape checked once
    expanded: list[dict] = []
    expand = PolicyRouter.expand
    monkeypatch.setattr(PolicyRouter, "expand", lambda self, stored: expanded.append(stored) or expand(self, stored))
    answer = client.post("/v1/cases", json=route_body(), headers=client.key_headers).json()
    assert expanded == []
    assert client.get(f"/v1/cases/{answer['id']}", headers=client.key_headers).json() == answer
    assert len(expanded) == 1


def test_case_lifecycle_with_reopen_and_409(client):
    case = client.post("/v1/cases", json=route_body(), headers=client.key_headers).json()
    assert case["status"] == "report"
    cid = case["id"]
    wrong = client.post(f"/v1/cases/{cid}/transitions", json={"action": "fail", "actor": "网格员"},
                        headers=client.key_headers)
    assert wrong.status_code == 409 and "complete" in [a for a in wrong.json()["allowed"]]
    for action, status in [("complete", "dispose"), ("complete", "recheck"), ("fail", "dispose"),
                           ("complete", "recheck"), ("complete", "closed")]:
        response = client.post(f"/v1/cases/{cid}/transitions", json={"action": action, "actor": "网格员"},
                               headers=client.key_headers)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == status
    final = client.get(f"/v1/cases/{cid}", headers=client.key_headers).json()
    assert final["cycle"] == 2 and final["allowed_actions"] == []
    assert [e["action"] for e in final["events"]] == ["created", "entered", "completed", "completed", "reopened",
                                                      "completed", "closed"]
    assert sum(1 for c in final["clocks"] if c["cycle"] == 1) == 3  # the first cycle's clocks are kept


def test_corrected_on_site_closes_at_intake(client):
    case = client.post("/v1/cases", json=route_body(facts={"corrected_on_site": True}),
                       headers=client.key_headers).json()
    assert case["status"] == "closed" and case["decision"]["first_action"] == "record_close"


def test_draft_edit_needs_if_match_and_detects_lost_updates(client):
    draft = client.post("/v1/jurisdictions/karamay/drafts", json={"actor": "编辑甲", "note": "调整"},
                        headers=client.key_headers)
    assert draft.status_code == 201
    number, etag, document = draft.json()["number"], draft.headers["etag"], draft.json()["document"]
    document["problem_types"][0]["level"] = 1
    url = f"/v1/jurisdictions/karamay/versions/{number}"
    assert client.put(url, json={"author": "编辑甲", "document": document},
                      headers=client.key_headers).status_code == 428
    first = client.put(url, json={"author": "编辑甲", "document": document},
                       headers={**client.key_headers, "If-Match": etag})
    assert first.status_code == 200
    stale = client.put(url, json={"author": "编辑乙", "document": document},
                       headers={**client.key_headers, "If-Match": etag})
    assert stale.status_code == 412 and "他人修改" in stale.json()["detail"]
    document["problem_types"][0]["level"] = 9
    invalid = client.put(url, json={"author": "编辑甲", "document": document},
                         headers={**client.key_headers, "If-Match": first.headers["etag"]})
    assert invalid.status_code == 422 and "层级 9 不存在" in str(invalid.json()["issues"])


def test_publish_switches_routing_and_rollback_restores(client):
    draft = client.post("/v1/jurisdictions/karamay/drafts", json={"actor": "编辑", "note": "x"},
                        headers=client.key_headers)
    number, document = draft.json()["number"], draft.json()["document"]
    document["problem_types"][0]["level"] = 1
    saved = client.put(f"/v1/jurisdictions/karamay/versions/{number}", json={"author": "编辑", "document": document},
                       headers={**client.key_headers, "If-Match": draft.headers["etag"]})
    no_note = client.post(f"/v1/jurisdictions/karamay/versions/{number}/publish", json={"actor": "发布人", "note": " "},
                          headers=client.key_headers)
    assert no_note.status_code == 422
    pinned = client.post(f"/v1/jurisdictions/karamay/versions/{number}/publish",
                         json={"actor": "发布人", "note": "医疗废物改由区级处置"}, headers=client.key_headers)
    assert pinned.status_code == 422 and pinned.json()["changed"][0]["name"] == MEDICAL_WASTE_CASE
    published = client.post(f"/v1/jurisdictions/karamay/versions/{number}/publish",
                            json={"actor": "发布人", "note": "医疗废物改由区级处置", "accept": [MEDICAL_WASTE_CASE],
                                  "revision": int(saved.headers["etag"].strip('"'))}, headers=client.key_headers)
    assert published.status_code == 200 and published.json()["active"]
    decision = client.post("/v1/route", json=route_body(), headers=client.key_headers).json()
    assert decision["handler"]["level"] == 1 and decision["policy_version"] == published.json()["content_hash"]
    changes = client.get("/v1/jurisdictions/karamay/diff", params={"from": 1, "to": number}).json()
    assert changes["problem_types"]["handler_changed"] == [{"code": "waste.medical.disposal", "from": 2, "to": 1}]
    client.post("/v1/jurisdictions/karamay/versions/1/rollback", json={"actor": "发布人", "note": "回滚"},
                headers=client.key_headers)
    assert client.post("/v1/route", json=route_body(), headers=client.key_headers).json()["handler"]["level"] == 2
    versions = client.get("/v1/jurisdictions/karamay/versions").json()
    assert [v["active"] for v in versions] == [True, False]


def test_hefei_case_walks_the_platform_case_steps(client):
    # 六(一) 7 综合评价 and 8 绩效考核 are periodic, not case steps: the case closes after 核实结项
    case = client.post("/v1/cases", json={"jurisdiction": "hefei", "problem_type": "air.dust.general",
                                          "found_at_level": 4, "facts": {"persuasion_failed": True}},
                       headers=client.key_headers).json()
    steps = [d["step"] for d in case["decision"]["deadlines"]]
    assert len(steps) == 6 and steps[-1] == "verify" and case["status"] == steps[0]
    for expected in steps[1:] + ["closed"]:
        response = client.post(f"/v1/cases/{case['id']}/transitions", json={"action": "complete", "actor": "平台"},
                               headers=client.key_headers)
        assert response.json()["status"] == expected
    events = client.get(f"/v1/cases/{case['id']}", headers=client.key_headers).json()["events"]
    assert [e["to_status"] for e in events if e["action"] in ("entered", "completed")] == steps


def test_reroute_on_new_facts_records_the_new_decision(client):
    case = client.post("/v1/cases", json={"jurisdiction": "hefei", "problem_type": "air.dust.general",
                                          "found_at_level": 4}, headers=client.key_headers).json()
    assert case["decision"]["first_action"] == "persuade"
    response = client.post(f"/v1/cases/{case['id']}/transitions",
                           json={"action": "reroute", "actor": "网格员", "note": "劝阻无效",
                                 "facts": {"persuasion_failed": True}}, headers=client.key_headers).json()
    assert response["decision"]["first_action"] == "report" and response["facts"]["persuasion_failed"] is True
    rerouted = [e for e in response["events"] if e["action"] == "rerouted"]
    assert rerouted and rerouted[0]["data"]["first_action"] == "report"
    bad = client.post(f"/v1/cases/{case['id']}/transitions",
                      json={"action": "reroute", "actor": "网格员", "facts": {"nonsense": True}},
                      headers=client.key_headers)
    assert bad.status_code == 400 and "nonsense" in bad.json()["detail"]


def test_weiyang_case_persuade_report_dispose_verify_fail_rereport_close(client):
    case = client.post("/v1/cases", json={"jurisdiction": "weiyang", "problem_type": "秸秆焚烧", "unit": "wy-l4-001"},
                       headers=client.key_headers).json()
    assert case["decision"]["first_action"] == "persuade" and case["status"] == "patrol"

    def act(action, expected, note=""):
        response = client.post(f"/v1/cases/{case['id']}/transitions",
                               json={"action": action, "actor": "四级网格员", "note": note}, headers=client.key_headers)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == expected
        return response.json()

    act("complete", "persuade")
    act("complete", "report", "劝阻无效")
    act("complete", "dispose")
    act("complete", "feedback")
    act("complete", "verify")
    act("fail", "report", "现场核查仍在焚烧")  # 六(四): not solved → report again
    for expected in ("dispose", "feedback", "verify", "close"):
        act("complete", expected)
    final = act("complete", "closed")
    assert final["cycle"] == 2
    assert [e["action"] for e in final["events"]].count("reopened") == 1


def test_publish_is_refused_with_the_verification_problems(client):
    draft = client.post("/v1/jurisdictions/karamay/drafts", json={"actor": "编辑", "note": "x"},
                        headers=client.key_headers)
    document = draft.json()["document"]
    document["rules"].append({"id": "never", "name": "永不命中", "priority": 15,
                              "when": {"entry": "below", "handler_level": 3},
                              "then": {"actions": [{"kind": "report", "by": "finder", "to": "handler"}]},
                              "assumption": "测试"})
    number = draft.json()["number"]
    saved = client.put(f"/v1/jurisdictions/karamay/versions/{number}", json={"author": "编辑", "document": document},
                       headers={**client.key_headers, "If-Match": draft.headers["etag"]})
    assert saved.status_code == 200  # a draft may be incomplete; publishing is where coverage is enforced
    refused = client.post(f"/v1/jurisdictions/karamay/versions/{number}/publish",
                          json={"actor": "发布人", "note": "加一条规则"}, headers=client.key_headers)
    assert refused.status_code == 422 and any("never" in p for p in refused.json()["problems"])
    versions = client.get("/v1/jurisdictions/karamay/versions").json()
    assert versions[0]["active"] and versions[-1]["status"] == "draft"  # nothing changed


def test_assessment_json_xlsx_explanation_and_records(client):
    from io import BytesIO

    from openpyxl import load_workbook
    case = client.post("/v1/cases", json=route_body(), headers=client.key_headers).json()
    assert client.get("/v1/jurisdictions/karamay/assessment").status_code == 403  # computed from cases: key needed
    period = case["created_at"][:4]
    result = client.get(f"/v1/jurisdictions/karamay/assessment?period={period}&level=3",
                        headers=client.key_headers).json()
    assert {u["level"] for u in result["units"]} == {3} and len(result["units"]) == 77
    assert next(u for u in result["units"] if u["unit"] == "kmy-l3-01")["indicators"]["found"] == 1
    assert result["scheme"]["deductions"][0]["provenance"]["seed"] == "003_e40382d56c17d7bc.txt"

    xlsx = client.get(f"/v1/jurisdictions/karamay/assessment.xlsx?period={period}", headers=client.key_headers)
    assert xlsx.status_code == 200 and "attachment" in xlsx.headers["content-disposition"]
    book = load_workbook(BytesIO(xlsx.content))
    assert book.sheetnames[:2] == ["排名", "扣分明细"] and book["排名"].max_row == 1 + 85  # header + every unit

    unit = client.get(f"/v1/jurisdictions/karamay/assessment/units/kmy-l3-01?period={period}",
                      headers=client.key_headers).json()
    assert [d["id"] for d in unit["deductions"]] == ["late_report", "not_found", "late_handling"]
    trend = client.get(f"/v1/jurisdictions/karamay/assessment/trend?period={period}-Q4&count=4",
                       headers=client.key_headers).json()
    assert [t["period"] for t in trend] == [f"{period}-Q{i}" for i in (1, 2, 3, 4)]

    bad = client.get("/v1/jurisdictions/karamay/assessment?period=2026-Q5", headers=client.key_headers)
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    assert bad.json()["field"] == "period" and "格式不正确" in bad.json()["detail"]
    record = {"period": period, "unit": "kmy-l2-1", "kind": "upper", "score": 101, "author": "区环委会"}
    refused = client.post("/v1/jurisdictions/karamay/assessment/records", json=record, headers=client.key_headers)
    assert refused.status_code == 422 and refused.json()["field"] == "score"
    assert client.post("/v1/jurisdictions/karamay/assessment/records", json={**record, "score": 92.5},
                       headers=client.key_headers).status_code == 201
    again = client.get(f"/v1/jurisdictions/karamay/assessment?period={period}&level=2", headers=client.key_headers)
    assert next(u for u in again.json()["units"] if u["unit"] == "kmy-l2-1")["records"]["upper"]["score"] == 92.5


def test_api_key_checks_compare_in_constant_time_even_for_unknown_prefixes(client, monkeypatch):
    """An unknown prefix, a revoked key and a wrong secret each cost one hmac.compare_digest, like a valid key."""
    import hmac
    import store.apikeys
    calls, compare = [], hmac.compare_digest
    monkeypatch.setattr(store.apikeys.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or compare(a, b))
    good = client.keys["all"]
    for key in ("gp_00000000_guess", good[:-2] + "xx", good):
        client.post("/v1/route", json=route_body(), headers={"X-API-Key": key})
    import hashlib
    tried = [hashlib.sha256(k.encode()).hexdigest() for k in ("gp_00000000_guess", good[:-2] + "xx", good)]
    assert [b for _, b in calls if b in tried] == tried


def test_four_eyes_and_rollback_reason_over_http(client):
    draft = client.post("/v1/jurisdictions/karamay/drafts", json={"actor": "编辑", "note": "x"},
                        headers=client.key_headers)
    number, document = draft.json()["number"], draft.json()["document"]
    document["publishing"] = {"four_eyes": True}
    client.put(f"/v1/jurisdictions/karamay/versions/{number}", json={"author": "编辑", "document": document},
               headers={**client.key_headers, "If-Match": draft.headers["etag"]})
    own = client.post(f"/v1/jurisdictions/karamay/versions/{number}/publish", json={"actor": "编辑", "note": "四眼"},
                      headers=client.key_headers)
    assert own.status_code == 403 and own.headers["content-type"].startswith("application/problem+json")
    assert "四眼原则" in own.json()["detail"]
    other = client.post(f"/v1/jurisdictions/karamay/versions/{number}/publish",
                        json={"actor": "审核人", "note": "四眼"}, headers=client.key_headers)
    assert other.status_code == 200
    no_reason = client.post("/v1/jurisdictions/karamay/versions/1/rollback", json={"actor": "审核人", "note": ""},
                            headers=client.key_headers)
    assert no_reason.status_code == 422 and "原因" in no_reason.json()["detail"]


def test_a_query_parameter_given_twice_or_not_taken_is_refused(client):
    """schemathesis sent `unit=&unit=…` to /v1/cases and got 200: the framework quietly kept one value."""
    twice = client.get("/v1/cases?jurisdiction=karamay&unit=a&unit=b", headers=client.key_headers)
    assert twice.status_code == 400 and twice.json()["field"] == "unit"
    assert client.get("/v1/jurisdictions/karamay/diff?from=1&from=1&to=1").json()["field"] == "from"
    assert client.get("/v1/cases?jurisdiction=karamay&unit=a", headers=client.key_headers).status_code == 200
    assert client.get("/admin/compare?ids=hefei&ids=panjin", follow_redirects=False).status_code == 302  # a list
    # a parameter the operation does not take (schemathesis sent `?=true`; a misspelt filter would be ignored)
    misspelt = client.get("/v1/cases?jurisdiction=karamay&jurisdicton=x", headers=client.key_headers)
    assert misspelt.status_code == 400 and misspelt.json()["field"] == "jurisdicton"
    assert client.get("/v1/events?=true", headers=client.key_headers).status_code == 400
