"""User management for superusers: list users, create them, set or remove roles per jurisdiction, reset passwords."""
from __future__ import annotations

from typing import Annotated, Any, Callable
from urllib.parse import urlencode

from litestar import Request, Response, get, post
from litestar.concurrency import sync_to_thread
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template
from pydantic import ConfigDict, Field, model_validator

from admin.common import Number, Refused, attempt, page, services, session_data
from admin.forms import Checkbox, FormModel, read, text
from store.errors import Forbidden, Invalid
from store.sessions import renew_session
from store.users import (MAX_PASSWORD, MIN_PASSWORD, ROLE_LABELS, Principal, create_user, list_users, reset_password,
                         set_role)



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


class RoleForm(FormModel):
    jurisdiction: str = text("辖区", 64, required=False)
    role: str = text("角色", 16, required=False)


class PasswordForm(FormModel):
    model_config = ConfigDict(str_strip_whitespace=False)  # a password is taken as typed
    password: str = Field("", title="密码", max_length=MAX_PASSWORD)
    password2: str = Field("", title="确认密码", max_length=MAX_PASSWORD)

    @model_validator(mode="after")
    def _same(self) -> PasswordForm:
        if self.password != self.password2:
            raise ValueError("两次输入的密码不一致")
        return self


class NewUserForm(PasswordForm, RoleForm):
    name: str = text("用户名", 200, required=False)
    superuser: Checkbox = False


async def _attempt(request: Request, user: Principal, key: str, form_model: type[FormModel],
                   action: Callable[[Any], str]) -> Response:
    """Read the form and run one change (it returns what to tell the admin), off the event loop (password hashing
    takes ~0.1 s of CPU); on an error show the page again with the messages next to the form `key`, having changed
    nothing."""
    form = await request.form()
    # no such user: an error page, there is no form to show it next to
    done = await sync_to_thread(attempt, lambda: action(*read(form, (form_model, ""))),
                                lambda err: {key: err.message}, lambda err: err.field != "user")
    if isinstance(done, Refused):
        return _page(request, user, done.status, errors={key: "; ".join(done.errors.values())}, form=form)
    return Redirect(f"/admin/users?{urlencode({'done': done})}")


@post("/users")
async def user_create(request: Request, user: NamedDependency[Principal]) -> Response:
    _superuser(user)

    def create(form: NewUserForm) -> str:
        if not form.superuser and not (form.jurisdiction and form.role):
            raise Invalid("请选择辖区和角色, 或勾选超级管理员", field="role")
        roles = {} if form.superuser else {form.jurisdiction: form.role}
        _known(request, roles)
        created = create_user(_engine(request), form.name, form.password, form.superuser, roles, actor=user.name)
        return f"已创建用户 {created.name}"

    return await _attempt(request, user, "new", NewUserForm, create)


def _known(request: Request, roles: dict[str, str]) -> None:
    unknown = sorted(set(roles) - set(services(request).policies.refresh()))
    if unknown:
        raise Invalid(f"未知辖区 {', '.join(unknown)}", field="jurisdiction")


@post("/users/{uid:int}/roles")
async def role_set(request: Request, user: NamedDependency[Principal], uid: Number) -> Response:
    _superuser(user)

    def assign(form: RoleForm) -> str:
        _known(request, {form.jurisdiction: form.role})
        set_role(_engine(request), uid, form.jurisdiction, form.role, actor=user.name)
        return f"角色已更新: {form.jurisdiction} {ROLE_LABELS[form.role]}"

    return await _attempt(request, user, f"roles-{uid}", RoleForm, assign)


@post("/users/{uid:int}/roles/{jid:str}/delete")
async def role_remove(request: Request, user: NamedDependency[Principal], uid: Number,
                      jid: FromPath[str]) -> Response:
    _superuser(user)

    def remove(_: FormModel) -> str:
        set_role(_engine(request), uid, jid, None, actor=user.name)
        return f"已移除辖区 {jid} 的角色"

    return await _attempt(request, user, f"roles-{uid}", FormModel, remove)


@post("/users/{uid:int}/password")
async def password_reset(request: Request, user: NamedDependency[Principal], uid: Number) -> Response:
    _superuser(user)

    def reset(form: PasswordForm) -> str:
        reset_password(_engine(request), uid, form.password, actor=user.name)  # ends that user's sessions
        if uid == user.id:  # one's own: stay signed in, under a fresh session id
            renew_session(request, session_data(user))
        return "密码已重置"

    return await _attempt(request, user, f"password-{uid}", PasswordForm, reset)


ROUTES = [users_page, user_create, role_set, role_remove, password_reset]
