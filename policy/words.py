"""The words people read instead of codes: one label per concept (actions, case events, deduction triggers,
periods, facts), rule conditions and durations in Chinese, and times in the jurisdiction's local time.

The admin registers these as Jinja filters (admin/routes.py); exports (.xlsx, CSV) and messages call them too, so a
concept is named the same way everywhere. The vocabularies themselves stay beside the models that validate them
(policy.models, policy.facts); this module is the one place that turns a code into words.
"""
from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from pydantic import TypeAdapter

from policy.facts import BOOLEAN_FACTS, ENUM_FACTS, fact_label
from policy.models import ACTION_LABELS, ACTIVITY_LABELS, OBJECT_KINDS, PERIOD_LABELS, TRIGGERS

__all__ = ["ACTION_LABELS", "ACTIVITY_LABELS", "OBJECT_KINDS", "PERIOD_LABELS", "TRIGGERS", "CASE_EVENT_LABELS",
           "CALENDAR_LABELS", "DURATION_UNITS", "TIME_ZONE", "TIME_LABEL", "local_time", "condition_text",
           "duration_text", "duration_parts", "duration_value", "label", "chinese"]

# No policy names a time zone (none of the seed documents needs one: all of China keeps 北京时间, UTC+8, without
# daylight saving), so every jurisdiction shows Asia/Shanghai.
TIME_ZONE = ZoneInfo("Asia/Shanghai")
TIME_LABEL = "北京时间"
_ISO_DURATION = TypeAdapter(timedelta)  # ISO 8601 ("P3D", "PT24H") as the models read it

# What happened to a case (store/cases.py writes these as CaseEvent.action).
CASE_EVENT_LABELS = {"created": "受理并路由", "entered": "进入步骤", "completed": "办结步骤", "closed": "结案",
                     "reopened": "核查未通过, 返工", "returned": "回退", "redispatched": "重新派遣", "extended": "延期",
                     "rerouted": "重新路由", "overdue": "超期", "escalated": "超期升级"}
# A case's status outside its workflow's steps (store.cases.RECEIVED, CLOSED); inside, the step's name.
CASE_STATE_LABELS = {"received": "已受理", "closed": "已结案"}
CALENDAR_LABELS = {"natural": "自然日", "working": "工作日"}
SCHEME_LABELS = {"deduction": "倒扣分制", "points": "百分制"}  # the seed documents' words for a scoring scheme
VERSION_STATUS_LABELS = {"draft": "草稿", "published": "已发布"}
# What an audit entry records (store.versions.audit's `action`), and the keys of its detail.
AUDIT_ACTION_LABELS = {
    "bootstrap_import": "首次导入规则文件", "bootstrap_draft": "规则文件变化, 生成草稿", "draft_created": "新建草稿",
    "draft_updated": "修改草稿", "published": "发布", "rolled_back": "回滚", "boundaries_imported": "导入网格边界",
    "user_created": "创建用户", "role_set": "设置角色", "role_removed": "移除角色", "password_reset": "重置密码",
    "apikey_created": "创建 API 密钥", "apikey_revoked": "吊销 API 密钥", "webhook_subscribed": "订阅事件推送",
    "webhook_unsubscribed": "取消事件推送", "webhook_redelivered": "重投事件推送",
    "pinned_accepted": "接受测试用例新结果", "pinned_case_saved": "保存测试用例",
    "bulk_types_updated": "批量修改问题类型", "types_imported": "导入问题类型表", "units_imported": "导入网格单元"}
AUDIT_DETAIL_LABELS = {
    "note": "说明", "reason": "理由", "from_version": "基于版本", "revision": "修订", "content_hash": "内容摘要",
    "user": "用户", "role": "角色", "superuser": "超级管理员", "roles": "角色", "prefix": "密钥前缀",
    "jurisdictions": "辖区", "features": "边界数", "subscription": "订阅", "url": "地址", "kinds": "事件类型",
    "delivery": "投递"}
# The units a deadline is entered in: (label, seconds, calendar).
DURATION_UNITS = {"hours": ("小时", 3600, "natural"), "days": ("天", 86400, "natural"),
                  "working_days": ("工作日", 86400, "working"), "working_hours": ("工作小时", 3600, "working")}
# Everything `label` can name, by vocabulary.
VOCABULARIES: dict[str, Mapping[str, str]] = {
    "action": ACTION_LABELS, "event": CASE_EVENT_LABELS, "trigger": TRIGGERS, "period": PERIOD_LABELS,
    "activity": ACTIVITY_LABELS, "object_kind": OBJECT_KINDS, "calendar": CALENDAR_LABELS,
    "state": CASE_STATE_LABELS, "scheme": SCHEME_LABELS, "version": VERSION_STATUS_LABELS, "audit": AUDIT_ACTION_LABELS,
    "audit_detail": AUDIT_DETAIL_LABELS, "fact": {**BOOLEAN_FACTS, **{k: v[0] for k, v in ENUM_FACTS.items()}},
}


def label(code: Any, vocabulary: str) -> str:
    """The Chinese word for `code` in one vocabulary (an unknown code is shown as it is)."""
    key = getattr(code, "value", code)
    return VOCABULARIES[vocabulary].get(key, str(key)) if key is not None else "—"


_ENGLISH_TAIL = re.compile(r"\s+—\s+[\x00-\x7f“”‘’]*$")


def chinese(message: str) -> str:
    """A message for people: without the English gloss the API keeps after ' — ' ("… — level 5 is not declared")."""
    return _ENGLISH_TAIL.sub("", message) if re.search(r"[\u4e00-\u9fff]", message) else message


def local_time(moment: datetime | str | None, labelled: bool = True, seconds: bool = False) -> str:
    """A stored time (UTC; naive values from SQLite are UTC) as Beijing time to the minute:
    '2026-11-28 17:30 北京时间'."""
    if moment is None or moment == "":
        return "—"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    text = moment.astimezone(TIME_ZONE).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    return f"{text} {TIME_LABEL}" if labelled else text


def _test_text(name: str, value: Any) -> str:
    if name in BOOLEAN_FACTS:
        return BOOLEAN_FACTS[name] if value is True else f"非「{BOOLEAN_FACTS[name]}」"
    if name in ENUM_FACTS:
        title, values = ENUM_FACTS[name]
        return f"{title}为{values.get(value, value)}"
    if name == "handler_level":
        return f"当前处置网格为第{value}级"
    return f"{fact_label(name)}={value}"


def condition_text(when: Mapping[str, Any] | Any | None) -> str:
    """A rule or workflow condition in words: {'any': [{'persuade_first': False}, {'persuasion_impossible': True}]}
    → '不须先告知劝阻，或无法告知劝阻时'."""
    if when is None:
        return "无条件"
    if hasattr(when, "model_dump"):
        when = when.model_dump(exclude_defaults=True)
    tests = [_test_text(k, v) for k, v in when.items() if k != "any"]
    groups = ["且".join(_test_text(k, v) for k, v in g.items()) for g in when.get("any") or []]
    parts = ["且".join(tests)] if tests else []
    if groups:
        either = "，或".join(groups)
        parts.append(f"（{either}）" if len(groups) > 1 and tests else either)
    text = "且".join(parts)
    return text.replace("非「须先告知劝阻」", "不须先告知劝阻") + "时" if text else "无条件"


def _seconds(duration: timedelta | float | str) -> float:
    if isinstance(duration, timedelta):
        return duration.total_seconds()
    if isinstance(duration, str):
        return _ISO_DURATION.validate_python(duration).total_seconds()
    return float(duration)


def duration_parts(duration: timedelta | float | str, calendar: str = "natural") -> tuple[float, str]:
    """A deadline as (number, unit key of DURATION_UNITS), whole days where it divides."""
    seconds, working = _seconds(duration), getattr(calendar, "value", calendar) == "working"
    if seconds and seconds % 86400 == 0:
        return seconds / 86400, "working_days" if working else "days"
    return seconds / 3600, "working_hours" if working else "hours"


def duration_text(duration: timedelta | float | str, calendar: str = "natural") -> str:
    """'3 个工作日', '24 小时', '2 天'."""
    number, unit = duration_parts(duration, calendar)
    word = DURATION_UNITS[unit][0]
    return f"{number:g} 个{word}" if unit == "working_days" else f"{number:g} {word}"


def duration_value(number: str, unit: str) -> tuple[str, str]:
    """Number + unit as entered → (ISO 8601 duration as stored, calendar). ValueError names what is wrong."""
    if unit not in DURATION_UNITS:
        raise ValueError(f"时限单位须为 {'、'.join(u[0] for u in DURATION_UNITS.values())} 之一")
    text = (number or "").strip()
    if not re.fullmatch(r"\d+(\.\d+)?", text) or not math.isfinite(float(text)) or float(text) <= 0:
        raise ValueError(f"时限须为正数, 如 3; 收到 '{text[:20]}'")
    _, size, calendar = DURATION_UNITS[unit]
    seconds = round(float(text) * size)
    if seconds % 86400 == 0:
        return f"P{seconds // 86400}D", calendar
    if seconds % 3600 == 0:
        return f"PT{seconds // 3600}H", calendar
    return f"PT{seconds // 60}M", calendar
