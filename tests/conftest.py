from __future__ import annotations

import os
import shutil
import sqlite3
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from policy.loader import REPO_ROOT, load_jurisdictions
from store.cases import CaseService
from store.versions import open_policy_store

pytest_plugins = ["tests.admin_browser"]  # the admin UI's server and browser fixtures

BUNDLED = REPO_ROOT / "jurisdictions"


@pytest.fixture(scope="session")
def bundled():
    """Every bundled jurisdiction, resolved and validated (fails the session if any is invalid)."""
    return load_jurisdictions(BUNDLED)


class PolicyDir:
    """A scratch jurisdictions/ with the real catalogue and templates, for mutation tests."""

    def __init__(self, root: Path):
        self.root = root
        for name in ("_catalog.yaml", "_common.yaml", "karamay.yaml"):
            shutil.copy(BUNDLED / name, root / name)

    def read(self, name: str = "karamay.yaml") -> dict:
        return yaml.safe_load((self.root / name).read_text(encoding="utf-8"))

    def write(self, data: dict, name: str = "karamay.yaml") -> Path:
        path = self.root / name
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        return path


@pytest.fixture
def policy_dir(tmp_path) -> PolicyDir:
    return PolicyDir(tmp_path)


PG_ADMIN_URL = os.environ.get("GRIDPOLICY_TEST_DATABASE_URL")


def _pg(sql: str) -> None:
    import psycopg
    with psycopg.connect(PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(sql)


def _pg_url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


@contextmanager
def fresh_database(kind: str, folder: Path) -> Iterator[str]:
    """The URL of a fresh, empty database on `kind` (sqlite or postgresql), dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'test.db'}"
        return
    if not PG_ADMIN_URL:
        pytest.skip("GRIDPOLICY_TEST_DATABASE_URL not set (make test starts PostgreSQL and sets it)")
    name = f"gp_test_{uuid.uuid4().hex[:12]}"
    _pg(f'CREATE DATABASE "{name}"')
    yield _pg_url(name)
    _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _prepare(url: str) -> None:
    """Migrate and import the bundled jurisdictions (verifying each: the slow part) once per session."""
    open_policy_store(url).engine.dispose()


@pytest.fixture(scope="session")
def prepared_sqlite(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prepared") / "prepared.db"
    _prepare(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:  # fold the WAL into the file, so one file copy is the whole database
        conn.execute("PRAGMA journal_mode=DELETE")
    return path


@pytest.fixture(scope="session")
def prepared_postgresql():
    name = f"gp_prepared_{uuid.uuid4().hex[:12]}"
    _pg(f'CREATE DATABASE "{name}"')
    _prepare(_pg_url(name))
    yield name
    _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A database of its own on each backend, migrated and with the bundled jurisdictions imported: a copy of one
    prepared per session (a file copy, or PostgreSQL's CREATE DATABASE … TEMPLATE). `make test` starts the
    PostgreSQL server; without it (a bare `pytest`) the PostgreSQL variants are skipped."""
    if request.param == "sqlite":
        path = tmp_path / "test.db"
        shutil.copy(request.getfixturevalue("prepared_sqlite"), path)
        yield f"sqlite:///{path}"
        return
    if not PG_ADMIN_URL:
        pytest.skip("GRIDPOLICY_TEST_DATABASE_URL not set (make test starts PostgreSQL and sets it)")
    template = request.getfixturevalue("prepared_postgresql")
    name = f"gp_test_{uuid.uuid4().hex[:12]}"
    _pg(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    yield _pg_url(name)
    _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def cases(database_url) -> CaseService:
    """The case store over a database of its own with the bundled jurisdictions imported."""
    policies = open_policy_store(database_url)
    yield CaseService(policies)
    policies.engine.dispose()


# --- markers: `-m unit` (in-process, no database), `-m integration` (a database, a server or the installed
# command), `-m browser` (headless Chromium); e.g. `pytest -m "not browser"`.
INTEGRATION_FIXTURES = {"database_url", "prepared_sqlite", "server", "servers", "fuzz_target", "seeded"}
INTEGRATION_MODULES = {"test_cli"}  # runs the installed `gridpolicy` command in a subprocess


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if "browser" in fixtures:
            item.add_marker(pytest.mark.browser)
        elif fixtures & INTEGRATION_FIXTURES or item.module.__name__.rsplit(".", 1)[-1] in INTEGRATION_MODULES:
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)
