"""A real HTTP server that receives webhooks (for the tests and the events bench): it records what arrives and can
be told to fail the first tries of each message or to hold requests open."""
from __future__ import annotations

import threading
import time
from collections import Counter
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator


class Receiver:
    def __init__(self) -> None:
        self.received: list[dict] = []  # {id, headers, body, at} of every request answered 2xx (pings too)
        self.tries: Counter[str] = Counter()
        self.fail_first = 0  # answer 500 to the first N tries of each webhook-id
        self.hold = threading.Event()  # while `holding`, a request waits for this and is never answered
        self.holding = False
        self.held = threading.Event()  # set once a request is being held
        self.lock = threading.Lock()
        self.url = ""

    def ids(self) -> list[str]:
        with self.lock:
            return [r["id"] for r in self.received if not r["id"].startswith("ping_")]


@contextmanager
def receiving() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            msg_id = self.headers.get("webhook-id", "")
            if receiver.holding and not msg_id.startswith("ping_"):
                receiver.held.set()
                receiver.hold.wait(60)
                return  # never answered: the sender was killed meanwhile
            with receiver.lock:
                receiver.tries[msg_id] += 1
                failing = receiver.tries[msg_id] <= receiver.fail_first and not msg_id.startswith("ping_")
                if not failing:
                    receiver.received.append({"id": msg_id, "headers": dict(self.headers), "body": body,
                                              "at": time.time()})
            self.send_response(500 if failing else 204)
            self.end_headers()

        def log_message(self, *_args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.hold.set()
        server.shutdown()
        server.server_close()
