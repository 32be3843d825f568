"""Every bundled jurisdiction loads, validates, states its counts, and every rule has provenance."""
from __future__ import annotations

from collections import Counter

import pytest

from engine.compiler import compile_policy
from engine.verify import verify
from policy.models import Provenanced
from policy.validate import _provenanced, _normalise, _seed_text, seed_path

EXPECTED_UNITS = {
    "karamay": {1: 1, 2: 7, 3: 77},
    "hefei": {1: 1, 2: 13, 3: 300, 4: 1335},
    "weiyang": {1: 1, 2: 1, 3: 12, 4: 105},
}


def test_bundled_jurisdictions_are_present(bundled):
    assert {"karamay", "hefei", "panjin"} <= set(bundled)


@pytest.mark.parametrize("jid, counts", EXPECTED_UNITS.items())
def test_unit_counts_match_the_documents(bundled, jid, counts):
    if jid not in bundled:
        pytest.fail(f"{jid} is not bundled")
    assert dict(Counter(u.level for u in bundled[jid].units.values())) == counts


def test_every_rule_has_provenance_and_quotes_are_in_their_seeds(bundled):
    checked = 0
    for jur in bundled.values():
        for loc, item in _provenanced(jur.policy, ()):
            assert isinstance(item, Provenanced)
            assert (item.source is None) != (item.assumption is None), (jur.id, loc)
            if item.source is not None:
                text = _seed_text(seed_path(item.source.seed))
                assert text is not None, f"seed {item.source.seed} missing"
                assert _normalise(item.source.quote) in text, (jur.id, loc, item.source.quote)
            checked += 1
        for ptype in jur.policy.problem_types:  # the items the tables are built from, explicitly
            assert ptype.source or ptype.assumption
        for rule in jur.policy.rules:
            assert rule.source or rule.assumption
    assert checked > 300


def test_every_bundled_jurisdiction_passes_verification(bundled):
    for jur in bundled.values():
        report = verify(compile_policy(jur))
        assert report.ok, (jur.id, report.problems()[:5])
        assert len(report.matrix) == len(jur.policy.problem_types)
