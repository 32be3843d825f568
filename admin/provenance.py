"""出处统计 page: per kind, how many items and judgement fields are quoted, assumed or inherited, and every
assumption with its note (filterable); the verify/publish page shows the counts a draft changes."""
from __future__ import annotations

from typing import Annotated

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from admin.common import Number, page, services
from policy.provenance import FIELD_LABELS, KIND_LABELS, STATUS_LABELS, changed_counts, report
from store.errors import Invalid
from store.tables import PolicyVersion
from store.users import Principal

Filter = Annotated[str | None, QueryParameter(max_length=64)]
ROWS = 500  # the page lists at most this many entries; the filters narrow them down


def version_report(request: Request, version: PolicyVersion) -> dict:
    jur = services(request).policies.build(version)
    return report(jur.policy, jur.type_names)


def changes(request: Request, version: PolicyVersion) -> list[dict]:
    """The counts a draft changes against the active version (shown before publishing)."""
    active = services(request).policies.active_version(version.jurisdiction)
    if active.number == version.number:
        return []
    return changed_counts(version_report(request, active), version_report(request, version))


def _check(value: str | None, valid: dict, field: str) -> str | None:
    if value and value not in valid:
        raise Invalid(f"{field} 须为 {', '.join(valid)} 之一, 而非 '{value}'", field=field)
    return value or None


@get("/j/{jid:str}/v/{number:int}/provenance", sync_to_thread=True, opt={"role": "viewer"})
def provenance_page(request: Request, user: NamedDependency[Principal], jid: FromPath[str], number: Number,
                    status: Filter = None, kind: Filter = None, field: Filter = None, q: Filter = None) -> Template:
    version = services(request).policies.get_version(jid, number)
    status, kind = _check(status, STATUS_LABELS, "status"), _check(kind, KIND_LABELS, "kind")
    field = _check(field, FIELD_LABELS | {"item": "条目"}, "field")
    r = version_report(request, version)
    text = (q or "").strip()
    rows = [e for e in r["entries"]
            if (status is None or e["status"] == status) and (kind is None or e["kind"] == kind)
            and (field is None or (e["field"] or "item") == field)
            and (not text or any(text in (e[k] or "") for k in ("label", "note", "path", "quote")))]
    if status is None and not (kind or field or text):
        rows = [e for e in rows if e["status"] != "quoted"]  # by default: what is not the jurisdiction's own text
    return page("provenance.html", user=user, jid=jid, version=version, r=r, rows=rows[:ROWS], total=len(rows),
                status=status, kind=kind, field=field, q=text, kinds=KIND_LABELS, statuses=STATUS_LABELS,
                fields=FIELD_LABELS)


ROUTES = [provenance_page]
