"""One search index per built policy over its grid units: id, Chinese name, full pinyin and initials.

Built once per built version (lazily, `Jurisdiction.unit_index`; the server builds it in the background after a
start or a publish) and shared by every caller: the admin unit search and the close matches of an unknown unit
in routing and intake. Each field is kept twice: `\\0`-joined in id order, where `str.find` yields the first
hits in id order and stops (substring search), and sorted, forwards and backwards, where bisection gives
prefix ranges and the neighbours of an unknown id or name (a typo keeps either the text before it or the
text after it). Close matches rank those few neighbours with rapidfuzz instead of difflib over every name
(10–20 s at 200,000 units).
"""
from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from heapq import merge, nsmallest
from itertools import accumulate

from rapidfuzz import fuzz

from policy.catalog import pinyin_keys

SEP = "\0"
EXACT, CONTAINS, PINYIN_INSIDE = 3.0, 2.0, 1.5  # the tiers of policy.catalog.search_score
DENSE = 4096  # a prefix range wider than this is read from the id-ordered text instead (its hits are dense)
NEIGHBOURS = 24  # sorted neighbours taken on each side, forwards and backwards, as close-match candidates
LAST = "\U0010ffff"
# items per sort call: one sort of 200,000 names held the GIL ~0.3 s, and the index is built in a builder thread beside
# the event loop, which waited that long with every request
SLICE = 4096
_LATEST: dict[str, UnitIndex] = {}


def sorted_positions(values: Sequence[str]) -> list[int]:
    """The positions of `values` in sorted order, ties in position order (`sorted(range(n), key=values.__getitem__)`),
    sorted a slice at a time and merged in Python, so the thread hands the GIL over between slices instead of holding
    it for the whole sort."""
    runs = [sorted(range(at, min(at + SLICE, len(values))), key=values.__getitem__)
            for at in range(0, len(values), SLICE)]
    return list(merge(*runs, key=values.__getitem__))


class _Column:
    """One field of every entry (entries in id order)."""

    def __init__(self, values: list[str]):
        self.text = SEP + SEP.join(values) + SEP
        self.letters = set(self.text)
        self.starts = array("l", accumulate((len(v) + 1 for v in values[:-1]), initial=1) if values else ())
        self.order = array("l", sorted_positions(values))
        self.keys = [values[p] for p in self.order]
        backwards = [v[::-1] for v in values]
        self.back_order = array("l", sorted_positions(backwards))
        self.back_keys = [backwards[p] for p in self.back_order]

    def equal(self, value: str) -> list[int]:
        return list(self.order[bisect_left(self.keys, value):bisect_right(self.keys, value)])

    def first(self, needle: str, limit: int, prefix: bool = False) -> list[int]:
        """Positions of the first `limit` entries (in id order) containing `needle` (starting with it)."""
        if not needle or not self.letters.issuperset(needle):
            return []
        if prefix:
            lo, hi = bisect_left(self.keys, needle), bisect_left(self.keys, needle + LAST)
            if hi - lo <= DENSE:
                return nsmallest(limit, self.order[lo:hi])
        found: list[int] = []
        pattern, at = (SEP + needle if prefix else needle), 0
        while len(found) < limit:
            hit = self.text.find(pattern, at)
            if hit < 0:
                break
            position = bisect_right(self.starts, hit + (1 if prefix else 0)) - 1
            found.append(position)
            # on to the next entry (its leading separator, for a prefix)
            at = self.starts[position + 1] - 1 if position + 1 < len(self.starts) else len(self.text)
        return found

    def neighbours(self, text: str) -> set[int]:
        """Entries sorting next to `text`, forwards and backwards: those sharing its longest prefix or suffix."""
        out: set[int] = set()
        for keys, order, key in ((self.keys, self.order, text), (self.back_keys, self.back_order, text[::-1])):
            at = bisect_left(keys, key)
            out.update(order[max(0, at - NEIGHBOURS):at + NEIGHBOURS])
        return out


class UnitIndex:
    def __init__(self, names: Mapping[str, str], previous: UnitIndex | None = None):
        """`names` maps unit id → Chinese name; the pinyin of names `previous` (an index of an earlier version)
        already has is taken from it: pypinyin costs ~50 µs a name, so only a version's changes pay it."""
        unsorted = list(names)
        self.ids = [unsorted[p] for p in sorted_positions(unsorted)]
        self.names = [names[uid] for uid in self.ids]
        known = dict(zip(previous.names, zip(previous.full, previous.initials))) if previous else {}
        keys = [known.get(name) or pinyin_keys(name) for name in self.names]
        self.full: list[str] = [k[0] for k in keys]
        self.initials: list[str] = [k[1] for k in keys]
        self._id, self._name, self._full, self._initials = map(_Column, (self.ids, self.names, self.full,
                                                                         self.initials))

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def of(cls, jurisdiction: str, names: Mapping[str, str]) -> UnitIndex:
        """A new index, reusing the pinyin of the jurisdiction's latest one (the only one kept here)."""
        index = cls(names, _LATEST.get(jurisdiction))
        _LATEST[jurisdiction] = index
        return index

    def search(self, query: str, limit: int = 50) -> list[tuple[float, str]]:
        """(score, unit id), best first then by id, as `search_score(query, id, name, fuzzy=False)` would rank
        every unit; at most `limit`."""
        return [(score, self.ids[p]) for p, score in self._search(query, limit)]

    def _search(self, query: str, limit: int) -> list[tuple[int, float]]:
        q = query.strip().lower()
        if not q:
            return []
        compact = q.replace(" ", "")
        columns = (self._id, self._name, self._full, self._initials)
        scored = {p: EXACT for p in sorted({p for column in columns for p in column.equal(q)})}
        need = limit + len(scored)  # the first `need` hits of each field include the best `limit`
        for tier, hits in ((CONTAINS, lambda: [*self._name.first(q, need), *self._id.first(q, need),
                                               *self._full.first(compact, need, prefix=True),
                                               *self._initials.first(q, need, prefix=True)]),
                           (PINYIN_INSIDE, lambda: self._full.first(compact, need))):
            if len(scored) >= limit:
                break
            for position in sorted(set(hits())):
                scored.setdefault(position, tier)
        return sorted(scored.items(), key=lambda item: (-item[1], item[0]))[:limit]

    def close_matches(self, query: str, limit: int = 3) -> list[str]:
        """'name (id)' of the units nearest an unknown id or name: search hits first, then the most similar
        (rapidfuzz ratio ≥ 50, as difflib's 0.5 before) of the id, name and pinyin neighbours."""
        hits = [p for p, _ in self._search(query, limit)]
        q = query.strip()
        if len(hits) < limit and len(q) > 1:
            pinyin = q.lower().replace(" ", "")
            scores: dict[int, float] = {}
            for column, values, text in ((self._id, self.ids, q), (self._name, self.names, q),
                                         (self._full, self.full, pinyin)):
                for position in column.neighbours(text):
                    score = fuzz.ratio(text, values[position])
                    if score >= 50 and score > scores.get(position, 0.0):
                        scores[position] = score
            ranked = sorted(scores, key=lambda p: (-scores[p], p))
            hits += [p for p in ranked if p not in hits][:limit - len(hits)]
        return [f"{self.names[p]} ({self.ids[p]})" for p in hits]
