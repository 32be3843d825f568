"""A policy's content hash, built from parts: the document without its units (the head) and its named units in
content-defined chunks. A one-unit change re-hashes one chunk; the store keeps each chunk once (store/unitchunks.py).

Chunk boundaries are content-defined (after a unit whose id hashes to 0 mod AVERAGE, or after MAXIMUM units), so
editing, inserting or removing a unit changes only the chunk around it, whatever order the units are in.
"""
from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

AVERAGE = 256  # units per chunk on average: ~60 KB of JSON, ~800 chunk hashes in a 200,000-unit version's row
MAXIMUM = 4 * AVERAGE


def ends(ids: Sequence[str]) -> list[int]:
    """Where each chunk of units with these ids ends (exclusive index), in order."""
    out, run = [], 0
    for i, uid in enumerate(ids):
        run += 1
        if run >= MAXIMUM or zlib.crc32(str(uid).encode()) % AVERAGE == 0:
            out.append(i + 1)
            run = 0
    if run:
        out.append(len(ids))
    return out


def split(units: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    start = 0
    for end in ends([str(u.get("id")) for u in units]):
        yield units[start:end]
        start = end


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def chunk_hash(units: list[dict[str, Any]]) -> str:
    return _digest(units)


def head_hash(document: dict[str, Any]) -> str:
    """The hash of a document without its units."""
    return _digest({key: value for key, value in document.items() if key != "units"})


def content_hash(head: str, chunks: Sequence[str]) -> str:
    """A policy's content hash: of its head's hash and its unit chunks' hashes, in order."""
    return hashlib.sha256((head + "".join(chunks)).encode()).hexdigest()[:12]
