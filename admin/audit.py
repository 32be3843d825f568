"""The audit log page: who changed what and when (北京时间), filtered by jurisdiction, user and action, paged.
A superuser sees every entry; anyone else the entries of the jurisdictions they hold a role in."""
from __future__ import annotations

from typing import Annotated

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Template

from admin.common import Number, page, services, visible_jurisdictions
from store import audit
from store.errors import Forbidden
from store.users import Principal

Text = Annotated[str | None, QueryParameter(max_length=128)]


@get("/audit", sync_to_thread=False)
def audit_page(request: Request, user: NamedDependency[Principal], jurisdiction: Text = None, actor: Text = None,
               action: Text = None, page_: Annotated[Number | None, QueryParameter(name="page")] = None) -> Template:
    visible = None if user.superuser else tuple(visible_jurisdictions(request, user))
    if visible is not None and jurisdiction and jurisdiction not in visible:
        raise Forbidden(f"你在辖区 {jurisdiction} 没有查看权限, 不能查看其审计日志", field="jurisdiction")
    engine = services(request).policies.engine
    where = audit.AuditFilter(visible, jurisdiction or None, actor or None, action or None)
    number = page_ or 1
    total, rows = audit.search(engine, where, number)
    actors, actions = audit.choices(engine, visible)
    return page("audit.html", user=user, rows=rows, total=total, page_number=number,
                pages=max(1, -(-total // audit.PAGE_SIZE)), query={"jurisdiction": jurisdiction or "",
                                                                   "actor": actor or "", "action": action or ""},
                jurisdictions=visible if visible is not None else sorted(services(request).policies.refresh()),
                actors=actors, actions=actions)


ROUTES = [audit_page]
