"""User management for superusers: list users, create them, set or remove roles per jurisdiction, reset passwords."""
from __future__ import annotations

from typing import Annotated, Any, Callable
from urllib.parse import urlencode

from litestar import Request, Response, get, post
from litestar.datastructures import FormMultiDict
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from admin.common import Number, Refused, attempt, page, services, session_data
from store.errors import Forbidden, Invalid
from store.sessions import renew_session
from store.users import MIN_PASSWORD, ROLE_LABELS, Principal, create_user, list_users, reset_password, set_role



def _superuser(user: Principal) -> None:
    if not user.superuser:
        raise Forbidden("只有超级管理员可以管理用户 — superusers only", field="user")


def _engine(request: Request):
    return services(request).policies.engine


def _page(request: Request, user: Principal, status: int = 200, **extra: Any) -> Template:
    return page("users_list.html", status, user=user, users=list_users(_engine(request)), roles=ROLE_LABELS,
                jurisdictions=sorted(services(request).policies.refresh()), min_password=MIN_PASSWORD,
                errors=extra.pop("errors", {}), **extra)


@get("/users", sync_to_thread=True)
def users_page(request: Request, user: NamedDependency[Principal],
               done: Annotated[str | None, QueryParameter(max_length=200)] = None) -> Template:
    _superuser(user)
    return _page(request, user, done=done)


def _password(form, errors: dict, key: str) -> str:
    password = str(form.get("password", ""))
    if password != str(form.get("password2", "")):
        errors[key] = "两次输入的密码不一致"
    return password


async def _attempt(request: Request, user: Principal, key: str, action: Callable[[FormMultiDict, dict],
                   str]) -> Response:
    """Run one change (it returns what to tell the admin); on an error show the page again with the message
    next to the form `key`, having changed nothing."""
    form = await request.form()
    errors: dict[str, str] = {}
    # no such user: an error page, there is no form to show it next to
    done = attempt(lambda: action(form, errors), lambda err: {key: err.message}, lambda err: err.field != "user")
    if isinstance(done, Refused):
        return _page(request, user, done.status, errors=errors | done.errors, form=form)
    if errors:
        return _page(request, user, 422, errors=errors, form=form)
    return Redirect(f"/admin/users?{urlencode({'done': done})}")


@post("/users")
async def user_create(request: Request, user: NamedDependency[Principal]) -> Response:
    _superuser(user)

    def create(form: FormMultiDict, errors: dict) -> str:
        password = _password(form, errors, "new")
        if errors:
            return ""
        jid, role = str(form.get("jurisdiction", ""))[:64], str(form.get("role", ""))[:16]
        superuser = form.get("superuser") == "on"
        if not superuser and not (jid and role):
            raise Invalid("请选择辖区和角色, 或勾选超级管理员", field="role")
        roles = {} if superuser else {jid: role}
        _known(request, roles)
        created = create_user(_engine(request), str(form.get("name", ""))[:200], password, superuser, roles,
                              actor=user.name)
        return f"已创建用户 {created.name}"

    return await _attempt(request, user, "new", create)


def _known(request: Request, roles: dict[str, str]) -> None:
    unknown = sorted(set(roles) - set(services(request).policies.refresh()))
    if unknown:
        raise Invalid(f"未知辖区 {', '.join(unknown)}", field="jurisdiction")


@post("/users/{uid:int}/roles")
async def role_set(request: Request, user: NamedDependency[Principal], uid: Number) -> Response:
    _superuser(user)

    def assign(form: FormMultiDict, errors: dict) -> str:
        jid, role = str(form.get("jurisdiction", ""))[:64], str(form.get("role", ""))[:16]
        _known(request, {jid: role})
        set_role(_engine(request), uid, jid, role, actor=user.name)
        return f"角色已更新: {jid} {ROLE_LABELS[role]}"

    return await _attempt(request, user, f"roles-{uid}", assign)


@post("/users/{uid:int}/roles/{jid:str}/delete")
async def role_remove(request: Request, user: NamedDependency[Principal], uid: Number,
                      jid: FromPath[str]) -> Response:
    _superuser(user)
    def remove(form: FormMultiDict, errors: dict) -> str:
        set_role(_engine(request), uid, jid, None, actor=user.name)
        return f"已移除辖区 {jid} 的角色"

    return await _attempt(request, user, f"roles-{uid}", remove)


@post("/users/{uid:int}/password")
async def password_reset(request: Request, user: NamedDependency[Principal], uid: Number) -> Response:
    _superuser(user)

    def reset(form: FormMultiDict, errors: dict) -> str:
        password = _password(form, errors, f"password-{uid}")
        if not errors:
            reset_password(_engine(request), uid, password, actor=user.name)  # ends that user's sessions
            if uid == user.id:  # one's own: stay signed in, under a fresh session id
                renew_session(request, session_data(user))
        return "密码已重置"

    return await _attempt(request, user, f"password-{uid}", reset)


ROUTES = [users_page, user_create, role_set, role_remove, password_reset]
