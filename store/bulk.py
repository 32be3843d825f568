"""New case rows made and inserted cheaply: `new_row` instead of a table model's constructor, and plain rows or
`flush_new` instead of the ORM's unit of work.

Every case's rows are made by the one state machine (store/cases.py). A SQLModel table model's constructor sets each
column through SQLAlchemy's instrumentation (~0.5 ms a row, #10); `new_row` fills the instance's `__dict__` as a load
does. Flushing them through the unit of work, or even one Core INSERT per table, cost most of an intake's CPU (#10:
history, dependency sorting, statement execution and result set-up per statement).

Intake and the simulator go furthest (`plain_rows`): while a group of intakes or a batch of histories is written,
`new_row` makes plain rows, numbered as they are made, which the state machine changes as plain attributes, and
which are inserted as the group ends, a statement per table, never updated: the ORM's instrumentation, backrefs,
cascades and identity map were half of their CPU (#10). What intake answers with is read off those rows.

The cases a patrol's findings open are ORM rows of the patrol's session: `flush_new` numbers the session's new case
rows itself (one statement) and inserts them with the driver's executemany, a statement per table compiled once,
writes their outbox rows by the same definition as the session hook (store/outbox.py), and leaves the objects in the
session as if loaded: later changes to them are ordinary ORM updates.
"""
from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ClassVar, TypeVar

from sqlalchemy import insert, inspect
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import attributes
from sqlmodel import Session, SQLModel

from store.outbox import WROTE, OutboxEvent, announced, outbox_values
from store.tables import CaseClock, CaseDepartment, CaseEvent, CaseRecord, Notification, table_of

M = TypeVar("M", bound=SQLModel)
# parents first; the rows of any other table are left to the ORM's flush
ORDER: tuple[type[SQLModel], ...] = (CaseRecord, CaseDepartment, CaseEvent, CaseClock, Notification)
BLOCK = 256  # ids a batch of plain rows takes from the database at a time


@functools.cache
def _defaults(model: type[SQLModel]) -> tuple[dict[str, Any], list[tuple[str, Callable[..., Any]]]]:
    """A model's column defaults: the constant ones, and the factories called for each row."""
    constant: dict[str, Any] = {}
    factories: list[tuple[str, Callable[..., Any]]] = []
    for name, field in model.model_fields.items():
        if field.default_factory is not None:
            factories.append((name, field.default_factory))
        elif not field.is_required():
            constant[name] = field.default  # None, a number or a string: shared safely
    return constant, factories


def _fill(row: dict[str, Any], model: type[SQLModel], values: dict[str, Any]) -> None:
    """A new row's attributes: the model's defaults, then `values`."""
    constant, factories = _defaults(model)
    row.update(constant)
    for name, factory in factories:
        if name not in values:
            row[name] = factory()  # these tables' factories take no arguments
    row.update(values)


def new_row(model: type[M], **values: Any) -> M:
    """A new, transient `model` row, as its constructor makes it (defaults, then `values`; no validation, as a table
    model's constructor does none) but with the columns put in its `__dict__` as a load does: a row inserted by the
    ORM's flush or by `flush_new` reads them there. Relationships are set through the instrumentation, so that their
    back references (a case's `events` and `clocks`) follow and the ORM's flush sees them; an empty collection is set
    as loaded (what is appended to it later is the ORM's history). Inside `plain_rows`, the batch's plain row."""
    batch = _BATCH.get()
    if batch is not None:
        return batch.make(model, values)  # type: ignore[return-value]  # a plain row stands in for the model's
    obj = model._sa_class_manager.new_instance()  # type: ignore[attr-defined]  # set by SQLAlchemy's mapping
    relationships = model.__sqlmodel_relationships__  # type: ignore[attr-defined]
    columns = {k: v for k, v in values.items() if k not in relationships}
    _fill(obj.__dict__, model, columns)
    object.__setattr__(obj, "__pydantic_fields_set__", set(columns))
    for key in relationships:
        if key not in values:
            continue
        if values[key] == []:  # a collection known to be empty: set as loaded, without replace events
            attributes.set_committed_value(obj, key, [])
        else:
            attributes.set_attribute(obj, key, values[key])
    return obj


class PlainRow:
    """A new row of a `Batch`: its columns, and its case, as plain attributes; no instrumentation."""
    model: ClassVar[type[SQLModel]]


@functools.cache
def _plain(model: type[SQLModel]) -> type[PlainRow]:
    return type(f"Plain{model.__name__}", (PlainRow,), {"model": model})


@functools.cache
def _numbered(model: type[SQLModel]) -> bool:
    return "id" in table_of(model).c


@functools.cache
def _listed_in(model: type[SQLModel]) -> str | None:
    """The case's collection that lists a row of `model` (its relationship's back reference: events, clocks)."""
    return inspect(model).relationships["record"].back_populates


class Batch:
    """Many cases' new rows, made by the one state machine (store/cases.py) as plain rows: numbered as they are made
    (a notification names its case), inserted when the batch ends, a statement per table, in `session`'s transaction.
    It stands in for the session the state machine adds rows to; `plain_rows` makes one."""

    def __init__(self, session: Session):
        self.session = session  # its connection is taken at the first id: a batch that made nothing writes nothing
        self.rows: dict[type[SQLModel], list[PlainRow]] = {model: [] for model in ORDER}
        self.outbox: list[dict[str, Any]] = []
        self._announced: list[PlainRow] = []  # events and notifications whose outbox rows are not taken yet
        self._ids: dict[type[SQLModel], Iterator[int]] = {}
        self._top: dict[str, int] = {}  # SQLite: the largest id given per table (see _next_ids)

    def add(self, row: PlainRow) -> None:
        """As Session.add: a row joined its batch when it was made (`new_row`)."""

    def make(self, model: type[SQLModel], values: dict[str, Any]) -> PlainRow:
        """`new_row` inside the batch: the model's defaults, then `values`; its id now; its case's id, and listed in
        the case's collection as the ORM's back reference would."""
        obj = _plain(model)()
        row = obj.__dict__
        _fill(row, model, values)
        if _numbered(model):
            row["id"] = self._next_id(model)
        record = values.get("record")
        if record is not None:
            row["case_id"] = record.id
            listed_in = _listed_in(model)
            if listed_in is not None:
                getattr(record, listed_in).append(obj)
        self.rows[model].append(obj)
        if model is CaseEvent or model is Notification:
            self._announced.append(obj)
        return obj

    def _next_id(self, model: type[SQLModel]) -> int:
        row_id = next(self._ids[model], None) if model in self._ids else None
        if row_id is None:
            self._ids[model] = iter(_next_ids(self.session.connection(), {model: BLOCK}, self._top)[model])
            row_id = next(self._ids[model])
        return row_id

    def settle(self) -> None:
        """The rows made so far are as a transaction would commit them (an intake, a transition, a sweeper's check):
        their outbox rows are taken now, as the session hook takes them at a flush (a warning's names the grid that
        holds the case then)."""
        self.outbox += [{**outbox_values(obj.model, obj, obj.record), "case_id": obj.case_id}  # type: ignore[attr-defined]
                        for obj in self._announced if announced(obj.model, obj)]
        self._announced.clear()

    def insert(self) -> None:
        if not any(self.rows.values()):
            return  # no row was made
        self.settle()
        for record in self.rows[CaseRecord]:  # start_clock appends a clock to its case's list, not naming the case
            for clock in record.clocks:  # type: ignore[attr-defined]
                clock.case_id = record.id  # type: ignore[attr-defined]
        _insert_rows(self.session, self.session.connection(), {model: [obj.__dict__ for obj in rows]
                                                     for model, rows in self.rows.items()}, self.outbox)


# the batch whose plain rows new_row makes (a context variable: other threads, and the code outside the simulator's
# batch, get ORM rows)
_BATCH: ContextVar[Batch | None] = ContextVar("gridpolicy_plain_batch", default=None)


@contextmanager
def plain_rows(session: Session) -> Iterator[Batch]:
    """A `Batch` in `session`'s transaction: inside the block `new_row` makes its rows; they are inserted when the
    block ends (not when it raises)."""
    batch = Batch(session)
    token = _BATCH.set(batch)
    try:
        yield batch
    finally:
        _BATCH.reset(token)
    batch.insert()


@functools.lru_cache(maxsize=32)
def _insert(model: type[SQLModel], dialect: Dialect, with_id: bool) -> tuple[str, list[str], list[str] | None,
                                                                           list[tuple[int, Any]]]:
    """The INSERT of a model's rows (every column; the id `with_id`, else the database's default) in the driver's own
    terms, compiled once: its text, the attribute of each parameter in order, their names if the driver takes them
    by name, and (position, type processor) of the parameters that have one."""
    table = table_of(model)
    by_column = {attr.columns[0].name: attr.key for attr in inspect(model).column_attrs}
    keys = [c.key for c in table.c if with_id or c.key != "id"]
    compiled = insert(table).compile(dialect=dialect, column_keys=keys)
    parameters = list(compiled.positiontup or ()) if compiled.positional else keys
    processors = [(i, table.c[name].type.dialect_impl(dialect).bind_processor(dialect))
                  for i, name in enumerate(parameters)]
    return (compiled.string, [by_column[name] for name in parameters], None if compiled.positional else parameters,
            [(i, process) for i, process in processors if process is not None])


def _parameters(model: type[SQLModel], dialect: Dialect, rows: list[dict[str, Any]],
                with_id: bool = True) -> tuple[str, list[Any]]:
    """The statement and the driver's parameters of `rows` (column values by attribute)."""
    sql, keys, names, processors = _insert(model, dialect, with_id)
    out: list[Any] = []
    for values in rows:
        get = values.get
        params = [get(key) for key in keys]
        for i, process in processors:
            params[i] = process(params[i])
        out.append(tuple(params) if names is None else dict(zip(names, params)))
    return sql, out


def _next_ids(connection: Connection, wanted: dict[type[SQLModel], int],
              numbered: dict[str, int]) -> dict[type[SQLModel], list[int]]:
    """`n` new ids for each table, in one statement. SQLite: the write transaction (BEGIN IMMEDIATE) holds the
    database's one write lock, so the ids after the largest are free, as its own rowid would take them, but for those
    given to rows not inserted yet (`numbered`: table -> the largest, kept up to date here). PostgreSQL: from the
    table's sequence, as its default would."""
    tables = [table_of(model).name for model in wanted]
    if connection.dialect.name == "sqlite":
        top = connection.exec_driver_sql(
            "SELECT " + ", ".join(f"(SELECT coalesce(max(id), 0) FROM {t})" for t in tables)).one()
        ids = {}
        for (model, n), table, inserted in zip(wanted.items(), tables, top):
            first = max(inserted, numbered.get(table, 0))
            ids[model], numbered[table] = list(range(first + 1, first + n + 1)), first + n
        return ids
    got = connection.exec_driver_sql(
        "SELECT " + ", ".join(f"array(SELECT nextval(pg_get_serial_sequence('{t}', 'id')) "
                              f"FROM generate_series(1, {n}))" for t, n in zip(tables, wanted.values()))).one()
    return {model: sorted(ids) for model, ids in zip(wanted, got)}


def _new_rows(session: Session) -> list[Any]:
    """The session's new case rows in the order they were added (session.new keeps that order, from the session's own
    record of them; InstanceState.insert_order does not once a row has left it): the ids and the outbox follow the
    cases' histories. A row added by its case id alone is left to the ORM, whose hook finds the case for its outbox
    row."""
    return [obj for obj in session._new.values()
            if type(obj) in ORDER and (type(obj) is CaseRecord or obj.__dict__.get("record") is not None)]


def _number(connection: Connection, added: list[Any]) -> None:
    new: dict[type[SQLModel], list[Any]] = defaultdict(list)
    for obj in added:
        new[type(obj)].append(obj)
    wanted = {model: len(objs) for model, objs in new.items() if _numbered(model)}
    if not wanted:
        return
    for model, ids in _next_ids(connection, wanted, {}).items():
        for obj, row_id in zip(new[model], ids, strict=True):
            obj.__dict__["id"] = row_id  # every column is in the __dict__ (new_row, or a constructor): no events
    for obj in added:
        if type(obj) is not CaseRecord:
            obj.__dict__["case_id"] = obj.__dict__["record"].id


def _insert_rows(session: Session, connection: Connection, rows: dict[type[SQLModel], list[dict[str, Any]]],
                 outbox: list[dict[str, Any]]) -> None:
    """Insert `rows` (column values by attribute, per table) and `outbox` with the driver's executemany of a statement
    compiled once (SQLAlchemy still wraps its errors: a duplicate Idempotency-Key is an IntegrityError)."""
    dialect = connection.dialect
    for model in ORDER:
        if rows.get(model):
            connection.exec_driver_sql(*_parameters(model, dialect, rows[model]))
    if outbox:
        connection.exec_driver_sql(*_parameters(OutboxEvent, dialect, outbox, with_id=False))
        session.info[WROTE] = True  # the commit wakes the delivery loop


def flush_new(session: Session) -> None:
    """Insert the session's new case rows (cases, departments, events, clocks, notifications) and their outbox rows
    in this transaction; each object gets its id and stays in the session, persistent."""
    added = _new_rows(session)
    if not added:
        return
    connection = session.connection()
    _number(connection, added)
    new: dict[type[SQLModel], list[dict[str, Any]]] = defaultdict(list)
    for obj in added:
        new[type(obj)].append(obj.__dict__)
    _insert_rows(session, connection, new, [{**outbox_values(type(obj), obj, obj.record), "case_id": obj.case_id}
                                            for obj in added if announced(type(obj), obj)])
    # pending → persistent as after the ORM's own flush (its bookkeeping, no cascades): identity map, nothing changed
    # since the insert, and expunged again if the transaction rolls back
    session._register_persistent({attributes.instance_state(obj) for obj in added})
