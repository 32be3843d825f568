"""YAML loading that remembers where every mapping came from, so errors can name file and line."""
from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import yaml

from policy.errors import PolicyError, PolicyIssue

# libyaml's parser when PyYAML was built with it (5–10× faster); same nodes and marks either way
_COMPOSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Origin(NamedTuple):  # a tuple: one per CSV row, 200,000 of them (a frozen dataclass takes 2.4× as long to make)
    file: str
    line: int
    key_lines: dict[str, int] | None = None  # none for a CSV row


class OriginMap:
    """id(dict) -> Origin for every mapping loaded; the dicts are kept alive so ids stay valid."""

    def __init__(self) -> None:
        self._origins: dict[int, Origin] = {}
        self._keep: list[Any] = []

    def record(self, mapping: dict, origin: Origin) -> None:
        self._origins[id(mapping)] = origin
        self._keep.append(mapping)

    def get(self, mapping: Any) -> Origin | None:
        return self._origins.get(id(mapping))

    def locate(self, root: Any, loc: tuple) -> tuple[str | None, int | None]:
        """File and line of the deepest mapping on `loc` inside `root` that has an origin."""
        best: tuple[str | None, int | None] = (None, None)
        node = root
        for part in loc:
            origin = self.get(node) if isinstance(node, dict) else None
            if origin is not None:
                best = (origin.file, (origin.key_lines or {}).get(str(part), origin.line))
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                return best
        origin = self.get(node) if isinstance(node, dict) else None
        if origin is not None:
            best = (origin.file, origin.line)
        return best


MAX_FILE_BYTES = 4 * 1024 * 1024  # the largest bundled file is 37 KB
MAX_DEPTH = 64  # the policy language nests ~8 levels
ALIAS_ALLOWANCE = 10_000  # nodes built beyond twice the file's own: aliases (anchors) may be reused, not bombed


class _Budget:
    """Aliases make the composed graph a DAG that expands on construction; a "billion laughs" file of a few
    hundred bytes would expand to 10⁹ nodes. Construction stops once it builds far more nodes than the file
    holds."""

    def __init__(self, file: str):
        self.file, self.built = file, 0
        self.seen: set[int] = set()

    def spend(self, node: yaml.Node, depth: int) -> None:
        self.built += 1
        self.seen.add(id(node))
        if self.built > 2 * len(self.seen) + ALIAS_ALLOWANCE:
            raise PolicyError([PolicyIssue(file=self.file, line=node.start_mark.line + 1, message=(
                "YAML 别名展开过多, 拒绝读取 (疑似 billion laughs) — aliases expand too far"))])
        if depth > MAX_DEPTH:
            raise PolicyError([PolicyIssue(file=self.file, line=node.start_mark.line + 1, message=(
                f"YAML 嵌套超过 {MAX_DEPTH} 层 — nested too deeply"))])


def _construct(node: yaml.Node, file: str, origins: OriginMap, scalars: yaml.SafeLoader, budget: _Budget,
               depth: int = 0) -> Any:
    budget.spend(node, depth)
    if isinstance(node, yaml.MappingNode):
        result: dict = {}
        key_lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = _construct(key_node, file, origins, scalars, budget, depth + 1)
            if key in result:
                raise PolicyError([PolicyIssue(
                    file=file, line=key_node.start_mark.line + 1, path=str(key),
                    message=f"重复的键 duplicate key '{key}'")])
            result[key] = _construct(value_node, file, origins, scalars, budget, depth + 1)
            key_lines[str(key)] = key_node.start_mark.line + 1
        origins.record(result, Origin(file, node.start_mark.line + 1, key_lines))
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, file, origins, scalars, budget, depth + 1) for item in node.value]
    return scalars.construct_object(node)  # scalars: PyYAML's own resolution (ints, bools, dates …)


def load_yaml(path: Path, origins: OriginMap) -> Any:
    """Every YAML file the project reads goes through here: bounded in size, depth and alias expansion."""
    file = str(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise PolicyError([PolicyIssue(file=file, message=(
                f"文件超过 {MAX_FILE_BYTES // 1024 // 1024} MB, 拒绝读取 — file too large"))])
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError([PolicyIssue(file=file, message=f"无法读取文件 cannot read file: {exc}")]) from None
    try:
        node = yaml.compose(text, Loader=_COMPOSER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise PolicyError([PolicyIssue(
            file=file, line=mark.line + 1 if mark else None,
            message=f"YAML 语法错误 syntax error: {getattr(exc, 'problem', exc)}")]) from None
    if node is None:
        return {}
    return _construct(node, file, origins, yaml.SafeLoader(""), _Budget(file))
