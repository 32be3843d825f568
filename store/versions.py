"""Policy versions: drafts, publishing (compile + verify first), rollback, audit, and the engines."""
from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import func, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from cachetools import LRUCache

from engine.decision import Decision
from engine.pinned import PinnedResult, run_cases, run_suite
from engine.registry import EngineRegistry, Recent, VerificationFailed, build_size
from engine.router import PolicyRouter
from policy import chunks
from policy.catalog import Catalog
from policy.changes import with_head, with_unit
from policy.errors import PolicyError
from policy.loader import Jurisdiction, Loader, build_jurisdiction
from policy.search import UnitIndex
from store import budget, unitchunks
from store.db import UnitOfWork, make_engine, migrate, reader, serialize
from store.errors import Conflict, Forbidden, Invalid, NotFound, PreconditionFailed
from store.tables import AuditEntry, PolicyVersion, utcnow

SYSTEM = "system"
T = TypeVar("T")
# threads building versions and search indexes in the background (shared by every store of the process): a
# 200,000-unit build does not hold up the others
BUILDERS = ThreadPoolExecutor(2, thread_name_prefix="gridpolicy-build")
# Audit actions that change a draft's rules (the four-eyes rule looks for the latest of them).
EDIT_ACTIONS = ("draft_created", "draft_updated", "bulk_types_updated", "types_imported", "units_imported")

# listings and lookups read a version's metadata only: its document is read when a build or an editor needs it
METADATA = (defer(col(PolicyVersion.head)), defer(col(PolicyVersion.unit_chunks)))  # type: ignore[arg-type]  # sqlmodel's col() is typed for scalars


def versions_where(*where: Any):
    return select(PolicyVersion).options(*METADATA).where(*where)


def audit(session: Session, actor: str, action: str, jurisdiction: str | None = None,
          version_number: int | None = None, **detail) -> None:
    session.add(AuditEntry(actor=actor, action=action, jurisdiction=jurisdiction,
                           version_number=version_number, detail=detail))


def document_of(jur: Jurisdiction) -> dict:
    return jur.policy.model_dump(mode="json")


def head_of(jur: Jurisdiction) -> dict:
    """The stored head of a build: its document with no units (the key keeps its place)."""
    return jur.head.model_copy(update={"units": []}).model_dump(mode="json")


def stored_document(session: Session, document: dict) -> dict[str, Any]:
    """The columns that store `document`: its units as shared chunks (stored here when new), the rest as the head."""
    head = {**document, "units": []}  # the key keeps its place, so a reassembled document reads the same
    return {"head": head, "unit_chunks": unitchunks.save(session, document.get("units", []))}


class DraftEdit(dict):
    """What an item change edits: the draft's document without its units (this dict) and the one named unit it
    changes or adds (`unit`), on the draft as built (`built`)."""

    def __init__(self, head: dict, built: Jurisdiction):
        super().__init__(head)
        self.built = built
        self.changed: dict[str, Any] | None = None

    def unit(self, unit_id: str) -> dict:
        """The unit as stored, to change and pass to `put_unit` (a placeholder becomes a named unit of its own,
        which replaces just that placeholder (see expand_units): its group stays as it is)."""
        if unit_id not in self.built.units:
            raise NotFound(f"草稿中没有网格单元 {unit_id}", field="unit_id")
        return self.built.units[unit_id].model_dump(mode="json")

    def put_unit(self, unit: dict) -> str:
        """Change (or add) the named unit `unit["id"]`; returns its path (units[i])."""
        self.changed = unit
        return f"units[{self.built.positions.get(unit['id'], len(self.built.positions))}]"  # new: appended


def merge_item(item: dict, values: dict) -> dict:
    """`item` with `values` merged in (JSON merge patch); stating a source drops the assumption and vice versa."""
    if values.get("source") is not None:
        values = {"assumption": None, **values}
    elif values.get("assumption") is not None:
        values = {"source": None, **values}
    return {**item, **values}


def _rehashed(session: Session, jid: str) -> set[str]:
    """The jurisdiction's versions' content hashes as computed now (policy/chunks.py): a version stored before
    content hashes were built from chunks keeps the hash it was published with."""
    return {chunks.content_hash(chunks.head_hash(dict(head)), list(unit_chunks)) for head, unit_chunks in session.exec(
        select(PolicyVersion.head, PolicyVersion.unit_chunks).where(PolicyVersion.jurisdiction == jid))}


class PolicyStore:
    """Versions live in the database; each process compiles the active ones it serves and notices a
    newly activated version on `refresh()` (polled), so several workers stay consistent."""

    def __init__(self, engine: Engine, catalog: Catalog, registry: EngineRegistry | None = None):
        self.engine = engine
        self.reader = reader(engine)  # loading versions never opens a write transaction (it may run inside one)
        self.catalog = catalog
        self.registry = registry or EngineRegistry()
        # builds not compiled here (drafts); the newest stays whatever its size: publishing it reuses it
        self._built: Recent[str, Jurisdiction] = Recent(self.registry.budget, build_size, keep_newest=True)
        self.numbers: dict[tuple[str, str], int] = {}  # (jurisdiction, content hash) -> number, of active versions
        self._pinned: LRUCache[str, list[PinnedResult]] = LRUCache(maxsize=64)  # content hash -> suite results
        self._jobs: dict[Hashable, Future] = {}
        self._jobs_lock = threading.Lock()
        self._wanted: dict[str, str] = {}  # jurisdiction -> hash of its active version (as last read)
        self._serving = threading.Lock()  # activating a build vs. reading that another version is wanted

    # --- building and serving
    def _once(self, key: Hashable, work: Callable[[], T]) -> Future[T]:
        """`work` run by a builder thread, once for `key` at a time: whoever asks meanwhile gets the same future."""
        with self._jobs_lock:
            future = self._jobs.get(key)
            new = future is None
            if new:
                future = self._jobs[key] = BUILDERS.submit(work)
        assert future is not None  # found, or submitted just now
        if new:
            future.add_done_callback(partial(self._done, key))
        return future

    def _done(self, key: Hashable, future: Future) -> None:
        with self._jobs_lock:
            if self._jobs.get(key) is future:
                del self._jobs[key]

    def build(self, version: PolicyVersion) -> Jurisdiction:
        """The version built: the compiled one's if it is compiled here, else from its document. Built by a builder
        thread (once, however many ask) and waited for within the caller's read budget (store.budget)."""
        jur = self._ready(version)
        if jur is None:
            jur = budget.wait(self._once(("build", version.content_hash), partial(self._build, version)),
                              f"{version.jurisdiction} v{version.number}")
        return jur

    def _ready(self, version: PolicyVersion) -> Jurisdiction | None:
        try:
            return self.registry.router(version.jurisdiction, version.content_hash).jur
        except KeyError:
            return self._built.get(version.content_hash)

    def _build(self, version: PolicyVersion) -> Jurisdiction:
        """Built here and now (read through `reader`: a caller may be inside a write transaction)."""
        jur = self._ready(version)
        if jur is None:
            label = f"{version.jurisdiction} 版本 v{version.number}"
            document, unit_chunks = self._stored(version)
            jur = self._built.put(version.content_hash, build_jurisdiction(
                document, self.catalog, [label], stored=(version.content_hash, unit_chunks)))
        return jur

    def _read_active(self) -> list[tuple[str, int, str]]:
        """(jurisdiction, number, hash) of the active versions: three columns, next to nothing while nothing changes."""
        with Session(self.reader) as session:
            active = session.exec(select(PolicyVersion.jurisdiction, PolicyVersion.number, PolicyVersion.content_hash)
                                  .where(PolicyVersion.active)).all()
        with self._serving:
            for jid, number, content_hash in active:
                self.numbers[jid, content_hash] = number
                self._wanted[jid] = content_hash
        return list(active)

    def refresh(self) -> dict[str, str]:
        """Switch to newly activated versions: a jurisdiction served here keeps being served by its old version
        while the new one is built in the background (polled every 2 s, so a publish by another worker holds
        nothing up); one not served yet is built on first use (`router`, or `warm` in a server). Returns
        jurisdiction -> active hash."""
        active = self._read_active()
        served = self.registry.active()
        for jid, number, content_hash in active:
            if jid in served and served[jid] != content_hash:
                self._serve(jid, number, content_hash)
        return {jid: content_hash for jid, _, content_hash in active}

    def _serve(self, jid: str, number: int, content_hash: str) -> Future[PolicyRouter]:
        try:
            self.registry.router(jid, content_hash)
        except KeyError:
            return self._once(("serve", jid, content_hash), partial(self._activate_build, jid, number, content_hash))
        switched: Future[PolicyRouter] = Future()  # compiled here already: switching is instant
        switched.set_result(self._activate_build(jid, number, content_hash))
        return switched

    def _switch(self, jid: str) -> None:
        """After a publish or rollback here: serve the jurisdiction's new active version before answering."""
        content_hash = self.refresh()[jid]
        number = self.numbers[jid, content_hash]
        budget.wait(self._serve(jid, number, content_hash), f"{jid} v{number}")

    def follow(self, jid: str, content_hash: str | None) -> None:
        """Serve the version another process of this server serves (its writer process follows its publishes)."""
        if content_hash is not None and self.registry.active().get(jid) != content_hash:
            self._switch(jid)

    def _activate_build(self, jid: str, number: int, content_hash: str) -> PolicyRouter:
        """Compile the version and make it the one served, unless another became active while it was built."""
        try:
            router = self.registry.router(jid, content_hash)
        except KeyError:
            router = None
        jur = router.jur if router else self._build(self.get_version(jid, number))
        with self._serving:
            # verified when published
            return self.registry.load(jur, activate=self._wanted.get(jid) == content_hash, check=False)

    def decision(self, stored: dict) -> Decision:
        """A case's decision as stored (`CaseRecord.stored_decision`), whole again from the version that made it."""
        return self.router(stored["jurisdiction"], stored["policy_version"]).restore(stored)

    def ping(self) -> None:
        """One round trip to the database (raises if it does not answer); builds nothing, so a health probe
        costs the same whatever the number of versions."""
        with self.reader.connect() as connection:
            connection.exec_driver_sql("SELECT 1")

    def loading(self) -> list[str]:
        """Jurisdictions whose active version is still being built here."""
        with self._serving:
            wanted = dict(self._wanted)
        served = self.registry.active()
        return sorted(jid for jid, content_hash in wanted.items() if served.get(jid) != content_hash)

    def warm(self) -> dict[str, str]:
        """Start what the active versions need — their builds, then their unit search indexes — without waiting: the
        first search or unknown-unit error after a start or a publish finds the index built. Returns jurisdiction ->
        active hash."""
        active = self.refresh()
        for jid, content_hash in active.items():
            if self.registry.active().get(jid) != content_hash:
                self._serve(jid, self.numbers[jid, content_hash], content_hash)
                continue  # indexed on a later round
            try:
                jur = self.registry.router(jid, content_hash).jur
            except KeyError:
                continue  # dropped meanwhile: the next round serves it again
            if not jur.indexed:
                self._once(("index", content_hash), partial(self._index, jur))
        return active

    @staticmethod
    def _index(jur: Jurisdiction) -> None:
        jur.unit_index  # noqa: B018 - cached properties: built once here, shared by every request
        jur.children  # noqa: B018
        jur.chunk_ends  # noqa: B018 - the first edit of a draft of this version needs them (~0.3 s at 200,000 units)

    def unit_index(self, jur: Jurisdiction) -> UnitIndex:
        """The build's unit search index, built by a builder thread and waited for within the read budget."""
        if not jur.indexed:
            budget.wait(self._once(("index", jur.content_hash), partial(self._index, jur)),
                        f"{jur.id} 网格单元搜索索引 (unit search index)")
        return jur.unit_index

    def router(self, jurisdiction: str, version_hash: str | None = None) -> PolicyRouter:
        try:
            return self.registry.router(jurisdiction, version_hash)
        except KeyError:
            pass
        if version_hash is None:
            active = self.refresh()
            if jurisdiction in active:
                number = self.numbers[jurisdiction, active[jurisdiction]]
                return budget.wait(self._serve(jurisdiction, number, active[jurisdiction]),
                                   f"{jurisdiction} v{number}")
        else:
            with Session(self.reader) as session:
                stored = session.exec(versions_where(
                    PolicyVersion.jurisdiction == jurisdiction, PolicyVersion.content_hash == version_hash)).first()
            if stored is not None:
                return self.registry.load(self.build(stored), activate=False, check=False)
        raise NotFound(f"未知辖区 unknown jurisdiction '{jurisdiction}'", field="jurisdiction",
                       valid=sorted(self.registry.active())) from None

    # --- bundled jurisdictions
    def bootstrap(self, loader: Loader) -> list[str]:
        """First start: import every bundled jurisdiction as published v1. Later starts: a bundled file
        that differs from every stored version becomes a draft for a publisher to review."""
        jurisdictions, issues = loader.load_all()
        if issues:
            raise PolicyError(issues)
        changed = []
        with UnitOfWork(self.engine) as uow:
            session = uow.session
            serialize(session.connection(), "bootstrap")  # workers starting together on PostgreSQL take turns
            for jid, jur in jurisdictions.items():
                known = session.exec(select(PolicyVersion.content_hash).where(PolicyVersion.jurisdiction == jid)).all()
                if jur.content_hash in known or jur.content_hash in _rehashed(session, jid):
                    continue
                first = not known
                active = session.exec(select(PolicyVersion.number).where(PolicyVersion.jurisdiction == jid,
                                                                        PolicyVersion.active)).first()
                version = self._new_version(session, jid, jur.content_hash,
                                            stored_document(session, document_of(jur)), author=SYSTEM,
                                            note="随附规则文件导入 imported from jurisdictions/" if first
                                            else "规则文件已更新, 待审核发布 bundled file changed", base=active)
                if first:
                    self.registry.load(jur)  # verify before the first activation
                    version.status, version.active = "published", True
                    version.published_at, version.published_by = utcnow(), SYSTEM
                audit(session, SYSTEM, "bootstrap_import" if first else "bootstrap_draft", jid, version.number,
                      content_hash=jur.content_hash)
                changed.append(jid)
        self._read_active()  # what is active; built on first use (the server starts building at once, see warm)
        return changed

    def _new_version(self, session: Session, jid: str, content_hash: str, stored: dict[str, Any], author: str,
                     note: str, base: int | None = None) -> PolicyVersion:
        """A draft; it starts with the unit boundaries of version `base`, as it starts with its unit tree."""
        from store.boundaries import copy_to  # boundaries builds on this module
        number = (session.exec(select(func.max(PolicyVersion.number)).where(PolicyVersion.jurisdiction == jid)).one()
                  or 0) + 1
        version = PolicyVersion(jurisdiction=jid, number=number, status="draft", content_hash=content_hash,
                                author=author, note=note, **stored)
        session.add(version)
        session.flush()
        copy_to(session, jid, base, number)
        return version

    # --- reading
    def serves(self, jid: str) -> bool:
        """Whether `jid` has an active version, as this worker last read (no read now)."""
        return jid in self._wanted

    def exists(self, jid: str) -> bool:
        """Whether any version of `jid` is stored (a read: drafts of a jurisdiction not yet published count)."""
        with Session(self.reader) as session:
            return session.exec(select(PolicyVersion.id).where(PolicyVersion.jurisdiction == jid).limit(1)
                                ).first() is not None

    def list_versions(self, jid: str) -> list[PolicyVersion]:
        with Session(self.reader) as session:
            versions = session.exec(versions_where(PolicyVersion.jurisdiction == jid)
                                    .order_by(col(PolicyVersion.number))).all()
        if not versions:
            raise NotFound(f"未知辖区 unknown jurisdiction '{jid}'", field="jurisdiction")
        return list(versions)

    def get_version(self, jid: str, number: int) -> PolicyVersion:
        with Session(self.reader) as session:
            version = session.exec(versions_where(
                PolicyVersion.jurisdiction == jid, PolicyVersion.number == number)).first()
        if version is None:
            raise NotFound(f"辖区 {jid} 没有版本 v{number}", field="number")
        return version

    def document(self, version: PolicyVersion) -> dict[str, Any]:
        """The version's whole document as stored (a fresh dict the caller may change)."""
        return self._stored(version)[0]

    def _stored(self, version: PolicyVersion) -> tuple[dict[str, Any], list[str]]:
        """The version's document and the hashes of its unit chunks."""
        with Session(self.reader) as session:
            stored_head, stored_hashes = session.exec(select(PolicyVersion.head, PolicyVersion.unit_chunks)
                                                      .where(PolicyVersion.id == version.id)).one()
            head, hashes = dict(stored_head), list(stored_hashes)
            head["units"] = unitchunks.load(session, hashes)
        return head, hashes

    def head(self, version: PolicyVersion) -> dict[str, Any]:
        """The version's document without its units (cheap at any number of units)."""
        with Session(self.reader) as session:
            head = dict(session.exec(select(PolicyVersion.head).where(PolicyVersion.id == version.id)).one())
        del head["units"]
        return head

    def active_version(self, jid: str) -> PolicyVersion:
        with Session(self.reader) as session:
            version = session.exec(versions_where(PolicyVersion.jurisdiction == jid, PolicyVersion.active)).first()
        if version is None:
            raise NotFound(f"未知辖区 unknown jurisdiction '{jid}'", field="jurisdiction")
        return version

    # --- changing
    def create_draft(self, jid: str, author: str, from_number: int | None = None) -> PolicyVersion:
        base = self.get_version(jid, from_number) if from_number else self.active_version(jid)
        with UnitOfWork(self.engine) as uow:
            serialize(uow.session.connection(), unitchunks.LOCK)  # the chunks listed are not collected meanwhile
            # the base's stored columns as they are: its chunks are shared, nothing is built, dumped or hashed
            head, hashes = uow.session.exec(select(PolicyVersion.head, PolicyVersion.unit_chunks)
                                            .where(PolicyVersion.id == base.id)).one()
            version = self._new_version(uow.session, jid, base.content_hash, {"head": head, "unit_chunks": hashes},
                                        author, note=f"基于 v{base.number} 的草稿", base=base.number)
            audit(uow.session, author, "draft_created", jid, version.number, from_version=base.number)
        return version

    def check_draft(self, jid: str, number: int, document: dict) -> Jurisdiction:
        """The draft document built and validated, or Invalid listing every issue with its path."""
        if document.get("id") != jid:
            raise Invalid(f"文档 id 须为 '{jid}'", field="document.id")
        try:
            return build_jurisdiction(document, self.catalog, [f"{jid} 草稿 v{number}"])
        except PolicyError as err:
            raise Invalid("草稿未通过校验", field="document",
                          issues=[{"path": i.path, "message": i.message} for i in err.issues]) from None

    def update_draft(self, jid: str, number: int, document: dict, revision: int, author: str,
                     action: str = "draft_updated", **detail) -> PolicyVersion:
        """Replace a draft's document if `revision` (the ETag the editor saw) is still current; audited as
        `action` (an edit, or `pinned_accepted` when a publisher accepts pinned cases' new outcomes)."""
        jur = self.check_draft(jid, number, document)
        return self._write_draft(jid, number, revision, author, jur,
                                 lambda session: stored_document(session, document_of(jur)), action, **detail)

    def _write_draft(self, jid: str, number: int, revision: int, author: str, jur: Jurisdiction,
                     stored: Callable[[Session], dict[str, Any]], action: str = "draft_updated",
                     **detail) -> PolicyVersion:
        """Save the checked build `jur` as the draft's next revision (`stored`: its changed columns, their chunks
        stored); the chunks only the old revision listed are deleted."""
        with UnitOfWork(self.engine) as uow:
            session = uow.session
            before = session.exec(select(PolicyVersion.unit_chunks).where(
                PolicyVersion.jurisdiction == jid, PolicyVersion.number == number,
                PolicyVersion.status == "draft", PolicyVersion.revision == revision)).first()
            columns = stored(session)
            result = session.exec(
                update(PolicyVersion)
                .where(col(PolicyVersion.jurisdiction) == jid, col(PolicyVersion.number) == number,
                       col(PolicyVersion.status) == "draft", col(PolicyVersion.revision) == revision)
                .values(content_hash=jur.content_hash, revision=revision + 1, **columns))
            if result.rowcount != 1:
                current = session.exec(versions_where(
                    PolicyVersion.jurisdiction == jid, PolicyVersion.number == number)).first()
                if current is None:
                    raise NotFound(f"辖区 {jid} 没有版本 v{number}", field="number")
                if current.status != "draft":
                    raise Conflict(f"v{number} 已发布, 不可修改 — published versions are immutable", field="number")
                raise PreconditionFailed(
                    f"草稿 v{number} 已被他人修改 (当前修订 {current.revision}, 你基于 {revision}); 请重新加载后再改",
                    field="If-Match", current_revision=current.revision)
            unitchunks.collect(session, set(before or ()) - set(jur.unit_chunks))
            audit(session, author, action, jid, number, revision=revision + 1, content_hash=jur.content_hash,
                  **detail)
        self._built.put(jur.content_hash, jur)  # checked once: publishing this revision reuses the build
        return self.get_version(jid, number)

    def last_editor(self, jid: str, number: int) -> str:
        """Who last changed the draft's rules: the latest edit's author, else whoever created the draft."""
        with Session(self.reader) as session:
            actor = session.exec(select(AuditEntry.actor).where(
                AuditEntry.jurisdiction == jid, AuditEntry.version_number == number,
                col(AuditEntry.action).in_(EDIT_ACTIONS)).order_by(col(AuditEntry.id).desc())).first()
        return actor or self.get_version(jid, number).author

    def pinned_results(self, version: PolicyVersion) -> list[PinnedResult]:
        """The version's pinned cases run against the version itself (kept per content hash)."""
        if version.content_hash not in self._pinned:
            try:  # compiled here (a publish has just verified it): not compiled again
                results = run_cases(self.registry.router(version.jurisdiction, version.content_hash),
                                    list(self.build(version).policy.tests))
            except KeyError:
                results = run_suite(self.build(version))
            self._pinned[version.content_hash] = results
        return self._pinned[version.content_hash]

    def accept_pinned(self, jid: str, number: int, names: list[str], revision: int, actor: str) -> PolicyVersion:
        """The named pinned cases expect what the draft now decides (a revision-checked draft save, audited per
        case as `pinned_accepted` with the old and new expectation)."""
        version = self.get_version(jid, number)
        changed = {r.case.name: (r.case.expect, r.actual) for r in self.pinned_results(version)
                   if not r.passed and r.actual is not None}
        unknown = [n for n in names if n not in changed]
        if unknown:
            raise Invalid(f"没有结果改变的固定测试用例 “{'、'.join(unknown)}” — no such changed pinned case",
                          field="accept")
        document = self.document(version)
        document["tests"] = [
            {**case, "expect": changed[case["name"]][1].model_dump(mode="json")} if case["name"] in names else case
            for case in document.get("tests", [])]
        accepted = [{"name": n, "from": changed[n][0].model_dump(mode="json"),
                     "to": changed[n][1].model_dump(mode="json")} for n in names]
        return self.update_draft(jid, number, document, revision, actor, action="pinned_accepted", accepted=accepted)

    def change_draft(self, jid: str, number: int, revision: int, author: str,
                     change: Callable[[DraftEdit], str]) -> PolicyVersion:
        """One item of a draft changed: `change(edit)` edits the draft's head or puts one unit (see DraftEdit) and
        returns the item's path (e.g. units[12]); an issue of that item is reported with the item's field (e.g.
        parent). Only what the change touches is checked, hashed and stored (policy/changes.py)."""
        edit, jur, fresh = self._changed(jid, number, change)

        def columns(session: Session) -> dict[str, Any]:
            unitchunks.store(session, fresh)
            if edit.changed is not None:
                return {"unit_chunks": jur.unit_chunks}
            return {"head": head_of(jur), "unit_chunks": jur.unit_chunks}

        return self._write_draft(jid, number, revision, author, jur, columns)

    def check_change(self, jid: str, number: int, change: Callable[[DraftEdit], str]) -> None:
        """The draft with one item changed, checked as `change_draft` checks it (Invalid if refused); nothing is
        saved, so nothing is hashed (check-while-typing)."""
        self._changed(jid, number, change, hashed=False)

    def _changed(self, jid: str, number: int, change: Callable[[DraftEdit], str], hashed: bool = True
                 ) -> tuple[DraftEdit, Jurisdiction, dict[str, list[dict]]]:
        version = self.get_version(jid, number)
        if version.status != "draft":
            raise Conflict(f"v{number} 已发布, 不可修改 — published versions are immutable", field="number")
        edit = DraftEdit(self.head(version), self.build(version))
        prefix = change(edit)
        label = f"{jid} 草稿 v{number}"
        try:
            if edit.changed is not None:
                return edit, *with_unit(edit.built, edit.changed, label, hashed)
            return edit, with_head(edit.built, edit, label), {}
        except PolicyError as err:
            issues = [{"path": i.path, "message": i.message} for i in err.issues]
            own = [(i["path"][len(prefix):].lstrip(".") or "body", i) for i in issues
                   if i["path"] == prefix or i["path"].startswith(prefix + ".")]
            field, issue = own[0] if own else ("document", issues[0] if issues else None)
            raise Invalid(f"草稿未通过校验: {issue['path']}: {issue['message']}" if issue else "草稿未通过校验",
                          field=field, issues=issues) from None

    def publish(self, jid: str, number: int, publisher: str, note: str, accept: list[str] | None = None,
                revision: int | None = None) -> PolicyVersion:
        """Refused unless the draft verifies, its pinned cases keep their outcomes or are named in `accept` (their
        new outcomes accepted first, see `accept_pinned`, at draft `revision`) and, where the jurisdiction asks
        for four eyes, the publisher is not the draft's last editor."""
        if not note.strip():
            raise Invalid("发布须填写变更说明 — a change note is required", field="note")
        version = self.get_version(jid, number)
        if version.status != "draft":
            raise Conflict(f"v{number} 不是草稿, 无需发布; 回滚请用 rollback", field="number")
        if self.build(version).head.publishing.four_eyes and self.last_editor(jid, number) == publisher:
            raise Forbidden(f"四眼原则: 你是草稿 v{number} 的最后编辑人, 须由另一位发布人审核发布 — four-eyes rule: "
                            "the draft's last editor cannot publish it", field="publisher")
        if accept:
            if revision is None:
                raise Invalid("接受测试用例新结果须给出草稿修订号 revision", field="revision")
            version = self.accept_pinned(jid, number, accept, revision, publisher)
        jur = self.build(version)
        try:
            self.registry.load(jur, activate=False)
        except VerificationFailed as err:
            raise Invalid("发布被拒绝: 覆盖校验未通过", field="document", problems=err.report.problems()) from None
        except PolicyError as err:
            raise Invalid("发布被拒绝: 规则校验未通过", field="document",
                          issues=[{"path": i.path, "message": i.message} for i in err.issues]) from None
        moved = [r for r in self.pinned_results(version) if not r.passed]
        if moved:
            raise Invalid(f"发布被拒绝: {len(moved)} 个固定测试用例的结果将改变, 请逐条确认接受新结果 — "
                          f"{len(moved)} pinned cases would change", field="tests",
                          changed=[{"name": r.case.name, "fields": r.changed, "error": r.error} for r in moved])
        with UnitOfWork(self.engine) as uow:
            session = uow.session
            changed = session.exec(update(PolicyVersion).where(
                col(PolicyVersion.id) == version.id, col(PolicyVersion.status) == "draft").values(
                status="published", published_at=utcnow(), published_by=publisher, note=note)).rowcount
            if changed != 1:
                raise Conflict(f"v{number} 已被他人发布", field="number")
            self._activate(session, jid, number)
            audit(session, publisher, "published", jid, number, note=note, content_hash=version.content_hash)
        self._switch(jid)
        return self.get_version(jid, number)

    def rollback(self, jid: str, number: int, actor: str, note: str) -> PolicyVersion:
        """Rollback = make an earlier published version active again; the reason is kept in the audit log."""
        if not note.strip():
            raise Invalid("回滚须填写原因 — a reason is required", field="note")
        version = self.get_version(jid, number)
        if version.status != "published":
            raise Conflict(f"只能回滚到已发布的版本, v{number} 是草稿", field="number")
        with UnitOfWork(self.engine) as uow:
            previous = uow.session.exec(select(PolicyVersion.number).where(PolicyVersion.jurisdiction == jid,
                                                                          PolicyVersion.active)).first()
            self._activate(uow.session, jid, number)
            audit(uow.session, actor, "rolled_back", jid, number, note=note, from_version=previous)
        self._switch(jid)
        return self.get_version(jid, number)

    @staticmethod
    def _activate(session: Session, jid: str, number: int) -> None:
        session.exec(update(PolicyVersion).where(col(PolicyVersion.jurisdiction) == jid).values(active=False))
        session.exec(update(PolicyVersion).where(col(PolicyVersion.jurisdiction) == jid,
                                                 col(PolicyVersion.number) == number).values(active=True))

    def audit_log(self, jid: str | None = None, limit: int = 100) -> list[AuditEntry]:
        with Session(self.reader) as session:
            query = select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(limit)
            if jid:
                query = query.where(AuditEntry.jurisdiction == jid)
            return list(session.exec(query).all())


def open_policy_store(database_url: str | None = None) -> PolicyStore:
    """The database migrated and the bundled jurisdictions imported (see `bootstrap`): where the server, the CLI,
    the benchmarks and the tests all start. Raises PolicyError when the rule files are invalid."""
    engine = make_engine(database_url)
    migrate(engine)
    loader = Loader()
    policies = PolicyStore(engine, loader.catalog)
    policies.bootstrap(loader)
    return policies
