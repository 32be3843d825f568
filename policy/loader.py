"""Find jurisdiction files, apply `extends`, overlay imported units, and build validated policies."""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from policy import chunks
from policy.catalog import Catalog, load_catalog
from policy.errors import PolicyError, PolicyIssue, format_path
from policy.models import Policy, Unit
from policy.search import UnitIndex
from policy.unit_rows import overlay_units, parse_units_csv
from policy.validate import expand_units, normalise, validate_policy
from policy.yamlio import OriginMap, load_yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
CATALOG_FILE = "_catalog.yaml"
UNITS_CSV_SUFFIX = ".units.csv"
TESTS_SUFFIX = ".tests.yaml"  # a jurisdiction's pinned test cases, beside its file (or folder)
# Keyed lists merge item by item under `extends`; the first key all items carry wins.
LIST_KEYS = ("code", "number", "id", "id_prefix", "seed", "kind")
INHERITED = "inherited_from"


def jurisdictions_dir() -> Path:
    return Path(os.environ.get("GRIDPOLICY_JURISDICTIONS", REPO_ROOT / "jurisdictions"))


def seeds_dir() -> Path:
    return Path(os.environ.get("GRIDPOLICY_SEEDS", REPO_ROOT.parent / "shared" / "seeds"))


def seed_text(seed: str) -> str | None:
    """A seed document's text as quotes are matched against it, None when the file is missing: what validation
    takes as its input (policy/validate.py reads no files)."""
    return _read_seed(seeds_dir() / seed)


@lru_cache(maxsize=32)
def _read_seed(path: Path) -> str | None:
    try:
        return normalise(path.read_text(encoding="utf-8"))
    except OSError:
        return None


@dataclass
class Jurisdiction:
    """A resolved, validated policy plus everything derived from it."""
    policy: Policy
    files: list[str]
    units: Mapping[str, Unit]  # a dict, or a ReplacedUnits view (ChangedJurisdiction)
    catalog: Catalog
    content_hash: str
    type_names: dict[str, str] = field(default_factory=dict)
    head_hash: str = ""  # the document without its units, and its named units' chunks (policy/chunks.py)
    unit_chunks: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.head.id

    @property
    def head(self) -> Policy:
        """The policy for its fields but the named units (which a ChangedJurisdiction's lacks: use `named`)."""
        return self.policy

    def named(self, start: int, end: int) -> list[Unit]:
        """The named units policy.units[start:end]."""
        return self.policy.units[start:end]

    def with_head(self, head: Policy, **fields: Any) -> Jurisdiction:
        """This build's units under another head (`fields`: the rest of the Jurisdiction), shared, not copied."""
        return Jurisdiction(head.model_copy(update={"units": self.policy.units}), units=self.units, **fields)

    def type_name(self, code: str) -> str:
        return self.type_names[code]

    def units_at(self, level: int) -> list[Unit]:
        return [u for u in self.units.values() if u.level == level]

    @cached_property
    def positions(self) -> dict[str, int]:
        """Each named unit's index in `policy.units`."""
        return {u.id: i for i, u in enumerate(self.policy.units)}

    @cached_property
    def chunk_ends(self) -> list[int]:
        return chunks.ends([u.id for u in self.policy.units])

    @cached_property
    def children(self) -> dict[str | None, list[Unit]]:
        """Each unit's children in document order; under None the top units (and any whose parent is not a unit).
        Built once per build: the admin's unit tree shows a page of them per click, at any number of units."""
        children: dict[str | None, list[Unit]] = {}
        for unit in self.units.values():
            children.setdefault(unit.parent if unit.parent in self.units else None, []).append(unit)
        return children

    @cached_property
    def level_counts(self) -> tuple[Counter[int], Counter[int]]:
        """Units and placeholders per level."""
        return (Counter(u.level for u in self.units.values()),
                Counter(u.level for u in self.units.values() if u.placeholder))

    @property
    def indexed(self) -> bool:
        """Whether the search index is built (using it then costs no build)."""
        return "unit_index" in self.__dict__

    @cached_property
    def unit_index(self) -> UnitIndex:
        """The units' search index, built on first use (Python 3.11's cached_property builds it once under a lock)."""
        return UnitIndex.of(self.id, {uid: unit.name for uid, unit in self.units.items()})


class ReplacedUnits(Mapping[str, Unit]):
    """A build's units with some replaced, sharing the build's dict: looked up without copying it; iterated through
    a dict made on first need (in the same order: a replaced unit keeps its place)."""

    def __init__(self, base: Mapping[str, Unit], replaced: dict[str, Unit]):
        self.base, self.replaced = base, replaced

    def __getitem__(self, uid: str) -> Unit:
        unit = self.replaced.get(uid)
        return self.base[uid] if unit is None else unit

    def __contains__(self, uid: object) -> bool:
        return uid in self.base

    def __len__(self) -> int:
        return len(self.base)

    def __iter__(self):
        return iter(self.flat)

    def keys(self):
        return self.flat.keys()

    def values(self):
        return self.flat.values()

    def items(self):
        return self.flat.items()

    @cached_property
    def flat(self) -> dict[str, Unit]:
        units = dict(self.base)
        units.update(self.replaced)
        return units


class ChangedJurisdiction(Jurisdiction):
    """A build with some named units replaced (copy-on-write): it shares the unit list and dict of the build it
    was changed from, so a one-unit change copies neither (nor does the garbage collector walk new copies of
    them); `policy` (with its units) is assembled on first use, e.g. by a publish or a whole document's dump."""
    LIMIT = 256  # replaced units carried from change to change: the list and dict are copied once per 256 changes
    units: ReplacedUnits

    def __init__(self, head: Policy, shared: list[Unit], base: Mapping[str, Unit], replaced: dict[int, Unit],
                 files: list[str], catalog: Catalog, content_hash: str, type_names: dict[str, str], head_hash: str,
                 unit_chunks: list[str]):
        # its units are in `shared` and `replaced`: a head holding stale ones would be misread
        self._head = head.model_copy(update={"units": []}) if head.units else head
        self.shared, self.replaced = shared, replaced
        self.units = ReplacedUnits(base, {unit.id: unit for unit in replaced.values()})
        self.files, self.catalog, self.content_hash, self.type_names = files, catalog, content_hash, type_names
        self.head_hash, self.unit_chunks = head_hash, unit_chunks

    @classmethod
    def of(cls, jur: Jurisdiction, index: int, unit: Unit, head: Policy, **fields: Any) -> ChangedJurisdiction:
        """`jur` with its named unit `index` replaced by `unit` and its head by `head` (`fields`: the rest)."""
        if isinstance(jur, ChangedJurisdiction) and len(jur.replaced) < cls.LIMIT:
            return cls(head, jur.shared, jur.units.base, {**jur.replaced, index: unit}, **fields)
        units = jur.units.flat if isinstance(jur.units, ReplacedUnits) else jur.units
        return cls(head, jur.policy.units, units, {index: unit}, **fields)

    @property
    def head(self) -> Policy:
        return self._head

    def named(self, start: int, end: int) -> list[Unit]:
        return [self.replaced.get(i) or self.shared[i] for i in range(start, end)]

    def with_head(self, head: Policy, **fields: Any) -> Jurisdiction:
        return ChangedJurisdiction(head, self.shared, self.units.base, self.replaced, **fields)

    @cached_property
    def policy(self) -> Policy:  # type: ignore[override]
        units = list(self.shared)
        for index, unit in self.replaced.items():
            units[index] = unit
        return self._head.model_copy(update={"units": units})


@dataclass
class RawDoc:
    id: str
    data: dict
    files: list[str]


def _merge_lists(base: list, child: list) -> list:
    if not (base and child and all(isinstance(i, dict) for i in base + child)):
        return child
    key = next((k for k in LIST_KEYS if all(k in i for i in base + child)), None)
    if key is None:
        return child
    merged = {item[key]: item for item in base}
    for item in child:
        if item.get("remove") is True:
            merged.pop(item[key], None)
        elif item[key] in merged and isinstance(merged[item[key]], dict):
            merged[item[key]] = _merge(merged[item[key]], item)
        else:
            merged[item[key]] = item
    return list(merged.values())


def _merge(base: Any, child: Any) -> Any:
    if isinstance(base, dict) and isinstance(child, dict):
        out = dict(base)
        if "source" in child or "assumption" in child:  # the child's own provenance replaces the template's
            for key in ("source", "assumption", INHERITED):
                out.pop(key, None)
        for key, value in child.items():
            out[key] = _merge(base[key], value) if key in base else value
        return out
    if isinstance(base, list) and isinstance(child, list):
        return _merge_lists(base, child)
    return child


class Loader:
    """Loads every jurisdiction under one directory; errors are collected, never raised mid-way."""

    def __init__(self, directory: Path | None = None, units_csv: dict[str, Path] | None = None):
        self.directory = Path(directory or jurisdictions_dir())
        self.units_csv = units_csv or {}  # jurisdiction id -> CSV to use instead of <id>.units.csv
        self.origins = OriginMap()
        self.issues: list[PolicyIssue] = []
        self.catalog = self._guard(lambda: load_catalog(self.directory / CATALOG_FILE, self.origins))
        self.raw: dict[str, RawDoc] = {}
        self._discover()

    def _guard(self, fn):
        try:
            return fn()
        except PolicyError as err:
            self.issues.extend(err.issues)
            return None

    def _discover(self) -> None:
        for path in sorted(self.directory.iterdir()):
            if path.name == CATALOG_FILE or path.name.startswith(".") or path.name.endswith(TESTS_SUFFIX):
                continue
            if path.is_dir():
                files = sorted(path.glob("*.yaml"))
            elif path.suffix == ".yaml":
                files = [path]
            else:
                continue
            doc = self._guard(lambda: self._read(files))
            if doc is None:
                continue
            expected = path.stem if path.is_file() else path.name
            if doc.id != expected:
                self.issues.append(PolicyIssue(file=doc.files[0], path="id", message=(
                    f"id '{doc.id}' 与文件名 '{expected}' 不一致 — the id must match the file or folder name")))
            elif doc.id in self.raw:
                self.issues.append(PolicyIssue(file=doc.files[0], path="id", message=f"重复的辖区 id '{doc.id}'"))
            else:
                self.raw[doc.id] = doc

    def _read(self, files: list[Path]) -> RawDoc:
        data: dict = {}
        for file in files:
            part = load_yaml(file, self.origins)
            if not isinstance(part, dict):
                raise PolicyError([PolicyIssue(
                    file=str(file), message="顶层须为映射 — the top level must be a mapping")])
            for key, value in part.items():
                if key in data and isinstance(data[key], list) and isinstance(value, list):
                    data[key] = data[key] + value  # a folder may split one list over several files
                elif key in data:
                    raise PolicyError([PolicyIssue(file=str(file), path=key, message=(
                        f"键 '{key}' 已在同一辖区的其他文件中定义 — defined in another file of this folder"))])
                else:
                    data[key] = value
        if not isinstance(data.get("id"), str):
            raise PolicyError([PolicyIssue(file=str(files[0]), path="id", message="缺少辖区 id — missing `id`")])
        return RawDoc(data["id"], data, [str(f) for f in files])

    def _resolve_raw(self, jid: str, chain: tuple[str, ...] = ()) -> tuple[dict, list[str]]:
        doc = self.raw[jid]
        parent = doc.data.get("extends")
        if parent is None:
            return doc.data, doc.files
        if parent in chain + (jid,):
            cycle = " → ".join(chain + (jid, parent))
            raise PolicyError([PolicyIssue(
                file=doc.files[0], path="extends", message=f"extends 形成循环 cycle: {cycle}")])
        if parent not in self.raw:
            raise PolicyError([PolicyIssue(file=doc.files[0], path="extends", message=(
                f"extends 引用了不存在的辖区或模板 '{parent}'; 可用 valid: {', '.join(sorted(self.raw))}"))])
        base, base_files = self._resolve_raw(parent, chain + (jid,))
        base = {k: self._tag(v, parent) for k, v in base.items() if k not in ("template", "extends", "id", "name")}
        return _merge(base, doc.data), base_files + doc.files

    def _tag(self, value: Any, template: str) -> Any:
        """A copy of template data whose provenanced items say which template they came from (the origin
        of each copied mapping is kept, so errors still name the template's file and line)."""
        if isinstance(value, list):
            return [self._tag(v, template) for v in value]
        if not isinstance(value, dict):
            return value
        out = {k: (v if k == "fields" else self._tag(v, template)) for k, v in value.items()}
        if ("source" in out or "assumption" in out) and INHERITED not in out:
            out[INHERITED] = template
        origin = self.origins.get(value)
        if origin is not None:
            self.origins.record(out, origin)
        return out

    def _overlay_units_csv(self, jid: str, data: dict) -> list[str]:
        csv_path = self.units_csv.get(jid, self.directory / f"{jid}{UNITS_CSV_SUFFIX}")
        if not csv_path.exists():
            return []
        overlay_units(data, read_units_csv(csv_path, self.origins))
        return [str(csv_path)]

    def _overlay_tests(self, jid: str, data: dict) -> list[str]:
        path = self.directory / f"{jid}{TESTS_SUFFIX}"
        if not path.exists():
            return []
        suite = load_yaml(path, self.origins)
        if not isinstance(suite, dict) or set(suite) != {"tests"}:
            raise PolicyError([PolicyIssue(file=str(path), line=1, message=(
                "测试用例文件须只有一个顶层键 tests: (用例列表) — the file must hold one key, `tests:`"))])
        data["tests"] = suite["tests"]
        return [str(path)]

    def build(self, jid: str, hashed: bool = True) -> Jurisdiction:
        """The jurisdiction built and validated; without its content hash unless `hashed` (a check only)."""
        data, files = self._resolve_raw(jid)
        data = dict(data)
        # the policy file stays last
        files = self._overlay_tests(jid, data) + files + self._overlay_units_csv(jid, data)
        if self.catalog is None:
            raise PolicyError(self.issues)
        return build_jurisdiction(data, self.catalog, files, self.origins, None if hashed else ("", []))

    def load_all(self, include_templates: bool = False) -> tuple[dict[str, Jurisdiction], list[PolicyIssue]]:
        result: dict[str, Jurisdiction] = {}
        issues = list(self.issues)
        if self.catalog is None:
            return result, issues
        for jid, doc in self.raw.items():
            if doc.data.get("template") and not include_templates:
                continue
            try:
                result[jid] = self.build(jid)
            except PolicyError as err:
                issues.extend(err.issues)
        return result, issues


def build_jurisdiction(data: dict, catalog: Catalog, files: list[str], origins: OriginMap | None = None,
                       stored: tuple[str, list[str]] | None = None) -> Jurisdiction:
    """Validate resolved policy data (from files or from a stored version) into a Jurisdiction. A stored version
    gives its content hash and unit chunks (`stored`): they were computed from this content when it was written
    (a check that keeps nothing gives none: ("", []))."""
    origins = origins or OriginMap()
    try:
        policy = _validated(data)
    except ValidationError as exc:
        raise PolicyError([issue_from_pydantic(data, err, files, origins) for err in exc.errors()]) from None
    head = policy.model_dump(mode="json", exclude={"units"})
    head_hash = chunks.head_hash(head)
    if stored is None:
        units = [unit for batch in _batches(policy.units) for unit in _UNITS.dump_python(batch, mode="json")]
        unit_chunks = [chunks.chunk_hash(run) for run in chunks.split(units)]
        stored = chunks.content_hash(head_hash, unit_chunks), unit_chunks
    return checked_jurisdiction(policy, catalog, files, stored[0], head_hash, stored[1],
                                lambda jur: validate_policy(jur, data, origins, files[-1], seed_text))


def checked_jurisdiction(policy: Policy, catalog: Catalog, files: list[str], content_hash: str, head_hash: str,
                         unit_chunks: list[str], check: Callable[[Jurisdiction], list[PolicyIssue]],
                         units: dict[str, Unit] | None = None, known: dict[str, Any] | None = None) -> Jurisdiction:
    """The Jurisdiction of a policy, or PolicyError with what `check` finds; `known`: derived values (cached
    properties) carried over from the version it changes."""
    return checked(Jurisdiction(policy, files, expand_units(policy) if units is None else units, catalog,
                                content_hash, type_names(policy, catalog), head_hash, unit_chunks), check, known)


def type_names(policy: Policy, catalog: Catalog) -> dict[str, str]:
    return {t.code: t.name or (catalog.types[t.code].name if t.code in catalog.types else t.code)
            for t in policy.problem_types}


def checked(jur: Jurisdiction, check: Callable[[Jurisdiction], list[PolicyIssue]],
            known: dict[str, Any] | None = None) -> Jurisdiction:
    """`jur` (with `known` derived values, see checked_jurisdiction), or PolicyError with what `check` finds."""
    jur.__dict__.update(known or {})
    issues = check(jur)
    if issues:
        raise PolicyError(issues)
    return jur


# Units are validated and dumped this many at a time: pydantic holds the GIL for a whole call, and one call over
# 200,000 units (seconds) would hold up every other thread of a server, its event loop too.
BATCH = 2000
_UNITS = TypeAdapter(list[Unit])


def _batches(items: list) -> list[list]:
    return [items[i:i + BATCH] for i in range(0, len(items), BATCH)]


def _validated(data: dict) -> Policy:
    units = data.get("units")
    if not isinstance(units, list) or len(units) <= BATCH:
        return Policy.model_validate(data)
    try:
        validated = [unit for batch in _batches(units) for unit in _UNITS.validate_python(batch)]
    except ValidationError:
        return Policy.model_validate(data)  # raises again, with the paths of the whole document
    return Policy.model_validate({**data, "units": []}).model_copy(update={"units": validated})


def issue_from_pydantic(data: dict, err: Mapping[str, Any], files: list[str], origins: OriginMap) -> PolicyIssue:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
    file, line = origins.locate(data, loc)
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = f"未知字段 unknown field '{loc[-1]}'"
    elif err["type"] == "missing":
        message = f"缺少必填字段 missing required field '{loc[-1]}'"
    return PolicyIssue(file=file or files[-1], line=line, path=format_path(loc), message=message)


def read_units_csv(path: Path, origins: OriginMap) -> list[dict]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError([PolicyIssue(file=str(path), message=f"无法读取 CSV cannot read CSV: {exc}")]) from None
    return parse_units_csv(text, str(path), origins)


def load_jurisdictions(directory: Path | None = None) -> dict[str, Jurisdiction]:
    """All routable jurisdictions, or PolicyError listing every problem."""
    jurisdictions, issues = Loader(directory).load_all()
    if issues:
        raise PolicyError(issues)
    return jurisdictions
