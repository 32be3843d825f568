"""What every item and judgement field of a policy rests on: quoted, assumed or inherited.

A `source` vouches only for what its quote says: an item's quote vouches for the item and for a number
it contains; a judgement field (`JUDGED` on each model) without its own provenance under `fields:` is
not vouched for and counts as an assumption. An item taken unchanged from a template quotes another
text: it counts as inherited (an assumption for this jurisdiction) unless the clause is in the
jurisdiction's own sections.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any, Iterator

from cn2an import an2cn
from pydantic import BaseModel, TypeAdapter

from policy.errors import format_path
from policy.models import Policy, Provenance, Provenanced, Source

QUOTED, ASSUMED, INHERITED = "quoted", "assumed", "inherited"
STATUS_LABELS = {QUOTED: "原文", ASSUMED: "假设", INHERITED: "继承"}

KIND_LABELS = {
    "Level": "层级", "StatedCount": "网格数", "Unit": "网格单元", "UnitGroup": "网格占位组", "Department": "职能部门",
    "ProblemType": "问题类型", "Deadline": "时限", "Rule": "规则", "WorkflowStep": "流程步骤", "Workflow": "流程",
    "Cadence": "频次", "SourceClass": "污染源类别", "Deduction": "扣分项", "Veto": "一票否决", "Assessment": "考核",
    "Scoring": "评分",
}
FIELD_LABELS = {
    "count": "网格数", "level": "层级", "departments": "职能部门", "persuade_first": "先行劝阻",
    "assist_only": "只报告并协助", "duration": "时限",
    "times": "次数", "per": "周期", "points": "分值", "trigger": "扣分触发事件", "max_points": "扣分上限",
    "at_least": "否决次数", "total": "总分",
}

_DURATION = TypeAdapter(timedelta)

# --- numbers in quotes -----------------------------------------------------------------------------
_CN_DIGITS = "零〇一二三四五六七八九十百千万两"
_PERIOD_WORDS = {"day": ("日", "天"), "week": ("周", "星期"), "half_month": ("半月", "半个月"), "month": ("月",),
                 "quarter": ("季",), "half_year": ("半年",), "year": ("年",)}


def _numeral(forms: tuple[str, ...]) -> str:
    """A regex for any of `forms` standing alone as a number (not part of a longer one: 12 is not in 120)."""
    alts = "|".join(sorted((re.escape(f) for f in forms), key=len, reverse=True))
    return rf"(?<![0-9.{_CN_DIGITS}])(?:{alts})(?![0-9.])"


@lru_cache(maxsize=512)
def number_forms(n: float) -> tuple[str, ...]:
    """Ways a text writes the number n: 12, 十二 (and 两 for 2, 半 for 0.5)."""
    if n == 0.5:
        return ("0.5", "半")
    if n != int(n):
        return (f"{n:g}",)
    n = int(n)
    forms = [str(n), an2cn(n)]
    if 10 <= n < 20:
        forms.append("一" + an2cn(n))  # 一十二
    if n == 2:
        forms.append("两")
    if n == 100:
        forms.append("百分制")  # a 100-point scale
    return tuple(forms)


# (seconds per unit, how a text writes the unit after its number); 半月 and 半小时 carry no number
_DURATION_UNITS = ((30 * 86400, "个?月"), (7 * 86400, "个?(?:周|星期|礼拜)"), (86400, "个?(?:工作)?[日天]"),
                   (3600, "个?(?:小时|钟头)"), (60, "分钟"))
_HALVES = {15 * 86400: "半个?月", 1800: "半个?小时"}


def _duration_patterns(delta: timedelta) -> list[str]:
    """Regexes for a duration: 5个工作日, 五天, 24小时, 一周, 半月, 1个月."""
    seconds = int(delta.total_seconds())
    pats = [_numeral(number_forms(seconds // unit)) + word for unit, word in _DURATION_UNITS if seconds % unit == 0]
    return pats + ([_HALVES[seconds]] if seconds in _HALVES else [])


def states_value(quote: str, field: str, value: Any) -> bool:
    """Whether the quote writes this numeric value (a duration with its unit, a period by its word)."""
    if isinstance(value, timedelta):
        return any(re.search(p, quote) for p in _duration_patterns(value))
    if field == "per":
        period = getattr(value, "value", value)
        return any(word in quote for word in _PERIOD_WORDS[period])
    return re.search(_numeral(number_forms(float(value))), quote) is not None


def show_value(value: Any) -> str:
    if isinstance(value, timedelta):
        return _DURATION.dump_python(value, mode="json")  # ISO 8601, as written in the files
    if isinstance(value, float) and value == int(value):
        return str(int(value))
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "—"
    return str(getattr(value, "value", value))


# --- walking a policy ------------------------------------------------------------------------------
def provenanced_items(value, loc: tuple = ()) -> Iterator[tuple[tuple, Provenanced]]:
    """Every item with provenance, with its location (field path) in the policy."""
    if isinstance(value, Provenanced):
        yield loc, value
    if hasattr(value, "__pydantic_fields__"):
        for name in type(value).model_fields:
            child = getattr(value, name)
            if name != "fields" and isinstance(child, (list, BaseModel)):  # a scalar holds no item: skip the call
                yield from provenanced_items(child, loc + (name,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from provenanced_items(item, loc + (i,))


def states(item: Provenanced, name: str) -> bool:
    """Whether the item states this judgement field: a value other than the default states something (a
    stored version repeats every default, so whether the file wrote it cannot be told)."""
    info = type(item).model_fields[name]
    value = getattr(item, name)
    return value is not None and (name in item.fields or info.is_required() or value != info.default)


def judged_values(item: Provenanced) -> Iterator[tuple[str, Any]]:
    """The judgement fields this item states, with their values."""
    for name in item.JUDGED:
        if states(item, name):
            yield name, getattr(item, name)


def numeric_quote(item: Provenanced, name: str) -> Source | None:
    """The quote that vouches for a numeric field: its own source, else the item's."""
    own = item.fields.get(name)
    if own is not None:
        return own.source
    return item.source


@dataclass(frozen=True)
class Entry:
    kind: str          # model name, e.g. ProblemType
    path: str          # problem_types[3]
    field: str | None  # None: the item itself
    label: str         # what the item is called
    value: str
    status: str        # quoted | assumed | inherited
    note: str          # the assumption's note, or where an inherited quote comes from
    seed: str | None = None
    clause: str | None = None
    quote: str | None = None

    @property
    def kind_label(self) -> str:
        return KIND_LABELS.get(self.kind, self.kind)

    @property
    def field_label(self) -> str:
        return FIELD_LABELS.get(self.field, self.field) if self.field else "条目"

    def as_dict(self) -> dict:
        return asdict(self) | {"kind_label": self.kind_label, "field_label": self.field_label}


def _label(item: Provenanced, names: dict[str, str]) -> str:
    for attr in ("code", "id", "name", "number", "kind", "scheme"):
        value = getattr(item, attr, None)
        if value is not None:
            return names.get(value, str(value)) if attr == "code" else str(getattr(value, "value", value))
    return type(item).__name__


class _Reader:
    def __init__(self, policy: Policy):
        self.sections = {s.seed: s.sections for s in policy.sources}

    def own_text(self, source: Source) -> bool:
        """Whether the quote is from this jurisdiction's own text: a seed it declares and, in a file of
        several texts (篇一 … 篇十六), one of the texts (篇) it declares as its sections."""
        sections = self.sections.get(source.seed)
        if sections is None:
            return False
        texts = [s for s in sections if s.startswith("篇")]
        return not texts or (source.clause.split() or [""])[0] in texts

    def status(self, item: Provenanced, prov: Provenance) -> tuple[str, str]:
        if prov.source is None:
            return ASSUMED, prov.assumption or ""
        if not self.own_text(prov.source):
            origin = f"继承自模板 {item.inherited_from}" if item.inherited_from else "借用"
            return INHERITED, (f"{origin}: 引用的是另一文本的 {prov.source.clause}, 不是本辖区的文本, 视为假设 — "
                               "quotes another text, so it is an assumption here")
        return QUOTED, ""


def _entry(kind: str, path: str, field: str | None, label: str, value: str, status: str, note: str,
           source: Source | None) -> Entry:
    if status == ASSUMED:
        source = None
    return Entry(kind, path, field, label, value, status, note,
                 source.seed if source else None, source.clause if source else None, source.quote if source else None)


def entries(policy: Policy, type_names: dict[str, str] | None = None) -> list[Entry]:
    """One entry per provenanced item and one per judgement field it states."""
    reader, names, out = _Reader(policy), type_names or {}, []
    for loc, item in provenanced_items(policy):
        kind, path, label = type(item).__name__, format_path(loc), _label(item, names)
        status, note = reader.status(item, item)
        out.append(_entry(kind, path, None, label, "", status, note, item.source))
        for name, value in judged_values(item):
            own = item.fields.get(name)
            if own is not None:
                f_status, f_note = reader.status(item, own)
                source = own.source
            elif name in item.NUMERIC and item.source is not None:  # the number is in the quote (validated)
                f_status, f_note, source = status, note, item.source
            elif item.source is None:
                f_status, f_note, source = ASSUMED, item.assumption or "", None
            else:
                f_status, source = ASSUMED, None
                f_note = (f"条目引文未言明{FIELD_LABELS.get(name, name)}, 未单独注明出处 — "
                          f"the item's quote does not state this {name}")
            out.append(_entry(kind, path, name, label, show_value(value), f_status, f_note, source))
    return out


def summary(items: list[Entry]) -> dict[str, dict[str, int]]:
    """Per kind, how many items and fields are quoted, assumed, inherited."""
    counts: dict[str, dict[str, int]] = {}
    for e in items:
        row = counts.setdefault(e.kind, {QUOTED: 0, ASSUMED: 0, INHERITED: 0})
        row[e.status] += 1
    return dict(sorted(counts.items()))


def report(policy: Policy, type_names: dict[str, str] | None = None) -> dict:
    items = entries(policy, type_names)
    totals = {s: sum(1 for e in items if e.status == s) for s in (QUOTED, ASSUMED, INHERITED)}
    return {"jurisdiction": policy.id, "name": policy.name, "totals": totals, "kinds": summary(items),
            "entries": [e.as_dict() for e in items]}


def changed_counts(old: dict | None, new: dict) -> list[dict]:
    """Per kind and status, the counts that differ between two reports' `kinds` (for publishing)."""
    old_kinds = (old or {}).get("kinds", {})
    rows = []
    for kind in sorted(set(old_kinds) | set(new["kinds"])):
        for status in (QUOTED, ASSUMED, INHERITED):
            before = old_kinds.get(kind, {}).get(status, 0)
            after = new["kinds"].get(kind, {}).get(status, 0)
            if before != after:
                rows.append({"kind": kind, "kind_label": KIND_LABELS.get(kind, kind), "status": status,
                             "status_label": STATUS_LABELS[status], "before": before, "after": after})
    return rows
