"""A version's units as content-addressed chunks shared by every version: a one-unit change stores one chunk
(how units are split and hashed: policy/chunks.py)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import bindparam, delete, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from policy.chunks import chunk_hash, split
from store.db import serialize
from store.tables import UnitChunk

_BATCH = 500  # hashes per IN (…) query
LOCK = "unit_chunks"  # held by every transaction that lists chunks in a version or deletes unused ones


def chunked(units: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(hash, units) per chunk, in order."""
    return [(chunk_hash(run), run) for run in split(units)]


def _batches(items: list[str]) -> Iterable[list[str]]:
    return (items[i:i + _BATCH] for i in range(0, len(items), _BATCH))


def save(session: Session, units: list[dict[str, Any]]) -> list[str]:
    """Store the chunks not stored yet; returns the version's ordered chunk hashes."""
    chunks = chunked(units)
    store(session, dict(chunks))
    return [h for h, _ in chunks]


def store(session: Session, chunks: dict[str, list[dict[str, Any]]]) -> None:
    """Store those of the chunks (hash -> units) not stored yet, in one statement per 500 chunks."""
    serialize(session.connection(), LOCK)
    stored: set[str] = set()
    for batch in _batches(list(chunks)):
        stored.update(session.exec(select(UnitChunk.hash).where(col(UnitChunk.hash).in_(batch))).all())
    rows = [{"hash": h, "units": run} for h, run in chunks.items() if h not in stored]
    if rows:
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        # a concurrent writer may store the same chunk first: it is the same content
        session.execute(dialect.insert(UnitChunk).on_conflict_do_nothing(index_elements=["hash"]), rows)


_REFERENCED = {  # which of the hashes (:hashes) some version lists
    "sqlite": "SELECT DISTINCT e.value FROM policy_version, json_each(policy_version.unit_chunks) AS e "
              "WHERE e.value IN :hashes",
    "postgresql": "SELECT DISTINCT e.value FROM policy_version, "
                  "json_array_elements_text(policy_version.unit_chunks) AS e(value) WHERE e.value IN :hashes",
}


def collect(session: Session, candidates: Iterable[str]) -> int:
    """Delete those of the candidate chunks no version lists any more (a draft's replaced units); returns how
    many. Writers of chunks take the same lock, so a chunk found unused is not being listed meanwhile."""
    serialize(session.connection(), LOCK)
    unused = set(candidates)
    query = text(_REFERENCED[session.get_bind().dialect.name]).bindparams(bindparam("hashes", expanding=True))
    for batch in _batches(sorted(unused)):
        unused -= set(session.execute(query, {"hashes": batch}).scalars())
    for batch in _batches(sorted(unused)):
        session.execute(delete(UnitChunk).where(col(UnitChunk.hash).in_(batch)))
    return len(unused)


def load(session: Session, hashes: list[str]) -> list[dict[str, Any]]:
    """The units of the chunks, in order (fresh dicts the caller may change)."""
    found: dict[str, Sequence[dict[str, Any]]] = {}
    for batch in _batches(list(set(hashes))):
        found.update(session.exec(select(UnitChunk.hash, UnitChunk.units).where(col(UnitChunk.hash).in_(batch))).all())
    if len(found) < len(set(hashes)):
        raise LookupError(f"unit chunks missing: {sorted(set(hashes) - set(found))[:5]}")
    return [unit for h in hashes for unit in found[h]]  # stored versions are validated: no chunk is listed twice
