"""What every admin page shares: the signed-in user, role checks, page rendering and error pages."""
from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, TypeVar

from litestar import Request, Response
from litestar.concurrency import sync_to_thread
from litestar.connection import ASGIConnection
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.exceptions import PermissionDeniedException, ValidationException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath, PathParameter
from litestar.plugins.htmx import ClientRedirect, HTMXDetails
from litestar.response import Redirect, Template
from jinja2 import Environment, pass_context
from markupsafe import Markup, escape

from policy import words
from policy.models import TRIGGERS

from store.assessment import AssessmentService
from store.boundaries import Locators
from store.cases import CaseService
from store.errors import Forbidden, Invalid, PreconditionFailed, StoreError
from store.sessions import renew_session
from store.users import ROLE_LABELS, Principal, principal
from store.tables import MAX_ID
from store.versions import PolicyStore

HERE = Path(__file__).resolve().parent
SESSION_HOURS = 8
SESSION_STORE = "admin_sessions"
Number = Annotated[int, PathParameter(ge=1, le=MAX_ID)]


class LoginRequired(Exception):
    """No valid session: pages redirect to the sign-in form."""


@dataclass
class Services:
    """The service objects a request works with, built once per app (`api.app.create_app`) for the API and the
    admin alike."""
    policies: PolicyStore
    cases: CaseService
    assessment: AssessmentService
    locators: Locators

    @classmethod
    def over(cls, policies: PolicyStore) -> Services:
        return cls(policies, CaseService(policies), AssessmentService(policies), Locators(policies))


def services(request: ASGIConnection) -> Services:
    return request.app.state.services


def session_data(user: Principal) -> dict:
    return {"uid": user.id, "grants": user.grants}


def current_user(request: ASGIConnection) -> Principal:
    """The signed-in user (read once per request: the role guard and the handler's `user` share it)."""
    known = getattr(request.state, "principal", None)
    if known is not None:
        return known
    uid = request.session.get("uid") if request.session else None
    user = principal(services(request).policies.engine, uid) if isinstance(uid, int) else None
    if user is None:
        raise LoginRequired
    if request.session.get("grants") != user.grants:  # roles changed since sign-in: a fresh session id
        renew_session(request, session_data(user))
    request.state.principal = user
    return user


async def role_guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """A page declared with `opt={"role": …}` needs that role in the jurisdiction of its path: checked before the
    handler runs or reads a form (a sign-in page or one without a role passes)."""
    needed = handler.opt.get("role")
    if needed is not None:
        require(await sync_to_thread(current_user, connection), connection.path_params["jid"], needed)


def require(user: NamedDependency[Principal], jid: FromPath[str], role: str) -> None:
    if not user.can(jid, role):
        raise Forbidden(f"你在辖区 {jid} 没有{ROLE_LABELS[role]}权限", field="role")


def visible_jurisdictions(request: Request, user: Principal) -> list[str]:
    """The jurisdictions whose pages the user may open (a viewer role or more), sorted."""
    return [jid for jid in sorted(services(request).policies.refresh()) if user.can(jid, "viewer")]


def jurisdiction_redirect(request: Request, user: Principal, jurisdiction: str | None, page_path: str) -> Redirect:
    """A per-jurisdiction page reached from the main navigation: the one asked for, else the first the user may
    open (never one that would answer 403)."""
    ids = visible_jurisdictions(request, user)
    if not ids:
        raise Forbidden("你在任何辖区都没有查看权限, 请联系超级管理员分配角色", field="role")
    return Redirect(f"/admin/j/{jurisdiction if jurisdiction in ids else ids[0]}/{page_path}")


def is_htmx(request: Request) -> bool:
    return bool(HTMXDetails(request))


def page(template: str, status_code: int = 200, **context: Any) -> Template:
    return Template(template_name=template, context=context, status_code=status_code)


# --- errors: a Chinese message on a page (or in the fragment htmx swaps), never a 500
def login_redirect(request: Request, _: LoginRequired) -> Response:
    if is_htmx(request):
        response = ClientRedirect("/admin/login")
        response.status_code = 401
        return response
    return Redirect("/admin/login")


def error_page(request: Request, status: int, message: str) -> Response:
    message = words.chinese(message)
    if is_htmx(request):
        return Response(f'<p class="error" role="alert">{escape(message)}</p>', status_code=status,
                        media_type="text/html")
    try:  # the navigation stays on error pages for a signed-in user
        user: Principal | None = current_user(request)
    except LoginRequired:
        user = None
    return page("error.html", status, message=message, status=status, user=user)


# --- saving an edit: one way to refuse it with messages next to the form's fields
T = TypeVar("T")


class FormInvalid(Invalid):
    """The submitted values cannot even be put into the document: messages per form field (a page without a form
    to show them next to shows them all, as a 422)."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(errors.values()))
        self.errors = errors


@dataclass
class Refused:
    """A change that wrote nothing: the status to answer (422 invalid, 412 stale revision) and the messages to show
    next to the form's fields (`general` for the rest)."""
    status: int
    errors: dict[str, str]


def general(err: StoreError) -> dict[str, str]:
    return {"general": words.chinese(err.message)}


def _refusal(err: StoreError) -> bool:
    return isinstance(err, (Invalid, PreconditionFailed))


def attempt(change: Callable[[], T], fields: Callable[[Any], dict[str, str]] = general,
            shown: Callable[[StoreError], bool] = _refusal) -> T | Refused:
    """Run a change (a draft save, a user change): its result, or why it was refused, for the form to show
    again: invalid (422) and stale-revision (412) errors by default, placed by `fields` (e.g. each validation
    issue next to the field it concerns). Other errors propagate to the error page."""
    try:
        return change()
    except FormInvalid as err:
        return Refused(422, err.errors)
    except StoreError as err:
        if not shown(err):
            raise
        return Refused(err.status, fields(err))


def field_errors(err: Invalid, prefix: str, fields: tuple[str, ...], aliases: dict[str, str] | None = None,
                 ) -> dict[str, str]:
    """Each validation issue next to the form field it concerns (its path below `prefix`, renamed by `aliases`);
    the rest, with its path, under `general`."""
    out: dict[str, str] = {}
    for issue in err.extra.get("issues", []):
        path, message = issue["path"], words.chinese(issue["message"])
        rest = path[len(prefix):].lstrip(".") if prefix and (path == prefix or path.startswith(prefix + ".")) else None
        name = None if rest is None else (aliases or {}).get(
            rest, rest.replace("deadline.", "d_").replace("source.", ""))
        if name not in fields:
            name, message = "general", (f"{path}: {message}" if path and rest is None else message)
        out[name] = "; ".join(filter(None, [out.get(name), message]))
    return out or {"general": words.chinese(err.message)}


def revision_number(value: Any) -> int:
    """The draft revision a form was built from; anything but a number counts as 0, which never matches, so the
    save is refused as stale (412) rather than failing."""
    return int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else 0


def form_revision(form: Any) -> int:
    return revision_number(form.get("revision", ""))


async def uploaded(form: Any, default_name: str) -> tuple[bytes, str]:
    """An import's file: the upload of a preview, or (on confirming a preview) the same bytes sent back base64 in
    `data`, with the file's name."""
    upload = form.get("file")
    if isinstance(upload, UploadFile):
        return await upload.read(), (upload.filename or default_name)[:200]
    try:
        raw = base64.b64decode(str(form.get("data", "")))
    except ValueError:
        raw = b""
    return raw, str(form.get("name") or default_name)[:200]


def dom_id(key: str) -> str:
    """An HTML id (and htmx target) from a code or unit id."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", key)


def document_title(request: Request, seed: str, jid: str | None = None) -> str:
    """A seed document's title as the policy names it under `sources` (the jurisdiction's own first, e.g. the
    township template's 篇一 for ningjiaping), never its file name unless no policy lists it."""
    policies = services(request).policies
    for key in [jid] if jid else []:
        try:
            titles = {d.seed: d.title for d in policies.router(key).jur.policy.sources}
        except StoreError:
            continue
        if seed in titles:
            return titles[seed]
    for key in sorted(policies.refresh()):
        for doc in policies.router(key).jur.policy.sources:
            if doc.seed == seed:
                return doc.title
    return seed


@pass_context
def _document(ctx: Any, seed: str | None) -> str:
    return document_title(ctx["request"], seed, ctx.get("jid")) if seed else ""


def _code(code: Any) -> Markup:
    """A code after its words, in grey, for whoever maps the page to the rule files."""
    if code in (None, ""):
        return Markup("")
    return Markup('<span class="code">{}</span>').format(getattr(code, "value", code))


def _party_name(party: Any) -> str:
    return party.name or f"第{party.level}级网格" if party is not None else ""


def _distinct_actions(decision: Any) -> list[dict]:
    """A decision's actions as read: one line per kind of action of a rule, its receivers and notes together (a rule
    that reports to the upper grid and to the leader is one 上报, not two lines repeating the rule)."""
    rules = {t.rule: t.name for t in decision.trace}
    out: dict[tuple, dict] = {}
    for a in decision.actions:
        name = rules.get(a.rule, "")
        entry = out.setdefault((a.kind, a.rule), {"label": a.label, "rule": name or a.reason, "to": [], "notes": []})
        note = a.reason[len(name):].strip().removeprefix("(").removesuffix(")") if name else ""
        for value, into in ((_party_name(a.to), entry["to"]), (note, entry["notes"])):
            if value and value not in into:
                into.append(value)
    return list(out.values())


def _case_state(record: Any, step_names: dict[str, str]) -> str:
    """A case's status in words: the name of the workflow step it is in (`CaseService.step_names`), 已受理, 已结案."""
    return step_names.get(record.status) or words.label(record.status, "state")


def register_words(env: Environment) -> None:
    """policy.words as Jinja filters: `x | words("action")`, `t | bjt`, `when | condition`, `d | duration(cal)`,
    `seed | document`, `code | code`."""
    env.filters.update(words=words.label, bjt=words.local_time, condition=words.condition_text,
                       duration=words.duration_text, document=_document, code=_code,
                       distinct_actions=_distinct_actions, duration_parts=words.duration_parts,
                       case_state=_case_state)
    env.globals.update(time_label=words.TIME_LABEL, duration_units=words.DURATION_UNITS, trigger_labels=TRIGGERS)


def store_error(request: Request, exc: StoreError) -> Response:
    return error_page(request, exc.status, exc.message)


def csrf_error(request: Request, _: PermissionDeniedException) -> Response:
    return error_page(request, 403, "表单已失效或缺少安全令牌 (CSRF), 请刷新页面后重试")


def bad_request(request: Request, _: ValidationException) -> Response:
    return error_page(request, 400, "请求参数无效, 请检查地址")
