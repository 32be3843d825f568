from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from policy.loader import REPO_ROOT, load_jurisdictions

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
