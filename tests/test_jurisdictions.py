"""Every bundled jurisdiction loads, validates, states its counts, and every rule has provenance."""
from __future__ import annotations

from collections import Counter

import pytest

from engine.compiler import compile_policy
from engine.verify import verify
from policy.models import Provenanced
from policy.provenance import provenanced_items
from policy.loader import seed_text
from policy.validate import normalise

EXPECTED_UNITS = {
    "karamay": {1: 1, 2: 7, 3: 77},
    "hefei": {1: 1, 2: 13, 3: 300, 4: 1335},
    "weiyang": {1: 1, 2: 1, 3: 12, 4: 105},
    "wangan": {1: 1, 2: 1, 3: 21},      # 篇四: 21 village grids
    "pian09": {1: 1, 2: 12, 3: 12},     # 篇九: township L1, 12 village L2 grids
    "pian10": {1: 1, 2: 1, 3: 10},      # 篇十: township L2, 10 village L3 grids
    "shangdi": {1: 1, 2: 1, 3: 12, 4: 56},  # 篇十三: 12 grids, 56 grid units
}
TOWNSHIPS = ["ningjiaping", "pian02", "yuanquan", "wangan", "pian09", "pian10", "tongliang", "shangdi", "qitaihe"]


def test_bundled_jurisdictions_are_present(bundled):
    assert {"karamay", "hefei", "panjin", "weiyang", *TOWNSHIPS} <= set(bundled)


def test_townships_inherit_the_template_instead_of_copying_it(bundled):
    import yaml

    from tests.conftest import BUNDLED
    template = {r["id"]: r for r in yaml.safe_load((BUNDLED / "_township.yaml").read_text(encoding="utf-8"))["rules"]}
    for jid in TOWNSHIPS:
        own = yaml.safe_load((BUNDLED / f"{jid}.yaml").read_text(encoding="utf-8"))
        assert own["extends"] == "_township"
        for rule in own.get("rules", []):  # an override may re-source or adjust a rule, not copy it whole
            base = template.get(rule["id"])
            assert base is None or not (rule.get("when") == base["when"] and rule.get("then") == base["then"]), \
                f"{jid} copies template rule {rule['id']}"
        removed = {r["id"] for r in own.get("rules", []) if r.get("remove")}
        assert set(template) - removed == {r.id for r in bundled[jid].policy.rules} & set(template)


def test_township_scoring_and_cadences(bundled):
    ningjiaping = bundled["ningjiaping"].policy.scoring
    assert (ningjiaping.scheme, ningjiaping.total, ningjiaping.period.value, ningjiaping.publish.value) == \
        ("deduction", 12, "year", "quarter")  # 篇一: 按年度12分计, 倒扣分, 每季度通报
    assert bundled["pian09"].policy.scoring.vetoes  # 篇九: 一票否决
    patrol = {(c.times, c.per.value) for c in bundled["pian02"].policy.cadences if c.activity == "patrol"}
    assert (2, "month") in patrol  # 篇二: 每月至少巡查两次
    assert any(c.activity == "patrol" and c.per.value == "week" for c in bundled["wangan"].policy.cadences)


@pytest.mark.parametrize("jid, counts", EXPECTED_UNITS.items())
def test_unit_counts_match_the_documents(bundled, jid, counts):
    if jid not in bundled:
        pytest.fail(f"{jid} is not bundled")
    assert dict(Counter(u.level for u in bundled[jid].units.values())) == counts


def test_every_rule_has_provenance_and_quotes_are_in_their_seeds(bundled):
    checked = 0
    for jur in bundled.values():
        for loc, item in provenanced_items(jur.policy):
            assert isinstance(item, Provenanced)
            assert (item.source is None) != (item.assumption is None), (jur.id, loc)
            if item.source is not None:
                text = seed_text(item.source.seed)
                assert text is not None, f"seed {item.source.seed} missing"
                assert normalise(item.source.quote) in text, (jur.id, loc, item.source.quote)
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
