"""YAML loading that remembers where every mapping came from, so errors can name file and line."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from policy.errors import PolicyError, PolicyIssue

# libyaml's parser when PyYAML was built with it (5–10× faster); same nodes and marks either way
_COMPOSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Origin:
    file: str
    line: int
    key_lines: dict[str, int] = field(default_factory=dict)


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
                best = (origin.file, origin.key_lines.get(str(part), origin.line))
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                return best
        origin = self.get(node) if isinstance(node, dict) else None
        if origin is not None:
            best = (origin.file, origin.line)
        return best


def _construct(node: yaml.Node, file: str, origins: OriginMap, scalars: yaml.SafeLoader) -> Any:
    if isinstance(node, yaml.MappingNode):
        result: dict = {}
        key_lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = _construct(key_node, file, origins, scalars)
            if key in result:
                raise PolicyError([PolicyIssue(
                    file=file, line=key_node.start_mark.line + 1, path=str(key),
                    message=f"重复的键 duplicate key '{key}'")])
            result[key] = _construct(value_node, file, origins, scalars)
            key_lines[str(key)] = key_node.start_mark.line + 1
        origins.record(result, Origin(file, node.start_mark.line + 1, key_lines))
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, file, origins, scalars) for item in node.value]
    return scalars.construct_object(node)  # scalars: PyYAML's own resolution (ints, bools, dates …)


def load_yaml(path: Path, origins: OriginMap) -> Any:
    file = str(path)
    try:
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
    return _construct(node, file, origins, yaml.SafeLoader(""))
