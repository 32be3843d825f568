"""A server's start loads what `/health` needs and no more (issue #17: start to healthy ≤ 10 s at 200,000 units):
the libraries of boundaries (shapely, numpy, coordTransform), webhooks (httpx), search (pypinyin), spreadsheets
(openpyxl) and charts (pygal) are imported by the first request that uses them."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAZY = ("httpx", "shapely", "numpy", "coordTransform", "pypinyin", "openpyxl", "pygal")


def test_a_start_imports_no_library_only_a_later_request_needs(prepared_sqlite, tmp_path):
    path = tmp_path / "start.db"
    shutil.copy(prepared_sqlite, path)
    probe = ("import sys; from api.app import create_app; "
             f"create_app('sqlite:///{path}', background=False); "
             f"print(sorted(m for m in {LAZY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip().splitlines()[-1] == "[]"
