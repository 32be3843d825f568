"""A version's units as content-addressed chunks shared by every version: a one-unit change stores one chunk.

Chunk boundaries are content-defined (after a unit whose id hashes to 0 mod AVERAGE, or after MAXIMUM units),
so editing, inserting or removing a unit changes only the chunk around it, whatever order the units are in.
"""
from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from store.tables import UnitChunk

AVERAGE = 256  # units per chunk on average: ~60 KB of JSON, ~800 chunk hashes in a 200,000-unit version's row
MAXIMUM = 4 * AVERAGE
_BATCH = 500  # hashes per IN (…) query


def split(units: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    run: list[dict[str, Any]] = []
    for unit in units:
        run.append(unit)
        if len(run) >= MAXIMUM or zlib.crc32(str(unit.get("id")).encode()) % AVERAGE == 0:
            yield run
            run = []
    if run:
        yield run


def chunk_hash(units: list[dict[str, Any]]) -> str:
    text = json.dumps(units, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def chunked(units: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(hash, units) per chunk, in order."""
    return [(chunk_hash(run), run) for run in split(units)]


def _batches(items: list[str]) -> Iterable[list[str]]:
    return (items[i:i + _BATCH] for i in range(0, len(items), _BATCH))


def save(session: Session, units: list[dict[str, Any]]) -> list[str]:
    """Store the chunks not stored yet; returns the version's ordered chunk hashes."""
    chunks = chunked(units)
    wanted = list(dict(chunks))
    stored: set[str] = set()
    for batch in _batches(wanted):
        stored.update(session.exec(select(UnitChunk.hash).where(col(UnitChunk.hash).in_(batch))).all())
    rows = {h: run for h, run in chunks if h not in stored}
    if rows:
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        # a concurrent writer may store the same chunk first: it is the same content
        session.execute(dialect.insert(UnitChunk).on_conflict_do_nothing(index_elements=["hash"]),
                        [{"hash": h, "units": run} for h, run in rows.items()])
    return [h for h, _ in chunks]


def load(session: Session, hashes: list[str]) -> list[dict[str, Any]]:
    """The units of the chunks, in order (fresh dicts the caller may change)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for batch in _batches(list(set(hashes))):
        found.update(session.exec(select(UnitChunk.hash, UnitChunk.units).where(col(UnitChunk.hash).in_(batch))).all())
    if len(found) < len(set(hashes)):
        raise LookupError(f"unit chunks missing: {sorted(set(hashes) - set(found))[:5]}")
    return [unit for h in hashes for unit in found[h]]  # stored versions are validated: no chunk is listed twice
