"""Case intake in a writer process beside each server worker. A new case costs ~2 ms of CPU in the ORM and the
database driver; in the worker's threads that CPU holds the GIL, and routing on the event loop waits for it. In a
child process it runs on the other core.

The worker sends each job down a pipe from its event loop (no threads of its own); the writer runs the jobs in
threads, so jobs that arrive together share a transaction (`store.db.GroupCommit`), which numbers their events too.
In-process apps (tests, `background=False`) run the same jobs in a thread: one definition, two places."""
from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import multiprocessing
import os
import pickle
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from admin.common import Services
from policy.loader import Loader
from store.db import make_engine
from store.errors import Busy
from store.outbox import listen, notify
from store.versions import PolicyStore

log = logging.getLogger("gridpolicy")
T = TypeVar("T")
THREADS = 16  # jobs in flight in the writer: what arrives together is written together
# when the cores are busy the kernel runs the server's event loop first: routing does not wait for intake's CPU (a
# process of its own, so no lock it holds waits for it, unlike a thread of the server's)
WRITER_NICENESS = int(os.environ.get("GRIDPOLICY_WRITER_NICENESS", "10"))
FREEZE_CHECK_SECONDS = 5.0  # after a start or a switch, how soon the writer looks whether its builds are done
WOKEN = -1  # the message id that says "events to deliver": wake the server's delivery loop


class KeptOutOfCollections:
    """Once the versions a process serves are built (again after a switch), the garbage is collected and what is left
    is kept out of later collections (`gc.freeze`): a full collection scanned the compiled versions (~0.15 s at
    Karamay's size, ~0.4 s at Hefei's) every few hundred cases, or every few large pages (the cadence dashboard's
    p95, an intake's p99)."""

    def __init__(self, policies: PolicyStore):
        self.policies = policies
        self.frozen: dict[str, str] = {}

    def due(self) -> bool:
        return self.policies.registry.active() != self.frozen and not self.policies.loading()

    def freeze(self) -> None:
        self.frozen = self.policies.registry.active()
        gc.unfreeze()
        gc.collect()
        gc.freeze()


def _services(database_url: str) -> Services:
    """The writer's services over the server's database (migrated and bootstrapped by the server)."""
    policies = PolicyStore(make_engine(database_url), Loader().catalog)
    return Services.over(policies)


def _serve(connection: Connection, database_url: str) -> None:
    """The writer process: jobs in, answers out, until the server closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the server stops its writer
    os.nice(WRITER_NICENESS)
    services = _services(database_url)
    services.policies.warm()  # the active versions start building now, not at the first case
    sending = threading.Lock()

    def send(message: tuple) -> None:
        with sending:
            connection.send_bytes(message_bytes(message))

    def answer(ident: int, job: Callable[..., Any], args: tuple, served: tuple[str, str | None] | None) -> None:
        try:
            if served is not None:
                services.policies.follow(*served)
            send((ident, True, job(services, *args)))
        except Exception as err:  # noqa: BLE001 - every error goes back to the request that caused it
            send((ident, False, err))

    # intake numbers its events as it commits them (store.cases); a commit that made webhook deliveries, or left
    # events unnumbered (a case at a supervised object), wakes the server's delivery loop
    listen(lambda: send((WOKEN, True, None)))
    garbage = KeptOutOfCollections(services.policies)
    with ThreadPoolExecutor(THREADS, thread_name_prefix="writer") as pool:
        while True:
            if garbage.due():
                garbage.freeze()
            if not connection.poll(FREEZE_CHECK_SECONDS):
                continue
            try:
                ident, job, args, served = pickle.loads(connection.recv_bytes())
            except EOFError:
                break
            pool.submit(answer, ident, job, args, served)


def message_bytes(message: tuple) -> bytes:
    try:
        return pickle.dumps(message)
    except Exception as err:  # noqa: BLE001 - an error that does not pickle still reaches its request, as text
        ident, _, value = message
        return pickle.dumps((ident, False, RuntimeError(f"{value.__class__.__name__}: {value} ({err})")))


class Writer:
    """Runs write jobs `job(services, *args)` in the writer process, or in a thread of this one."""

    def __init__(self, services: Services, database_url: str | None):
        """`database_url`: the server's, for a writer process; None runs the jobs here."""
        self.services, self.database_url = services, database_url
        self._process: multiprocessing.process.BaseProcess | None = None
        self._connection: Connection | None = None
        self._waiting: dict[int, asyncio.Future] = {}
        self._ids = itertools.count(1)

    def start(self) -> None:
        """Spawn the writer now, so that it imports and builds while the server starts."""
        if self.database_url is None:
            return
        ours, theirs = multiprocessing.Pipe()
        context = multiprocessing.get_context("spawn")  # the server's threads and event loop are not forked
        self._process = context.Process(target=_serve, args=(theirs, self.database_url), name="gridpolicy-writer")
        self._process.start()
        theirs.close()
        self._connection = ours
        asyncio.get_running_loop().add_reader(ours.fileno(), self._receive)

    async def stop(self) -> None:
        """Close the pipe and wait for the writer to finish what it has (it exits when the pipe is closed)."""
        self._drop("服务正在停止 — the server is stopping")
        process, self._process = self._process, None
        if process is not None:
            await asyncio.to_thread(process.join, 30)

    def _drop(self, why: str) -> None:
        if self._connection is not None:
            asyncio.get_running_loop().remove_reader(self._connection.fileno())
            self._connection.close()
            self._connection = None
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(Busy(f"{why}, 本次请求未必保存, 请用同一 Idempotency-Key 重试 — "
                                          "it may or may not be saved: retry with the same Idempotency-Key",
                                          retry_after=1))

    def _receive(self) -> None:
        assert self._connection is not None
        try:
            ident, ok, value = pickle.loads(self._connection.recv_bytes())
        except (EOFError, OSError):
            self._died()
            return
        if ident == WOKEN:
            notify()  # deliveries are due: wake this process's delivery loop
            return
        future = self._waiting.pop(ident, None)
        if future is not None and not future.done():
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    async def run(self, job: Callable[..., T], *args, jurisdiction: str | None = None) -> T:
        """`jurisdiction`: the job routes its cases, by the version this server serves (the writer follows it)."""
        if self.database_url is None:
            return await asyncio.to_thread(job, self.services, *args)  # its commit wakes the delivery loop
        ident = next(self._ids)
        served = None if jurisdiction is None else (
            jurisdiction, self.services.policies.registry.active().get(jurisdiction))
        message = pickle.dumps((ident, job, args, served))
        for attempt in range(2):
            if self._connection is None:
                self.start()
            assert self._connection is not None
            try:
                self._connection.send_bytes(message)
                break
            except OSError:  # it died, and this loop has not read its pipe's end yet: nothing was sent
                self._died()
                if attempt:
                    raise Busy("写入进程无法启动, 未保存任何内容 — the writer process could not start; nothing was "
                               "written", retry_after=1) from None
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = future  # answers are read on this loop: none can come before this line
        return await future

    def _died(self) -> None:
        log.error("the writer process died; the next write starts another")
        self._drop("写入进程已退出 — the writer process died")
        if self._process is not None:
            self._process.join(5)
            self._process = None
