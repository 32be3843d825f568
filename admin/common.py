"""What every admin page shares: the signed-in user, role checks, page rendering and error pages."""
from __future__ import annotations

import re

from pathlib import Path
from typing import Annotated, Any

from litestar import Request, Response
from markupsafe import escape
from litestar.di import NamedDependency
from litestar.exceptions import PermissionDeniedException, ValidationException
from litestar.params import FromPath, PathParameter
from litestar.response import Redirect, Template

from store.errors import Forbidden, StoreError
from store.users import ROLE_LABELS, Principal, principal

HERE = Path(__file__).resolve().parent
MAX_ID = 2**31 - 1
SESSION_HOURS = 8
SESSION_STORE = "admin_sessions"
Number = Annotated[int, PathParameter(ge=1, le=MAX_ID)]


class LoginRequired(Exception):
    """No valid session: pages redirect to the sign-in form."""


def services(request: Request):
    return request.app.state.services


def current_user(request: Request) -> Principal:
    uid = request.session.get("uid") if request.session else None
    user = principal(services(request).policies.engine, uid) if isinstance(uid, int) else None
    if user is None:
        raise LoginRequired
    return user


def require(user: NamedDependency[Principal], jid: FromPath[str], role: str) -> None:
    if not user.can(jid, role):
        raise Forbidden(f"你在辖区 {jid} 没有{ROLE_LABELS[role]}权限", field="role")


def jurisdiction_redirect(request: Request, jurisdiction: str | None, page_path: str) -> Redirect:
    """A per-jurisdiction page reached from the main navigation: the one asked for, else the first."""
    ids = sorted(services(request).policies.refresh())
    return Redirect(f"/admin/j/{jurisdiction if jurisdiction in ids else ids[0]}/{page_path}")


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def page(template: str, status_code: int = 200, **context: Any) -> Template:
    return Template(template_name=template, context=context, status_code=status_code)


# --- errors: a Chinese message on a page (or in the fragment htmx swaps), never a 500
def login_redirect(request: Request, _: LoginRequired) -> Response:
    if is_htmx(request):
        return Response("", status_code=401, headers={"HX-Redirect": "/admin/login"})
    return Redirect("/admin/login")


def error_page(request: Request, status: int, message: str) -> Response:
    if is_htmx(request):
        return Response(f'<p class="error" role="alert">{escape(message)}</p>', status_code=status,
                        media_type="text/html")
    return page("error.html", status, message=message, status=status)


def form_revision(form: Any) -> int:
    """The draft revision a form was built from; anything but a number counts as 0, which never matches, so the
    save is refused as stale (412) rather than failing."""
    revision = str(form.get("revision", ""))
    return int(revision) if revision.isdigit() else 0


def dom_id(key: str) -> str:
    """An HTML id (and htmx target) from a code or unit id."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", key)


def store_error(request: Request, exc: StoreError) -> Response:
    return error_page(request, exc.status, exc.message)


def csrf_error(request: Request, _: PermissionDeniedException) -> Response:
    return error_page(request, 403, "表单已失效或缺少安全令牌 (CSRF), 请刷新页面后重试")


def bad_request(request: Request, _: ValidationException) -> Response:
    return error_page(request, 400, "请求参数无效, 请检查地址")
