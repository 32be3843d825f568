"""Sign-in, publish, rollback, the simulator, pinned cases, boundaries and webhooks read their forms through pydantic
models (admin/forms.py), like the editors: a bad value gets a Chinese message next to its field and changes nothing.
Real server, real HTTP."""
from __future__ import annotations

import html
import re

import httpx
import pytest

from tests.admin_browser import PASSWORD, admin_http


@pytest.fixture(scope="module")
def client(server):
    with admin_http(server, "karamay") as (http, draft):
        yield http, draft


def _slot(html: str, slot: str) -> str:
    """The message in the error slot `err-{slot}` of a page or fragment."""
    found = re.search(rf'id="err-{re.escape(slot)}"[^>]*>([^<]*)<', html)
    assert found, f"no slot err-{slot} in {html[:800]}"
    return found.group(1)


def _revision(http: httpx.Client, draft: str) -> int:
    return int(re.search(r'id="revision" name="revision" value="(\d+)"', http.get(draft + "/units").text).group(1))


def _versions(http: httpx.Client, jid: str) -> list[tuple[str, str, str]]:
    """The jurisdiction page's versions: number, 生效中 or not, status."""
    html = http.get(f"/admin/j/{jid}").text
    return re.findall(r'<tr id="version-(\d+)">\s*<td>v\d+( <span class="ok">生效中</span>)?</td>'
                      r'\s*<td>([^<]*)</td>', html)


def test_sign_in_names_the_empty_field(server):
    with httpx.Client(base_url=server, timeout=60) as http:
        token = re.search(r'name="_csrf_token" value="([^"]+)"', http.get("/admin/login").text).group(1)
        answer = http.post("/admin/login", data={"name": "  ", "password": PASSWORD, "_csrf_token": token})
        assert answer.status_code == 422
        assert _slot(answer.text, "login-name") == "用户名不能为空"
        assert "err-login-password" not in answer.text
        answer = http.post("/admin/login", data={"name": "admin", "_csrf_token": token})
        assert answer.status_code == 422 and _slot(answer.text, "login-password") == "密码不能为空"
        assert http.get("/admin/").headers.get("location", "").endswith("/admin/login")  # not signed in
        signed = http.post("/admin/login", data={"name": " admin ", "password": PASSWORD, "_csrf_token": token})
        assert signed.status_code in (302, 303) and signed.headers["location"] == "/admin/"


def test_publish_and_rollback_refuse_a_missing_note_reason_or_confirmation(client):
    http, _ = client
    draft = http.post("/admin/j/panjin/drafts").headers["location"]
    number = int(draft.rsplit("/", 1)[1])
    before = _versions(http, "panjin")
    refused = http.post(f"{draft}/publish", data={"note": " ", "revision": str(_revision(http, draft))})
    assert refused.status_code == 422
    assert re.search(r'id="note-error"[^>]*>变更说明不能为空<', refused.text)
    assert _versions(http, "panjin") == before  # still a draft
    assert http.post(f"{draft}/publish", data={"note": "发布", "revision": "1x"}).status_code == 302
    active = _versions(http, "panjin")
    assert active != before
    for form, slot, message in [
            ({"confirm": "on"}, "reason", "回滚原因不能为空"),
            ({"reason": "三级网格尚未配备处置力量"}, "confirm", "请勾选“确认回滚”后再提交"),
            ({"reason": "x" * 2001, "confirm": "on"}, "reason", "回滚原因最多 2000 个字符, 现有 2001 个")]:
        answer = http.post("/admin/j/panjin/v/1/rollback", data=form)
        assert answer.status_code == 422, answer.headers
        assert _slot(answer.text, f"rollback-1-{slot}") == message
        assert _versions(http, "panjin") == active  # v{number} still active
    done = http.post("/admin/j/panjin/v/1/rollback", data={"reason": "三级网格尚未配备处置力量", "confirm": "on"})
    assert done.status_code == 302 and done.headers["location"].endswith("?rolled_back=1")
    assert [v[0] for v in _versions(http, "panjin") if v[1]] == ["1"] and number > 1


def test_the_simulator_names_the_field_it_cannot_read(client):
    http, _ = client
    headers = {"HX-Request": "true"}
    answer = http.post("/admin/simulate", data={"jurisdiction": "karamay", "problem_type": " "}, headers=headers)
    assert answer.status_code == 422
    assert _slot(answer.text, "sim-problem_type") == "问题类型不能为空"
    answer = http.post("/admin/simulate", data={"jurisdiction": "karamay", "problem_type": "医疗废物处置",
                                                "enterprise_class": "Z"}, headers=headers)
    assert answer.status_code == 422
    assert _slot(answer.text, "sim-enterprise_class") == "污染源监管类别须为 none, A, B, C 之一"
    fine = http.post("/admin/simulate", data={"jurisdiction": "karamay", "problem_type": "医疗废物处置",
                                              "enterprise_class": "none", "fact_major": "on"}, headers=headers)
    assert fine.status_code == 200 and _slot(fine.text, "sim-problem_type") == ""  # earlier messages cleared
    assert 'id="pin-form"' in fine.text


def test_a_pinned_case_needs_a_name_and_a_clause(client):
    http, draft = client
    headers = {"HX-Request": "true"}
    case = {"jurisdiction": "karamay", "problem_type": "waste.medical.disposal", "enterprise_class": "none"}
    before = _revision(http, draft)
    for form, slot, message in [({"name": "", "clause": "0"}, "name", "用例名称不能为空"),
                                ({"name": "医疗废物", "clause": "x"}, "clause", "请选择用例依据的条款原文"),
                                ({"name": "医疗废物", "clause": "999"}, "clause", "请选择用例依据的条款原文")]:
        answer = http.post("/admin/simulate/pin", data={**case, **form}, headers=headers)
        assert answer.status_code == 422, answer.text[:300]
        assert _slot(answer.text, f"pin-{slot}") == message
        assert _revision(http, draft) == before  # nothing saved
    saved = http.post("/admin/simulate/pin", data={**case, "name": "医疗废物", "clause": "0"}, headers=headers)
    assert saved.status_code == 200 and 'id="pin-saved"' in saved.text
    assert _revision(http, draft) == before + 1


def test_boundaries_and_webhooks_name_the_missing_field(client):
    http, draft = client
    before = _revision(http, draft)
    answer = http.post(f"{draft}/boundaries", data={"action": "apply", "geojson": "  "},
                       headers={"HX-Request": "true"})
    assert answer.status_code == 422
    assert _slot(answer.text, "boundaries-file") == "请选择 GeoJSON 文件"
    assert "边界未导入, 草稿未改动" in answer.text and _revision(http, draft) == before
    answer = http.post("/admin/j/karamay/webhooks", data={"url": " ", "kinds": "case.created"})
    assert answer.status_code == 422 and "接收地址不能为空 (未保存)" in answer.text
    assert "/webhooks/1/delete" not in answer.text  # no subscription stored


def test_a_patrol_record_names_the_field_it_cannot_read(client):
    http, _ = client
    patrol = {"unit": "pj-l3-01", "activity": "patrol", "patrolled_at": "2026-11-20T09:30", "patrollers": "王五",
              "signed_by": "王五"}
    total = re.search(r"共 (\d+) 条", http.get("/admin/j/panjin/patrols").text).group(1)
    for form, field, message in [({"objects": "1, x"}, "objects", "对象编号须为数字, 以逗号分隔: '1, x'"),
                                 ({"patrolled_at": "昨天"}, "patrolled_at", "巡查时间 '昨天' 格式不正确"),
                                 ({"problem_type": "工业生产企业排污"}, "finding", "立案须填写发现的问题")]:
        answer = http.post("/admin/j/panjin/patrols", data={**patrol, **form})
        assert answer.status_code == 422
        found = re.search(rf'id="p-{field}"[^>]*>\s*<br><span class="error" role="alert">([^<]*)<', answer.text)
        assert found and message in html.unescape(found.group(1)), answer.text[:500]
        assert re.search(r"共 (\d+) 条", answer.text).group(1) == total  # nothing recorded
