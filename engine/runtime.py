"""A thin, thread-safe wrapper over durable-rules' C core.

durable-rules' Python `Host` starts self-rescheduling timer threads that race with synchronous posts
(segfaults, actions on the wrong thread). The C extension called directly starts no threads, and the
name of each rule that fired is the whole result, so no Python action runs inside the engine.
Each case is asserted as a fact (so every matching rule fires, not just the first) and retracted
once its rules have been read.
"""
from __future__ import annotations

import json
import threading
import weakref

import durable_rules_engine as _core

# Limits of durable-rules 2.0.28's C core, checked before loading: past them it hangs or errors.
MAX_RULES = 4096
MAX_DISTINCT_VALUES = 512
_NOT_HANDLED = 1

# The C core never releases the GIL and keeps process-global state: one lock for all rulesets.
_lock = threading.Lock()
# one encoder for every fact: json.dumps(…, ensure_ascii=False) builds a new one per call
_encode = json.JSONEncoder(ensure_ascii=False, check_circular=False, separators=(",", ":")).encode


class RulesetLimitError(ValueError):
    pass


def check_limits(name: str, definition: dict) -> None:
    if len(definition) > MAX_RULES:
        raise RulesetLimitError(
            f"规则集 {name} 有 {len(definition)} 条规则, 超过 durable-rules 上限 {MAX_RULES} — too many rules")
    values: dict[str, set] = {}
    for rule in definition.values():
        for field, value in _equalities(rule["all"][0]["m"]):
            values.setdefault(field, set()).add(json.dumps(value))
    for field, distinct in values.items():
        if len(distinct) > MAX_DISTINCT_VALUES:
            raise RulesetLimitError(
                f"规则集 {name} 的字段 '{field}' 有 {len(distinct)} 个不同取值, 超过 durable-rules 单节点上限 "
                f"{MAX_DISTINCT_VALUES} (否则编译无法返回) — split the table")


def _equalities(expr: dict):
    for key, value in expr.items():
        if key in ("$and", "$or"):
            for sub in value:
                yield from _equalities(sub)
        elif not key.startswith("$"):
            yield key, value


def _rule_name(message: str) -> str:
    """The fired rule's name is the first key of the action message ('{"rule:x":{"m":…}}'); rule
    names are slugs without quotes, so slicing avoids decoding the echoed fact."""
    start = message.index('"') + 1
    return message[start:message.index('"', start)]


class Ruleset:
    """One registered durable-rules ruleset; `fire` returns the names of the rules a fact matched."""

    # One long-lived session per ruleset: a new session costs ~1 MB and tens of µs to allocate (and
    # the core allows only 1,024), while assert + retract on a warm session costs a few µs.
    SESSION = "0"

    def __init__(self, name: str, definition: dict):
        check_limits(name, definition)
        self.name = name
        self.definition = definition
        with _lock:
            self._handle = _core.create_ruleset(name, json.dumps(definition, ensure_ascii=False))
        self._closed = False
        # a ruleset dropped from the registry's cache is deleted when its last user lets go, never under one
        self._delete = weakref.finalize(self, _delete, self._handle)

    def fire(self, fact: dict) -> list[str]:
        return self.fire_message(self.message(fact))

    @classmethod
    def message(cls, fact: dict) -> str:
        """The JSON the core takes for one fact; a caller asserting the same fact often can keep it."""
        return _encode({**fact, "sid": cls.SESSION, "id": "case"})

    def fire_message(self, message: str) -> list[str]:
        """Assert one fact, collect every rule that fired (priority order), then retract it, so the
        session holds nothing between calls and state does not grow with the number of cases."""
        with _lock:
            if self._closed:
                raise RuntimeError(f"ruleset {self.name} was unloaded")
            status, state_handle = _core.assert_fact(self._handle, message)
            if status == _NOT_HANDLED:  # matched nothing, so nothing was stored
                return []
            try:
                fired: list[str] = []
                result = _core.start_action_for_state(self._handle, state_handle)
                while result:
                    name = _rule_name(result[1] if isinstance(result, tuple) else result)
                    if name not in fired:  # an `$or` rule fires once per matching branch
                        fired.append(name)
                    result = _core.complete_and_start_action(self._handle, state_handle)
                return fired
            finally:
                _core.retract_fact(self._handle, message)

    def close(self) -> None:
        with _lock:
            self._closed = True
        self._delete()  # once: a later finalisation does nothing


def _delete(handle: int) -> None:
    with _lock:
        _core.delete_ruleset(handle)
