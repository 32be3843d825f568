"""The unit search index (policy/search.py) over a generated 20,000-unit tree: it finds what the full scan with
policy.catalog.search_score finds, in the same order, and gives close matches for unknown units."""
from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.compiler import compile_policy
from engine.router import Case, PolicyRouter, RoutingError
from policy.catalog import pinyin_keys, search_score
from policy.models import Unit
from policy.search import UnitIndex, sorted_positions

WORDS = ["东风", "西湖", "南岗", "北山", "新民", "和平", "长安", "重庆路", "乐园", "金银", "桥头", "柳林", "花园"]


def _tree(size: int) -> dict[str, tuple[str, int, str | None]]:
    """id → (name, level, parent): 1 city, 20 counties, 400 towns, the rest villages."""
    rng = random.Random(17)
    units: dict[str, tuple[str, int, str | None]] = {"c": ("示范市", 1, None)}
    counties = [f"c-{i:02d}" for i in range(20)]
    for i, uid in enumerate(counties):
        units[uid] = (f"{WORDS[i % len(WORDS)]}区{i}", 2, "c")
    towns = [f"{counties[i % 20]}-t{i:03d}" for i in range(400)]
    for i, uid in enumerate(towns):
        units[uid] = (f"{rng.choice(WORDS)}{rng.choice(['镇', '街道', '乡'])}", 3, towns[i][:4])
    for i in range(size - len(units)):
        town = towns[i % 400]
        units[f"{town}-v{i:05d}"] = (
            f"{rng.choice(WORDS)}{rng.choice(WORDS)}村{'社区' if i % 3 else ''}第{i % 9 + 1}网格", 4, town)
    return units


@pytest.fixture(scope="module")
def tree() -> dict[str, tuple[str, int, str | None]]:
    return _tree(20_000)


@pytest.fixture(scope="module")
def index(tree) -> UnitIndex:
    return UnitIndex({uid: name for uid, (name, _, _) in tree.items()})


def _scan(tree, query: str, limit: int = 50) -> list[tuple[float, str]]:
    """What the admin search did before the index: score every unit, keep ≥ 1, best first then by id."""
    scored = sorted(((search_score(query, uid, name, fuzzy=False), uid) for uid, (name, _, _) in tree.items()),
                    key=lambda s: (-s[0], s[1]))
    return [(score, uid) for score, uid in scored if score >= 1.0][:limit] if query.strip() else []


@pytest.mark.parametrize("query", ["东风", "dongfeng", "df", "c-05", "v01234", "社区", "shequ", "sq", "村第3",
                                   "cun", "c", "重庆路", "changan", "xihu nangang", "第9网格", "不存在", "zzz", " "])
def test_search_finds_what_the_full_scan_finds(tree, index, query):
    assert index.search(query, 50) == _scan(tree, query)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(list(_tree(20_000).items())), st.integers(0, 3), st.integers(1, 4), st.sampled_from(
    ["id", "name", "full", "initials"]))
def test_any_slice_of_a_unit_finds_it_like_the_scan(tree, index, item, start, length, field):
    uid, (name, _, _) = item
    full, initials = pinyin_keys(name)
    text = {"id": uid, "name": name, "full": full, "initials": initials}[field]
    query = text[start:start + length]
    assert index.search(query, 20) == _scan(tree, query, 20)
    assert (3.0, uid) in index.search(text, 20_000) or text.strip() != text  # the whole field is an exact hit


def _village(tree, number: int) -> str:
    return next(uid for uid in tree if uid.endswith(f"-v{number:05d}"))


def test_close_matches_for_unknown_ids_and_names(index, tree):
    uid = _village(tree, 1247)
    name = tree[uid][0]
    assert f"{name} ({uid})" in index.close_matches(uid.replace("v01247", "v1247"))  # a digit dropped
    assert f"{name} ({uid})" in index.close_matches(uid + "x")
    assert f"{name} ({uid})" in index.close_matches(uid.replace("-v", "_v"))
    near = index.close_matches(name.replace("网格", "网"))  # a mistyped name: units of that name come back
    assert near and all(m.startswith(name[:-3]) for m in near)
    assert index.close_matches("completely-unrelated-xyz") == []


def test_unknown_unit_in_a_20k_tree_gets_close_matches_from_the_index(tree):
    from tests.conftest import BUNDLED
    from policy.loader import Loader
    karamay = Loader(BUNDLED).build("karamay")
    levels = sorted(lv.number for lv in karamay.policy.levels)
    top = next(u for u in karamay.units.values() if u.level == levels[0])
    units = {top.id: top}
    for uid, (name, level, parent) in tree.items():
        level -= 4 - levels[-1]  # villages at the policy's lowest level, the levels above them under its top unit
        if level > 1:
            units[uid] = Unit(id=uid, name=name, level=level, parent=parent if level > 2 else top.id,
                              assumption="generated")
    big = dataclasses.replace(karamay, units=units)
    router = PolicyRouter(compile_policy(big))
    code = karamay.policy.problem_types[0].code
    uid = _village(tree, 1247)
    with pytest.raises(RoutingError) as info:
        router.route(Case(problem_type=code, unit=uid.replace("v01247", "v1247")))  # one digit dropped
    assert info.value.field == "unit"
    assert f"{tree[uid][0]} ({uid})" in info.value.suggestions
    assert router.route(Case(problem_type=code, unit=uid)).jurisdiction == karamay.id


def test_an_index_reusing_an_earlier_versions_pinyin_equals_a_fresh_one(index, tree):
    renamed = {uid: name for uid, (name, _, _) in tree.items()}
    changed = sorted(renamed)[5000:5100]
    for uid in changed:
        renamed[uid] = "重庆路长安社区"
    reused, fresh = UnitIndex(renamed, previous=index), UnitIndex(renamed)
    assert (reused.full, reused.initials) == (fresh.full, fresh.initials)
    assert reused.search("chongqinglu", 200) == fresh.search("chongqinglu", 200)
    assert [uid for _, uid in reused.search("chongqingluchanganshequ", 200)] == changed  # exact hits, by id


def _word_by_word(name: str) -> tuple[str, str]:
    """The keys as pypinyin gives them for the whole name, word by word of its own segmentation."""
    from pypinyin import Style, lazy_pinyin
    from pypinyin.seg.simpleseg import seg
    words = seg(name)
    return ("".join("".join(lazy_pinyin(w, errors="ignore")).lower() for w in words),
            "".join("".join(lazy_pinyin(w, style=Style.FIRST_LETTER, errors="ignore")).lower() for w in words))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from([*WORDS, "村", "社区", "第", "级网格", "号", "重庆", "长", "〇"]),
                          st.text(alphabet="0123456789abcXYZ-_ .()（）", max_size=4)), max_size=6).map("".join))
def test_pinyin_keys_per_run_of_chinese_characters_equal_pypinyins_word_by_word(name):
    # digits, letters and marks have no reading; runs of Chinese characters are cached whole
    assert pinyin_keys(name) == _word_by_word(name)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(alphabet="ab甲乙", max_size=3), max_size=40), st.integers(1, 5))
def test_sorting_in_slices_orders_as_one_sort_does(values, size):
    """The index sorts 200,000 names a slice at a time (one sort held the GIL for ~0.3 s, stalling the event loop
    beside the builder thread): the order, ties included, must be exactly one stable sort's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("policy.search.SLICE", size)
        assert sorted_positions(values) == sorted(range(len(values)), key=values.__getitem__)
