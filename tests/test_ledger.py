"""The supervision ledger: objects (classes, history, import), patrol records (intake, findings → cases) and cadence
obligations, on SQLite and PostgreSQL; the HTTP API through Litestar's test client."""
from __future__ import annotations

import io
import itertools
import time
from collections import Counter
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import event
from hypothesis import HealthCheck, given, settings, strategies as st
from litestar.testing import TestClient
from openpyxl import Workbook, load_workbook
from sqlmodel import Session, func, select

from api.app import create_app
from store.apikeys import create_key
from store.assessment import AssessmentService, Period
from store import tallies
from store.cadences import CadenceService, buckets_in, status_of
from store.errors import Conflict, Invalid, NotFound
from store.ledger import CST, Finding, LedgerService, PatrolInput, read_table
from store.ledger_xlsx import patrol_summary
from store.tallies import bucket_of
from tests.test_transactions import queued_behind_a_leader
from store.tables import (CadenceObligation, CaseLink, CaseRecord, Notification, ObjectChange, PatrolObject,
                          PatrolRecord, PatrolTally, SupervisedObject)

SOURCE = {"name": "辽河化工有限公司", "unit": "pj-l3-01", "kind": "污染源", "identifier": "91211100MA0001",
          "source_class": "C", "class_reason": "省控源", "address": "盘山县化工园区1号", "registered_on": "2026-01-01"}
NOON = datetime(2026, 11, 3, 12, 0, tzinfo=CST)


@pytest.fixture
def ledger(cases) -> LedgerService:
    return LedgerService(cases.policies, cases)


def count(engine, table) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(table)).one()


def patrol(unit="pj-l3-01", at=NOON, **extra) -> PatrolInput:
    return PatrolInput(unit=unit, patrolled_at=at, patrollers=["王五", "赵六"], signed_by="王五", **extra)


# --- objects
def test_object_keeps_class_who_when_why_and_its_history(ledger):
    obj = ledger.create_object("panjin", SOURCE, "张科长")
    assert (obj.kind, obj.source_class, obj.classed_by, obj.class_reason) == (
        "pollution_source", "C", "张科长", "省控源")
    with pytest.raises(Invalid, match="定类须说明理由"):
        ledger.update_object("panjin", obj.id, {"source_class": "B"}, "李科长")
    changed = ledger.update_object("panjin", obj.id, {"source_class": "B"}, "李科长", "三年内无环境违法, 降为常规管理")
    assert (changed.source_class, changed.classed_by, changed.class_reason) == (
        "B", "李科长", "三年内无环境违法, 降为常规管理")
    history = ledger.history("panjin", obj.id)
    assert [h.action for h in history] == ["created", "updated"]
    assert history[1].changes["source_class"] == ["C", "B"] and history[1].actor == "李科长"


@pytest.mark.parametrize("change, field, message", [
    ({"source_class": "D"}, "source_class", "类别 'D' 未在规则中定义; 可用: A (简化管理)、B (常规管理)、C (强化监管)"),
    ({"unit": "nowhere"}, "unit", "网格单元 'nowhere' 不属于辖区 panjin"),
    ({"kind": "工厂"}, "kind", "未知的对象类型 '工厂'"),
    ({"name": " "}, "name", "名称不能为空"),
    ({"longitude": "east"}, "longitude", "经度 'east' 不是数字"),
    ({"registered_on": "2999-01-01"}, "registered_on", "建档日期 2999-01-01 晚于今天"),
])
def test_bad_object_is_refused_in_chinese_and_nothing_saved(ledger, change, field, message):
    with pytest.raises(Invalid) as err:
        ledger.create_object("panjin", {**SOURCE, **change}, "t")
    assert err.value.field == field and message in err.value.message
    assert count(ledger.engine, SupervisedObject) == 0 and count(ledger.engine, ObjectChange) == 0


def test_a_class_where_the_policy_defines_none_is_refused(ledger):
    """Karamay's text defines no A/B/C classes (only Panjin's 附件1 一 does)."""
    with pytest.raises(Invalid, match="辖区 karamay 的规则未定义污染源类别"):
        ledger.create_object("karamay", {**SOURCE, "unit": "kmy-l3-01"}, "t")
    assert ledger.create_object("karamay", {**SOURCE, "unit": "kmy-l3-01", "source_class": ""},
                                "t").source_class is None


def test_search_by_pinyin_initials_grid_kind_and_class(ledger):
    a = ledger.create_object("panjin", SOURCE, "t")
    b = ledger.create_object("panjin", {**SOURCE, "name": "兴隆台养殖场", "unit": "pj-l3-11", "kind": "livestock_farm",
                                        "identifier": "X2", "source_class": "A", "class_reason": "小型守法"}, "t")
    ids = lambda **kw: [o.id for o in ledger.search_objects("panjin", **kw)[1]]  # noqa: E731
    assert ids(q="lhhg") == [a.id] and ids(q="xinglongtai") == [b.id] and ids(q="养殖") == [b.id]
    assert ids(q="91211100ma") == [a.id]
    parent = ledger.policies.router("panjin").units["pj-l3-01"].parent
    assert ids(unit=parent) == [a.id] and sorted(ids(unit="pj")) == [a.id, b.id]
    assert ids(kind="livestock_farm") == [b.id] and ids(source_class="C") == [a.id] and ids(source_class="-") == []


def test_object_search_goes_through_the_trigram_index_and_follows_changes(ledger):
    a = ledger.create_object("panjin", SOURCE, "t")
    ids = lambda q: [o.id for o in ledger.search_objects("panjin", q=q)[1]]  # noqa: E731
    assert ids("lhhg") == [a.id] and ids("辽河化工") == [a.id] and ids("liaohe huagong") == [a.id]
    ledger.update_object("panjin", a.id, {"name": "双台子热电厂"}, "t")
    assert ids("lhhg") == [] and ids("stzrdc") == [a.id] and ids("热电") == [a.id] and ids("shuangtaizi rd") == [a.id]
    assert ids('"stz') == [] and ids("%") == []  # quotes and wildcards are text
    with Session(ledger.engine) as session:
        query = select(SupervisedObject.id).where(*ledger._containing(["shuangtaizi"]))
        sql = str(query.compile(session.get_bind(), compile_kwargs={"literal_binds": True}))
        if ledger.engine.dialect.name == "postgresql":
            session.connection().exec_driver_sql("SET LOCAL enable_seqscan = off")  # a tiny table: make it tell
            plan = " ".join(r[0] for r in session.connection().exec_driver_sql("EXPLAIN " + sql))
            assert "ix_object_search" in plan, plan
        else:
            plan = " ".join(r[-1] for r in session.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
            assert "VIRTUAL TABLE INDEX" in plan and "object_search" in plan, plan


def test_duplicate_identifier_is_a_conflict(ledger):
    ledger.create_object("panjin", SOURCE, "t")
    with pytest.raises(Conflict, match="许可证号 91211100MA0001 已登记"):
        ledger.create_object("panjin", {**SOURCE, "name": "另一家"}, "t")


def _csv(*lines: str) -> bytes:
    return ("\n".join(["名称,网格,类型,类别,分类理由,许可证号,地址,建档日期", *lines]) + "\n").encode("utf-8-sig")


def test_import_previews_and_saves_only_a_clean_file(ledger):
    ledger.create_object("panjin", SOURCE, "t")
    bad = read_table(_csv("甲厂,pj-l3-01,污染源,A,小型守法,X1,,2026-01-01",
                          "乙厂,nowhere,污染源,E,,X2,,2026-01-01",
                          "丙厂,pj-l3-02,污染源,,,X1,,"), "objects.csv")
    preview = ledger.preview_import("panjin", bad)
    assert {(e.row, e.field) for e in preview.errors} == {(3, "unit"), (3, "source_class"), (4, "identifier")}
    with pytest.raises(Invalid, match="第 3 行 unit"):
        ledger.apply_import("panjin", bad, "t")
    assert count(ledger.engine, SupervisedObject) == 1
    good = read_table(_csv("甲厂,pj-l3-01,污染源,A,小型守法,X1,,2026-01-01",
                           "辽河化工有限公司,pj-l3-01,污染源,B,整改到位,91211100MA0001,盘山县化工园区1号,2026-01-01"),
                      "o.csv")
    preview = ledger.preview_import("panjin", good)
    assert (not preview.errors and len(preview.added) == 1
            and preview.updated[0]["changes"]["source_class"] == ["C", "B"])
    ledger.apply_import("panjin", good, "导入员")
    total, rows = ledger.search_objects("panjin")
    assert total == 2 and {o.source_class for o in rows} == {"A", "B"}
    updated = next(o for o in rows if o.identifier == "91211100MA0001")
    assert updated.classed_by == "导入员" and updated.class_reason == "整改到位"


def test_import_reads_xlsx_and_refuses_unknown_columns(ledger):
    book = Workbook()
    book.active.append(["名称", "网格", "类型", "许可证号", "经度", "纬度"])
    book.active.append(["丁厂", "pj-l3-03", "污染源", "X9", 122.07, 41.12])
    out = io.BytesIO()
    book.save(out)
    rows = read_table(out.getvalue(), "objects.xlsx")
    ledger.apply_import("panjin", rows, "t")
    assert ledger.search_objects("panjin", q="X9")[1][0].longitude == pytest.approx(122.07)
    with pytest.raises(Invalid, match="未知的列 负责人"):
        read_table("名称,网格,类型,许可证号,负责人\n".encode(), "o.csv")


# --- patrol records
def test_patrol_with_a_finding_opens_a_routed_case_linked_to_record_and_object(ledger):
    obj = ledger.create_object("panjin", SOURCE, "t")
    record, created = ledger.record_patrol("panjin", patrol(
        objects=[obj.id], photos=["https://img.example/1.jpg"],
        findings=[Finding("雨水排口有废水外排", obj.id, "工业生产企业排污")]), "app", "key-1", now=NOON)
    assert created and record.day == date(2026, 11, 3) and record.signed_by == "王五"
    case_id = record.findings[0]["case_id"]
    case, _, _ = ledger.cases.get(case_id)
    assert case.unit == "pj-l3-01" and case.facts["enterprise_class"] == "C"  # from the ledger, not typed by hand
    with Session(ledger.engine) as session:
        link = session.get(CaseLink, case_id)
    assert (link.object_id, link.patrol_id) == (obj.id, record.id)
    again, created = ledger.record_patrol("panjin", patrol(), "app", "key-1", now=NOON)
    assert not created and again.id == record.id and count(ledger.engine, CaseRecord) == 1


@pytest.mark.parametrize("change, field, message", [
    ({"unit": "pj-nowhere"}, "unit", "网格单元 'pj-nowhere' 不属于辖区 panjin"),
    ({"at": NOON + timedelta(days=1)}, "patrolled_at", "晚于当前时间, 不能登记未来的巡查"),
    ({"activity": "walk"}, "activity", "未知的巡查活动 'walk'"),
    ({"signed_by": "钱七"}, "signed_by", "签字人 '钱七' 不是本次巡查人 (王五、赵六): 谁巡查谁签字谁负责"),
    ({"objects": [999]}, "objects", "监管对象 #999 不在辖区 panjin 的台账中"),
    ({"at": datetime(2025, 12, 1, 9, tzinfo=CST)}, "objects", "早于监管对象"),
    ({"unit": "pj-l3-02"}, "objects", "不在巡查网格 pj-l3-02 内"),
    ({"findings": [Finding("焚烧", None, "没有这种问题")]}, "findings[0].problem_type", "未知的问题类型"),
    ({"photos": ["file:///etc/passwd"]}, "photos[0]", "照片地址须为 http(s) 网址"),
])
def test_bad_patrol_is_refused_and_nothing_saved(ledger, change, field, message):
    obj = ledger.create_object("panjin", SOURCE, "t")
    fields = {"objects": [obj.id], **change}
    unit, at = fields.pop("unit", "pj-l3-01"), fields.pop("at", NOON)
    p = PatrolInput(unit=unit, patrolled_at=at, patrollers=["王五", "赵六"], signed_by=fields.pop("signed_by", "王五"),
                    **fields)
    with pytest.raises(Invalid) as err:
        ledger.record_patrol("panjin", p, "app", now=NOON)
    assert err.value.field == field and message in err.value.message
    assert count(ledger.engine, PatrolRecord) == 0 and count(ledger.engine, CaseRecord) == 0


def test_duplicate_submission_without_a_key_is_a_conflict(ledger):
    ledger.record_patrol("panjin", patrol(), "app", now=NOON)
    with pytest.raises(Conflict, match="重复提交"):
        ledger.record_patrol("panjin", patrol(), "app", now=NOON)
    assert count(ledger.engine, PatrolRecord) == 1


def test_a_batch_of_patrols_is_saved_whole_or_not_at_all(ledger):
    """An app syncing its offline queue: one transaction; each error names its item; a retried key returns the first."""
    batch = [(patrol(at=NOON - timedelta(hours=h)), f"k-{h}") for h in range(1, 4)]
    bad = batch + [(patrol(unit="nowhere"), None), (patrol(photos=["ftp://x"]), None)]
    with pytest.raises(Invalid) as err:
        ledger.record_patrols("panjin", bad, "app", now=NOON)
    assert [e["field"] for e in err.value.extra["errors"]] == ["patrols[3].unit", "patrols[4].photos[0]"]
    assert count(ledger.engine, PatrolRecord) == 0
    with pytest.raises(Conflict, match="同一批次") as twin:
        ledger.record_patrols("panjin", [*batch, (patrol(at=NOON - timedelta(hours=1)), None)], "app", now=NOON)
    assert twin.value.field == "patrols[3].patrolled_at" and count(ledger.engine, PatrolRecord) == 0
    stored = ledger.record_patrols("panjin", batch, "app", now=NOON)
    assert [created for _, created in stored] == [True] * 3 and count(ledger.engine, PatrolRecord) == 3
    again = ledger.record_patrols("panjin", [batch[1], (patrol(at=NOON), "k-new")], "app", now=NOON)
    assert [(r.id, created) for r, created in again][0] == (stored[1][0].id, False) and again[1][1]
    with pytest.raises(Conflict, match="重复提交") as stale:  # the same patrol again under a new key
        ledger.record_patrols("panjin", [(patrol(at=NOON - timedelta(hours=5)), None), (batch[0][0], "k-other")],
                              "app", now=NOON)
    assert stale.value.field == "patrols[1].patrolled_at" and count(ledger.engine, PatrolRecord) == 4


def test_patrols_posted_together_share_one_commit_and_a_retry_gets_the_first(ledger):
    """Issue #12 (patrol intake ≥500 records/s, one per request): patrols arriving while a write runs share the next
    transaction, as case intake does; a retry with the same Idempotency-Key in that transaction gets the first
    record, and a duplicate patrol is refused alone without taking the others with it."""
    commits: list[int] = []
    event.listen(ledger.engine, "commit", lambda _conn: commits.append(1))

    def post(item):
        return ledger.record_patrol("panjin", item[0], "app", item[1], now=NOON)
    items = [(patrol(at=NOON - timedelta(minutes=n)), f"k-{n}") for n in range(8)]
    outcomes = queued_behind_a_leader(ledger.cases.patrols, [*items, items[1]], post)
    assert len(commits) == 1, outcomes  # one for the nine queued behind the leader (which wrote nothing)
    assert all(outcomes[n][1] for n in (0, 2, 3, 4, 5, 6, 7))
    assert outcomes[8][0].id == outcomes[1][0].id and {outcomes[8][1], outcomes[1][1]} == {True, False}  # either first
    assert count(ledger.engine, PatrolRecord) == 8
    outcomes = queued_behind_a_leader(ledger.cases.patrols, [
        (patrol(at=NOON - timedelta(hours=1)), None), (patrol(), None), (patrol(at=NOON - timedelta(hours=2)), None)],
        post)
    assert isinstance(outcomes[1], Conflict) and "重复提交" in outcomes[1].message
    assert outcomes[0][1] and outcomes[2][1] and count(ledger.engine, PatrolRecord) == 10
    with Session(ledger.engine) as session:  # the refused write's tallies went with it
        stored = Counter({(r.jurisdiction, r.per, r.of_object, r.period_start, r.activity, r.subject): r.n
                          for r in session.exec(select(PatrolTally))})
        assert stored == tallies.recount(session)


def test_a_case_found_at_an_object_takes_its_grid_and_class(ledger):
    from engine.router import Case
    obj = ledger.create_object("panjin", SOURCE, "t")
    record, decision = ledger.open_case("panjin", Case(problem_type="工业生产企业排污"), obj.id, "app", "k")
    assert record.unit == "pj-l3-01" and record.facts["enterprise_class"] == "C"
    assert decision == ledger.cases.policies.decision(record.stored_decision)  # as routed: what the row reads back
    replayed, again = ledger.open_case("panjin", Case(problem_type="工业生产企业排污"), obj.id, "app", "k")
    assert replayed.id == record.id and again == decision
    with pytest.raises(Invalid, match="与监管对象 #1 台账中的类别 'C' 不符"):
        ledger.open_case("panjin", Case(problem_type="工业生产企业排污", facts={"enterprise_class": "A"}), obj.id,
                         "app")
    with pytest.raises(NotFound):
        ledger.open_case("panjin", Case(problem_type="工业生产企业排污"), 999, "app")
    assert count(ledger.engine, CaseRecord) == 1 and count(ledger.engine, CaseLink) == 1


# --- cadences
def test_periods_of_a_cadence():
    assert bucket_of("week", date(2026, 11, 4)) == (date(2026, 11, 2), date(2026, 11, 9))
    assert bucket_of("half_month", date(2026, 11, 16)) == (date(2026, 11, 16), date(2026, 12, 1))
    assert bucket_of("quarter", date(2026, 11, 4)) == (date(2026, 10, 1), date(2027, 1, 1))
    # November 2026: the weeks ending in it (the one across its start included, the one across its end not)
    weeks = buckets_in("week", date(2026, 11, 1), date(2026, 12, 1))
    assert weeks[0] == (date(2026, 10, 26), date(2026, 11, 2)) and weeks[-1] == (date(2026, 11, 23), date(2026, 11, 30))
    assert buckets_in("year", date(2026, 11, 1), date(2026, 12, 1)) == [(date(2026, 1, 1), date(2027, 1, 1))]


@given(st.sampled_from(["day", "week", "half_month", "month", "quarter", "half_year", "year"]),
       st.dates(date(2001, 1, 1), date(2099, 12, 1)), st.sampled_from(["month", "quarter", "year"]))
@settings(max_examples=300, deadline=None)
def test_report_periods_partition_the_cadence_periods(kind, day, report):
    """Invariants: a period contains its day; consecutive report periods never share a shorter cadence period."""
    start, end = bucket_of(kind, day)
    assert start <= day < end and bucket_of(kind, end) [0] == end
    p = Period.containing(report, datetime(day.year, day.month, day.day, 12, tzinfo=CST))
    q = p.previous()
    from store.cadences import period_days
    mine, before = buckets_in(kind, *period_days(p)), buckets_in(kind, *period_days(q))
    assert mine and (set(mine).isdisjoint(before) or len(mine) == 1 and mine == before)


def test_status_met_at_risk_missed():
    week = (date(2026, 11, 2), date(2026, 11, 9))
    assert status_of(1, 0, week, datetime(2026, 11, 3, tzinfo=CST)) == "open"
    assert status_of(1, 0, week, datetime(2026, 11, 6, tzinfo=CST)) == "at_risk"  # half the week gone, none recorded
    assert status_of(1, 1, week, datetime(2026, 11, 6, tzinfo=CST)) == "met"
    assert status_of(2, 1, week, datetime(2026, 11, 6, tzinfo=CST)) == "open"  # on pace for two
    assert status_of(1, 0, week, datetime(2026, 11, 9, tzinfo=CST)) == "missed"
    assert status_of(1, 0, week, datetime(2026, 11, 1, tzinfo=CST)) == "pending"


def test_village_patrols_twice_a_month_and_the_summary(ledger):
    """篇二 四(二): "每月不少两次的巡查监管 … 每月底前由主任负责上报本月巡查记录汇总表到乡政府备案"."""
    village = next(u.id for u in ledger.policies.router("pian02").units.values() if u.level == 4)
    later = NOON + timedelta(days=60)
    for day in (date(2026, 10, 5), date(2026, 11, 3), date(2026, 11, 17)):
        ledger.record_patrol("pian02", patrol(village, datetime(day.year, day.month, day.day, 9, tzinfo=CST)), "app",
                             now=later)
    ledger.record_patrol("pian02", patrol(village, datetime(2026, 10, 30, 9, tzinfo=CST), activity="summary"), "app",
                         now=later)
    service = CadenceService(ledger.policies)
    december = datetime(2026, 12, 1, 8, tzinfo=CST)
    rows = lambda label: {r["cadence"]: r for r in service.compliance("pian02", Period.parse(label), december)["rows"]  # noqa: E731
                          if r["unit"] == village}
    november, october = rows("2026-11"), rows("2026-10")
    assert (november["village_patrol"]["recorded"], november["village_patrol"]["status"]) == (2, "met")
    assert november["monthly_patrol_summary"]["status"] == "missed"  # no 汇总表 filed in November
    assert (october["village_patrol"]["recorded"], october["village_patrol"]["status"]) == (1, "missed")
    assert october["monthly_patrol_summary"]["status"] == "met"
    assert [(ob.unit, ob.cadence.id) for ob in service.missed("pian02", date(2026, 11, 1), date(2026, 12, 1), december)
            if ob.unit == village] == [(village, "monthly_patrol_summary")]


ASSUMED = "测试方案: 原文未给出每项扣分"


def test_missed_cadences_are_deductions_the_assessment_explains(ledger):
    """篇二 四(二): "每月不少两次的巡查监管 … 每月底前由主任负责上报本月巡查记录汇总表到乡政府备案" — a
    scheme that prices a missed obligation (cadence_missed) and a summary not filed (summary_late) counts them per
    village grid and explains them by obligation, like case deductions."""
    policies = ledger.policies
    village = next(u.id for u in policies.router("pian02").units.values() if u.level == 4)
    draft = policies.create_draft("pian02", "t")
    document = policies.document(policies.get_version("pian02", draft.number))
    document["scoring"] = {"scheme": "deduction", "total": 100, "period": "month", "level": 4,
                           "assumption": ASSUMED, "deductions": [
                               {"id": "patrols", "name": "巡查频次未完成", "points": 3, "trigger": "cadence_missed",
                                "assumption": ASSUMED},
                               {"id": "summary", "name": "汇总表未报送", "points": 5, "trigger": "summary_late",
                                "assumption": ASSUMED}]}
    policies.update_draft("pian02", draft.number, document, draft.revision, "t")
    policies.publish("pian02", draft.number, "t", "测试扣分")
    for day in (date(2026, 10, 5), date(2026, 10, 19)):  # `village` patrols twice, files no summary
        ledger.record_patrol("pian02", patrol(village, datetime(day.year, day.month, day.day, 9, tzinfo=CST)), "app",
                             now=NOON)
    for day, activity in ((date(2026, 9, 7), "patrol"), (date(2026, 9, 29), "summary")):  # one patrol, the summary
        ledger.record_patrol("pian02", patrol(village, datetime(day.year, day.month, day.day, 9, tzinfo=CST),
                                              activity=activity), "app", now=NOON)
    assessment = AssessmentService(policies)
    october = Period.parse("2026-10")
    scores = {u["unit"]: u for u in assessment.assess("pian02", october, level=4, now=NOON)["units"]}
    assert [(d["trigger"], d["count"], d["points"]) for d in scores[village]["deductions"]] == [
        ("cadence_missed", 1, 3), ("summary_late", 1, 5)] and scores[village]["score"] == 92
    september = {u["unit"]: u for u in assessment.assess("pian02", Period.parse("2026-09"), level=4, now=NOON)["units"]}
    assert [(d["trigger"], d["count"]) for d in september[village]["deductions"]] == [("cadence_missed", 1)]
    assert september[village]["score"] == 97
    explained = assessment.explain("pian02", october, village, now=NOON)["deductions"]
    assert [(d["id"], [(o["cadence"], o["period_start"], o["period_end"], o["required"], o["recorded"])
                       for o in d["obligations"]], d["events"]) for d in explained] == [
        ("patrols", [("monthly_patrol_summary", "2026-10-01", "2026-10-31", 1, 0)], []),
        ("summary", [("monthly_patrol_summary", "2026-10-01", "2026-10-31", 1, 0)], [])]
    # before the month ended nothing was missed yet
    mid_october = datetime(2026, 10, 20, tzinfo=CST)
    assert all(u["deductions"] == [] for u in assessment.assess("pian02", october, level=4, now=mid_october)["units"])


PATROL_MINUTES = itertools.count()  # every generated patrol at its own minute: none repeats another
ACTIVITIES = ["patrol", "source_inspection", "report", "meeting", "assessment"]


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 400), st.sampled_from(ACTIVITIES),
                          st.lists(st.integers(0, 3), max_size=3)), min_size=1, max_size=25),
       st.integers(1, 5), st.integers(0, 400), st.one_of(st.none(), st.integers(0, 420)),
       st.one_of(st.none(), st.integers(0, 420)), st.sampled_from([None, 0, 1]))
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_tallies_kept_by_intake_equal_a_recount_of_random_histories(ledger, history, batch, moment, lo, hi, grid):
    """Intake adds to the tallies in its transaction; they equal a recount from the records, and every obligation's
    count read from them equals the records of its subject, activity and period counted one by one; so does the
    number of records of a grid over some days that the patrol list shows."""
    router = ledger.policies.router("panjin")
    grids = sorted(u.id for u in router.units.values() if u.level == max(v.level for v in router.units.values()))[:3]
    objects = _tally_objects(ledger, grids)
    start = date(2025, 12, 1)
    items = []
    for grid, day, activity, picks in history:
        at = (datetime(start.year, start.month, start.day, 8, tzinfo=CST)
              + timedelta(days=day, minutes=next(PATROL_MINUTES)))
        items.append((patrol(grids[grid], at, activity=activity, objects=sorted({objects[grid][i] for i in picks})),
                      None))
    for i in range(0, len(items), batch):
        ledger.record_patrols("panjin", items[i:i + batch], "app", now=datetime(2027, 3, 1, tzinfo=CST))
    with Session(ledger.engine) as session:
        stored = Counter({(r.jurisdiction, r.per, r.of_object, r.period_start, r.activity, r.subject): r.n
                          for r in session.exec(select(PatrolTally))})
        assert +stored == tallies.recount(session) and stored == +stored  # no empty rows either
        records = session.exec(select(PatrolRecord.id, PatrolRecord.unit, PatrolRecord.activity, PatrolRecord.day)
                               .where(PatrolRecord.jurisdiction == "panjin")).all()
        checked = session.exec(select(PatrolObject.object_id, PatrolRecord.activity, PatrolObject.day).join(
            PatrolRecord, PatrolRecord.id == PatrolObject.patrol_id)).all()
    first, last = ((None if lo is None else start + timedelta(days=lo)),
                   (None if hi is None else start + timedelta(days=hi)))
    unit = None if grid is None else grids[grid]
    assert ledger.search_patrols("panjin", unit, first, last)[0] == sum(
        1 for _, u, _, d in records
        if unit in (None, u) and (first is None or d >= first) and (last is None or d < last))
    plan = [(c, buckets_in(c.per.value, date(2025, 12, 1), date(2027, 2, 1))) for c in router.jur.policy.cadences]
    now = datetime(2025, 12, 1, tzinfo=CST) + timedelta(days=moment)
    obligations, _ = CadenceService(ledger.policies).evaluate("panjin", plan, now)
    assert obligations
    for ob in obligations:
        lo, hi = ob.bucket
        if ob.object_id is None:
            expected = sum(1 for _, u, a, d in records if u == ob.unit and a == ob.cadence.activity and lo <= d < hi)
        else:
            wanted = ("patrol", "source_inspection") if ob.cadence.activity in ("patrol", "source_inspection") \
                else (ob.cadence.activity,)
            expected = sum(1 for oid, a, d in checked if oid == ob.object_id and a in wanted and lo <= d < hi)
        assert ob.recorded == expected, ob
        assert ob.status == status_of(ob.required, expected, ob.bucket, now)


def _tally_objects(ledger: LedgerService, grids: list[str]) -> list[list[int]]:
    """Four objects per grid (classes A, B, C and a trial production project), made once per database."""
    found = ledger.search_objects("panjin", q="tally", limit=100)[1]
    if not found:
        kinds = [("污染源", "A"), ("污染源", "B"), ("污染源", "C"), ("试生产期建设项目", None)]
        for g, grid in enumerate(grids):
            for k, (kind, cls) in enumerate(kinds):
                ledger.create_object("panjin", {**SOURCE, "name": f"tally{g}{k}", "unit": grid, "kind": kind,
                                                "identifier": f"TALLY{g}{k}", "source_class": cls,
                                                "registered_on": "2025-12-01"}, "t")
        found = ledger.search_objects("panjin", q="tally", limit=100)[1]
    by_name = {o.name: o.id for o in found}
    return [[by_name[f"tally{g}{k}"] for k in range(4)] for g in range(len(grids))]


def test_abc_classes_set_each_objects_inspection_frequency(ledger):
    """盘锦 附件1 一 classes; the frequencies are assumptions of panjin.yaml (C quarterly, B half-yearly, A yearly)."""
    c = ledger.create_object("panjin", SOURCE, "t")
    a = ledger.create_object("panjin", {**SOURCE, "identifier": "A1", "source_class": "A", "name": "小厂"}, "t")
    ledger.record_patrol("panjin", patrol(objects=[a.id]), "app", now=NOON)
    result = CadenceService(ledger.policies).compliance("panjin", Period.parse("2026-Q4"),
                                                        datetime(2027, 1, 2, tzinfo=CST))
    by_cadence = {r["cadence"]: r for r in result["rows"] if r["objects"]}
    assert by_cadence["source_inspection_c"]["status"] == "missed"  # C: every quarter, not inspected in Q4
    assert by_cadence["source_inspection_a"]["status"] == "met" and "source_inspection_b" not in by_cadence
    assert {o for o in result["objects"]} == {c.id, a.id}


def test_sweeper_marks_and_notifies_once(ledger):
    villages = sorted(u.id for u in ledger.policies.router("pian02").units.values() if u.level == 4)
    ledger.record_patrol("pian02", patrol(villages[0], datetime(2026, 11, 3, 9, tzinfo=CST)), "app", now=NOON)
    service = CadenceService(ledger.policies)
    first = service.sweep(datetime(2026, 11, 20, tzinfo=CST))
    assert first["notified_at_risk"] >= 1 and service.sweep(datetime(2026, 11, 20, 1, tzinfo=CST)) == {}
    after = service.sweep(datetime(2026, 12, 1, 1, tzinfo=CST))
    assert after["notified_missed"] >= 1
    with Session(ledger.engine) as session:
        row = session.exec(select(CadenceObligation).where(CadenceObligation.unit == villages[0],
                                                           CadenceObligation.cadence == "village_patrol",
                                                           CadenceObligation.period_start == date(2026, 11, 1))).one()
        kinds = session.exec(select(Notification.kind).where(Notification.obligation_id == row.id)
                             .order_by(Notification.id)).all()
    assert (row.recorded, row.status) == (1, "missed") and kinds == ["cadence_missed"]


def test_patrol_summary_workbook(ledger):
    villages = sorted(u.id for u in ledger.policies.router("pian02").units.values() if u.level == 4)
    ledger.record_patrol("pian02", patrol(villages[0], datetime(2026, 11, 3, 9, tzinfo=CST), findings=[
        Finding("秸秆焚烧", None, None)]), "app", now=NOON)
    data = patrol_summary(ledger, CadenceService(ledger.policies), "pian02", Period.parse("2026-11"), "p02-township",
                          datetime(2026, 11, 28, tzinfo=CST))
    sheet = load_workbook(io.BytesIO(data))["巡查记录汇总表"]
    values = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert values[0][0] == "xx乡 2026年11月巡查记录汇总表" and values[1][:3] == ["序号", "巡查日期", "时间"]
    assert values[2][7] == "秸秆焚烧" and values[2][9] == "王五"


# --- HTTP
@pytest.fixture
def client(database_url):
    app = create_app(database_url, background=False)
    engine = app.state.services.policies.engine
    with TestClient(app) as test_client:
        test_client.headers.update({"X-API-Key": create_key(engine, [], "all", "test")})
        yield test_client
    engine.dispose()


def test_http_objects_patrols_cases_and_cadences(client):
    created = client.post("/v1/jurisdictions/panjin/objects", json={**SOURCE, "actor": "张科长"})
    assert created.status_code == 201, created.text
    oid = created.json()["id"]
    bad = client.post("/v1/jurisdictions/panjin/objects",
                      json={**SOURCE, "identifier": "Z", "source_class": "Q", "actor": "x"})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    assert bad.json()["errors"][0]["field"] == "source_class"
    body = {"unit": "pj-l3-01", "patrolled_at": "2026-11-03T09:00:00", "patrollers": ["王五"], "signed_by": "王五",
            "objects": [oid],
            "findings": [{"description": "废水外排", "object_id": oid, "problem_type": "工业生产企业排污"}]}
    first = client.post("/v1/jurisdictions/panjin/patrols", json=body, headers={"Idempotency-Key": "p-1"})
    assert first.status_code == 201 and first.json()["objects"][0]["id"] == oid
    replay = client.post("/v1/jurisdictions/panjin/patrols", json=body, headers={"Idempotency-Key": "p-1"})
    assert replay.status_code == 200 and replay.json()["id"] == first.json()["id"]
    duplicate = client.post("/v1/jurisdictions/panjin/patrols", json=body)
    assert duplicate.status_code == 409 and "重复提交" in duplicate.json()["detail"]
    future = client.post("/v1/jurisdictions/panjin/patrols", json={**body, "patrolled_at": "2999-01-01T09:00:00"})
    assert future.status_code == 422 and future.json()["field"] == "patrolled_at"
    case = client.post("/v1/cases",
                       json={"jurisdiction": "panjin", "problem_type": "工业生产企业排污", "object_id": oid})
    assert (case.status_code == 201 and case.json()["facts"]["enterprise_class"] == "C"
            and case.json()["unit"] == "pj-l3-01")
    missing = client.post("/v1/cases",
                          json={"jurisdiction": "panjin", "problem_type": "工业生产企业排污", "object_id": 999})
    assert missing.status_code == 404 and missing.json()["field"] == "object_id"
    detail = client.get(f"/v1/jurisdictions/panjin/objects/{oid}").json()
    assert detail["patrols"]["total"] == 1 and detail["history"][0]["action"] == "created"
    listed = client.get("/v1/jurisdictions/panjin/objects", params={"q": "lhhg", "class": "C"}).json()
    assert listed["total"] == 1
    compliance = client.get("/v1/jurisdictions/panjin/cadences", params={"period": "2026-11"}).json()
    assert compliance["period"]["label"] == "2026-11" and compliance["rows"]
    assert client.get("/v1/jurisdictions/panjin/cadences", params={"period": "2026-13"}).status_code == 422
    xlsx = client.get("/v1/jurisdictions/panjin/patrol-summary.xlsx", params={"period": "2026-11", "unit": "pj-l3-01"})
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"
    preview = client.post("/v1/jurisdictions/panjin/objects/import", params={"actor": "t"},
                          content=_csv("甲厂,pj-l3-01,污染源,Z,,X1,,"), headers={"Content-Type": "text/csv"})
    assert preview.status_code == 422 and preview.json()["errors"][0]["row"] == 2
    saved = client.post("/v1/jurisdictions/panjin/objects/import", params={"actor": "t", "confirm": "true"},
                        content=_csv("甲厂,pj-l3-01,污染源,A,小型,X1,,"), headers={"Content-Type": "text/csv"})
    assert saved.status_code == 200 and saved.json()["added"] == 1
    assert client.get("/v1/jurisdictions/panjin/objects", headers={"X-API-Key": ""}).status_code == 403


def test_http_patrol_batch(client):
    item = {"unit": "pj-l3-01", "patrollers": ["王五"], "signed_by": "王五"}
    patrols = [{**item, "patrolled_at": f"2026-11-03T0{h}:00:00", "idempotency_key": f"b-{h}"} for h in range(1, 4)]
    saved = client.post("/v1/jurisdictions/panjin/patrols/batch", json={"patrols": patrols})
    assert saved.status_code == 200, saved.text
    assert (saved.json()["created"], saved.json()["existing"]) == (3, 0)
    retried = client.post("/v1/jurisdictions/panjin/patrols/batch", json={"patrols": patrols[:2]}).json()
    assert (retried["existing"] == 2
            and [p["id"] for p in retried["patrols"]] == [p["id"] for p in saved.json()["patrols"][:2]])
    bad = client.post("/v1/jurisdictions/panjin/patrols/batch",
                      json={"patrols": [{**item, "patrolled_at": "2026-11-03T08:00:00"},
                                        {**item, "unit": "x", "patrolled_at": "2026-11-03T08:30:00"}]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "patrols[1].unit"
    assert client.get("/v1/jurisdictions/panjin/patrols").json()["total"] == 3
    too_many = client.post("/v1/jurisdictions/panjin/patrols/batch", json={"patrols": [patrols[0]] * 501})
    assert too_many.status_code == 400


def test_trend_agrees_with_each_periods_compliance(ledger):
    village = next(u.id for u in ledger.policies.router("pian02").units.values() if u.level == 4)
    for day in (date(2026, 9, 2), date(2026, 10, 5), date(2026, 10, 20), date(2026, 11, 3)):
        ledger.record_patrol("pian02", patrol(village, datetime(day.year, day.month, day.day, 9, tzinfo=CST)), "app",
                             now=NOON + timedelta(days=30))
    service, now = CadenceService(ledger.policies), datetime(2026, 11, 20, tzinfo=CST)
    trend = service.trend("pian02", Period.parse("2026-11"), 3, now)
    assert [t["period"] for t in trend] == ["2026-09", "2026-10", "2026-11"]
    for t in trend:
        levels = service.compliance("pian02", Period.parse(t["period"]), now)["levels"]
        assert t["total"] == sum(lv["total"] for lv in levels) and t["met"] == sum(lv["met"] for lv in levels)


def test_a_chart_of_the_same_figures_is_drawn_once(monkeypatch):
    """The cadence dashboard's charts (issue #12: its pages under 200 ms): pygal takes tens of milliseconds to draw
    one, so the same figures (a dashboard reloaded between patrols) are drawn once."""
    import pygal  # noqa: PLC0415
    from admin.charts import bar_chart  # noqa: PLC0415
    drawn = []
    real = pygal.Bar.render
    monkeypatch.setattr(pygal.Bar, "render", lambda self, **kw: drawn.append(1) or real(self, **kw))
    first = bar_chart("近期各期完成率 (测试)", ["2026-10", "2026-11"], {"已完成 %": [50.0, 75.5]})
    again = bar_chart("近期各期完成率 (测试)", ["2026-10", "2026-11"], {"已完成 %": [50.0, 75.5]})
    other = bar_chart("近期各期完成率 (测试)", ["2026-10", "2026-11"], {"已完成 %": [50.0, 80.0]})
    assert first.startswith("<svg") and first == again and first != other
    assert len(drawn) == 2


def test_the_dashboard_keeps_settled_periods_but_never_shows_them_stale(ledger):
    """Issue #12 (the cadence dashboard under 200 ms): the trend keeps the figures of settled periods, and counts a
    period again after a back-dated patrol, a rebuild of the tallies, or a version with another cadence or other
    units; the dashboard's compliance is the report's."""
    policies, service = ledger.policies, CadenceService(ledger.policies)
    village = next(u.id for u in policies.router("pian02").units.values() if u.level == 4)
    now, november = datetime(2026, 11, 20, tzinfo=CST), Period.parse("2026-11")
    counting: list[str] = []
    counted: list[str] = []  # the settled periods the dashboard counted (not kept)
    event.listen(ledger.engine, "before_cursor_execute",  # the settled periods' count (tallies.histogram)
                 lambda _c, _cur, sql, *_: counting.append(sql) if "count(*)" in sql and "patrol_tally" in sql else 0)

    def shown() -> list[dict]:
        counting.clear()
        report, trend = service.dashboard("pian02", november, 3, now)
        counted[:] = counting
        assert report == service.compliance("pian02", november, now)
        fresh = CadenceService(policies)  # keeps nothing
        assert trend == fresh.trend("pian02", november, 3, now) == service.trend("pian02", november, 3, now)
        return trend

    def september_patrols(*days: int) -> None:
        ledger.record_patrols("pian02", [(patrol(village, datetime(2026, 9, d, 9, tzinfo=CST)), None) for d in days],
                              "app", now=now)

    september_patrols(2)
    first = shown()
    assert counted and shown() == first and not counted  # kept: the settled months are not counted again
    september_patrols(9)  # back-dated: village_patrol (twice a month) is met in September now
    assert shown()[0]["met"] == first[0]["met"] + 1 and counted
    with Session(ledger.engine) as session:  # records written in bulk, then the tallies rebuilt (the simulator)
        session.add(PatrolRecord(jurisdiction="pian02", unit=village, activity="summary", day=date(2026, 10, 30),
                                 patrolled_at=datetime(2026, 10, 30, 9, tzinfo=CST), patrollers=["王五"],
                                 signed_by="王五", created_by="t", created_at=now))
        session.flush()
        tallies.rebuild(session, "pian02")
        session.commit()
    assert shown()[1]["met"] == first[1]["met"] + 1  # October's summary filed
    draft = policies.create_draft("pian02", "t")
    document = policies.document(policies.get_version("pian02", draft.number))
    patrols = next(c for c in document["cadences"] if c["id"] == "village_patrol")
    patrols["times"], patrols["fields"] = 3, {"times": {"assumption": "测试: 每月三次"}}
    document["unit_groups"][0]["generate"] = 2  # one more village
    policies.update_draft("pian02", draft.number, document, draft.revision, "t")
    policies.publish("pian02", draft.number, "t", "每月三次巡查, 两个行政村")
    again = shown()
    assert again[0]["met"] == first[0]["met"] and again[0]["total"] == first[0]["total"] + 2


def test_a_server_keeps_its_built_versions_out_of_garbage_collections(database_url):
    """Issue #12 (the dashboard's p95 under 200 ms): a full collection, every few large admin pages, scanned every
    compiled version (~0.4 s at Hefei's size); once the versions served are built they are frozen out of it."""
    import gc  # noqa: PLC0415
    gc.unfreeze()
    try:
        with TestClient(create_app(database_url, sweep_enabled=False)) as client:
            assert client.get("/health").status_code == 200
            for _ in range(300):  # the background round (every 2 s) that finds the versions built
                if gc.get_freeze_count():
                    break
                time.sleep(0.1)
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


@given(st.lists(st.lists(st.tuples(st.integers(0, 200), st.sampled_from(["patrol", "summary", "report"])),
                         min_size=1, max_size=6), min_size=1, max_size=4),
       st.integers(0, 240), st.sampled_from([None, "p02-township"]))
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_kept_dashboard_equals_a_fresh_one_after_any_patrols(ledger, batches, moment, unit):
    """The settled periods the dashboard keeps (篇二's village cadences: twice a month, the monthly summary): after
    every batch of patrols, on any day before or after the view's, its figures equal a service's that keeps nothing."""
    village = next(u.id for u in ledger.policies.router("pian02").units.values() if u.level == 4)
    start = datetime(2026, 1, 1, 8, tzinfo=CST)
    now = start + timedelta(days=moment)
    period, service = Period.parse(f"{now.year}-{now.month:02d}"), CadenceService(ledger.policies)
    service.dashboard("pian02", period, 6, now, unit)
    for batch in batches:
        ledger.record_patrols("pian02", [(patrol(village, start + timedelta(days=day, minutes=next(PATROL_MINUTES)),
                                                 activity=activity), None) for day, activity in batch],
                              "app", now=datetime(2027, 3, 1, tzinfo=CST))
        assert service.dashboard("pian02", period, 6, now, unit) == CadenceService(ledger.policies).dashboard(
            "pian02", period, 6, now, unit)
