"""Shared pieces of the admin UI browser tests: a real server (uvicorn, temp SQLite) and real headless Chromium
(fixtures `server` and `browser`, one per test module, registered in conftest.py)."""
from __future__ import annotations

import functools
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from policy.loader import REPO_ROOT
from store.db import make_engine, migrate
from store.users import create_user

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"  # the README's images: rewritten only on request
REFRESH_SCREENSHOTS = os.environ.get("GRIDPOLICY_REFRESH_SCREENSHOTS") == "1"
PASSWORD = "correct-horse-9"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(url: str) -> Iterator[str]:
    """`gridpolicy`'s app under uvicorn on a free port, on the database at `url`; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        env=os.environ | {"GRIDPOLICY_DATABASE_URL": url}, cwd=REPO_ROOT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            try:
                urllib.request.urlopen(base + "/health", timeout=2)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("server did not start") from None
                time.sleep(0.5)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def database_with_users(folder: Path) -> str:
    """A migrated SQLite database with a superuser `admin` and a Karamay `viewer`; returns its URL."""
    url = f"sqlite:///{folder / 'admin.db'}"
    engine = make_engine(url)
    migrate(engine)
    create_user(engine, "admin", PASSWORD, True, {}, "test")
    create_user(engine, "viewer", PASSWORD, False, {"karamay": "viewer"}, "test")
    engine.dispose()
    return url


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(database_with_users(tmp_path_factory.mktemp("admin"))) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: `make test` installs it (apt-get install -y chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def sign_in(browser, server: str, name: str, width: int = 1366) -> Page:
    page = browser.new_context(viewport={"width": width, "height": 900}, locale="zh-CN").new_page()
    page.goto(server + "/admin/")
    expect(page).to_have_url(server + "/admin/login")
    page.get_by_label("用户名").fill(name)
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_role("heading", name="辖区")).to_be_visible()
    return page


def draft_page(browser, server: str, jid: str, width: int = 1366) -> Page:
    """Signed in as `admin`, on the editor of a new draft of `jid`."""
    page = sign_in(browser, server, "admin", width)
    page.goto(server + f"/admin/j/{jid}")
    page.get_by_role("button", name="基于生效版本新建草稿").click()
    return page


def medical_waste_to_level_3(page: Page) -> None:
    """On a Karamay draft's editor: 医疗废物处置 handled at level 3 instead of 2 (the edit the publish tests use)."""
    page.get_by_role("button", name="编辑 医疗废物处置").click()
    htmx_idle(page)
    page.get_by_label("处置层级").fill("3")
    page.get_by_role("button", name="保存").click()
    expect(page.locator("#type-waste-medical-disposal .level")).to_have_text("第3级")


@contextmanager
def admin_http(server: str, jid: str) -> Iterator[tuple[httpx.Client, str]]:
    """An HTTP client signed in as `admin` (CSRF header set) and the path of a new draft of `jid`."""
    with httpx.Client(base_url=server, timeout=60) as http:
        token = re.search(r'name="_csrf_token" value="([^"]+)"', http.get("/admin/login").text).group(1)
        http.post("/admin/login", data={"name": "admin", "password": PASSWORD, "_csrf_token": token})
        draft = http.post(f"/admin/j/{jid}/drafts", data={"_csrf_token": token}).headers["location"]
        http.headers.update({"X-CSRFToken": http.cookies["gp_csrf"]})
        yield http, draft


def htmx_idle(page: Page) -> None:
    """htmx attaches triggers to swapped-in content while it settles; typing before then is lost."""
    page.wait_for_function(
        "() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling, .htmx-added')")


@functools.cache
def screenshot_dir() -> Path:
    """docs/screenshots with GRIDPOLICY_REFRESH_SCREENSHOTS=1; else a temporary folder, so a test run leaves the
    tracked images alone (the screenshot is still taken: rendering the page is part of the test)."""
    return SCREENSHOTS if REFRESH_SCREENSHOTS else Path(tempfile.mkdtemp(prefix="gridpolicy-screenshots-"))


def shot(page: Page, name: str, full_page: bool = False) -> None:
    folder = screenshot_dir()
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=full_page)
