"""Province scale (issue #17): version metadata is read without documents, a version stores its change rather
than its size (units as shared chunks), and only active and recently used versions stay compiled."""
from __future__ import annotations

import gc
import weakref
from datetime import datetime, timedelta, timezone
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import event, func
from sqlmodel import Session, select

from engine.registry import Budget, EngineRegistry, build_size
from engine.router import Case
from policy.changes import with_head, with_unit
from policy.errors import PolicyError
from policy.loader import ChangedJurisdiction, Loader, build_jurisdiction
from store.cases import CaseService, Transition
from store.errors import Invalid
from store.tables import UnitChunk
from store.versions import PolicyStore, document_of, open_policy_store
from tests.scaled import scaled_document
from tests.test_api import client  # noqa: F401 - the API's test client: real ASGI requests, a real database
from tests.test_transactions import impatient

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
MEDICAL = Case(problem_type="医疗废物处置", unit="kmy-l3-01")
TREE = (1, 10, 100, 2000)  # small enough for a test; bench/scale_bench.py holds the big sizes


def statements(engine) -> list[str]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


def chunk_count(policies: PolicyStore) -> int:
    with Session(policies.engine) as session:
        return session.exec(select(func.count()).select_from(UnitChunk)).one()


@pytest.fixture
def scaled(database_url) -> PolicyStore:
    """Hefei with 2,111 named units, published as v2."""
    policies = open_policy_store(database_url)
    draft = policies.create_draft("hefei", "编辑")
    document = scaled_document(policies.document(draft), TREE)
    policies.update_draft("hefei", draft.number, document, draft.revision, "编辑")
    policies.publish("hefei", draft.number, "发布人", "导入网格")
    yield policies
    policies.engine.dispose()


def test_listings_and_the_refresh_loop_read_no_document(scaled):
    for jid in scaled.refresh():
        scaled.router(jid)  # every active version served (built in the background, waited for here)
    seen = statements(scaled.engine)
    versions = scaled.list_versions("hefei")
    scaled.get_version("hefei", 2)
    scaled.active_version("hefei")
    assert scaled.refresh() == scaled.registry.active()
    assert seen and all("document" not in sql and "unit_chunk" not in sql for sql in seen), seen
    assert [v.number for v in versions] == [1, 2]
    seen.clear()
    scaled.refresh()
    assert [sql for sql in seen if sql.startswith("SELECT")] == [seen[-1]]  # nothing changed: one small query


def test_a_one_unit_change_stores_one_chunk(scaled):
    stored = chunk_count(scaled)
    draft = scaled.create_draft("hefei", "编辑")
    assert chunk_count(scaled) == stored  # a new draft shares every chunk of its base
    document = scaled.document(draft)
    unit = next(u for u in document["units"] if u["level"] == 4)
    unit["name"] = "改名后的村居网格"
    saved = scaled.update_draft("hefei", draft.number, document, draft.revision, "编辑")
    assert chunk_count(scaled) == stored + 1
    assert scaled.document(saved) == document
    assert scaled.build(saved).units[unit["id"]].name == "改名后的村居网格"
    assert scaled.build(scaled.get_version("hefei", 2)).units[unit["id"]].name != "改名后的村居网格"


def test_a_reassembled_document_is_the_stored_one(database_url):
    policies = open_policy_store(database_url)
    for jid in policies.refresh():
        version = policies.active_version(jid)
        assert policies.document(version) == document_of(policies.build(version))
        assert "units" not in policies.head(version)
    policies.engine.dispose()


def _publish_level(policies: PolicyStore, level: int) -> str:
    draft = policies.create_draft("karamay", "编辑")
    document = policies.document(draft)
    document["problem_types"][0]["level"] = level
    saved = policies.update_draft("karamay", draft.number, document, draft.revision, "编辑")
    moved = [r.case.name for r in policies.pinned_results(saved) if not r.passed]  # the pinned case follows
    return policies.publish("karamay", draft.number, "发布人", f"改由第{level}级处置", accept=moved,
                            revision=saved.revision).content_hash


def test_only_active_and_recent_versions_stay_compiled(database_url):
    """After several publishes the registry holds the active versions plus the budget; a case of an evicted
    version still moves (rebuilt on demand, inside the transition's own write transaction)."""
    loader = Loader()
    policies = PolicyStore(open_policy_store(database_url).engine, loader.catalog,
                           EngineRegistry(Budget(versions=1, units=10**6)))
    policies.refresh()
    impatient(policies.engine)
    cases = CaseService(policies)
    first = cases.create("karamay", MEDICAL, "intake", now=T0)
    hashes = [_publish_level(policies, level) for level in (1, 3, 1, 3)]
    active = len(policies.registry.active())
    assert len(policies.registry.loaded()) <= active + 1
    assert ("karamay", first.policy_version) not in policies.registry.loaded()
    assert len(policies._built) <= 2  # the budget, plus the newest draft build (publishing reuses it)
    moved = cases.transition(first.id, Transition("complete", "网格员"), now=T0 + timedelta(minutes=10))
    assert moved.status == "dispose" and moved.policy_version == first.policy_version
    assert policies.router("karamay").compiled.version == hashes[-1]
    policies.engine.dispose()


def two_versions(policy_dir) -> tuple:
    """Karamay as bundled, and with medical waste handled at level 1."""
    old = Loader(policy_dir.root).build("karamay")
    data = policy_dir.read()
    data["problem_types"][0]["level"] = 1
    policy_dir.write(data)
    return old, Loader(policy_dir.root).build("karamay")


def test_the_unit_budget_evicts_big_versions(policy_dir):
    old, new = two_versions(policy_dir)
    tight, roomy = (EngineRegistry(Budget(versions=10, units=build_size(old) + extra)) for extra in (-1, 0))
    for registry in (tight, roomy):
        registry.load(old)
        registry.load(new)
    assert tight.loaded() == [("karamay", new.content_hash)]
    assert roomy.loaded() == [("karamay", old.content_hash), ("karamay", new.content_hash)]


def test_an_evicted_router_keeps_working_until_its_holder_lets_go(policy_dir):
    registry = EngineRegistry(Budget(versions=0, units=0))
    old, new = two_versions(policy_dir)
    held = registry.load(old)
    registry.load(new)  # old is no longer active: evicted at once
    assert registry.loaded() == [("karamay", new.content_hash)]
    case = Case(problem_type="waste.medical.disposal", unit="kmy-l3-01")
    assert held.route(case).handler.level == 2  # a request still holding it is not cut short
    rulesets = weakref.ref(held.compiled.types)
    del held
    gc.collect()
    assert rulesets() is None  # the last holder let go: its durable-rules rulesets are deleted


# --- one item over the API: a small request at any size (item endpoints with If-Match)
def _draft(client) -> tuple[str, str]:
    draft = client.post("/v1/jurisdictions/hefei/drafts", json={"actor": "编辑", "note": "x"},
                        headers=client.key_headers)
    return f"/v1/jurisdictions/hefei/versions/{draft.json()['number']}", draft.headers["etag"]


def test_patching_one_placeholder_names_only_that_unit(client):
    url, etag = _draft(client)
    headers = {**client.key_headers, "If-Match": etag}
    assert client.patch(f"{url}/units/hf-l4-0001", json={"author": "编辑", "name": "x"},
                        headers=client.key_headers).status_code == 428
    changed = client.patch(f"{url}/units/hf-l4-0001", json={"author": "编辑", "name": "瑶岗村"}, headers=headers)
    assert changed.status_code == 200 and changed.headers["etag"] == f'"{int(etag.strip(chr(34))) + 1}"'
    assert "document" not in changed.json() or changed.json()["document"] is None
    document = client.get(url).json()["document"]
    assert [u for u in document["units"] if u["id"] == "hf-l4-0001"][0]["name"] == "瑶岗村"
    assert len([u for u in document["units"] if u["level"] == 4]) == 1  # its group stays placeholders
    assert any(g["id_prefix"] == "hf-l4" for g in document["unit_groups"])
    stale = client.patch(f"{url}/units/hf-l4-0002", json={"author": "编辑", "name": "y"}, headers=headers)
    assert stale.status_code == 412


def test_patch_errors_name_the_field_and_change_nothing(client):
    url, etag = _draft(client)
    headers = {**client.key_headers, "If-Match": etag}
    wrong_parent = client.patch(f"{url}/units/hf-luyang", json={"author": "编辑", "parent": "hf-luyang"},
                                headers=headers)
    assert wrong_parent.status_code == 422
    assert wrong_parent.headers["content-type"].startswith("application/problem+json")
    assert wrong_parent.json()["field"] == "parent"
    unknown = client.patch(f"{url}/units/no-such-unit", json={"author": "编辑", "name": "x"}, headers=headers)
    assert unknown.status_code == 404 and unknown.json()["field"] == "unit_id"
    extra = client.patch(f"{url}/units/hf-luyang", json={"author": "编辑", "colour": "red"}, headers=headers)
    assert extra.status_code == 400
    assert client.get(url).headers["etag"] == etag  # nothing was saved


def test_patching_a_problem_type(client):
    url, etag = _draft(client)
    document = client.get(url).json()["document"]
    code = document["problem_types"][0]["code"]
    headers = {**client.key_headers, "If-Match": etag}
    bad = client.patch(f"{url}/types/{code}", json={"author": "编辑", "level": 5}, headers=headers)
    assert bad.status_code == 422 and bad.json()["field"] == "level"
    changed = client.patch(f"{url}/types/{code}",
                           json={"author": "编辑", "level": 1, "assumption": "测试: 改由市级处置"}, headers=headers)
    assert changed.status_code == 200
    after = client.get(url).json()["document"]["problem_types"][0]
    assert after["level"] == 1 and after["assumption"] == "测试: 改由市级处置" and after["source"] is None
    assert client.patch(f"{url}/types/no.such.type", json={"author": "编辑"},
                        headers={**client.key_headers, "If-Match": changed.headers["etag"]}).status_code == 404


def test_publishing_reuses_the_build_of_the_checked_revision(scaled, monkeypatch):
    import store.versions
    builds = []
    real = store.versions.build_jurisdiction
    monkeypatch.setattr(store.versions, "build_jurisdiction", lambda *args: builds.append(1) or real(*args))
    scaled._built.budget = Budget(versions=0, units=0)  # a draft bigger than the budget is reused all the same
    draft = scaled.create_draft("hefei", "编辑")
    document = scaled.document(draft)
    document["departments"][0]["duties"] = [*document["departments"][0]["duties"], "汇总巡查情况"]  # no case moves
    scaled.update_draft("hefei", draft.number, document, draft.revision, "编辑")
    scaled.publish("hefei", draft.number, "发布人", "增加部门职责")
    assert len(builds) == 1  # the edit's check; the new draft and the publish reuse builds


# --- incremental checking: a one-item change is checked for what it touches, with a full check's verdict
def _verdict(build) -> tuple:
    try:
        jur = build()
    except PolicyError as err:
        return "refused", [(i.path, i.message) for i in err.issues]
    return "accepted", jur.content_hash, list(jur.units.items())


@pytest.fixture(scope="module")
def small_tree():
    """Hefei with a scaled tree of 1 / 4 / 40 / 600 named units (three chunks at level 4), built in full."""
    loader = Loader()
    document = scaled_document(document_of(loader.build("hefei")), (1, 4, 40, 600))
    return loader.catalog, document, build_jurisdiction(document, loader.catalog, ["草稿"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_single_unit_edit_gets_the_full_checks_verdict(small_tree, data):
    catalog, document, built = small_tree
    ids = sorted(built.units)
    uid = data.draw(st.sampled_from(ids) | st.just("s4-new"), label="unit")
    unit = built.units[uid].model_dump(mode="json") if uid in built.units else {
        "id": uid, "name": "新网格", "level": 4, "parent": "s3-0", "assumption": "测试"}
    unit |= data.draw(st.fixed_dictionaries({}, optional={
        "name": st.sampled_from(["改名后的网格", "", "  "]),
        "level": st.integers(0, 7),
        "parent": st.sampled_from(ids) | st.sampled_from([None, "no-such-unit", uid]),
        "assumption": st.sampled_from([None, "假设: 由测试给出"]),
        "source": st.sampled_from([None, {"seed": "no-such-seed.md", "clause": "一", "quote": "网格"}]),
    }), label="change")
    changed = {**document, "units": [unit if u["id"] == uid else u for u in document["units"]]}
    if uid not in built.units:
        changed["units"].append(unit)
    full = _verdict(lambda: build_jurisdiction(changed, catalog, ["草稿"]))
    assert _verdict(lambda: with_unit(built, unit, "草稿")[0]) == full


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_edits_one_after_another_share_the_units_and_get_the_full_builds_verdict(small_tree, data):
    """Unit and head edits chained as PATCHes chain them (each on the last one's build, which copies no unit list
    or dict: ChangedJurisdiction), folded into a new copy every LIMIT (here 2) edits: each verdict, each policy
    and each document are a full build's of the same document."""
    catalog, document, built = small_tree
    ids = sorted(built.positions)
    with patch.object(ChangedJurisdiction, "LIMIT", 2):
        for step in range(data.draw(st.integers(1, 6), label="edits")):
            unit_edit = data.draw(st.booleans(), label=f"{step}: a unit")
            if unit_edit:
                uid = data.draw(st.sampled_from(ids), label=f"{step}: unit")
                unit = built.units[uid].model_dump(mode="json") | data.draw(st.fixed_dictionaries({}, optional={
                    "name": st.sampled_from(["改名后的网格", "  "]), "parent": st.sampled_from(ids)}),
                    label=f"{step}: change")
                changed = {**document, "units": [unit if u["id"] == uid else u for u in document["units"]]}
                edit = lambda jur=built, unit=unit: with_unit(jur, unit, "草稿")[0]  # noqa: E731
            else:
                ptype = document["problem_types"][0] | {"persuade_first": data.draw(st.booleans(), label=f"{step}")}
                changed = {**document, "problem_types": [ptype, *document["problem_types"][1:]]}
                edit = lambda jur=built, changed=changed: with_head(  # noqa: E731
                    jur, {k: v for k, v in changed.items() if k != "units"}, "草稿")
            full = _verdict(lambda changed=changed: build_jurisdiction(changed, catalog, ["草稿"]))
            assert _verdict(edit) == full
            if full[0] == "accepted":
                before, built, document = built, edit(), changed
                whole = build_jurisdiction(changed, catalog, ["草稿"])
                assert built.policy == whole.policy and document_of(built) == document_of(whole)
                if isinstance(before, ChangedJurisdiction) and (len(before.replaced) < 2 or not unit_edit):
                    assert isinstance(built, ChangedJurisdiction)  # not folded into a copy yet: nothing copied
                    assert built.shared is before.shared and built.units.base is before.units.base
                elif unit_edit:  # the first edit, or a fold: the list (then copied) is shared
                    assert isinstance(built, ChangedJurisdiction) and built.shared is before.policy.units


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_head_edit_gets_the_full_checks_verdict(small_tree, data):
    catalog, document, built = small_tree
    index = data.draw(st.integers(0, len(document["problem_types"]) - 1), label="type")
    ptype = document["problem_types"][index] | data.draw(st.fixed_dictionaries({}, optional={
        "level": st.integers(0, 7), "departments": st.sampled_from([[], ["no_such_department"]]),
        "persuade_first": st.booleans()}), label="change")
    levels = data.draw(st.booleans(), label="drop a level")  # a change the units depend on: they are checked again
    changed = {**document,
               "problem_types": [ptype if i == index else t for i, t in enumerate(document["problem_types"])]}
    if levels:
        changed["levels"] = changed["levels"][:-1]
    full = _verdict(lambda: build_jurisdiction(changed, catalog, ["草稿"]))
    assert _verdict(lambda: with_head(built, {k: v for k, v in changed.items() if k != "units"}, "草稿")) == full


def test_a_patch_checks_and_stores_only_what_it_touches(scaled, monkeypatch):
    """No full build, no full validation, one new chunk; publishing reuses the build the PATCH checked."""
    import store.versions
    builds = []
    real = store.versions.build_jurisdiction
    monkeypatch.setattr(store.versions, "build_jurisdiction", lambda *args, **kw: builds.append(1) or real(*args, **kw))
    draft = scaled.create_draft("hefei", "编辑")
    stored = chunk_count(scaled)
    saved = scaled.change_draft("hefei", draft.number, draft.revision, "编辑", lambda edit: edit.put_unit(
        {**edit.unit("s4-7"), "name": "改名后的村居网格"}))
    assert builds == [] and chunk_count(scaled) == stored + 1
    document = scaled.document(saved)
    assert next(u for u in document["units"] if u["id"] == "s4-7")["name"] == "改名后的村居网格"
    assert real(document, scaled.catalog, ["全量"]).content_hash == saved.content_hash  # the full build agrees
    with pytest.raises(Invalid) as refused:
        scaled.change_draft("hefei", draft.number, saved.revision, "编辑",
                            lambda edit: edit.put_unit({**edit.unit("s3-1"), "level": 2}))
    assert refused.value.field == "parent" and any(i["path"].endswith("parent") and "s3-1" in i["message"]
                                                   for i in refused.value.extra["issues"])  # its children too
    assert chunk_count(scaled) == stored + 1  # refused: nothing stored
    scaled.publish("hefei", draft.number, "发布人", "改名")
    assert builds == []


def test_check_while_typing_hashes_no_chunk_and_refuses_what_saving_refuses(scaled, monkeypatch):
    """A check stores nothing, so it dumps and hashes no chunk (most of a check's time at 200,000 units); it accepts
    and refuses the change as saving it would, with the same field and issues."""
    from policy import chunks
    hashed = []
    real = chunks.chunk_hash
    monkeypatch.setattr(chunks, "chunk_hash", lambda run: hashed.append(1) or real(run))
    draft = scaled.create_draft("hefei", "编辑")
    rename = lambda edit: edit.put_unit({**edit.unit("s4-7"), "name": "改名中的网格"})  # noqa: E731
    demote = lambda edit: edit.put_unit({**edit.unit("s3-1"), "level": 2})  # noqa: E731 - its children then lie
    scaled.check_change("hefei", draft.number, rename)
    with pytest.raises(Invalid) as checked:
        scaled.check_change("hefei", draft.number, demote)
    assert hashed == []
    with pytest.raises(Invalid) as saved:
        scaled.change_draft("hefei", draft.number, draft.revision, "编辑", demote)
    assert checked.value.field == saved.value.field == "parent"
    assert checked.value.extra["issues"] == saved.value.extra["issues"]
    scaled.change_draft("hefei", draft.number, draft.revision, "编辑", rename)
    assert hashed  # saving hashes the chunk it stores


def test_indexing_a_version_prepares_its_first_edit(scaled, monkeypatch):
    """The background step that indexes a version (after a start or a publish) also finds where its chunks end: the
    first check or PATCH of a new draft does not walk every unit's id (~0.3 s at 200,000 units)."""
    from policy import chunks
    scaled.unit_index(scaled.build(scaled.active_version("hefei")))  # waits for the builder's indexing
    walked = []
    real = chunks.ends
    monkeypatch.setattr(chunks, "ends", lambda ids: walked.append(len(ids)) or real(ids))
    draft = scaled.create_draft("hefei", "编辑")
    scaled.check_change("hefei", draft.number, lambda edit: edit.put_unit({**edit.unit("s4-7"), "name": "改名"}))
    assert walked == []


def test_chunks_no_version_lists_are_deleted(scaled):
    """A draft saved again leaves its previous revision's own chunks unused: they go, shared ones stay."""
    draft = scaled.create_draft("hefei", "编辑")
    stored = chunk_count(scaled)
    revision = draft.revision
    for n in range(3):
        revision = scaled.change_draft("hefei", draft.number, revision, "编辑", lambda edit, n=n: edit.put_unit(
            {**edit.unit("s4-7"), "name": f"第{n}次改名"})).revision
        assert chunk_count(scaled) == stored + 1  # the previous revision's own chunk was deleted
    document = scaled.document(scaled.get_version("hefei", draft.number))
    document["units"] = [u for u in document["units"] if u["id"] != "s4-1999"]  # another chunk changes too
    scaled.update_draft("hefei", draft.number, document, revision, "编辑")
    assert chunk_count(scaled) == stored + 2  # the renamed unit's chunk and the last one, the old last one gone
    for version in scaled.list_versions("hefei"):  # every version still reads whole
        assert scaled.build(version).units


def test_a_big_document_is_validated_and_hashed_in_batches_to_the_same_policy_and_hash(scaled):
    """Units are validated and dumped for the content hash a batch at a time (no single call holds the GIL for
    seconds at 200,000 units): the policy, the hash and a bad unit's error path are what one call would give."""
    from policy.loader import BATCH
    from policy.models import Policy
    document = scaled.document(scaled.active_version("hefei"))
    assert len(document["units"]) > BATCH
    jur = build_jurisdiction(document, scaled.catalog, ["test"])
    whole = Policy.model_validate(document)
    assert jur.policy == whole
    assert jur.content_hash == scaled.active_version("hefei").content_hash
    document["units"][BATCH + 5]["level"] = "四"
    with pytest.raises(PolicyError) as err:
        build_jurisdiction(document, scaled.catalog, ["test"])
    assert [i.path for i in err.value.issues] == [f"units[{BATCH + 5}].level"]
