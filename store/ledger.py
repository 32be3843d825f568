"""The supervision ledger: supervised objects (监管对象台账, 一企一档) and patrol records (巡查记录).

Objects carry the policy's class (A/B/C where the policy defines classes) with who classed them, when and why; every
change is kept (ObjectChange). Patrol records say who patrolled which grid when, which objects were checked, what
was found and who signed (谁巡查谁签字谁负责); a finding with a problem type opens a case in the same transaction,
routed as any case and linked to the record and the object. Bad input is refused whole: nothing is saved.
"""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, column, func, insert, table, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from engine.decision import Decision
from engine.router import Case, PolicyRouter, RoutingError
from policy.catalog import pinyin_keys
from policy.models import ACTIVITY_LABELS, OBJECT_KINDS
from store.cases import CaseService
from store.db import UnitOfWork, reader
from store import tallies
from store.errors import Conflict, Invalid, NotFound
from store.tables import (CaseLink, CaseRecord, ObjectChange, PatrolObject, PatrolRecord, SupervisedObject, row_id,
                          table_of, utcnow)
from store.versions import PolicyStore

CST = timezone(timedelta(hours=8))  # a patrol's day is its calendar day in China
CLOCK_SKEW = timedelta(minutes=5)  # a phone's clock slightly ahead is not "in the future"
# The columns of an object import (CSV or .xlsx): Chinese headers, or the field names.
IMPORT_COLUMNS = {"名称": "name", "网格": "unit", "类型": "kind", "类别": "source_class", "分类理由": "class_reason",
                  "许可证号": "identifier", "地址": "address", "经度": "longitude", "纬度": "latitude",
                  "建档日期": "registered_on"}
OBJECT_FIELDS = ("name", "unit", "kind", "source_class", "class_reason", "identifier", "address", "longitude",
                 "latitude", "registered_on")
MAX_IMPORT_ROWS = 50_000
# 盘锦 附件1 一: classes go "根据企业诚信守法情况、日常监管状况和对周围环境影响程度"
CLASS_REASON = "定类须说明理由 (诚信守法情况、日常监管状况、对周围环境影响程度)"
PAGE = 50
OBJECT_SEARCH = table("object_search", column("rowid"))  # SQLite's trigram index of search keys (migration 0013)
# patrol intake's statements, built once (building them cost as much as running them for one record)
_PATROLS = table_of(PatrolRecord)
BY_KEYS = select(_PATROLS.c.idempotency_key, _PATROLS.c.id).where(
    _PATROLS.c.jurisdiction == bindparam("jid"), _PATROLS.c.idempotency_key.in_(bindparam("keys", expanding=True)))
INSERT_PATROLS = insert(_PATROLS).returning(_PATROLS.c.id, sort_by_parameter_order=True)


@dataclass
class RowError:
    row: int | None  # the file's line (header = 1), or None for a single object
    field: str
    message: str

    def as_dict(self) -> dict:
        return {"row": self.row, "field": self.field, "message": self.message}

    def __str__(self) -> str:
        return (f"第 {self.row} 行 " if self.row else "") + f"{self.field}: {self.message}"


def _errors(err: Invalid) -> list[RowError]:
    """The row errors an Invalid lists, or itself as one."""
    listed = err.extra.get("errors") or [{"row": None, "field": err.field or "", "message": err.message}]
    return [RowError(e["row"], e["field"], e["message"]) for e in listed]


def _invalid(errors: list[RowError]) -> Invalid:
    first = errors[0]
    shown = "; ".join(str(e) for e in errors[:20]) + (f"; 另有 {len(errors) - 20} 处错误" if len(errors) > 20 else "")
    return Invalid(shown, field=first.field, errors=[e.as_dict() for e in errors])


def search_key(name: str, identifier: str) -> str:
    full, initials = pinyin_keys(name)
    return " ".join([name.lower(), full, initials, identifier.lower()])[:1000]


def as_cst(moment: datetime) -> datetime:
    """A time without a zone is China time (what a grid officer's form means)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=CST)


@dataclass
class Finding:
    description: str
    object_id: int | None = None
    problem_type: str | None = None  # set: open a case for it
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class PatrolInput:
    unit: str
    patrolled_at: datetime
    patrollers: list[str]
    signed_by: str
    activity: str = "patrol"
    objects: list[int] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    photos: list[str] = field(default_factory=list)


@dataclass
class ImportPreview:
    rows: int
    added: list[dict]
    updated: list[dict]  # {"id", "name", "changes": {field: [old, new]}}
    unchanged: int
    errors: list[RowError]


class LedgerService:
    def __init__(self, policies: PolicyStore, cases: CaseService | None = None):
        self.policies = policies
        self.engine = policies.engine
        self.cases = cases or CaseService(policies)

    # --- checking one object's fields
    def _classes(self, router: PolicyRouter) -> dict[str, str]:
        return {c.id: c.name for c in router.jur.policy.source_classes}

    def check_object(self, router: PolicyRouter, data: dict[str, Any], row: int | None = None,
                     partial: bool = False) -> tuple[dict[str, Any], list[RowError]]:
        """Clean values for the given fields (all required ones unless `partial`) and every error, in Chinese."""
        errors: list[RowError] = []
        out: dict[str, Any] = {}

        def text(name: str, label: str, limit: int, required: bool) -> None:
            if name not in data and partial:
                return
            value = "" if data.get(name) is None else str(data.get(name)).strip()
            if required and not value:
                errors.append(RowError(row, name, f"{label}不能为空"))
            elif len(value) > limit:
                errors.append(RowError(row, name, f"{label}过长 (最多 {limit} 字)"))
            else:
                out[name] = value

        text("name", "名称", 200, True)
        text("identifier", "许可证号/统一社会信用代码", 64, True)
        text("address", "地址", 300, False)
        text("class_reason", "分类理由", 1000, False)
        if "unit" in data or not partial:
            unit = str(data.get("unit") or "").strip()
            try:
                out["unit"] = router.resolve_unit(unit).id if unit else None
            except RoutingError as err:
                errors.append(RowError(row, "unit", str(err)))
            if not unit:
                errors.append(RowError(row, "unit", "网格不能为空 (网格 id 或名称)"))
        if "kind" in data or not partial:
            kind = str(data.get("kind") or "").strip()
            by_label = {label: key for key, label in OBJECT_KINDS.items()}
            if kind in OBJECT_KINDS or kind in by_label:
                out["kind"] = by_label.get(kind, kind)
            else:
                errors.append(RowError(row, "kind", f"未知的对象类型 '{kind}'; 可用: "
                                                    + "、".join(f"{v} ({k})" for k, v in OBJECT_KINDS.items())))
        if "source_class" in data or not partial:
            value = str(data.get("source_class") or "").strip().upper() or None
            classes = self._classes(router)
            if value is not None and not classes:
                errors.append(RowError(row, "source_class",
                                       f"辖区 {router.jur.id} 的规则未定义污染源类别, 不能填写类别 '{value}'"))
            elif value is not None and value not in classes:
                errors.append(RowError(row, "source_class", f"类别 '{value}' 未在规则中定义; 可用: "
                                                            + "、".join(f"{k} ({v})" for k, v in classes.items())))
            else:
                out["source_class"] = value
                if value and not str(data.get("class_reason") or "").strip():
                    errors.append(RowError(row, "class_reason", CLASS_REASON))
        for name, label, low, high in (("longitude", "经度", 73.0, 136.0), ("latitude", "纬度", 3.0, 54.0)):
            if name not in data and partial:
                continue
            raw = data.get(name)
            if raw is None or str(raw).strip() == "":
                out[name] = None
                continue
            try:
                number = float(raw)
            except (TypeError, ValueError):
                errors.append(RowError(row, name, f"{label} '{raw}' 不是数字"))
                continue
            if not low <= number <= high:
                errors.append(RowError(row, name, f"{label} {number} 不在中国境内 ({low}–{high})"))
            out[name] = number
        if (out.get("longitude") is None) != (out.get("latitude") is None) and not partial:
            errors.append(RowError(row, "latitude", "经度和纬度须同时填写或同时留空"))
        if "registered_on" in data or not partial:
            raw = data.get("registered_on")
            if raw is None or str(raw).strip() == "":
                out["registered_on"] = datetime.now(CST).date()
            else:
                try:
                    out["registered_on"] = raw if isinstance(raw, date) and not isinstance(raw, datetime) else \
                        (raw.date() if isinstance(raw, datetime) else date.fromisoformat(str(raw).strip()))
                except ValueError:
                    errors.append(RowError(row, "registered_on", f"建档日期 '{raw}' 格式不正确, 应为 YYYY-MM-DD"))
                else:
                    if out["registered_on"] > datetime.now(CST).date():
                        errors.append(RowError(row, "registered_on", f"建档日期 {out['registered_on']} 晚于今天"))
        return out, errors

    # --- objects
    def create_object(self, jid: str, data: dict[str, Any], actor: str) -> SupervisedObject:
        router = self.policies.router(jid)
        clean, errors = self.check_object(router, data)
        if errors:
            raise _invalid(errors)
        with UnitOfWork(self.engine) as uow:
            self._unique_identifier(uow.session, jid, clean["identifier"])
            obj = self._add(uow.session, jid, clean, actor, "created")
        return obj

    def _unique_identifier(self, session: Session, jid: str, identifier: str, own: int | None = None) -> None:
        other = session.exec(select(SupervisedObject.id, SupervisedObject.name).where(
            SupervisedObject.jurisdiction == jid, SupervisedObject.identifier == identifier)).first()
        if other is not None and other[0] != own:
            raise Conflict(f"许可证号 {identifier} 已登记为监管对象 #{other[0]} {other[1]}", field="identifier",
                           existing=other[0])

    def _add(self, session: Session, jid: str, clean: dict, actor: str, action: str) -> SupervisedObject:
        now = utcnow()
        obj = SupervisedObject(jurisdiction=jid, search_key=search_key(clean["name"], clean["identifier"]),
                               created_at=now, updated_at=now, **clean)
        if obj.source_class:
            obj.classed_by, obj.classed_at = actor, now
        session.add(obj)
        session.flush()
        session.add(ObjectChange(object_id=row_id(obj), at=now, actor=actor, action=action,
                                 changes={k: [None, _json(v)] for k, v in clean.items() if v not in (None, "")},
                                 reason=clean.get("class_reason") or ""))
        return obj

    def update_object(self, jid: str, object_id: int, data: dict[str, Any], actor: str,
                      reason: str = "") -> SupervisedObject:
        router = self.policies.router(jid)
        clean, errors = self.check_object(router, {k: v for k, v in data.items() if k in OBJECT_FIELDS}, partial=True)
        errors = [e for e in errors if e.field != "class_reason"]  # asked for below, only when the class changes
        with UnitOfWork(self.engine) as uow:
            session = uow.session
            obj = self._object(session, jid, object_id)
            if clean.get("source_class", obj.source_class) != obj.source_class and clean.get("source_class") \
                    and not (clean.get("class_reason") or reason.strip()):
                errors.append(RowError(None, "class_reason", CLASS_REASON))
            if errors:
                raise _invalid(errors)
            if "identifier" in clean:
                self._unique_identifier(session, jid, clean["identifier"], obj.id)
            changes = self._apply(obj, clean, actor, reason)
            if changes:
                session.add(obj)
                session.add(ObjectChange(object_id=row_id(obj), actor=actor, action="updated", changes=changes,
                                         reason=reason or clean.get("class_reason", "")))
        return obj

    @staticmethod
    def _apply(obj: SupervisedObject, clean: dict, actor: str, reason: str = "") -> dict[str, list]:
        """Set the changed fields; returns {field: [old, new]} (a class change records who classed it, when, why)."""
        changes = {k: [_json(getattr(obj, k)), _json(v)] for k, v in clean.items() if getattr(obj, k) != v}
        if not changes:
            return {}
        now = utcnow()
        for key in changes:
            setattr(obj, key, clean[key])
        if "source_class" in changes:
            obj.classed_by, obj.classed_at = actor, now
            obj.class_reason = clean.get("class_reason") or reason
        obj.search_key = search_key(obj.name, obj.identifier)
        obj.updated_at = now
        return changes

    def _object(self, session: Session, jid: str, object_id: int) -> SupervisedObject:
        obj = session.get(SupervisedObject, object_id)
        if obj is None or obj.jurisdiction != jid:
            raise NotFound(f"监管对象 #{object_id} 不在辖区 {jid} 的台账中", field="object_id")
        return obj

    def get_object(self, jid: str, object_id: int) -> SupervisedObject:
        with Session(reader(self.engine)) as session:
            return self._object(session, jid, object_id)

    def history(self, jid: str, object_id: int) -> list[ObjectChange]:
        with Session(reader(self.engine)) as session:
            self._object(session, jid, object_id)
            return list(session.exec(select(ObjectChange).where(ObjectChange.object_id == object_id)
                                     .order_by(col(ObjectChange.id))).all())

    @staticmethod
    def unit(router: PolicyRouter, text: str):
        try:
            return router.resolve_unit(text)
        except RoutingError as err:
            raise Invalid(str(err), field="unit", suggestions=err.suggestions) from None

    def subtree(self, router: PolicyRouter, unit: str) -> list[str] | None:
        """The unit and every unit below it (None for the top grid: everything)."""
        root = self.unit(router, unit)
        return None if root.parent is None else _below(router, root.id)

    def search_objects(self, jid: str, q: str | None = None, unit: str | None = None, kind: str | None = None,
                       source_class: str | None = None, limit: int = PAGE,
                       offset: int = 0) -> tuple[int, list[SupervisedObject]]:
        """By name, pinyin, initials or licence number; in a grid (and the grids below it); by kind and class
        (`-` = not classed)."""
        router = self.policies.router(jid)
        query = select(SupervisedObject).where(SupervisedObject.jurisdiction == jid)
        if q and q.strip():
            query = query.where(*self._containing(q.strip().lower().split()))
        if unit:
            units = self.subtree(router, unit)
            if units is not None:
                query = query.where(col(SupervisedObject.unit).in_(units))
        if kind:
            query = query.where(SupervisedObject.kind == kind)
        if source_class == "-":
            query = query.where(col(SupervisedObject.source_class).is_(None))
        elif source_class:
            query = query.where(SupervisedObject.source_class == source_class)
        with Session(reader(self.engine)) as session:
            total = session.exec(select(func.count()).select_from(query.subquery())).one()
            rows = session.exec(query.order_by(SupervisedObject.unit, SupervisedObject.name)
                                .offset(offset).limit(limit)).all()
            return total, list(rows)

    def _containing(self, words: list[str]) -> list:
        """Conditions: the search key contains each word. On SQLite the words of three or more characters are
        looked up in the trigram index object_search (PostgreSQL's pg_trgm index serves LIKE itself)."""
        key = col(SupervisedObject.search_key)
        if self.engine.dialect.name != "sqlite":
            return [key.contains(w, autoescape=True) for w in words]
        indexed = [w for w in words if len(w) >= 3]
        phrases = " ".join('"' + w.replace('"', '""') + '"' for w in indexed)  # FTS5 phrases, all required
        found = select(OBJECT_SEARCH.c.rowid).where(text("object_search MATCH :phrases").bindparams(phrases=phrases))
        return ([col(SupervisedObject.id).in_(found)] if indexed else []) + \
            [key.contains(w, autoescape=True) for w in words if len(w) < 3]

    def object_counts(self, jid: str) -> dict[str, dict[str, int]]:
        """Objects per kind and per class, for the ledger page's filters."""
        with Session(reader(self.engine)) as session:
            kinds = dict(session.exec(select(SupervisedObject.kind, func.count()).where(
                SupervisedObject.jurisdiction == jid).group_by(SupervisedObject.kind)).all())
            classes = dict(session.exec(select(SupervisedObject.source_class, func.count()).where(
                SupervisedObject.jurisdiction == jid).group_by(SupervisedObject.source_class)).all())
        return {"kinds": kinds, "classes": {k or "-": v for k, v in classes.items()}}

    # --- import (CSV or .xlsx): a preview first; nothing is saved while any row has an error
    def preview_import(self, jid: str, rows: list[dict[str, Any]]) -> ImportPreview:
        router = self.policies.router(jid)
        errors: list[RowError] = []
        if not rows:
            errors.append(RowError(None, "file", "文件中没有数据行"))
        if len(rows) > MAX_IMPORT_ROWS:
            errors.append(RowError(None, "file", f"一次最多导入 {MAX_IMPORT_ROWS} 行, 文件有 {len(rows)} 行"))
            rows = []
        cleaned: list[tuple[int, dict]] = []
        seen: dict[str, int] = {}
        for i, row in enumerate(rows, start=2):
            clean, row_errors = self.check_object(router, row, i)
            errors.extend(row_errors)
            ident = clean.get("identifier")
            if ident:
                if ident in seen:
                    errors.append(RowError(i, "identifier", f"许可证号 {ident} 与第 {seen[ident]} 行重复"))
                seen[ident] = i
            if not row_errors:
                cleaned.append((i, clean))
        with Session(reader(self.engine)) as session:
            existing = {o.identifier: o for o in session.exec(select(SupervisedObject).where(
                SupervisedObject.jurisdiction == jid)).all()}
            added, updated, unchanged = [], [], 0
            for i, clean in cleaned:
                old = existing.get(clean["identifier"])
                if old is None:
                    added.append({"row": i, **{k: _json(v) for k, v in clean.items()}})
                    continue
                changes = {k: [_json(getattr(old, k)), _json(v)] for k, v in clean.items()
                           if k != "registered_on" and getattr(old, k) != v and not (k == "class_reason" and not v)}
                if changes:
                    updated.append({"row": i, "id": old.id, "name": old.name, "changes": changes})
                else:
                    unchanged += 1
        return ImportPreview(len(rows), added, updated, unchanged, errors)

    def apply_import(self, jid: str, rows: list[dict[str, Any]], actor: str) -> ImportPreview:
        """Adds new objects and updates the ones whose licence number is known, in one transaction."""
        preview = self.preview_import(jid, rows)
        if preview.errors:
            raise _invalid(preview.errors)
        router = self.policies.router(jid)
        with UnitOfWork(self.engine) as uow:
            session = uow.session
            existing = {o.identifier: o for o in session.exec(select(SupervisedObject).where(
                SupervisedObject.jurisdiction == jid)).all()}
            for i, row in enumerate(rows, start=2):
                clean, _ = self.check_object(router, row, i)
                old = existing.get(clean["identifier"])
                if old is None:
                    self._add(session, jid, clean, actor, "imported")
                    continue
                clean.pop("registered_on")
                if not clean.get("class_reason"):
                    clean.pop("class_reason")
                changes = self._apply(old, clean, actor)
                if changes:
                    session.add(old)
                    session.add(ObjectChange(object_id=row_id(old), actor=actor, action="imported", changes=changes,
                                             reason=clean.get("class_reason", "")))
        return preview

    # --- patrol records
    def record_patrol(self, jid: str, p: PatrolInput, actor: str, idempotency_key: str | None = None,
                      now: datetime | None = None) -> tuple[PatrolRecord, bool]:
        """Store a patrol record (and open a case per finding with a problem type) in one transaction.
        Returns (record, created); the same Idempotency-Key returns the first record."""
        try:
            return self.record_patrols(jid, [(p, idempotency_key)], actor, now)[0]
        except Invalid as err:  # one record: its errors without the batch's `patrols[0].` prefix
            raise _invalid([RowError(None, e.field.removeprefix("patrols[0]."), e.message)
                            for e in _errors(err)]) from None
        except Conflict as err:
            raise Conflict(err.message, field=(err.field or "").removeprefix("patrols[0].")) from None

    def record_patrols(self, jid: str, items: list[tuple[PatrolInput, str | None]], actor: str,
                       now: datetime | None = None) -> list[tuple[PatrolRecord, bool]]:
        """Store patrol records (each with its own optional Idempotency-Key) in one transaction: all or none.
        Errors name the item (`patrols[i].field`); a record whose key was seen returns the first one, not created.
        Checked before the write; written in a transaction shared with concurrent intakes (GroupCommit)."""
        now = now or utcnow()
        router = self.policies.router(jid)
        keys = [k for _, k in items if k]
        if len(set(keys)) < len(keys):
            raise Invalid("同一批次中 Idempotency-Key 重复", field="patrols")
        objects = self._checked_objects(jid, [p for p, _ in items])
        errors: dict[int, list[RowError]] = {}
        checked: list[tuple[int, PatrolInput, dict[str, Any]]] = []
        for i, (p, key) in enumerate(items):
            try:
                checked.append((i, p, self._check_patrol(objects, router, jid, p, actor, key, now)))
            except Invalid as err:
                errors[i] = [RowError(None, f"patrols[{i}].{e.field}", e.message) for e in _errors(err)]
        if errors:  # an item whose key was stored is a replay: the first record, not checked again
            seen = self._patrols_by_keys(jid, [k for i, (_, k) in enumerate(items) if k and i in errors])
            left = [e for i, errs in errors.items() if items[i][1] not in seen for e in errs]
            if left:
                raise _invalid(left)
        return self.cases.patrols.run(lambda session: self._write_patrols(
            session, router, jid, [(i, p, key) for i, (p, key) in enumerate(items)], checked, objects, actor, now))

    def _checked_objects(self, jid: str, patrols: list[PatrolInput]) -> dict[int, SupervisedObject]:
        """The objects the patrols name (checked, or found at), in one read."""
        wanted = {oid for p in patrols for oid in [*p.objects, *(f.object_id for f in p.findings)] if oid}
        if not wanted:
            return {}
        with Session(reader(self.engine)) as session:
            return {row_id(o): o for o in session.exec(select(SupervisedObject).where(
                SupervisedObject.jurisdiction == jid, col(SupervisedObject.id).in_(wanted)))}

    def _write_patrols(self, session: Session, router: PolicyRouter, jid: str,
                       items: list[tuple[int, PatrolInput, str | None]], checked: list[tuple[int, PatrolInput, dict]],
                       objects: dict[int, SupervisedObject], actor: str,
                       now: datetime) -> list[tuple[PatrolRecord, bool]]:
        """Inside the write transaction: replays by key (read here, so a concurrent retry is seen), then the new
        records with their checked objects, finding cases and tallies (Core inserts: a record per request)."""
        connection = session.connection()  # Core on the connection: no ORM per row
        keys = [key for _, _, key in items if key]
        stored = _by_keys(connection, jid, keys)
        fresh = [(i, p, values) for i, p, values in checked if values["idempotency_key"] not in stored]
        twins = _same_patrols([values for _, _, values in fresh])
        if twins:
            i, p, _ = fresh[twins[0]]
            raise Conflict(self._duplicate(p).message + " (同一批次)", field=f"patrols[{i}].patrolled_at")
        links: list[dict[str, Any]] = []
        for i, p, values in fresh:
            links += self._open_finding_cases(session, jid, values, p, objects, actor, now, f"patrols[{i}].")
        try:
            rows = [values for _, _, values in fresh]
            ids = connection.execute(INSERT_PATROLS, rows).scalars().all() if rows else []
        except IntegrityError:
            raise self._conflict(jid, fresh) from None
        records = [PatrolRecord(id=pid, **values) for pid, (_, _, values) in zip(ids, fresh)]
        checks = [{"patrol_id": row_id(r), "object_id": oid, "day": r.day}
                  for r, (_, p, _) in zip(records, fresh) for oid in dict.fromkeys(p.objects)]
        if checks:
            connection.execute(insert(table_of(PatrolObject)), checks)
        by_case = {link["case_id"]: record.id for record, (_, _, values) in zip(records, fresh)
                   for link in values["findings"] if link.get("case_id")}
        if links:
            connection.execute(insert(table_of(CaseLink)), [{**link, "patrol_id": by_case[link["case_id"]]}
                                                           for link in links])
        tallies.add(connection, tallies.of_records((r, dict.fromkeys(p.objects))
                                                   for r, (_, p, _) in zip(records, fresh)))
        replayed = {row_id(r): r for r in session.exec(select(PatrolRecord).where(
            col(PatrolRecord.id).in_(list(stored.values()))))} if stored else {}
        made = iter(records)
        return [(replayed[stored[key]], False) if key in stored else (next(made), True) for _, _, key in items]

    def _patrols_by_keys(self, jid: str, keys: list[str]) -> dict[str, int]:
        with Session(reader(self.engine)) as session:
            return _by_keys(session, jid, keys)

    def _conflict(self, jid: str, fresh: list[tuple[int, PatrolInput, dict[str, Any]]]) -> Conflict:
        """After a unique violation: the item already stored (a concurrent retry's key, or the same patrol)."""
        by_key = self._patrols_by_keys(jid, [r["idempotency_key"] for _, _, r in fresh if r["idempotency_key"]])
        with Session(reader(self.engine)) as session:
            for i, p, r in fresh:
                if r["idempotency_key"] in by_key:
                    return Conflict(f"Idempotency-Key '{r['idempotency_key']}' 已由并发请求使用, 请重试以取回记录",
                                    field=f"patrols[{i}]")
                t = PatrolRecord
                if session.exec(select(t.id).where(t.jurisdiction == jid, t.unit == r["unit"],
                                                   t.activity == r["activity"], t.patrolled_at == r["patrolled_at"],
                                                   t.signed_by == r["signed_by"])).first():
                    return Conflict(self._duplicate(p).message, field=f"patrols[{i}].patrolled_at")
        return Conflict("巡查记录与已有记录冲突", field="patrols")

    def _check_patrol(self, objects: dict[int, SupervisedObject], router: PolicyRouter, jid: str, p: PatrolInput,
                      actor: str, key: str | None, now: datetime) -> dict[str, Any]:
        """The patrol_record row of a patrol, or Invalid with every error."""
        errors: list[RowError] = []
        unit = None
        try:
            unit = router.resolve_unit(p.unit)
        except RoutingError as err:
            errors.append(RowError(None, "unit", str(err)))
        if p.activity not in ACTIVITY_LABELS:
            errors.append(RowError(None, "activity", f"未知的巡查活动 '{p.activity}'; 可用: "
                                                     + "、".join(f"{v} ({k})" for k, v in ACTIVITY_LABELS.items())))
        at = as_cst(p.patrolled_at)
        if at > now + CLOCK_SKEW:
            errors.append(RowError(None, "patrolled_at",
                                   f"巡查时间 {at.astimezone(CST):%Y-%m-%d %H:%M} 晚于当前时间, 不能登记未来的巡查"))
        patrollers = [x.strip() for x in p.patrollers if x and x.strip()]
        if not patrollers:
            errors.append(RowError(None, "patrollers", "须填写巡查人"))
        if not p.signed_by.strip():
            errors.append(RowError(None, "signed_by", "须有签字人 (谁巡查谁签字谁负责)"))
        elif patrollers and p.signed_by.strip() not in patrollers:
            errors.append(RowError(None, "signed_by", f"签字人 '{p.signed_by}' 不是本次巡查人 "
                                                      f"({'、'.join(patrollers)}): 谁巡查谁签字谁负责"))
        for i, url in enumerate(p.photos):
            if not (url.startswith("https://") or url.startswith("http://")) or len(url) > 1000:
                errors.append(RowError(None, f"photos[{i}]", f"照片地址须为 http(s) 网址: '{url[:80]}'"))
        day = at.astimezone(CST).date()
        wanted = set(p.objects) | {f.object_id for f in p.findings if f.object_id}
        below = None if unit is None or not wanted else self.subtree(router, unit.id)
        for name, ids in (("objects", p.objects), ("findings.object_id", [f.object_id for f in p.findings])):
            for oid in ids:
                if oid is None:
                    continue
                obj = objects.get(oid)
                if obj is None or obj.jurisdiction != jid:
                    errors.append(RowError(None, name, f"监管对象 #{oid} 不在辖区 {jid} 的台账中"))
                elif below is not None and unit is not None and obj.unit not in below:
                    errors.append(RowError(None, name, f"监管对象 #{oid} {obj.name} 属于网格 {obj.unit}, "
                                                       f"不在巡查网格 {unit.id} 内"))
                elif obj.registered_on > day:
                    errors.append(RowError(None, name, f"巡查日期 {day} 早于监管对象 #{oid} {obj.name} "
                                                       f"的建档日期 {obj.registered_on}"))
        for i, f in enumerate(p.findings):
            if not f.description.strip():
                errors.append(RowError(None, f"findings[{i}].description", "发现问题须有描述"))
            if f.object_id and f.object_id not in p.objects:
                p.objects.append(f.object_id)  # the object a finding is about was checked
        if errors or unit is None:
            raise _invalid(errors)
        return {"jurisdiction": jid, "unit": unit.id, "activity": p.activity, "patrolled_at": at, "day": day,
                "patrollers": patrollers, "signed_by": p.signed_by.strip(), "photos": list(p.photos),
                "findings": [{"description": f.description.strip(), "object_id": f.object_id,
                              "problem_type": f.problem_type} for f in p.findings],
                "idempotency_key": key, "created_by": actor, "created_at": now}

    def _open_finding_cases(self, session: Session, jid: str, values: dict[str, Any], p: PatrolInput,
                            objects: dict[int, SupervisedObject], actor: str, now: datetime,
                            item: str = "") -> list[dict[str, Any]]:
        """A case per finding with a problem type (its id goes into the record's finding); the case links to add
        once the record has its id."""
        links = []
        for i, f in enumerate(p.findings):
            if not f.problem_type:
                continue
            obj = objects.get(f.object_id) if f.object_id else None
            try:
                case = case_at_object(Case(problem_type=f.problem_type, unit=obj.unit if obj else values["unit"],
                                           facts=f.facts), obj)
                case_record = self.cases.intake(session, jid, case, actor, now, description=f.description)
            except (Invalid, ValueError) as err:  # the unit of work rolls back
                message = getattr(err, "message", None) or str(err).split("\n")[-1]
                raise Invalid(f"发现问题 {i + 1}: {message}", field=f"{item}findings[{i}].problem_type") from None
            session.flush()
            values["findings"][i] = {**values["findings"][i], "case_id": row_id(case_record)}
            links.append({"case_id": row_id(case_record), "object_id": obj.id if obj else None})
        return links

    @staticmethod
    def _duplicate(p: PatrolInput) -> Conflict:
        return Conflict(f"重复提交: 网格 {p.unit} 在 {as_cst(p.patrolled_at).astimezone(CST):%Y-%m-%d %H:%M} 已有 "
                        f"{p.signed_by} 签字的{ACTIVITY_LABELS.get(p.activity, p.activity)}记录", field="patrolled_at")

    def get_patrol(self, jid: str, patrol_id: int) -> tuple[PatrolRecord, list[SupervisedObject]]:
        with Session(reader(self.engine)) as session:
            record = session.get(PatrolRecord, patrol_id)
            if record is None or record.jurisdiction != jid:
                raise NotFound(f"巡查记录 #{patrol_id} 不在辖区 {jid}", field="patrol_id")
            objects = session.exec(select(SupervisedObject).join(
                PatrolObject, col(PatrolObject.object_id) == SupervisedObject.id)
                .where(PatrolObject.patrol_id == patrol_id)
                .order_by(col(SupervisedObject.id))).all()
            return record, list(objects)

    def search_patrols(self, jid: str, unit: str | None = None, start: date | None = None, end: date | None = None,
                       object_id: int | None = None, limit: int = PAGE,
                       offset: int = 0) -> tuple[int, list[PatrolRecord]]:
        """Newest first; `unit` includes the grids below it; [start, end) days. The total comes from the tallies
        (an object's few records are counted directly)."""
        query = select(PatrolRecord).where(PatrolRecord.jurisdiction == jid)
        units = self.subtree(self.policies.router(jid), unit) if unit else None
        if units is not None:
            query = query.where(col(PatrolRecord.unit).in_(units))
        if start:
            query = query.where(PatrolRecord.day >= start)
        if end:
            query = query.where(PatrolRecord.day < end)
        if object_id:
            query = query.where(col(PatrolRecord.id).in_(
                select(PatrolObject.patrol_id).where(PatrolObject.object_id == object_id)))
        with Session(reader(self.engine)) as session:
            if object_id:
                total = session.exec(select(func.count()).select_from(query.subquery())).one()
            else:
                total = tallies.records(session, jid, start, end, units)
            rows = session.exec(query.order_by(col(PatrolRecord.patrolled_at).desc(), col(PatrolRecord.id).desc())
                                .offset(offset).limit(limit)).all()
            return total, list(rows)

    def patrols_with_objects(self, jid: str, unit: str | None, start: date, end: date
                             ) -> list[tuple[PatrolRecord, list[SupervisedObject]]]:
        """Every patrol record of the grid (and the grids below it) in [start, end), oldest first, with the
        objects it checked: the rows of a 巡查记录汇总表."""
        total, records = self.search_patrols(jid, unit, start, end, limit=MAX_IMPORT_ROWS)
        checked: dict[int, list[SupervisedObject]] = defaultdict(list)
        with Session(reader(self.engine)) as session:
            for i in range(0, len(records), 500):
                ids = [r.id for r in records[i:i + 500]]
                for patrol_id, obj in session.exec(select(PatrolObject.patrol_id, SupervisedObject).join(
                        SupervisedObject, col(SupervisedObject.id) == PatrolObject.object_id)
                        .where(col(PatrolObject.patrol_id).in_(ids)).order_by(col(SupervisedObject.id))):
                    checked[patrol_id].append(obj)
        return [(r, checked[row_id(r)]) for r in reversed(records)]

    # --- cases found at an object
    def open_case(self, jid: str, case: Case, object_id: int, actor: str, idempotency_key: str | None = None,
                  request_hash: str | None = None, description: str = "",
                  report: dict[str, Any] | None = None) -> tuple[CaseRecord, Decision]:
        """A case found at a supervised object: its grid and class (`enterprise_class`) come from the ledger. Returns
        it with its decision (CaseService.open)."""
        obj = self.get_object(jid, object_id)
        return self.cases.open(jid, case_at_object(case, obj), actor, idempotency_key, description=description,
                               request_hash=request_hash, report=report,
                               also=lambda session, record: session.add(
                                   CaseLink(case_id=row_id(record), object_id=obj.id)))

    def case_links(self, case_ids: list[int]) -> dict[int, CaseLink]:
        with Session(reader(self.engine)) as session:
            return {link.case_id: link
                    for link in session.exec(select(CaseLink).where(col(CaseLink.case_id).in_(case_ids)))}


def _by_keys(session: Session | Connection, jid: str, keys: list[str]) -> dict[str, int]:
    """The ids of the jurisdiction's patrol records stored under these Idempotency-Keys."""
    return dict(session.execute(BY_KEYS, {"jid": jid, "keys": keys}).all()) if keys else {}


def _same_patrols(records: list[dict[str, Any]]) -> list[int]:
    """Indexes of records repeating an earlier one of the list (the unique patrol: grid, activity, time, signer)."""
    first: dict[tuple, int] = {}
    return [i for i, r in enumerate(records)
            if first.setdefault((r["unit"], r["activity"], r["patrolled_at"], r["signed_by"]), i) != i]


@lru_cache(maxsize=8)
def _children(router: PolicyRouter) -> dict[str | None, list[str]]:
    """Each unit's children, per compiled version (a PolicyRouter is one version's)."""
    children: dict[str | None, list[str]] = defaultdict(list)
    for u in router.units.values():
        children[u.parent].append(u.id)
    return children


@lru_cache(maxsize=4096)
def _below(router: PolicyRouter, unit: str) -> list[str]:
    """A unit and its descendants."""
    children = _children(router)
    out, todo = [], [unit]
    while todo:
        out.append(todo.pop())
        todo.extend(children[out[-1]])
    return out


def case_at_object(case: Case, obj: SupervisedObject | None) -> Case:
    """The object's grid and class become the case's; a hand-typed value that disagrees is refused."""
    if obj is None:
        return case
    if case.unit and case.unit != obj.unit:
        raise Invalid(f"案件网格 {case.unit} 与监管对象 #{obj.id} {obj.name} 所在网格 {obj.unit} 不符", field="unit")
    cls = obj.source_class or "none"
    typed = case.facts.get("enterprise_class")
    if typed is not None and typed != cls:
        raise Invalid(f"enterprise_class '{typed}' 与监管对象 #{obj.id} 台账中的类别 '{cls}' 不符; "
                      "类别以台账为准, 无需填写",
                      field="facts.enterprise_class")
    return case.model_copy(update={"unit": obj.unit, "facts": {**case.facts, "enterprise_class": cls}})


def _json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, (date, datetime)) else value


def read_table(data: bytes, filename: str) -> list[dict[str, Any]]:
    """Rows of an uploaded CSV (UTF-8, with or without BOM; GB18030 as Excel saves it) or .xlsx, keyed by field
    name; Chinese headers (名称, 网格, …) or field names. An unknown header is an error."""
    if filename.lower().endswith(".xlsx"):
        try:
            from openpyxl import load_workbook  # noqa: PLC0415 - on first use, not when a server starts
            sheet = load_workbook(io.BytesIO(data), read_only=True, data_only=True).worksheets[0]
        except Exception:  # noqa: BLE001 - any unreadable workbook is the same error for the user
            raise Invalid(f"无法读取 Excel 文件 {filename}", field="file") from None
        table = [["" if v is None else v for v in row] for row in sheet.iter_rows(values_only=True)]
    else:
        for encoding in ("utf-8-sig", "gb18030"):
            try:
                text = data.decode(encoding)
                break
            except UnicodeDecodeError:
                continue
        else:
            raise Invalid(f"文件 {filename} 不是 UTF-8 或 GB18030 编码的 CSV", field="file")
        table = list(csv.reader(io.StringIO(text)))
    table = [row for row in table if any(str(v).strip() for v in row)]
    if not table:
        raise Invalid(f"文件 {filename} 是空的", field="file")
    headers = [str(h).strip() for h in table[0]]
    names = {**IMPORT_COLUMNS, **{f: f for f in OBJECT_FIELDS}}
    unknown = [h for h in headers if h and h not in names]
    if unknown:
        raise Invalid(f"未知的列 {', '.join(unknown)}; 可用: {', '.join(IMPORT_COLUMNS)}", field="file")
    missing = [label for label, key in IMPORT_COLUMNS.items()
               if key in ("name", "unit", "kind", "identifier") and label not in headers and key not in headers]
    if missing:
        raise Invalid(f"缺少必需的列 {', '.join(missing)}", field="file")
    keys = [names.get(h) for h in headers]
    return [{k: v for k, v in zip(keys, row) if k} for row in table[1:]]
