"""The shared problem-type catalogue: one stable code per problem, so jurisdictions can be compared."""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from policy.errors import PolicyError, PolicyIssue, format_path
from policy.models import Code, NonEmpty
from policy.yamlio import OriginMap, load_yaml


class CatalogEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: NonEmpty
    aliases: list[NonEmpty] = []


class CatalogFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    categories: dict[str, NonEmpty]
    types: dict[Code, CatalogEntry]


@dataclass(frozen=True)
class Catalog:
    categories: dict[str, str]
    types: dict[str, CatalogEntry]

    def category(self, code: str) -> str:
        return code.rsplit(".", 1)[0]


def load_catalog(path: Path, origins: OriginMap) -> Catalog:
    data = load_yaml(path, origins)
    try:
        parsed = CatalogFile.model_validate(data)
    except ValidationError as exc:
        issues = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            file, line = origins.locate(data, loc)
            issues.append(PolicyIssue(file=file or str(path), line=line, path=format_path(loc),
                                      message=err["msg"].removeprefix("Value error, ")))
        raise PolicyError(issues) from None
    issues = []
    for code in parsed.types:
        category = code.rsplit(".", 1)[0]
        if category not in parsed.categories:
            file, line = origins.locate(data, ("types", code))
            issues.append(PolicyIssue(file=str(path), line=line, path=f"types.{code}", message=(
                f"类别 '{category}' 未在 categories 中声明 — category '{category}' is not declared")))
    if issues:
        raise PolicyError(issues)
    return Catalog(dict(parsed.categories), dict(parsed.types))


def pinyin_keys(name: str) -> tuple[str, str]:
    """Full pinyin and initials ('秸秆焚烧' → 'jiganfenshao', 'jgfs') for search and suggestions. Only runs of
    Chinese characters have a reading (pypinyin drops digits, letters and marks), so the keys are computed per run
    and cached: grid names share their runs (第…级网格…号, …村社区第…网格) while their numbers differ, so 200,000
    names cost ~2 µs each instead of ~40 µs (per word) or ~300 µs (uncached)."""
    keys = [_run_keys(run) for run in _hans_runs().findall(name)]
    return "".join(k[0] for k in keys), "".join(k[1] for k in keys)


@lru_cache(maxsize=1)
def _hans_runs() -> re.Pattern:
    """pypinyin's own test for Chinese characters, unanchored. (pypinyin loads its dictionaries, ~1 s, on import:
    imported on first use, not when a server starts.)"""
    from pypinyin.constants import RE_HANS  # noqa: PLC0415
    return re.compile(RE_HANS.pattern.removeprefix("^").removesuffix("$"))


@lru_cache(maxsize=65536)
def _run_keys(run: str) -> tuple[str, str]:
    """A run's keys, word by word of pypinyin's segmentation (which picks a phrase's reading: 重庆 chongqing)."""
    from pypinyin.seg.simpleseg import seg  # noqa: PLC0415
    keys = [_word_keys(word) for word in seg(run)]
    return "".join(k[0] for k in keys), "".join(k[1] for k in keys)


@lru_cache(maxsize=65536)
def _word_keys(word: str) -> tuple[str, str]:
    from pypinyin import Style, lazy_pinyin  # noqa: PLC0415
    syllables = lazy_pinyin(word, errors="ignore")
    initials = lazy_pinyin(word, style=Style.FIRST_LETTER, errors="ignore")
    return "".join(syllables).lower(), "".join(initials).lower()


def search_score(query: str, code: str, name: str, fuzzy: bool = True) -> float:
    """How well a query matches a problem type (or a grid unit) by code, Chinese name or pinyin (0 = no match);
    `fuzzy` adds similarity scores below 1.5, too slow for searching thousands of units as the admin types."""
    q = query.strip().lower()
    if not q:
        return 0.0
    full, initials = pinyin_keys(name)
    if q in (code, name, full, initials):
        return 3.0
    if q in name or q in code or full.startswith(q.replace(" ", "")) or initials.startswith(q):
        return 2.0
    if q.replace(" ", "") in full:
        return 1.5
    if not fuzzy:
        return 0.0
    return max(difflib.SequenceMatcher(None, q, name).ratio(),
               difflib.SequenceMatcher(None, q, full).ratio()) if len(q) > 1 else 0.0


def close_matches(query: str, candidates: dict[str, str], limit: int = 5) -> list[str]:
    """`candidates` maps code → Chinese name; returns 'name (code)' strings, best first."""
    scored = sorted(((search_score(query, code, name), code, name) for code, name in candidates.items()),
                    key=lambda t: (-t[0], t[1]))
    return [f"{name} ({code})" for score, code, name in scored[:limit] if score >= 0.5]
