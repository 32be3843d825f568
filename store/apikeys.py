"""API keys for intake systems: random secrets, stored as SHA-256 (high-entropy keys need no slow
hash), scoped to jurisdictions, revocable."""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading

from cachetools import TTLCache
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from store.db import UnitOfWork, reader
from store.errors import Forbidden, NotFound
from store.tables import ApiKey, utcnow
from store.versions import audit

PREFIX_BYTES = 4
_UNKNOWN = "0" * 64  # compared against when no key has the prefix (no SHA-256 digest is all zeros in practice)
# Every API request checks its key: a key read within this many seconds is not read again (a third of a route's
# time was that query). A revocation clears this worker's entry at once and every other worker's within the TTL.
KEY_CACHE_SECONDS = float(os.environ.get("GRIDPOLICY_KEY_CACHE_SECONDS", "5"))
_known: TTLCache[tuple[str, str], ApiKey] = TTLCache(maxsize=4096, ttl=KEY_CACHE_SECONDS)  # (database, prefix)
_known_lock = threading.Lock()  # TTLCache is not thread-safe; handlers run on a thread pool


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(engine: Engine, jurisdictions: list[str], label: str, actor: str) -> str:
    """Returns the full key once; only its prefix and hash are stored."""
    prefix = secrets.token_hex(PREFIX_BYTES)
    key = f"gp_{prefix}_{secrets.token_urlsafe(32)}"
    with UnitOfWork(engine) as uow:
        uow.session.add(ApiKey(prefix=prefix, secret_hash=_digest(key), jurisdictions=sorted(jurisdictions),
                               label=label))
        audit(uow.session, actor, "apikey_created", None, None, prefix=prefix, jurisdictions=sorted(jurisdictions))
    return key


def revoke_key(engine: Engine, prefix: str, actor: str) -> None:
    with UnitOfWork(engine) as uow:
        key = uow.session.exec(select(ApiKey).where(ApiKey.prefix == prefix)).first()
        if key is None:
            raise NotFound(f"没有前缀为 {prefix} 的 API key", field="prefix")
        key.revoked_at = utcnow()
        uow.session.add(key)
        audit(uow.session, actor, "apikey_revoked", None, None, prefix=prefix)
    with _known_lock:
        _known.pop((str(engine.url), prefix), None)


def list_keys(engine: Engine) -> list[ApiKey]:
    with Session(reader(engine)) as session:
        return list(session.exec(select(ApiKey).order_by(col(ApiKey.id))).all())


def authorize(engine: Engine, key: str | None, jurisdiction: str | None) -> ApiKey:
    """The key's record if it is valid, not revoked and covers `jurisdiction`; else Forbidden."""
    return in_scope(authenticate(engine, key), jurisdiction)


def authenticate(engine: Engine, key: str | None) -> ApiKey:
    """The key's record if it is valid and not revoked; else Forbidden."""
    prefix = _prefix(key)
    return _checked(key, _cached(engine, prefix) or _read(engine, prefix))


def authenticate_cached(engine: Engine, key: str | None) -> ApiKey | None:
    """As `authenticate`, without reading the database: None when this worker has not read the key lately (so an
    event loop can check a known key in place and leave the read to a thread)."""
    record = _cached(engine, _prefix(key))
    return None if record is None else _checked(key, record)


def _prefix(key: str | None) -> str:
    if not key:
        raise Forbidden("缺少 API key (请求头 X-API-Key)", field="X-API-Key")
    parts = key.split("_")
    return parts[1] if len(parts) >= 3 and parts[0] == "gp" else ""


def _checked(key: str | None, record: ApiKey | None) -> ApiKey:
    # always one constant-time comparison, so an unknown prefix answers no faster than a wrong secret
    matches = hmac.compare_digest(record.secret_hash if record else _UNKNOWN, _digest(key or ""))
    if record is None or record.revoked_at is not None or not matches:
        raise Forbidden("API key 无效或已吊销", field="X-API-Key")
    return record


def in_scope(record: ApiKey, jurisdiction: str | None) -> ApiKey:
    """The key, if it covers `jurisdiction` (a key of no jurisdictions covers all); else Forbidden."""
    if record.jurisdictions and jurisdiction not in record.jurisdictions:
        raise Forbidden(f"此 API key 无权访问辖区 '{jurisdiction}'", field="jurisdiction")
    return record

def _cached(engine: Engine, prefix: str) -> ApiKey | None:
    """The stored key with this prefix if it was read within KEY_CACHE_SECONDS."""
    with _known_lock:
        return _known.get((str(engine.url), prefix))


def _read(engine: Engine, prefix: str) -> ApiKey | None:
    """The stored key with this prefix, kept for the cache. Unknown prefixes are not cached, so guessing fills no
    memory."""
    with Session(reader(engine)) as session:  # never wait for a writer
        record = session.exec(select(ApiKey).where(ApiKey.prefix == prefix)).first()
    if record is not None:
        with _known_lock:
            _known[(str(engine.url), prefix)] = record
    return record
