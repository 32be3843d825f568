"""Compiled policy versions, keyed by jurisdiction and content hash; the active one switches atomically."""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from engine.compiler import compile_policy
from engine.router import PolicyRouter
from engine.verify import VerifyReport, verify
from policy.loader import Jurisdiction

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class VerificationFailed(ValueError):
    def __init__(self, report: VerifyReport):
        self.report = report
        super().__init__(f"{report.jurisdiction}@{report.version} 未通过校验:\n" + "\n".join(report.problems()))


@dataclass(frozen=True)
class Budget:
    """How many builds of versions that are not active a process keeps (a build of 200,000 units is ~300 MB)."""
    versions: int = 4
    units: int = 50_000  # their units together; a bigger old version is rebuilt whenever it is asked for

    @classmethod
    def from_env(cls) -> Budget:
        return cls(int(os.environ.get("GRIDPOLICY_SPARE_VERSIONS", cls.versions)),
                   int(os.environ.get("GRIDPOLICY_SPARE_UNITS", cls.units)))


class Recent(Generic[K, V]):
    """Recently used builds: besides the pinned (active) keys, the least recently used are dropped first once
    the budget is exceeded. A dropped build stays usable by whoever still holds it; it is freed (and its
    rulesets deleted, see engine.runtime) when the last holder lets go."""

    def __init__(self, budget: Budget, size: Callable[[V], int], keep_newest: bool = False):
        self.budget, self._size, self._keep_newest = budget, size, keep_newest
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V, pinned: Collection[K] = ()) -> V:
        """The value kept under `key` (an earlier one if another thread was first)."""
        with self._lock:
            value = self._items.setdefault(key, value)
            self._items.move_to_end(key)
        self.trim(pinned)
        return value

    def trim(self, pinned: Collection[K]) -> None:
        with self._lock:
            spare = [key for key in self._items if key not in pinned]  # least recently used first
            if self._keep_newest:
                spare = spare[:-1]
            total = sum(self._size(self._items[key]) for key in spare)
            while spare and (len(spare) > self.budget.versions or total > self.budget.units):
                total -= self._size(self._items.pop(spare.pop(0)))

    def pop(self, key: K) -> V:
        with self._lock:
            return self._items.pop(key)

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> list[K]:
        with self._lock:
            return list(self._items)


def build_size(jur: Jurisdiction) -> int:
    return len(jur.units) + 1


class EngineRegistry:
    """A new version is built and verified beside the active one, then switched in; the versions that are
    not active stay loaded (evaluable for replay and for their cases) within a budget, or until `unload`."""

    def __init__(self, budget: Budget | None = None) -> None:
        self._lock = threading.Lock()
        self.budget = budget or Budget.from_env()
        self._versions: Recent[tuple[str, str], PolicyRouter] = Recent(self.budget, lambda r: build_size(r.jur))
        self._active: dict[str, str] = {}

    def load(self, jur: Jurisdiction, activate: bool = True, check: bool = True) -> PolicyRouter:
        key = (jur.id, jur.content_hash)
        existing = self._versions.get(key)
        if existing is None:
            compiled = compile_policy(jur)
            if check:
                report = verify(compiled)
                if not report.ok:
                    compiled.close()
                    raise VerificationFailed(report)
            existing = PolicyRouter(compiled)
        with self._lock:
            if activate:
                self._active[jur.id] = jur.content_hash
            # the version just loaded stays at least until the next load (a publish verifies it, then activates it)
            return self._versions.put(key, existing, self._pinned() | {key})

    def _pinned(self) -> set[tuple[str, str]]:
        return set(self._active.items())

    def router(self, jurisdiction: str, version: str | None = None) -> PolicyRouter:
        with self._lock:
            key = (jurisdiction, version or self._active[jurisdiction])
        router = self._versions.get(key)
        if router is None:
            raise KeyError(key)
        return router

    def loaded(self) -> list[tuple[str, str]]:
        """(jurisdiction, content hash) of every version compiled here."""
        return self._versions.keys()

    def active(self) -> dict[str, str]:
        with self._lock:
            return dict(self._active)

    def unload(self, jurisdiction: str, version: str) -> None:
        with self._lock:
            if self._active.get(jurisdiction) == version:
                raise ValueError(
                    f"{jurisdiction}@{version} 是当前生效版本, 不能卸载 — cannot unload the active version")
            router = self._versions.pop((jurisdiction, version))
        router.compiled.close()
