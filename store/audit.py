"""Reading the audit log (AuditEntry rows, written by `store.versions.audit`): filtered, newest first, paged."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from store.db import reader
from store.tables import AuditEntry

PAGE_SIZE = 50
T = TypeVar("T")


@dataclass(frozen=True)
class AuditFilter:
    """What to show: `visible` limits the rows to those jurisdictions (None: every row, also the ones of no
    jurisdiction such as users and API keys, for superusers); the rest are the page's filters."""
    visible: tuple[str, ...] | None
    jurisdiction: str | None = None
    actor: str | None = None
    action: str | None = None

    def where(self, query: SelectOfScalar[T]) -> SelectOfScalar[T]:
        if self.visible is not None:
            query = query.where(col(AuditEntry.jurisdiction).in_(self.visible))
        for column, value in ((AuditEntry.jurisdiction, self.jurisdiction), (AuditEntry.actor, self.actor),
                              (AuditEntry.action, self.action)):
            if value:
                query = query.where(col(column) == value)
        return query


def search(engine: Engine, where: AuditFilter, page: int = 1, size: int = PAGE_SIZE) -> tuple[int, list[AuditEntry]]:
    """(how many rows match, the rows of page `page`, newest first)."""
    with Session(reader(engine)) as session:
        total = session.exec(where.where(select(func.count()).select_from(AuditEntry))).one()
        rows = session.exec(where.where(select(AuditEntry)).order_by(col(AuditEntry.id).desc())
                            .offset((page - 1) * size).limit(size)).all()
        return total, list(rows)


def choices(engine: Engine, visible: tuple[str, ...] | None) -> tuple[list[str], list[str]]:
    """The actors and actions that occur in the rows a user may see (for the filter lists)."""
    scope = AuditFilter(visible)
    with Session(reader(engine)) as session:
        actors = session.exec(scope.where(select(AuditEntry.actor).distinct()).order_by(AuditEntry.actor)).all()
        actions = session.exec(scope.where(select(AuditEntry.action).distinct()).order_by(AuditEntry.action)).all()
    return list(actors), list(actions)
