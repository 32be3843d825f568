"""New cases written with one Core INSERT per table instead of the ORM's unit of work.

Intake and the simulator build a case's rows as ORM objects through the one state machine (store/cases.py), but
flushing them through the unit of work cost most of an intake's CPU (#10: history, dependency sorting and
bookkeeping per object). `flush_new` inserts the session's new case rows instead, a table at a time in one
statement each (RETURNING the ids), writes their outbox rows by the same definition as the session hook
(store/outbox.py), and leaves the objects in the session as if loaded: later changes to them are ordinary
ORM updates.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import insert, inspect
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import Session, SQLModel

from store.outbox import WROTE, OutboxEvent, announced, outbox_values
from store.tables import CaseClock, CaseDepartment, CaseEvent, CaseRecord, Notification, table_of

# parents first; the rows of any other table are left to the ORM's flush
ORDER: tuple[type[SQLModel], ...] = (CaseRecord, CaseDepartment, CaseEvent, CaseClock, Notification)


def _columns(model: type[SQLModel]) -> list[tuple[str, str]]:
    """(attribute, column) of every column but an autoincremented id."""
    mapper = inspect(model)
    return [(attr.key, attr.columns[0].name) for attr in mapper.column_attrs
            if not (attr.key == "id" and attr.columns[0].primary_key)]


COLUMNS = {model: _columns(model) for model in ORDER}


def flush_new(session: Session) -> None:
    """Insert the session's new case rows (cases, departments, events, clocks, notifications) and their outbox rows
    in this transaction; each object gets its id and stays in the session, persistent."""
    # in the order they were added (session.new keeps it; InstanceState.insert_order does not once a row has left
    # it): the ids and the outbox follow the cases' histories. A row added by its case id alone is left to the ORM,
    # whose hook finds the case for its outbox row.
    added = [obj for obj in session.new
             if type(obj) in COLUMNS and (type(obj) is CaseRecord or obj.__dict__.get("record") is not None)]
    if not added:
        return
    connection = session.connection()
    new: dict[type[SQLModel], list[Any]] = defaultdict(list)
    for obj in added:
        session.expunge(obj)
        new[type(obj)].append(obj)
    for model in ORDER:
        objs = new.get(model)
        if not objs:
            continue
        table = table_of(model)
        rows = []
        for obj in objs:
            if model is not CaseRecord:
                obj.case_id = obj.__dict__["record"].id  # inserted above (or before): its id is set
            values = obj.__dict__  # every column is set by the constructor: no attribute events
            rows.append({column: values.get(key) for key, column in COLUMNS[model]})
        if "id" in table.c:
            ids = connection.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows).scalars()
            for obj, row_id in zip(objs, ids, strict=True):
                obj.id = row_id
        else:
            connection.execute(insert(table), rows)
    outbox = [{**outbox_values(obj, obj.record), "case_id": obj.case_id} for obj in added if announced(obj)]
    if outbox:
        connection.execute(insert(table_of(OutboxEvent)), outbox)
        session.info[WROTE] = True
    for obj in added:
        make_transient_to_detached(obj)
    session.add_all(added)

