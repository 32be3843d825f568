"""The policy admin's workplace at /admin: server-rendered Jinja2 pages, htmx for partial updates.

Sessions (server-side, in the database) and CSRF checks are router middleware, so the /v1 and /open311
APIs (API keys, no cookies) are untouched. Sessions and the CSRF secret are shared by all workers.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Annotated, Any

from cachetools import LRUCache, cached
from litestar import Request, Response, Router, get, post
from litestar.config.csrf import CSRFConfig
from litestar.plugins.htmx import HTMXRequest
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.concurrency import sync_to_thread
from litestar.di import NamedDependency, Provide
from litestar.exceptions import PermissionDeniedException, ValidationException
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.stores.base import Store
from litestar.template.config import TemplateConfig
from sqlalchemy.engine import Engine

from engine.compiler import compile_policy
from engine.router import Case, RoutingError
from engine.verify import verify
from policy.catalog import search_score
from policy.diff import diff
from policy.loader import Jurisdiction
from policy.facts import CASE_FACTS, ENUM_FACTS
from store.errors import Forbidden, Invalid, PreconditionFailed, StoreError
from store.tables import PolicyVersion
from store.sessions import DatabaseStore, RenewingSessionConfig, renew_session
from store.users import ROLE_LABELS, Principal, TooManyAttempts, shared_secret, sign_in

from admin import assessment, audit, bulk, editing, geo, insight, ledger, provenance, publishing, users
from admin.common import (HERE, MAX_ID, SESSION_HOURS, SESSION_STORE, FormInvalid, LoginRequired, Number, Refused,
                          attempt, bad_request, csrf_error, current_user, dom_id, login_redirect, page, register_words,
                          role_guard, services, session_data, store_error)
from admin.forms import CaseForm, LoginForm, PublishForm, RollbackForm, read


# --- sign-in
@get("/login", sync_to_thread=True)
def login_form(request: Request) -> Template:
    return page("login.html")


@post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    try:
        (signing,) = read(form, (LoginForm, ""))
    except FormInvalid as err:
        return page("login.html", 422, errors=err.errors, name=str(form.get("name", ""))[:200])
    try:
        user = await sync_to_thread(sign_in, services(request).policies.engine, signing.name,  # argon2: ~0.1 s of CPU
                                    signing.password, request.client.host if request.client else "")
    except TooManyAttempts as err:
        return Template("login.html", context={"error": err.message, "name": signing.name}, status_code=429,
                        headers={"Retry-After": str(err.retry_after)})
    if user is None:
        return page("login.html", 401, error="用户名或密码错误", name=signing.name)
    renew_session(request, session_data(user))  # a fresh session id on every sign-in: no fixation
    return Redirect("/admin/")


@post("/logout", sync_to_thread=True)
def logout(request: Request) -> Redirect:
    request.clear_session()
    return Redirect("/admin/login")


# --- jurisdictions
def _levels(jur: Jurisdiction) -> list[dict]:
    """Each level of a jurisdiction with its grid count and how many problem types it handles."""
    p = jur.policy
    return [{"number": lv.number, "name": lv.name, "unit_kind": lv.unit_kind, "units": jur.level_counts[0][lv.number],
             "types": sum(1 for t in p.problem_types if t.level == lv.number)} for lv in p.levels]


@get("/", sync_to_thread=True)
def index(request: Request, user: NamedDependency[Principal]) -> Template:
    s = services(request)
    counts = s.cases.open_counts()
    rows = []
    for jid in sorted(s.policies.refresh()):
        jur = s.policies.router(jid).jur
        rows.append({"id": jid, "name": jur.policy.name, "version": s.policies.active_version(jid).number,
                     "role": "超级管理员" if user.superuser else ROLE_LABELS.get(user.roles.get(jid, ""), "—"),
                     "levels": _levels(jur), "cases": counts.get(jid, {"open": 0, "overdue": 0})})
    return page("index.html", user=user, rows=rows)


@get("/j/{jid:str}", sync_to_thread=True)
def jurisdiction(request: Request, user: NamedDependency[Principal], jid: FromPath[str],
                 rolled_back: Annotated[int | None, QueryParameter(ge=1, le=MAX_ID)] = None) -> Template:
    return _jurisdiction_page(request, user, jid, rolled_back=rolled_back)


def _jurisdiction_page(request: Request, user: Principal, jid: str, status: int = 200, **extra: Any) -> Template:
    s = services(request).policies
    versions = s.list_versions(jid)
    jur = s.router(jid).jur
    return page("jurisdiction.html", status, user=user, jid=jid, name=jur.policy.name,
                versions=list(reversed(versions)), levels=_levels(jur), history=publishing.history(request, jid),
                history_labels=publishing.HISTORY_ACTIONS, **extra)


@post("/j/{jid:str}/drafts", sync_to_thread=True, opt={"role": "editor"})
def new_draft(request: Request, user: NamedDependency[Principal], jid: FromPath[str]) -> Redirect:
    version = services(request).policies.create_draft(jid, user.name)
    return Redirect(f"/admin/j/{jid}/v/{version.number}")


def _type_names(request: Request, jid: FromPath[str]) -> dict[str, str]:
    return services(request).policies.router(jid).jur.type_names


# --- verify, publish, history, rollback
@cached(LRUCache(maxsize=32), key=lambda request, version: version.content_hash, lock=threading.Lock())
def _verification(request: Request, version: PolicyVersion) -> dict:
    """Verifying a large policy takes ~0.3 s; the outcome depends only on the content, so it is kept per hash."""
    compiled = compile_policy(services(request).policies.build(version))
    try:
        report = verify(compiled)
        graph = insight.escalation_graph(compiled)
    finally:
        compiled.close()
    return {"ok": report.ok, "problems": report.problems(), "matrix": report.matrix,
            "combinations": report.combinations, "graph": graph}


def _verify_page(request: Request, user: NamedDependency[Principal], jid: FromPath[str], version: PolicyVersion,
                 status: int = 200,
                 **extra: Any) -> Template:
    levels = [(lv["number"], lv["name"]) for lv in services(request).policies.head(version)["levels"]]
    return page("verify.html", status, user=user, jid=jid, version=version, levels=levels,
                 report=_verification(request, version), can_publish=user.can(jid, "publisher"),
                 provenance_changes=provenance.changes(request, version),
                 **publishing.verify_context(request, user, version), **extra)


@get("/j/{jid:str}/v/{number:int}/verify", sync_to_thread=True)
def verify_page(request: Request, user: NamedDependency[Principal], jid: FromPath[str], number: Number) -> Template:
    return _verify_page(request, user, jid, services(request).policies.get_version(jid, number))


@post("/j/{jid:str}/v/{number:int}/publish", opt={"role": "publisher"})
async def publish(request: Request, user: NamedDependency[Principal], jid: FromPath[str], number: Number) -> Response:
    """Publish, first accepting the new outcomes of the pinned cases the publisher ticked (each audited)."""
    form = await request.form()
    s = services(request).policies

    def publish_() -> PolicyVersion:
        (asked,) = read(form, (PublishForm, ""))
        return s.publish(jid, number, user.name, asked.note, asked.accept, asked.revision)

    done = await sync_to_thread(attempt, publish_, lambda err: {err.field or "general": err.message},
                                lambda err: isinstance(err, (Invalid, PreconditionFailed, Forbidden)))
    if isinstance(done, Refused):  # the form shown again as it was sent
        return await sync_to_thread(_verify_page, request, user, jid, s.get_version(jid, number), done.status,
                                    note=str(form.get("note", ""))[:2000], note_error=done.errors.get("note"),
                                    accepted=[str(name) for name in form.getall("accept", [])][:500],
                                    publish_error=next((m for f, m in done.errors.items() if f != "note"), None))
    return Redirect(f"/admin/j/{jid}")


@post("/j/{jid:str}/v/{number:int}/rollback", opt={"role": "publisher"})
async def rollback(request: Request, user: NamedDependency[Principal], jid: FromPath[str], number: Number) -> Response:
    """Rollback asks for a reason and a confirmation; the reason goes to the audit log and the history."""
    form = await request.form()
    s = services(request).policies

    def rollback_() -> PolicyVersion:
        (asked,) = read(form, (RollbackForm, ""))
        return s.rollback(jid, number, user.name, asked.reason)

    done = await sync_to_thread(attempt, rollback_)
    if isinstance(done, Refused):
        return await sync_to_thread(_jurisdiction_page, request, user, jid, done.status,
                                    rollback_errors=done.errors, rollback_number=number)
    return Redirect(f"/admin/j/{jid}?rolled_back={number}")


@get("/j/{jid:str}/diff", sync_to_thread=True)
def version_diff(request: Request, user: NamedDependency[Principal], jid: FromPath[str], from_: Annotated[int,
                 QueryParameter(name="from", ge=1, le=MAX_ID)],
                 to: Annotated[int, QueryParameter(ge=1, le=MAX_ID)]) -> Template:
    s = services(request).policies
    old, new = s.get_version(jid, from_), s.get_version(jid, to)
    return page("diff.html", user=user, jid=jid, old=old, new=new,
                 diff=diff(s.build(old).policy, s.build(new).policy), names=_type_names(request, jid))


# --- simulator
@get("/simulate", sync_to_thread=True)
def simulator(request: Request, user: NamedDependency[Principal],
              jurisdiction: Annotated[str | None, QueryParameter(max_length=64)] = None) -> Template:
    s = services(request).policies
    ids = sorted(s.refresh())
    jid = jurisdiction if jurisdiction in ids else ids[0]
    router = s.router(jid)
    types = sorted(router.jur.type_names.items())
    return page("simulate.html", user=user, ids=ids, jid=jid, types=types, facts=CASE_FACTS,
                 classes=ENUM_FACTS["enterprise_class"][1], units=list(router.jur.units.values())[:200])


def _type_code(names: dict[str, str], text: str) -> str:
    """What the admin typed as a problem type: a code or name as it is, else the type its pinyin or initials
    (`jiegan`, `jgfs`) name when they name exactly one; anything else is left for the router to refuse with
    suggestions."""
    if text in names or text.strip() in names.values():
        return text
    scores = {code: search_score(text, code, name, fuzzy=False) for code, name in names.items()}
    top = max(scores.values(), default=0.0)
    hits = [code for code, score in scores.items() if score == top]
    return hits[0] if top >= 2.0 and len(hits) == 1 else text


@post("/simulate")
async def simulate(request: Request, user: NamedDependency[Principal]) -> Template:
    form = await request.form()
    s = services(request).policies
    try:
        (asked,) = read(form, (CaseForm, ""))
        jid = asked.jurisdiction
        case = Case(problem_type=_type_code(s.router(jid).jur.type_names, asked.problem_type), unit=asked.unit,
                    facts=asked.facts())
        decision = s.router(jid).route(case)
    except FormInvalid as err:
        return page("_decision.html", 422, error="请修正表单中标出的问题", field_errors=err.errors,
                    error_fields=publishing.CASE_FIELDS)
    except RoutingError as err:
        return page("_decision.html", 422, error=str(err), error_fields=publishing.CASE_FIELDS)
    active = s.active_version(jid)
    label = f"v{active.number} (已发布)" if active.content_hash == decision.policy_version else None
    return page("_decision.html", decision=decision, version_label=label, jid=jid, form=form,
                error_fields=publishing.CASE_FIELDS, **publishing.pin_context(request, user, jid, decision))


# --- compare
@get("/compare", sync_to_thread=True)
def compare_page(request: Request, user: NamedDependency[Principal], ids: insight.CompareIds = None) -> Template:
    known, chosen = insight.chosen_jurisdictions(request, ids)
    result = insight.comparison(request, chosen) if len(chosen) >= 2 else None
    error = "请至少选择两个辖区" if ids is not None and len(chosen) < 2 else None
    return page("compare.html", user=user, known=known, chosen=chosen, result=result, error=error,
                **(insight.compare_extras(result) if result else {}))


@dataclass
class AdminParts:
    routers: list[Router]
    templates: TemplateConfig
    stores: dict[str, Store]


def admin_parts(engine: Engine) -> AdminParts:
    """The /admin router (sessions, CSRF, sign-in required), its static files, templates, session store."""
    session = RenewingSessionConfig(store=SESSION_STORE, key="gp_admin", path="/admin", samesite="lax",
                                      httponly=True, max_age=SESSION_HOURS * 3600, renew_on_access=True)
    csrf = CSRFConfig(secret=shared_secret(engine, "admin_csrf"), cookie_name="gp_csrf", cookie_path="/admin",
                      header_name="X-CSRFToken", cookie_samesite="strict")
    router = Router(
        path="/admin",
        route_handlers=[login_form, login, logout, index, jurisdiction, new_draft, verify_page, publish, rollback,
                        version_diff, simulator, simulate, compare_page, *insight.ROUTES, *editing.ROUTES,
                        *users.ROUTES, *assessment.ROUTES,
                        *provenance.ROUTES, *publishing.ROUTES, *bulk.ROUTES, *ledger.ROUTES, *geo.ROUTES,
                        *audit.ROUTES],
        dependencies={"user": Provide(current_user, sync_to_thread=True)},
        guards=[role_guard],
        middleware=[session.middleware, DefineMiddleware(CSRFMiddleware, config=csrf)],
        exception_handlers={LoginRequired: login_redirect, StoreError: store_error,
                            PermissionDeniedException: csrf_error, ValidationException: bad_request},
        request_class=HTMXRequest,
        include_in_schema=False,
    )
    static = create_static_files_router(path="/admin/static", directories=[HERE / "static"], include_in_schema=False)

    def _setup(engine_: JinjaTemplateEngine) -> None:
        engine_.engine.filters["domid"] = dom_id
        register_words(engine_.engine)
        insight.setup_templates(engine_.engine)

    templates = TemplateConfig(directory=HERE / "templates", engine=JinjaTemplateEngine, engine_callback=_setup)
    return AdminParts([router, static], templates, {SESSION_STORE: DatabaseStore(engine)})
