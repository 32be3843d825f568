"""Compiled policy versions, keyed by jurisdiction and content hash; the active one switches atomically."""
from __future__ import annotations

import threading

from engine.compiler import compile_policy
from engine.router import PolicyRouter
from engine.verify import VerifyReport, verify
from policy.loader import Jurisdiction


class VerificationFailed(ValueError):
    def __init__(self, report: VerifyReport):
        self.report = report
        super().__init__(f"{report.jurisdiction}@{report.version} 未通过校验:\n" + "\n".join(report.problems()))


class EngineRegistry:
    """A new version is built and verified beside the active one, then switched in; older versions
    stay loaded (evaluable for replay) until `unload`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: dict[tuple[str, str], PolicyRouter] = {}
        self._active: dict[str, str] = {}

    def load(self, jur: Jurisdiction, activate: bool = True, check: bool = True) -> PolicyRouter:
        key = (jur.id, jur.content_hash)
        with self._lock:
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
                existing = self._versions.setdefault(key, existing)
        if activate:
            with self._lock:
                self._active[jur.id] = jur.content_hash
        return existing

    def router(self, jurisdiction: str, version: str | None = None) -> PolicyRouter:
        with self._lock:
            version = version or self._active[jurisdiction]
            return self._versions[(jurisdiction, version)]

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
