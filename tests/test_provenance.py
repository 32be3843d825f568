"""Provenance that cannot overclaim: a number under a source is in its quote, a judgement field the quote
does not state is an assumption, an item quoting another text (the template's 篇一) is inherited; the
`gridpolicy provenance` command and the admin 出处统计 page show it."""
from __future__ import annotations

import json
import re
import subprocess
from datetime import timedelta

import httpx
import pytest
from cn2an import an2cn
from hypothesis import given, settings, strategies as st

from policy.errors import PolicyError
from policy.loader import REPO_ROOT, Loader
from policy.provenance import (ASSUMED, INHERITED, QUOTED, changed_counts, entries, numeric_quote, provenanced_items,
                               report, states, states_value)
from tests.admin_browser import PASSWORD

GRIDPOLICY = str(REPO_ROOT / ".venv" / "bin" / "gridpolicy")


# --- numbers in quotes -----------------------------------------------------------------------------------
@pytest.mark.parametrize("quote, field, value, stated", [
    ("按年度12分计,实行倒扣分制", "total", 12, True),
    ("按年度十二分计", "total", 12, True),
    ("按年度120分计", "total", 12, False),          # 12 is not in 120
    ("二十二分", "total", 12, False),               # 十二 is not in 二十二
    ("扣5分", "points", 5, True), ("扣五分", "points", 5, True), ("扣15分", "points", 5, False),
    ("对网格责任人的的考核纳入百分制考核", "total", 100, True),
    ("5个工作日内办结", "duration", timedelta(days=5), True),
    ("五日内", "duration", timedelta(days=5), True),
    ("5小时内", "duration", timedelta(days=5), False),   # the unit matters
    ("每天在所属网格内进行巡查", "duration", timedelta(days=1), False),  # daily patrol is no 1-day deadline
    ("24小时内上报", "duration", timedelta(hours=24), True),
    ("每半月与包抓三级网格联系一次", "per", "half_month", True),
    ("每月至少对包抓网格实地检查两次", "times", 2, True),
    ("每周到包抓四级网格开展一次实地督查", "times", 1, True),
    ("每天在所属网格内进行巡查", "times", 1, False),
])
def test_a_number_is_stated_only_as_written(quote, field, value, stated):
    assert states_value(quote, field, value) is stated


@given(n=st.integers(min_value=1, max_value=9999), arabic=st.booleans(), pad=st.sampled_from(["", "共", "计"]))
def test_any_number_written_alone_is_found_and_not_inside_a_longer_one(n, arabic, pad):
    written = str(n) if arabic else an2cn(n)
    assert states_value(f"{pad}{written}个网格", "count", n)
    assert not states_value(f"{pad}{n}7个网格", "count", n)


def test_no_numeric_field_under_a_source_lacks_its_number_in_the_quote(bundled):
    """The invariant validation enforces, checked over every bundled value (and what it covers)."""
    checked = 0
    for jur in bundled.values():
        for loc, item in provenanced_items(jur.policy):
            for name in item.NUMERIC:
                source = numeric_quote(item, name)
                if source is not None and states(item, name):
                    assert states_value(source.quote, name, getattr(item, name)), (jur.id, loc, name, source.quote)
                    checked += 1
    assert checked > 40


@settings(max_examples=15, deadline=None)
@given(points=st.integers(min_value=1, max_value=50))
def test_validation_refuses_a_quoted_number_the_quote_lacks(tmp_path_factory, points):
    from tests.conftest import PolicyDir
    policy_dir = PolicyDir(tmp_path_factory.mktemp("p"))
    data = policy_dir.read()
    deduction = data["scoring"]["deductions"][0]
    deduction.pop("fields", None)
    deduction["points"] = points
    deduction["source"] = {"seed": "003_e40382d56c17d7bc.txt", "clause": "五", "quote": "杜绝迟报、瞒报、谎报现象"}
    path = policy_dir.write(data)
    with pytest.raises(PolicyError) as info:
        Loader(policy_dir.root).build("karamay")
    issue = next(i for i in info.value.issues if "不在引文中" in i.message)
    assert issue.file == str(path) and issue.line and issue.path == "scoring.deductions[0].points"
    assert f"分值 {points} 不在引文中" in issue.message and "assumption" in issue.message


def test_a_field_source_is_checked_against_its_own_quote_and_the_seed(policy_dir):
    data = policy_dir.read()
    data["problem_types"][0]["fields"] = {"level": {"source": {"seed": "003_e40382d56c17d7bc.txt", "clause": "五",
                                                               "quote": "这句话不在原文里"}}}
    data["scoring"]["deductions"][1]["fields"] = {"points": {"source": {
        "seed": "003_e40382d56c17d7bc.txt", "clause": "五",
        "quote": "对于未开展巡查、未发现、未上报等落实环境网格化工作不力的"}}}
    policy_dir.write(data)
    with pytest.raises(PolicyError) as info:
        Loader(policy_dir.root).build("karamay")
    messages = {i.path: i.message for i in info.value.issues}
    assert "找不到" in messages["problem_types[0].fields.level.source.quote"]
    assert "分值 5 不在引文中" in messages["scoring.deductions[1].fields.points.source.quote"]


def test_only_judgement_fields_take_their_own_provenance(policy_dir):
    data = policy_dir.read()
    data["scoring"]["deductions"][2]["fields"] = {"colour": {"assumption": "x"}}
    policy_dir.write(data)
    with pytest.raises(PolicyError) as info:
        Loader(policy_dir.root).build("karamay")
    issue = info.value.issues[0]
    assert issue.path.startswith("scoring.deductions[2]") and issue.line
    assert "colour" in issue.message and "points" in issue.message  # names the valid fields


def test_the_karamay_five_points_are_an_assumption(bundled):
    """Issue example: 克拉玛依 五「对于未开展巡查、未发现、未上报等落实环境网格化工作不力的」gives no points."""
    rows = [e for e in entries(bundled["karamay"].policy) if e.kind == "Deduction" and e.field == "points"]
    not_found = next(e for e in rows if e.label == "not_found")
    assert not_found.status == ASSUMED and not_found.value == "5" and "未给出扣分" in not_found.note


def test_an_item_quote_does_not_vouch_for_a_field_it_does_not_state(bundled):
    """A problem type's quote names it, not its department: the department counts as an assumption."""
    rows = {(e.path, e.field): e for e in entries(bundled["hefei"].policy, bundled["hefei"].type_names)}
    smoke = next(p for (p, f), e in rows.items() if f is None and e.label == "冒黑烟")
    assert rows[(smoke, None)].status == QUOTED
    assert rows[(smoke, "departments")].status == ASSUMED


# --- inherited is not quoted -------------------------------------------------------------------------------
def test_template_items_are_inherited_unless_the_text_is_the_jurisdictions_own(bundled):
    def crime_rule(jid):
        return next(e for e in entries(bundled[jid].policy) if e.path.startswith("rules[")
                    and e.field is None and e.label == "crime_to_public_security")
    inherited = crime_rule("pian09")
    assert inherited.status == INHERITED and inherited.clause == "篇一 四(四)"
    assert "_township" in inherited.note and "篇一 四(四)" in inherited.note
    assert crime_rule("ningjiaping").status == QUOTED  # 篇一 is 宁家坪镇's own text
    rule = next(r for r in bundled["pian09"].policy.rules if r.id == "crime_to_public_security")
    assert rule.inherited_from == "_township"


def test_inherited_counts_per_township_variant(bundled):
    counts = {jid: report(j.policy)["totals"][INHERITED] for jid, j in bundled.items()}
    assert counts["ningjiaping"] == 0 and counts["hefei"] == 0
    variants = ["pian02", "pian06", "pian07", "pian09", "pian10", "pian16", "qitaihe", "shangdi", "tongliang",
                "wangan", "yuanquan"]
    assert all(counts[jid] > 0 for jid in variants), counts
    assert sum(counts[jid] for jid in variants) >= 124


def test_a_variant_that_quotes_its_own_text_for_an_inherited_item_is_quoted(bundled):
    loader = Loader()
    data, _ = loader._resolve_raw("pian09")
    rule = next(r for r in data["rules"] if r["id"] == "persuade_first")
    assert "inherited_from" not in rule  # pian09 gives its own source for it


def test_changed_counts_lists_only_what_changed(bundled):
    before = report(bundled["karamay"].policy)
    after = json.loads(json.dumps(before))
    after["kinds"]["Deduction"][ASSUMED] += 1
    after["kinds"]["Deduction"][QUOTED] -= 1
    rows = changed_counts(before, after)
    assert {(r["kind"], r["status"]) for r in rows} == {("Deduction", ASSUMED), ("Deduction", QUOTED)}
    assert changed_counts(before, before) == []


# --- the command and the page ------------------------------------------------------------------------------
def test_cli_provenance_json_and_filters():
    out = subprocess.run([GRIDPOLICY, "provenance", "karamay", "--json", "--status", "assumed", "--kind", "Deduction"],
                         capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    assert data["totals"][ASSUMED] > 0 and data["kinds"]["Deduction"][ASSUMED] >= 3
    assert data["entries"] and all(e["status"] == ASSUMED and e["kind"] == "Deduction" for e in data["entries"])
    assert all(e["note"] for e in data["entries"])  # every assumption carries its note
    text = subprocess.run([GRIDPOLICY, "provenance", "pian09"], capture_output=True, text=True, check=True).stdout
    assert "继承" in text and "篇一 四(四)" in text
    bad = subprocess.run([GRIDPOLICY, "provenance", "karamay", "--status", "quoteded"], capture_output=True, text=True)
    assert bad.returncode == 2 and "quoted" in bad.stderr


@pytest.fixture(scope="module")
def admin(server):
    with httpx.Client(base_url=server, timeout=30) as http:
        token = re.search(r'name="_csrf_token" value="([^"]+)"', http.get("/admin/login").text).group(1)
        http.post("/admin/login", data={"name": "admin", "password": PASSWORD, "_csrf_token": token})
        yield http, token


def test_admin_provenance_page_counts_and_filters(admin):
    http, _ = admin
    page = http.get("/admin/j/pian09/v/1/provenance")
    assert page.status_code == 200
    assert re.search(r"继承 <strong>[1-9]", page.text)
    assert "篇一 四(四)" in page.text and "_township" in page.text
    only = http.get("/admin/j/pian09/v/1/provenance", params={"status": "assumed", "kind": "Deduction"})
    rows = re.findall(r'<tr class="(\w+)"><td><span class="badge">', only.text)
    assert rows and set(rows) == {"assumed"}
    bad = http.get("/admin/j/pian09/v/1/provenance", params={"status": "bogus"})
    assert bad.status_code == 422 and "status" in bad.text and "quoted" in bad.text


def test_publishing_shows_the_counts_a_draft_changes(admin):
    http, token = admin
    draft = http.post("/admin/j/karamay/drafts", data={"_csrf_token": token}).headers["location"]
    number = int(re.search(r"/v/(\d+)", draft).group(1))
    before = http.get(f"/admin/j/karamay/v/{number}/verify")
    assert "没有变化" in before.text
    http.headers.update({"X-CSRFToken": http.cookies["gp_csrf"], "HX-Request": "true"})
    revision = int(re.search(r'id="revision" name="revision" value="(\d+)"', http.get(draft + "/units").text).group(1))
    saved = http.post(f"{draft}/e/departments/+", data={"id": "water", "name": "水务局", "prov": "assumption",
                                                         "assumption": "测试", "revision": str(revision)})
    assert saved.status_code < 400, saved.text[:300]
    del http.headers["HX-Request"]
    after = http.get(f"/admin/j/karamay/v/{number}/verify")
    table = re.search(r'<table id="provenance-changes">.*?</table>', after.text, re.S).group(0)
    assert "职能部门" in table and "假设" in table


def test_validation_reads_the_seed_texts_it_is_given_not_files():
    """Domain code takes the seed texts as an input (#15 §4): the same policy is valid against the texts that hold
    its quotes and refused, quote by quote, against texts that do not."""
    from policy.loader import seed_text  # noqa: PLC0415
    from policy.validate import validate_policy  # noqa: PLC0415
    from policy.yamlio import OriginMap  # noqa: PLC0415
    jur = Loader().build("karamay")
    assert validate_policy(jur, {}, OriginMap(), "karamay.yaml", seed_text) == []
    issues = validate_policy(jur, {}, OriginMap(), "karamay.yaml", lambda seed: "另一份文件的文字")
    sourced = [item for _, item in provenanced_items(jur.policy) if getattr(item, "source", None)]
    assert sourced and len(issues) >= len(sourced)
    assert all("quote not found" in i.message for i in issues)
