"""uvicorn's httptools protocol, sending each answer's head and body in one write.

uvicorn writes an answer's status line and headers when the application sends `http.response.start`, and the body
when it sends `http.response.body`: two `send()` calls and two TCP segments (Nagle is off), each waking the client.
On this service's machines (a virtualised 2-core host) waking the peer is the dearest part of a write: a profile
of /v1/route under load found the server's main thread a fifth of its time in the head's write. Writes made in
one turn of the event loop are joined and sent at the end of that turn instead (`gridpolicy serve` uses this).
"""
from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _JoinedWrites:
    """A transport whose writes within one loop turn leave as one; everything else is the transport's own."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport, self._loop = transport, loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.write(b"".join(pending))

    def close(self) -> None:
        self._flush()  # what was written before close() still leaves, in order
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class JoinedWritesProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _JoinedWrites(transport, self.loop)  # type: ignore[assignment]
