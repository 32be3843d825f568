"""policy/words.py: codes to words, durations entered as number + unit, Beijing time; `gridpolicy units list`."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policy.models import ACTION_LABELS, PERIOD_LABELS, TRIGGERS
from policy.words import (DURATION_UNITS, chinese, condition_text, duration_parts, duration_text, duration_value,
                          label, local_time)
from tests.test_cli import run


def test_every_code_of_a_vocabulary_has_chinese_words():
    for vocabulary, codes in (("action", ACTION_LABELS), ("trigger", TRIGGERS), ("period", PERIOD_LABELS)):
        for code in codes:
            assert any("\u4e00" <= ch <= "\u9fff" for ch in label(code, vocabulary)), (vocabulary, code)
    assert label("quarter", "period") == "季度" and label("persuade", "action") == "告知劝阻"
    assert label("returned", "event") == "回退"


def test_conditions_read_as_sentences():
    assert condition_text({"any": [{"persuade_first": False}]}) == "不须先告知劝阻时"
    assert condition_text({"persuasion_failed": True, "handler_level": 3}) == "告知劝阻无效且当前处置网格为第3级时"
    assert (condition_text({"major": True, "any": [{"persuade_first": False}, {"persuasion_impossible": True}]})
            == "重大或区域性问题且（不须先告知劝阻，或无法告知劝阻）时")
    assert condition_text({"enterprise_class": "C"}) == "污染源监管类别为C类(强化管理)时"
    assert condition_text(None) == condition_text({}) == "无条件"


def test_beijing_time_to_the_minute_labelled():
    moment = datetime(2026, 11, 26, 19, 28, 59, 943631, tzinfo=timezone.utc)
    assert local_time(moment) == "2026-11-27 03:28 北京时间"
    assert local_time(moment.replace(tzinfo=None), labelled=False) == "2026-11-27 03:28"  # SQLite: naive is UTC
    assert local_time("2026-11-26T19:28:59+00:00") == "2026-11-27 03:28 北京时间"
    assert local_time(None) == "—"


def test_durations_in_words_and_back():
    assert duration_text("P3D", "working") == "3 个工作日"
    assert duration_text(timedelta(hours=24), "natural") == "1 天"
    assert duration_text("PT2H", "natural") == "2 小时"
    assert duration_value("3", "working_days") == ("P3D", "working")
    assert duration_value("1.5", "hours") == ("PT90M", "natural")
    for bad, unit in (("", "days"), ("0", "days"), ("-1", "hours"), ("3天", "days"), ("nan", "days"), ("3", "weeks")):
        with pytest.raises(ValueError):
            duration_value(bad, unit)


@given(st.integers(1, 24 * 365), st.sampled_from(sorted(DURATION_UNITS)))
def test_a_duration_entered_shows_what_was_entered(number, unit):
    """Number + unit → stored ISO 8601 → the form's number + unit again: the same length of time and calendar."""
    iso, calendar = duration_value(str(number), unit)
    shown, shown_unit = duration_parts(iso, calendar)
    assert shown * DURATION_UNITS[shown_unit][1] == number * DURATION_UNITS[unit][1]
    assert DURATION_UNITS[shown_unit][2] == calendar == DURATION_UNITS[unit][2]


def test_messages_for_people_drop_the_english_gloss():
    assert chinese("层级 5 未声明 — level 5 is not declared") == "层级 5 未声明"
    assert chinese("only english — here") == "only english — here"


def test_units_list_by_level():
    result = run("units", "list", "weiyang", "--level", "3")
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0 and len(lines) == 12
    assert all(line.split("\t")[1] == "第3级" and line.split("\t")[3] == "weiyang" for line in lines)
    assert len(run("units", "list", "weiyang").stdout.strip().splitlines()) > 100
    refused = run("units", "list", "weiyang", "--level", "9")
    assert refused.returncode == 1 and "层级 9 不存在" in refused.stdout + refused.stderr
