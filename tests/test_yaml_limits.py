"""Every YAML the project loads goes through policy.yamlio.load_yaml: an alias bomb ("billion laughs"), deep
nesting or a huge file is refused with a clear error and bounded memory (issue #10 §4)."""
from __future__ import annotations

import tracemalloc

import pytest
from typer.testing import CliRunner

from cli.main import app
from policy.errors import PolicyError
from policy.yamlio import OriginMap, load_yaml

LAUGHS = "a: &a [" + ",".join(['"lol"'] * 9) + "]\n" + "".join(
    f"{b}: &{b} [" + ",".join([f"*{a}"] * 9) + "]\n" for a, b in zip("abcdefgh", "bcdefghi"))  # 9⁹ ≈ 387 M strings


def _refused(tmp_path, text: str) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    tracemalloc.start()
    try:
        with pytest.raises(PolicyError) as err:
            load_yaml(path, OriginMap())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024 * 1024, f"{peak / 1e6:.0f} MB"
    return str(err.value)


def test_billion_laughs_is_refused(tmp_path):
    assert "别名展开过多" in _refused(tmp_path, LAUGHS)


def test_deep_nesting_is_refused(tmp_path):
    assert "嵌套超过" in _refused(
        tmp_path, "a:\n" + "".join("  " * i + f"- k{i}:\n" for i in range(1, 200)) + "  " * 200 + "- x\n")
    assert "YAML" in _refused(tmp_path, "[" * 100_000 + "]" * 100_000)


def test_a_huge_file_is_refused(tmp_path):
    assert "文件超过" in _refused(tmp_path, "x: " + "y" * (5 * 1024 * 1024) + "\n")


def test_aliases_within_reason_still_load(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("q: &q {seed: s, clause: c}\nitems:\n"
                    + "".join(f"  - {{id: i{i}, source: *q}}\n" for i in range(500)))
    assert len(load_yaml(path, OriginMap())["items"]) == 500


def test_gridpolicy_validate_refuses_the_bomb(tmp_path):
    (tmp_path / "bomb.yaml").write_text(LAUGHS, encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", str(tmp_path)])
    assert result.exit_code == 1 and "bomb.yaml:" in result.output and "别名展开过多" in result.output
