"""`gridpolicy serve`'s HTTP protocol (api/protocol.py) sends an answer's head and body as one TCP segment: uvicorn's
own httptools protocol sends two, each waking the client. Real uvicorn servers on real sockets; the client counts
the data segments it received (Linux TCP_INFO)."""
from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from api.protocol import JoinedWritesProtocol

TCPI_DATA_SEGS_IN = 152  # offset of tcpi_data_segs_in in Linux's struct tcp_info


async def two_part_answer(scope, receive, send) -> None:
    """An answer sent as ASGI sends it: the head, then the body in two parts."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"11")]})
    await send({"type": "http.response.body", "body": b'{"ok":', "more_body": True})
    await send({"type": "http.response.body", "body": b"true}"})


@pytest.fixture
def server_port(request) -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(two_part_answer, port=port, http=request.param, loop="uvloop",
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def _exchange(port: int, requests: int, close: bool = False) -> tuple[list[bytes], int]:
    """`requests` GETs on one connection; the answers and the data segments the client received."""
    answers = []
    with socket.create_connection(("127.0.0.1", port)) as conn:
        for n in range(requests):
            last = close and n == requests - 1
            conn.sendall(b"GET / HTTP/1.1\r\nhost: t\r\n" + (b"connection: close\r\n" if last else b"") + b"\r\n")
            data = b""
            while not data.endswith(b"true}"):
                data += conn.recv(4096)
            answers.append(data)
            time.sleep(0.02)  # nothing more arrives
        segments = struct.unpack_from("I", conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256),
                                      TCPI_DATA_SEGS_IN)[0]
        if close:
            assert conn.recv(4096) == b"", "the server closes after the last answer, as asked"
    return answers, segments


@pytest.mark.parametrize("server_port", [JoinedWritesProtocol], indirect=True)
def test_each_answer_leaves_as_one_segment(server_port):
    answers, segments = _exchange(server_port, 5)
    assert segments == 5
    for answer in answers:
        head, body = answer.split(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK") and b"content-length: 11" in head
        assert body == b'{"ok":true}'


@pytest.mark.parametrize("server_port", [JoinedWritesProtocol], indirect=True)
def test_an_answer_before_close_is_sent_whole_first(server_port):
    answers, segments = _exchange(server_port, 2, close=True)
    assert segments == 2 and all(a.endswith(b'{"ok":true}') for a in answers)


@pytest.mark.parametrize("server_port", ["httptools"], indirect=True)
def test_uvicorns_own_protocol_sends_a_segment_per_part(server_port):
    """What the joined writes save: the same answer in three segments (head, two body parts)."""
    _, segments = _exchange(server_port, 2)
    assert segments == 6
