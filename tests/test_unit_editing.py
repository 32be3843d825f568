"""Invariants behind the unit editor: turning placeholders into named units changes no unit, and CSV rows
survive any names the admin's spreadsheet may contain."""
from __future__ import annotations

import csv
import io

from hypothesis import given, settings, strategies as st

from policy.models import Policy
from policy.unit_rows import materialise_groups, parse_units_csv
from policy.validate import expand_units
from store.versions import document_of


def _units(document: dict) -> dict:
    return {uid: u.model_dump(exclude={"placeholder"})
            for uid, u in expand_units(Policy.model_validate(document)).items()}


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_materialising_a_placeholder_keeps_every_unit(bundled, data):
    jur = data.draw(st.sampled_from(sorted((j for j in bundled.values() if j.policy.unit_groups), key=lambda j: j.id)))
    document = document_of(jur)
    placeholder = data.draw(st.sampled_from(sorted(u.id for u in jur.units.values() if u.placeholder)))
    before = _units(document)
    materialise_groups(document, {placeholder})
    assert _units(document) == before
    assert placeholder in {u["id"] for u in document["units"]}
    assert len(document["unit_groups"]) == len(jur.policy.unit_groups) - 1


names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1,
                max_size=30)


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(st.tuples(st.from_regex(r"[a-z0-9_][a-z0-9_-]{0,20}", fullmatch=True), names,
                               st.integers(1, 6)), min_size=1, max_size=20, unique_by=lambda row: row[0]))
def test_csv_rows_round_trip(rows):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "name", "level", "parent"])
    for uid, name, level in rows:
        writer.writerow([uid, name, level, "" if level == 1 else "p"])
    parsed = parse_units_csv(out.getvalue(), "units.csv")
    assert [(u["id"], u["name"], u["level"], u["parent"]) for u in parsed] == \
        [(uid, name, level, None if level == 1 else "p") for uid, name, level in rows]
