from __future__ import annotations

import os
import shutil
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


@contextmanager
def fresh_database(kind: str, folder: Path) -> Iterator[str]:
    """The URL of a fresh, empty database on `kind` (sqlite or postgresql), dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'test.db'}"
        return
    if not PG_ADMIN_URL:
        pytest.skip("GRIDPOLICY_TEST_DATABASE_URL not set (make test starts PostgreSQL and sets it)")
    import psycopg
    name = f"gp_test_{uuid.uuid4().hex[:12]}"
    admin = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A fresh, empty database on each backend. `make test` starts the PostgreSQL server; without it
    (a bare `pytest`) the PostgreSQL variants are skipped."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def cases(database_url) -> CaseService:
    """The case store over a fresh database with the bundled jurisdictions imported."""
    policies = open_policy_store(database_url)
    yield CaseService(policies)
    policies.engine.dispose()
