"""Database connection: embedded SQLite (WAL) by default, PostgreSQL via GRIDPOLICY_DATABASE_URL; the unit
of work that every write goes through, and the read-only path beside it."""
from __future__ import annotations

import fcntl
import functools
import os
import random
import threading
import time
import zlib
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlmodel import Session, create_engine

from policy.loader import REPO_ROOT
from store.errors import Busy

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# how long a SQLite write waits for the write lock before it is refused ("database is locked", 503)
WRITE_WAIT_SECONDS = float(os.environ.get("GRIDPOLICY_WRITE_WAIT_SECONDS", "30"))


def database_url() -> str:
    url = os.environ.get("GRIDPOLICY_DATABASE_URL")
    if not url:
        (REPO_ROOT / "var").mkdir(exist_ok=True)
        return f"sqlite:///{REPO_ROOT / 'var' / 'gridpolicy.db'}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]  # psycopg 3, not the psycopg2 default
    return url


def make_engine(url: str | None = None) -> Engine:
    url = url or database_url()
    if url.startswith("sqlite"):
        synchronous = "FULL" if os.environ.get("GRIDPOLICY_SQLITE_SYNCHRONOUS", "").upper() == "FULL" else "NORMAL"
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": WRITE_WAIT_SECONDS})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
            # NORMAL: a commit is not fsynced (the WAL is, at checkpoints); it survives the process dying, not
            # the machine losing power. FULL fsyncs every commit (~170/s on this machine's disk).
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(WRITE_WAIT_SECONDS * 1000)}")
            cursor.close()

        # This process's writers queue here, in turn, before SQLite's lock: SQLite's busy handler polls with
        # sleeps of up to 100 ms, so a dozen handler threads waiting on it left the lock idle most of the time.
        writers = threading.Lock()
        # ... and then, one per process, with the other processes' (each server worker's writer, the CLI)
        processes = None if in_memory(engine.url) else ProcessLock(f"{engine.url.database}-writer.lock")

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # BEGIN IMMEDIATE takes the write lock up front, so two workers' read-modify-write
            # transactions serialise instead of failing on upgrade (SQLite's SKIP LOCKED stand-in).
            # A reader's deferred BEGIN takes no lock (WAL), so it never waits for a writer.
            if conn.get_execution_options().get(READ_ONLY):
                conn.exec_driver_sql("BEGIN")
                return
            if not writers.acquire(timeout=WRITE_WAIT_SECONDS):
                raise _locked(WRITE_WAIT_SECONDS)
            conn.info[WRITER] = True
            try:
                if processes is not None:
                    conn.info[PROCESS_LOCK] = processes.acquire(WRITE_WAIT_SECONDS)
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                _release(conn)
                raise

        def _release(conn):
            if conn.info.pop(WRITER, False):
                held = conn.info.pop(PROCESS_LOCK, None)
                if held is not None:
                    os.close(held)
                writers.release()

        event.listen(engine, "commit", _release)
        event.listen(engine, "rollback", _release)
        _disable_pysqlite_autobegin(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def in_memory(url: URL) -> bool:
    """SQLite's in-memory database (or a URL naming none): no other process can open it."""
    return url.database in (None, "", ":memory:")


class ProcessLock:
    """SQLite writers of every process on one database file take turns on an flock of a file beside it: a waiting
    process is woken when the lock is released, where SQLite's busy handler sleeps up to 100 ms between looks (two
    server workers' intake writers waited there for each other: a p99 of 200 ms). The lock belongs to a descriptor
    opened for the transaction, and closing it releases it (so does the process's end)."""

    def __init__(self, path: str):
        self.path = path

    def acquire(self, timeout: float) -> int:
        """The descriptor holding the lock; Busy after `timeout` seconds (the waiting goes on in a thread that
        gives the lock up when it comes too late)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            pass
        except BaseException:
            os.close(fd)
            raise
        outcome: dict[str, bool] = {}
        decided, got = threading.Lock(), threading.Event()

        def wait() -> None:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with decided:
                outcome.setdefault("taken", True)
            if outcome["taken"]:
                got.set()
            else:
                os.close(fd)
        threading.Thread(target=wait, daemon=True, name="sqlite-process-lock").start()
        got.wait(timeout)
        with decided:
            if outcome.setdefault("taken", False):
                return fd
        raise _locked(timeout)


def _locked(seconds: float) -> Busy:
    return Busy(f"数据库写入等待超过 {seconds:g} 秒, 未保存任何内容, 请稍后重试 — "
                "the database stayed locked; nothing was written, retry later")


def _disable_pysqlite_autobegin(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _no_autobegin(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # let the "begin" hook above issue BEGIN itself


def head_revision() -> str:
    """The newest migration's revision id, which is its file's stem (`tests/test_migrations.py` checks that
    alembic finds the same head)."""
    return max(path.stem for path in (MIGRATIONS / "versions").glob("[0-9]*.py"))


def _revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError:  # a new database: no version table yet
        return None


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent; workers starting together migrate one at a time).
    A database already at the head is left alone without loading alembic (a second of a server's start)."""
    if _revision(engine) == head_revision():
        return
    from alembic import command  # noqa: PLC0415
    from alembic.config import Config  # noqa: PLC0415

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        serialize(connection, "migrate")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def serialize(connection: Connection, name: str) -> None:
    """Hold a PostgreSQL advisory lock named `name` until the transaction ends, so processes doing the same
    start-up work (migrating, importing the bundled jurisdictions) take turns; SQLite's BEGIN IMMEDIATE
    already serialises them."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                           {"key": zlib.crc32(f"gridpolicy:{name}".encode())})


# --- transactions
READ_ONLY = "gridpolicy_read_only"
WRITER = "gridpolicy_writer"  # set on a SQLite connection while it holds its process's writer lock
PROCESS_LOCK = "gridpolicy_process_lock"  # and the descriptor of its turn among the processes
T = TypeVar("T")
RETRYABLE = {"40P01", "40001"}  # PostgreSQL deadlock_detected, serialization_failure: safe to run again
_open = threading.local()


@functools.lru_cache(maxsize=64)
def reader(engine: Engine) -> Engine:
    """The same database for reads only. On SQLite its transactions are deferred: they take no lock and
    never wait (WAL), so a read may run while a write transaction is open, even this thread's own.
    One per engine: deriving it costs as much as a small query."""
    return engine.execution_options(**{READ_ONLY: True})


class UnitOfWork:
    """One write transaction: `with UnitOfWork(engine) as uow:` commits when the block ends and rolls back
    when it raises. A second one inside it (same thread) is refused: on SQLite it would wait for the
    write lock its caller holds; read through `reader()` instead."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def __enter__(self) -> UnitOfWork:
        if getattr(_open, "uow", None) is not None:
            raise RuntimeError("nested write transaction: read with store.db.reader(), or pass the session")
        _open.uow = self
        # objects stay readable after the commit (no refresh round trip); nothing sets columns server-side
        self.session = Session(self.engine, expire_on_commit=False)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.session.commit()
            else:
                self.session.rollback()
        finally:
            self.session.close()
            _open.uow = None


class GroupCommit:
    """Writes that arrive while another runs share the next transaction: one BEGIN, one flush and one commit for
    up to `limit` of them. A database takes one SQLite writer at a time, and its commit and the ORM's flush cost
    more than a case's own rows, so under load this is most of the write throughput. Each `work(session)` must
    only add rows (check its input before): if the shared transaction fails, each runs again alone, so one bad
    write never takes the others with it. `rows(session)`, if given, is the context the writes run in, and what
    they are given instead of the session (intake: store.bulk.plain_rows); `flush(session)`, if given, writes what
    they added before the commit."""

    def __init__(self, engine: Engine, limit: int = 64, flush: Callable[[Session], None] | None = None,
                 rows: Callable[[Session], AbstractContextManager[Any]] | None = None):
        self.engine, self.limit, self.flush, self.rows = engine, limit, flush, rows
        self._lock = threading.Lock()
        self._queue: list[_Write] = []
        self._leading = False

    def run(self, work: Callable[[Session], T]) -> T:
        job = _Write(work)
        with self._lock:
            self._queue.append(job)
            lead, self._leading = not self._leading, True
        if not lead:
            job.turn.wait()  # finished by a leader, or handed the lead
            if job.finished:
                return job.outcome()
        with self._lock:
            batch, self._queue = self._queue[:self.limit], self._queue[self.limit:]
        try:
            self._commit(batch)
        finally:
            for left in batch:
                if not left.finished:  # interrupted: no waiter may wait forever
                    left.finish(error=Busy("写入被中断, 未保存 — the write was interrupted, nothing saved"))
            with self._lock:
                if self._queue:
                    self._queue[0].turn.set()  # the oldest waiter leads the next transaction
                else:
                    self._leading = False
        return job.outcome()

    def _commit(self, batch: list[_Write]) -> None:
        try:
            with UnitOfWork(self.engine) as uow:
                with self.rows(uow.session) if self.rows else nullcontext(uow.session) as target:
                    values = [job.work(target) for job in batch]
                if self.flush is not None:
                    self.flush(uow.session)
        except Exception as err:  # noqa: BLE001 - handed to the writes' own threads
            if len(batch) == 1:
                batch[0].finish(error=err)
                return
            for job in batch:
                self._commit([job])
            return
        for job, value in zip(batch, values):
            job.finish(value=value)


class _Write:
    def __init__(self, work: Callable[[Session], Any]):
        self.work = work
        self.turn = threading.Event()
        self.finished = False
        self.value: Any = None
        self.error: BaseException | None = None

    def finish(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value, self.error, self.finished = value, error, True
        self.turn.set()

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


def transaction(engine: Engine, work: Callable[[Session], T], attempts: int = 4) -> T:
    """`work(session)` in a unit of work, run again after a short random pause when PostgreSQL aborted it to
    break a deadlock or a serialization conflict (the work must be repeatable); 503 after `attempts`."""
    for attempt in range(attempts):
        try:
            with UnitOfWork(engine) as uow:
                return work(uow.session)
        except DBAPIError as err:
            if getattr(err.orig, "sqlstate", None) not in RETRYABLE:
                raise
            time.sleep(random.uniform(0.005, 0.02) * 2 ** attempt)
    raise Busy("数据库繁忙, 请稍后重试 — the database stayed busy, retry later")


def refresh_statistics(engine: Engine) -> None:
    """SQLite plans the assessment's joins well only with table statistics, which it never gathers by
    itself (PostgreSQL's autovacuum does); a sampled ANALYZE stays fast at any table size."""
    if engine.dialect.name != "sqlite":
        return
    with engine.begin() as connection:
        connection.exec_driver_sql("PRAGMA analysis_limit=1000")
        connection.exec_driver_sql("ANALYZE")
