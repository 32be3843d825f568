"""How long a read may take (#17). A GET (and routing) runs within GRIDPOLICY_READ_SECONDS: what it waits for — a
version being built, a search index — is waited for only until then, and a read past its budget is refused with
503 problem+json and Retry-After (`api.app.read_deadline` answers for a handler that runs on past it). Writes, the
CLI and the background loop have no budget: they wait for a build as long as it takes.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import Future, TimeoutError as FutureTimeout
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from store.errors import Busy

T = TypeVar("T")
READ_SECONDS = float(os.environ.get("GRIDPOLICY_READ_SECONDS", "10"))
RETRY_AFTER = 5  # seconds a refused reader is asked to wait: a big version is built in tens of seconds
_deadline: ContextVar[float | None] = ContextVar("gridpolicy_read_deadline", default=None)


class TooSlow(Busy):
    """A read that would run past its budget: refused (503 with Retry-After), nothing was changed."""

    def __init__(self, message: str, **extra):
        super().__init__(message, retry_after=RETRY_AFTER, **extra)


@contextmanager
def read_budget(seconds: float | None = None) -> Iterator[None]:
    """Everything in the block (and the threads and tasks it starts) waits at most until the budget is spent."""
    token = _deadline.set(time.monotonic() + (READ_SECONDS if seconds is None else seconds))
    try:
        yield
    finally:
        _deadline.reset(token)


def wait(future: Future[T], what: str) -> T:
    """The future's result, waited for within the caller's budget (handlers that may wait run in threads, never on
    the event loop); past it, TooSlow naming `what` — the work goes on, and a retry finds it done."""
    deadline = _deadline.get()
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    try:
        return future.result(timeout)
    except FutureTimeout:
        raise TooSlow(f"{what} 正在准备中, 请 {RETRY_AFTER} 秒后重试 — {what} is still being prepared "
                      f"(read budget {READ_SECONDS:g} s); retry in {RETRY_AFTER} s") from None
