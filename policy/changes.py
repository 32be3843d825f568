"""A valid version with one item changed, checked for what the change touches instead of rebuilt from the whole
document: a named unit (changed or added) or the document without its units (the head). The verdict is a full
build's (policy/validate.py holds each rule once; tests/test_scale.py checks both agree on random edits)."""
from __future__ import annotations

from bisect import bisect_right
from typing import Any

from pydantic import TypeAdapter, ValidationError

from policy import chunks
from policy.errors import PolicyError
from policy.loader import (ChangedJurisdiction, Jurisdiction, build_jurisdiction, checked, issue_from_pydantic,
                           seed_text, type_names)
from policy.models import Policy, Unit
from policy.validate import validate_head_change, validate_unit_change
from policy.yamlio import OriginMap

# what the units' checks depend on besides the units: a head change touching one of these checks them all again
UNIT_CONTEXT = ("levels", "unit_groups", "sources")
_UNITS = TypeAdapter(list[Unit])  # a chunk's units dumped in one call: ~10× faster than one model_dump each


def _invalid(errors: list[Any], prefix: tuple, data: dict, label: str) -> PolicyError:
    return PolicyError([issue_from_pydantic(data, {**err, "loc": (*prefix, *err["loc"])}, [label], OriginMap())
                        for err in errors])


def with_unit(jur: Jurisdiction, raw: dict[str, Any], label: str, hashed: bool = True
              ) -> tuple[Jurisdiction, dict[str, list[dict]]]:
    """`jur` with the named unit `raw["id"]` replaced by `raw`, or added after the named units (a placeholder's id
    then names just that placeholder); with the chunks (hash -> units) it has and `jur` has not. PolicyError
    lists what a full build of the changed document would. A replaced unit shares the rest with `jur`
    (ChangedJurisdiction): nothing the size of the whole is copied, dumped or walked. A check that stores nothing
    (`hashed=False`) dumps and hashes no chunk (up to 1,024 units: most of its time); the result then has no content
    hash and no chunks."""
    index = jur.positions.get(str(raw.get("id")))
    added = index is None
    try:
        unit = Unit.model_validate(raw)
    except ValidationError as exc:
        raise _invalid(exc.errors(), ("units", len(jur.policy.units) if index is None else index), {}, label) from None
    uid = unit.id
    ends = list(jur.chunk_ends)
    if index is None:
        named = [*jur.policy.units, unit]
        units = {u.id: u for u in named}  # named units first, then the placeholders: as expand_units orders them
        units.update((k, v) for k, v in jur.units.items() if k not in units)
        first = len(ends) - 1 if ends else 0  # the last chunk is split again with the new unit
        start = ends[first - 1] if first else 0
        ends[first:] = [start + end for end in chunks.ends([u.id for u in named[start:]])]
        positions = {**jur.positions, uid: len(named) - 1}
    else:
        first = bisect_right(ends, index)  # the unit's chunk: its id and so the boundaries stay
        positions = jur.positions
    fields: dict[str, Any] = {"files": [label], "catalog": jur.catalog, "type_names": jur.type_names,
                              "head_hash": jur.head_hash, "content_hash": "", "unit_chunks": []}  # hashed below
    built = (Jurisdiction(jur.head.model_copy(update={"units": named}), units=units, **fields) if index is None
             else ChangedJurisdiction.of(jur, index, unit, jur.head, **fields))
    fresh: dict[str, list[dict]] = {}
    if hashed:
        hashes = []
        for k in range(first, len(ends) if added else first + 1):
            run = _UNITS.dump_python(built.named(ends[k - 1] if k else 0, ends[k]), mode="json")
            hashes.append(chunks.chunk_hash(run))
            fresh[hashes[-1]] = run
        built.unit_chunks = jur.unit_chunks[:first] + hashes + ([] if added else jur.unit_chunks[first + 1:])
        built.content_hash = chunks.content_hash(jur.head_hash, built.unit_chunks)
    changed = checked(built, lambda new: validate_unit_change(new, uid, jur.units.get(uid), added, label, seed_text),
                      known={"positions": positions, "chunk_ends": ends})
    return changed, fresh


def with_head(jur: Jurisdiction, head: dict[str, Any], label: str) -> Jurisdiction:
    """`jur` with its document but the units replaced by `head` (its `units` are ignored). Checked without the
    units unless the change touches what they depend on (UNIT_CONTEXT)."""
    data = {**head, "units": []}
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc.errors(), (), data, label) from None
    if any(getattr(policy, name) != getattr(jur.head, name) for name in UNIT_CONTEXT):
        return build_jurisdiction({**head, "units": [u.model_dump(mode="json") for u in jur.policy.units]},
                                  jur.catalog, [label])
    head_hash = chunks.head_hash(policy.model_dump(mode="json"))
    return checked(jur.with_head(policy, files=[label], catalog=jur.catalog, type_names=type_names(policy, jur.catalog),
                                 content_hash=chunks.content_hash(head_hash, jur.unit_chunks), head_hash=head_hash,
                                 unit_chunks=jur.unit_chunks),
                   lambda new: validate_head_change(new, label, seed_text),
                   known={"positions": jur.positions, "chunk_ends": jur.chunk_ends})
