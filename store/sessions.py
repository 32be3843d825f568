"""A Litestar session store in the database, so sessions survive restarts and span workers."""
from __future__ import annotations

from datetime import datetime, timedelta

from litestar.stores.base import Store
from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session

from store.cases import as_utc
from store.tables import AdminSession, utcnow


class DatabaseStore(Store):
    def __init__(self, engine: Engine):
        self.engine = engine

    @staticmethod
    def _expiry(expires_in: int | timedelta | None) -> datetime | None:
        if expires_in is None:
            return None
        return utcnow() + (expires_in if isinstance(expires_in, timedelta) else timedelta(seconds=expires_in))

    async def set(self, key: str, value: str | bytes, expires_in: int | timedelta | None = None) -> None:
        with Session(self.engine) as session:
            session.merge(AdminSession(key=key, value=value.encode() if isinstance(value, str) else value,
                                       expires_at=self._expiry(expires_in)))
            session.commit()

    async def get(self, key: str, renew_for: int | timedelta | None = None) -> bytes | None:
        with Session(self.engine) as session:
            row = session.get(AdminSession, key)
            if row is None:
                return None
            if row.expires_at is not None and as_utc(row.expires_at) <= utcnow():
                session.delete(row)
                session.commit()
                return None
            if renew_for is not None and row.expires_at is not None:
                row.expires_at = self._expiry(renew_for)
                session.add(row)
                session.commit()
            return row.value

    async def delete(self, key: str) -> None:
        with Session(self.engine) as session:
            session.exec(delete(AdminSession).where(AdminSession.key == key))
            session.commit()

    async def delete_all(self) -> None:
        with Session(self.engine) as session:
            session.exec(delete(AdminSession))
            session.commit()

    async def exists(self, key: str) -> bool:
        return await self.get(key) is not None

    async def expires_in(self, key: str) -> int | None:
        with Session(self.engine) as session:
            row = session.get(AdminSession, key)
        if row is None or row.expires_at is None:
            return None
        return int((as_utc(row.expires_at) - utcnow()).total_seconds())
