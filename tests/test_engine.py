"""Engine mechanics: durable-rules limits, versions side by side, concurrency, calendars, errors."""
from __future__ import annotations

import threading
from datetime import date, datetime, timedelta, timezone

import pytest

from engine.calendar import WorkCalendar
from engine.compiler import compile_policy, rules_definition, types_definition
from engine.registry import EngineRegistry, VerificationFailed
from engine.router import Case, PolicyRouter, RoutingError
from engine.runtime import RulesetLimitError, check_limits
from policy.loader import Loader
from policy.models import CalendarKind

CST = timezone(timedelta(hours=8))


@pytest.fixture(scope="module")
def karamay():
    from tests.conftest import BUNDLED
    return Loader(BUNDLED).build("karamay")


def test_compiled_rulesets_are_generated_from_the_policy(karamay):
    types = types_definition(karamay)
    assert set(types) == {f"type:{t.code}" for t in karamay.policy.problem_types}
    rules = rules_definition(karamay)
    assert rules["rule:corrected_on_site"]["pri"] == 10
    assert {"corrected_on_site": True} in rules["rule:corrected_on_site"]["all"][0]["m"]["$and"]


def test_or_rule_matching_several_branches_fires_once(karamay):
    from engine.runtime import Ruleset
    ruleset = Ruleset("or-test", {"rule:x": {"all": [{"m": {"$or": [{"a": True}, {"b": True}]}}]}})
    try:
        assert ruleset.fire({"a": True, "b": True}) == ["rule:x"]
        assert ruleset.fire({"a": False, "b": False}) == []
    finally:
        ruleset.close()


def test_limits_are_refused_before_loading():
    too_many = {f"r{i}": {"all": [{"m": {"kind": "case"}}]} for i in range(4097)}
    with pytest.raises(RulesetLimitError, match="4096"):
        check_limits("x", too_many)
    wide = {f"type:{i}": {"all": [{"m": {"$and": [{"kind": "case"}, {"problem_type": f"c{i}"}]}}]} for i in range(513)}
    with pytest.raises(RulesetLimitError, match="problem_type"):
        check_limits("x", wide)
    check_limits("x", dict(list(wide.items())[:512]))


def test_versions_load_side_by_side_and_switch(policy_dir):
    registry = EngineRegistry()
    old = Loader(policy_dir.root).build("karamay")
    registry.load(old)
    data = policy_dir.read()
    data["problem_types"][0]["level"] = 1
    policy_dir.write(data)
    new = Loader(policy_dir.root).build("karamay")
    assert new.content_hash != old.content_hash
    case = Case(problem_type="waste.medical.disposal", unit="kmy-l3-01")
    assert registry.router("karamay").route(case).handler.level == 2
    registry.load(new)
    assert registry.router("karamay").route(case).handler.level == 1
    replay = registry.router("karamay", old.content_hash).route(case)  # the old version stays evaluable
    assert replay.handler.level == 2 and replay.policy_version == old.content_hash
    with pytest.raises(ValueError, match="当前生效版本"):
        registry.unload("karamay", new.content_hash)
    registry.unload("karamay", old.content_hash)
    with pytest.raises(KeyError):
        registry.router("karamay", old.content_hash)


def test_registry_refuses_a_version_that_fails_verification(policy_dir):
    data = policy_dir.read()
    data["rules"].append({"id": "never", "name": "永不命中", "priority": 15,
                          "when": {"entry": "below", "handler_level": 3},
                          "then": {"actions": [{"kind": "report", "by": "finder", "to": "handler"}]},
                          "assumption": "测试"})
    policy_dir.write(data)
    registry = EngineRegistry()
    with pytest.raises(VerificationFailed, match="never"):
        registry.load(Loader(policy_dir.root).build("karamay"))
    assert registry.active() == {}


def test_concurrent_routing_matches_sequential(karamay):
    router = PolicyRouter(compile_policy(karamay))
    when = datetime(2026, 9, 28, 9, tzinfo=CST)
    cases = [Case(problem_type=t.code, unit=u.id, facts=f, reported_at=when)
             for t in karamay.policy.problem_types for u in list(karamay.units.values())[:10]
             for f in ({}, {"corrected_on_site": True})]
    expected = [router.route(c) for c in cases]
    results: dict[int, list] = {}

    def worker(n: int) -> None:
        results[n] = [router.route(c) for c in cases]

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[n] == expected for n in range(4))


def test_working_days_skip_national_day():
    cal = WorkCalendar()
    start = datetime(2026, 9, 30, 10, tzinfo=CST)  # Wednesday before 国庆 (Oct 1–7 2026)
    due = cal.add(start, timedelta(days=2), CalendarKind.working)
    assert due.date() > date(2026, 10, 7) and cal.is_workday(due.date())
    assert cal.add(start, timedelta(days=2), CalendarKind.natural) == start + timedelta(days=2)


def test_make_up_working_day_counts():
    cal = WorkCalendar()
    # 2026-01-04 (a Sunday) is a make-up working day for New Year 2026 per the State Council notice
    assert cal.is_workday(date(2026, 1, 4)) is True
    assert cal.is_workday(date(2026, 1, 1)) is False


def test_uncovered_year_falls_back_without_crashing():
    cal = WorkCalendar({date(2099, 10, 1): False})
    assert not cal.covers(date(2098, 5, 1)) and cal.covers(date(2099, 5, 1))
    due = cal.add(datetime(2099, 9, 30, 9), timedelta(days=1), CalendarKind.working)
    assert due.date() == date(2099, 10, 2)  # 10-01 overridden as a holiday, 10-02 a Friday
    # 2098-01-03 is a Friday: without holiday data Monday–Friday count
    assert cal.add(datetime(2098, 1, 3, 9), timedelta(days=1), CalendarKind.working).date() == date(2098, 1, 6)


def test_unknown_type_and_unit_name_close_matches(karamay):
    router = PolicyRouter(compile_policy(karamay))
    with pytest.raises(RoutingError) as info:
        router.route(Case(problem_type="yiliao feiwu"))
    assert info.value.field == "problem_type" and "医疗废物处置" in str(info.value)
    with pytest.raises(RoutingError) as info:
        router.route(Case(problem_type="医疗废物处置", unit="三级网格(村社区)05"))
    assert info.value.field == "unit" and "三级网格(村/社区)05" in str(info.value)


def test_unknown_fact_is_rejected():
    with pytest.raises(ValueError, match="persuasion_failed"):
        Case(problem_type="x", facts={"persuasion_faild": True})


def test_the_router_reads_the_time_only_from_its_clock(karamay):
    """Domain code takes the clock as an input (#15 §4): a case without reported_at runs its deadlines from the
    router's clock, so a decision is reproducible."""
    moment = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)  # a Monday
    router = PolicyRouter(compile_policy(karamay), clock=lambda: moment)
    case = Case(problem_type="医疗废物处置", unit="kmy-l3-01")
    assert router.route(case) == router.route(case.model_copy(update={"reported_at": moment}))
    later = PolicyRouter(compile_policy(karamay), clock=lambda: moment + timedelta(days=7)).route(case)
    assert later.deadlines[0].due != router.route(case).deadlines[0].due
