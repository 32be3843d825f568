"""Whatever an editor form carries, the answer is a save or a Chinese message next to a field — never a 500 —
and a refused change leaves the draft untouched (its revision does not move). Real server, real HTTP."""
from __future__ import annotations

import re

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from tests.admin_browser import admin_http

CJK = re.compile(r"[\u4e00-\u9fff]")
PROV = {"prov": "assumption", "assumption": "测试"}
VALID = {  # a form each editor accepts; examples override some of its fields
    ("units", "kmy-l3-05"): {"name": "金龙镇社区", "level": "3", "parent": "kmy-l2-2", **PROV},
    ("units", "+"): {"id": "kmy-l3-78", "name": "新社区", "level": "3", "parent": "kmy-l2-1", **PROV},
    ("departments", "ecology_bureau"): {"name": "生态环境分局", "duties": "监管", **PROV},
    ("departments", "+"): {"id": "water", "name": "水务局", **PROV},
    ("steps", "patrol:dispose"): {"name": "整改", "actor": "乡镇", "d_duration": "3", "d_unit": "working_days",
                                  "handling": "on", **PROV, "d_prov": "assumption", "d_assumption": "三天"},
    ("rules", "deadline_escalate"): {"name": "超期升级", "priority": "90", "mode": "up", "target": "1", **PROV},
    ("rules", "+"): {"id": "esc_major", "name": "重大超期", "priority": "95", "mode": "level", "target": "1",
                     "applies": "2", **PROV},
    ("types", "waste.medical.disposal"): {"level": "2", "departments": "ecology_bureau", "persuade_first": "on"},
    ("deductions", "late_report"): {"trigger": "late_report", "points": "2", "max_points": ""},
}
FIELDS = sorted({name for form in VALID.values() for name in form} | {"seed", "clause", "quote"})
values = st.one_of(st.text(max_size=40), st.sampled_from([
    "", "1", "2", "3", "0", "7", "-1", "2.5", "inf", "P3D", "PT0S", "on", "up", "level", "source", "assumption", "kmy",
    "kmy-l2-2", "natural", "working", "days", "working_days", "ecology_bureau"]))


@pytest.fixture(scope="module")
def client(server):
    with admin_http(server, "karamay") as (http, draft):
        http.headers["HX-Request"] = "true"
        yield http, draft


def _revision(http: httpx.Client, draft: str) -> int:
    return int(re.search(r'id="revision" name="revision" value="(\d+)"', http.get(draft + "/units").text).group(1))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(item=st.sampled_from(sorted(VALID)), changes=st.dictionaries(st.sampled_from(FIELDS), values, max_size=3),
       action=st.sampled_from(["", "", "/check", "/delete"]))
def test_any_form_is_saved_or_refused_in_chinese(client, item, changes, action):
    http, draft = client
    kind, key = item
    before = _revision(http, draft)
    response = http.post(f"{draft}/e/{kind}/{key}{action}", data={**VALID[item], **changes, "revision": str(before)})
    event(f"{kind}{action} → {response.status_code}")
    assert response.status_code < 500, response.text[:500]
    after = _revision(http, draft)
    if response.status_code >= 400:
        assert CJK.search(response.text), response.text[:500]
        assert after == before
    else:
        assert after == before + (0 if action == "/check" else 1)
