"""A Litestar session store in the database, so sessions survive restarts and span workers, and a session
backend that never lets a client choose its session id."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from litestar.connection import ASGIConnection
from litestar.middleware.session.server_side import ServerSideSessionBackend, ServerSideSessionConfig
from litestar.stores.base import Store
from litestar.types import Empty, Message, ScopeSession
from litestar.utils.scope.state import ScopeState
from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from store.db import UnitOfWork, reader
from store.tables import AdminSession, as_utc, utcnow


class DatabaseStore(Store):
    def __init__(self, engine: Engine):
        self.engine = engine

    @staticmethod
    def _expiry(expires_in: int | timedelta | None) -> datetime | None:
        if expires_in is None:
            return None
        return utcnow() + (expires_in if isinstance(expires_in, timedelta) else timedelta(seconds=expires_in))

    # Every admin request reads (and renews) its session: the database work runs in a thread, never on the event loop
    # (a write may wait for SQLite's write lock).
    async def set(self, key: str, value: str | bytes, expires_in: int | timedelta | None = None) -> None:
        await asyncio.to_thread(self._set, key, value, expires_in)

    async def get(self, key: str, renew_for: int | timedelta | None = None) -> bytes | None:
        return await asyncio.to_thread(self._get, key, renew_for)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete, key)

    async def delete_all(self) -> None:
        await asyncio.to_thread(self._delete, None)

    async def exists(self, key: str) -> bool:
        return await self.get(key) is not None

    async def expires_in(self, key: str) -> int | None:
        return await asyncio.to_thread(self._expires_in, key)

    def _set(self, key: str, value: str | bytes, expires_in: int | timedelta | None) -> None:
        with UnitOfWork(self.engine) as uow:
            uow.session.merge(AdminSession(key=key, value=value.encode() if isinstance(value, str) else value,
                                           expires_at=self._expiry(expires_in)))

    def _get(self, key: str, renew_for: int | timedelta | None) -> bytes | None:
        with Session(reader(self.engine)) as session:  # most requests only read: no write lock
            row = session.get(AdminSession, key)
        if row is None or not (_expired(row) or (renew_for is not None and row.expires_at is not None)):
            return None if row is None else row.value
        with UnitOfWork(self.engine) as uow:  # read again: it may have changed since
            row = uow.session.get(AdminSession, key)
            if row is None:
                return None
            if _expired(row):
                uow.session.delete(row)
                return None
            if renew_for is not None and row.expires_at is not None:
                row.expires_at = self._expiry(renew_for)
                uow.session.add(row)
            return row.value

    def _delete(self, key: str | None) -> None:
        """The session `key`, or every session (None)."""
        with UnitOfWork(self.engine) as uow:
            uow.session.execute(delete(AdminSession).where(col(AdminSession.key) == key) if key is not None else
                                delete(AdminSession))

    def _expires_in(self, key: str) -> int | None:
        with Session(reader(self.engine)) as session:
            row = session.get(AdminSession, key)
        if row is None or row.expires_at is None:
            return None
        return int((as_utc(row.expires_at) - utcnow()).total_seconds())


def _expired(row: AdminSession) -> bool:
    return row.expires_at is not None and as_utc(row.expires_at) <= utcnow()


_LOADED = "gridpolicy.session_loaded"  # scope key: the id whose stored session this request loaded


class RenewingSessionBackend(ServerSideSessionBackend):
    """Server-side sessions without fixation: a cookie id the store does not hold is never adopted (a fresh id is
    issued instead), and a handler that clears the session (`renew_session`: sign-in, sign-out, a password or
    role change) gets a fresh id while the old one is deleted."""

    async def load_from_connection(self, connection: ASGIConnection) -> dict[str, Any]:
        session_id = connection.cookies.get(self.config.key)
        data = await super().load_from_connection(connection)
        if data:
            connection.scope[_LOADED] = session_id  # type: ignore[literal-required]
            ScopeState.from_scope(connection.scope).session_id = session_id
        return data

    def get_session_id(self, connection: ASGIConnection) -> str:
        return connection.get_session_id() or self.generate_session_id()

    async def store_in_message(self, scope_session: ScopeSession, message: Message,
                               connection: ASGIConnection) -> None:
        loaded = connection.scope.get(_LOADED)
        # cleared: drop the old id
        if isinstance(loaded, str) and loaded and ScopeState.from_scope(connection.scope).session_id is Empty:
            await self.delete(loaded, store=self.config.get_store_from_app(connection.scope["app"]))
        # an empty session is not stored: anonymous visits leave no rows and no id to plant
        await super().store_in_message(scope_session or Empty, message, connection)


@dataclass
class RenewingSessionConfig(ServerSideSessionConfig):
    _backend_class = RenewingSessionBackend


def renew_session(connection: ASGIConnection, data: dict[str, Any]) -> None:
    """Continue with `data` under a fresh session id; the old id is deleted when the answer is sent."""
    connection.clear_session()
    connection.set_session(data)
