"""Pinned test cases: the bundled suites, their validation (file:line), `gridpolicy test`, and publishing that
is refused while a pinned case would change unless the publisher accepts the new outcome (audited)."""
from __future__ import annotations

import shutil

import pytest
from sqlmodel import Session, select

from engine.pinned import run_suite
from policy.errors import PolicyError
from policy.loader import Loader, TESTS_SUFFIX
from policy.loader import seed_text
from policy.validate import normalise
from store.errors import Invalid
from store.tables import AuditEntry
from tests.conftest import BUNDLED
from tests.test_cli import run

MEDICAL_WASTE_CASE = "医疗废物处置: 三级网格(村/社区)发现"  # karamay's pinned case for problem_types[0]


def test_every_bundled_jurisdiction_ships_a_passing_suite(bundled):
    assert len(bundled) == 16
    for jid, jur in bundled.items():
        assert len(jur.policy.tests) >= 3, jid
        results = run_suite(jur)
        failed = [(r.case.name, r.changed, r.error) for r in results if not r.passed]
        assert not failed, (jid, failed)


def test_every_bundled_case_quotes_its_seed(bundled):
    for jur in bundled.values():
        for case in jur.policy.tests:
            text = seed_text(case.clause.seed)
            assert text is not None and normalise(case.clause.quote) in text, (jur.id, case.name)


def _suite_dir(policy_dir) -> list[dict]:
    shutil.copy(BUNDLED / f"karamay{TESTS_SUFFIX}", policy_dir.root / f"karamay{TESTS_SUFFIX}")
    return policy_dir.read(f"karamay{TESTS_SUFFIX}")["tests"]


def test_a_bad_suite_is_reported_by_file_line_and_field(policy_dir):
    cases = _suite_dir(policy_dir)
    cases[0]["clause"]["quote"] = "原文里没有的话"
    cases[1]["given"]["facts"] = {"persuasion_faild": True}
    cases[2]["given"]["problem_type"] = "water.nothing.here"
    cases[3]["expect"]["departments"] = ["nobody"]
    policy_dir.write({"tests": cases}, f"karamay{TESTS_SUFFIX}")
    with pytest.raises(PolicyError) as err:
        Loader(policy_dir.root).build("karamay")
    shown = [str(i) for i in err.value.issues]
    assert all(f"karamay{TESTS_SUFFIX}:" in s for s in shown), shown
    # a model error (the unknown fact) is reported first; the policy checks run once the file parses
    assert [i.path for i in err.value.issues] == ["tests[1].given.facts"] and "persuasion_faild" in shown[0]
    assert "未知的事实" in shown[0]
    cases[1]["given"].pop("facts")
    policy_dir.write({"tests": cases}, f"karamay{TESTS_SUFFIX}")
    with pytest.raises(PolicyError) as err:
        Loader(policy_dir.root).build("karamay")
    by_path = {i.path: str(i) for i in err.value.issues}
    assert "引文" in by_path["tests[0].clause.quote"]
    assert "water.nothing.here" in by_path["tests[2].given.problem_type"]
    assert "nobody" in by_path["tests[3].expect.departments"]
    assert all(i.line for i in err.value.issues)


def test_a_suite_file_holds_only_tests(policy_dir):
    _suite_dir(policy_dir)
    policy_dir.write({"tests": [], "levels": []}, f"karamay{TESTS_SUFFIX}")
    with pytest.raises(PolicyError, match="tests:"):
        Loader(policy_dir.root).build("karamay")


def test_cli_test_passes_and_fails_with_a_bilingual_report(policy_dir):
    ok = run("test", "karamay")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "通过 PASS" in ok.stdout and "0 failed" in ok.stdout
    cases = _suite_dir(policy_dir)
    cases[0]["expect"]["level"] = 3
    policy_dir.write({"tests": cases}, f"karamay{TESTS_SUFFIX}")
    bad = run("test", "karamay", env={"GRIDPOLICY_JURISDICTIONS": str(policy_dir.root)})
    assert bad.returncode == 1
    assert "失败 FAIL" in bad.stdout and "处置层级 level: 期望 expected 3, 实际 actual 2" in bad.stdout
    assert "1 failed" in bad.stdout and "Traceback" not in bad.stderr
    everything = run("test")
    assert everything.returncode == 0 and "0 failed" in everything.stdout


def _changed_draft(policies):
    draft = policies.create_draft("karamay", "编辑")
    document = policies.document(draft)
    document["problem_types"][0]["level"] = 1
    return policies.update_draft("karamay", draft.number, document, draft.revision, "编辑")


def _audit(policies, action: str) -> list[AuditEntry]:
    with Session(policies.engine) as session:
        return list(session.exec(select(AuditEntry).where(AuditEntry.action == action)).all())


def test_publishing_is_refused_until_each_changed_case_is_accepted(cases):
    policies = cases.policies
    draft = _changed_draft(policies)
    with pytest.raises(Invalid) as err:
        policies.publish("karamay", draft.number, "发布人", "医疗废物改由市级处置")
    assert err.value.field == "tests" and [c["name"] for c in err.value.extra["changed"]] == [MEDICAL_WASTE_CASE]
    assert err.value.extra["changed"][0]["fields"] == ["level", "escalation"]
    assert policies.active_version("karamay").number == 1
    with pytest.raises(Invalid, match="没有结果改变"):
        policies.accept_pinned("karamay", draft.number, ["不存在的用例"], draft.revision, "发布人")
    accepted = policies.accept_pinned("karamay", draft.number, [MEDICAL_WASTE_CASE], draft.revision, "发布人")
    case = next(t for t in policies.head(accepted)["tests"] if t["name"] == MEDICAL_WASTE_CASE)
    assert case["expect"]["level"] == 1
    published = policies.publish("karamay", draft.number, "发布人", "医疗废物改由市级处置")
    assert published.active
    [row] = _audit(policies, "pinned_accepted")
    assert row.actor == "发布人" and row.detail["accepted"][0]["from"]["level"] == 2
    assert row.detail["accepted"][0]["to"]["level"] == 1
    assert [r.version_number for r in _audit(policies, "published")] == [draft.number]


def test_four_eyes_refuses_the_last_editor(cases):
    policies = cases.policies
    draft = policies.create_draft("karamay", "编辑")
    document = policies.document(draft)
    document["publishing"] = {"four_eyes": True}
    draft = policies.update_draft("karamay", draft.number, document, draft.revision, "编辑")
    with pytest.raises(Exception) as err:
        policies.publish("karamay", draft.number, "编辑", "启用四眼原则")
    assert err.value.status == 403 and "四眼原则" in err.value.message
    assert policies.last_editor("karamay", draft.number) == "编辑"
    assert policies.publish("karamay", draft.number, "审核人", "启用四眼原则").active


def test_four_eyes_is_validated_policy_data(policy_dir):
    data = policy_dir.read()
    data["publishing"] = {"four_eyes": "maybe"}
    policy_dir.write(data)
    with pytest.raises(PolicyError) as err:
        Loader(policy_dir.root).build("karamay")
    assert err.value.issues[0].path == "publishing.four_eyes" and err.value.issues[0].line


def test_rollback_needs_a_reason_and_records_it(cases):
    policies = cases.policies
    draft = policies.create_draft("karamay", "编辑")
    document = policies.document(draft)
    document["problem_types"][1]["departments"] = []
    draft = policies.update_draft("karamay", draft.number, document, draft.revision, "编辑")
    policies.publish("karamay", draft.number, "发布人", "医疗废水不再指定部门", ["医疗废水处置: 三级网格(村/社区)发现"],
                     draft.revision)
    with pytest.raises(Invalid, match="原因"):
        policies.rollback("karamay", 1, "发布人", "  ")
    assert policies.active_version("karamay").number == draft.number
    policies.rollback("karamay", 1, "发布人", "部门职责未协调好")
    [row] = _audit(policies, "rolled_back")
    assert row.detail == {"note": "部门职责未协调好", "from_version": draft.number}
