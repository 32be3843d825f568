"""Scale-out shape: two `gridpolicy serve` processes on one PostgreSQL, real HTTP. One publishes, the
other notices within seconds; every answer names the version it used."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.test_pinned import MEDICAL_WASTE_CASE

GRIDPOLICY = str(Path(sys.executable).parent / "gridpolicy")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def servers(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("scale-out runs on PostgreSQL only")
    env = {**os.environ, "GRIDPOLICY_DATABASE_URL": database_url}
    ports = [free_port(), free_port()]
    procs = []
    try:
        for i, port in enumerate(ports):
            procs.append(subprocess.Popen([GRIDPOLICY, "serve", "--port", str(port)], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            deadline = time.time() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.time() < deadline and procs[-1].poll() is None, "server did not start"
                time.sleep(0.3)
        key = subprocess.run([GRIDPOLICY, "apikey", "create", "--all"], env=env, capture_output=True, text=True,
                             check=True).stdout.strip().splitlines()[-1]
        yield [f"http://127.0.0.1:{p}" for p in ports], {"X-API-Key": key}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=20)


def test_publish_on_one_worker_reaches_the_other(servers):
    (a, b), auth = servers
    body = {"jurisdiction": "karamay", "problem_type": "医疗废物处置", "unit": "kmy-l3-01"}
    before = httpx.post(f"{b}/v1/route", json=body, headers=auth).json()
    assert before["handler"]["level"] == 2
    draft = httpx.post(f"{a}/v1/jurisdictions/karamay/drafts", json={"actor": "编辑", "note": "x"}, headers=auth)
    document = draft.json()["document"]
    document["problem_types"][0]["level"] = 1
    number = draft.json()["number"]
    saved = httpx.put(f"{a}/v1/jurisdictions/karamay/versions/{number}", json={"author": "编辑", "document": document},
                      headers={**auth, "If-Match": draft.headers["etag"]})
    saved.raise_for_status()
    published = httpx.post(f"{a}/v1/jurisdictions/karamay/versions/{number}/publish",
                           json={"actor": "发布人", "note": "改由区级处置", "accept": [MEDICAL_WASTE_CASE],
                                 "revision": int(saved.headers["etag"].strip('"'))}, headers=auth).json()
    new_version = published["content_hash"]
    seen = set()
    deadline = time.time() + 15
    while True:
        answer = httpx.post(f"{b}/v1/route", json=body, headers=auth).json()
        seen.add(answer["policy_version"])
        if answer["policy_version"] == new_version:
            assert answer["handler"]["level"] == 1
            break
        assert answer["handler"]["level"] == 2  # the old version's answer, labelled as such
        assert time.time() < deadline, "the second worker did not pick up the published version"
        time.sleep(0.2)
    assert seen <= {before["policy_version"], new_version}
