"""Admin users: argon2 password hashes, roles per jurisdiction, and the shared secrets of the admin UI."""
from __future__ import annotations

import functools
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete, select

from store.db import UnitOfWork, reader
from store.errors import Conflict, Invalid, NotFound, StoreError
from store.tables import AdminRole, AdminSession, AdminUser, AppSecret, SignInFailure, utcnow
from store.versions import audit

ROLES = {"viewer": 1, "editor": 2, "publisher": 3}
ROLE_LABELS = {"viewer": "查看", "editor": "编辑", "publisher": "发布"}
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # the sign-in form reads at most this much
_hasher = PasswordHasher()
@functools.cache  # made by the first sign-in, not at import: a hash takes 0.3-1 s, which every start waited for
def _dummy_hash() -> str:
    """Verified when the name is unknown, so a wrong name costs as much time as a wrong password."""
    return _hasher.hash(secrets.token_hex(16))


@dataclass(frozen=True)
class Principal:
    """The signed-in user as the admin UI needs it: name, superuser flag, role per jurisdiction."""
    id: int
    name: str
    superuser: bool
    roles: dict[str, str] = field(default_factory=dict)

    def can(self, jurisdiction: str, role: str) -> bool:
        """True when the user holds `role` or a higher one in `jurisdiction` (superusers hold all)."""
        held = self.roles.get(jurisdiction)
        return self.superuser or (held is not None and ROLES[held] >= ROLES[role])

    @property
    def grants(self) -> str:
        """A digest of what the user may do; a session signed in under other grants is renewed (new id)."""
        held = json.dumps([self.superuser, sorted(self.roles.items())])
        return hashlib.sha256(held.encode()).hexdigest()[:16]


def create_user(engine: Engine, name: str, password: str, superuser: bool, roles: dict[str, str],
                actor: str) -> AdminUser:
    name = name.strip()
    if not name or len(name) > 64:
        raise Invalid("用户名须为 1–64 个字符", field="name")
    check_password(name, password)
    unknown = sorted(set(roles.values()) - set(ROLES))
    if unknown:
        raise Invalid(f"未知角色 {', '.join(unknown)}; 可用: {', '.join(ROLES)}", field="role")
    password_hash = _hasher.hash(password)  # slow: hashed before the write lock is taken
    with UnitOfWork(engine) as uow:
        session = uow.session
        if session.exec(select(AdminUser).where(AdminUser.name == name)).first() is not None:
            raise Conflict(f"用户 {name} 已存在", field="name")
        user = AdminUser(name=name, password_hash=password_hash, superuser=superuser)
        session.add(user)
        session.flush()
        assert user.id is not None  # set by the flush
        for jid, role in roles.items():
            session.add(AdminRole(user_id=user.id, jurisdiction=jid, role=role))
        audit(session, actor, "user_created", None, None, user=name, superuser=superuser, roles=roles)
    return user


def check_password(name: str, password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise Invalid(f"密码至少 {MIN_PASSWORD} 个字符", field="password")
    if len(password) > MAX_PASSWORD:
        raise Invalid(f"密码最多 {MAX_PASSWORD} 个字符", field="password")
    if password.strip().lower() == name.strip().lower():
        raise Invalid("密码不能与用户名相同", field="password")


def list_users(engine: Engine) -> list[Principal]:
    with Session(reader(engine)) as session:
        users = session.exec(select(AdminUser).order_by(col(AdminUser.name))).all()
        roles = session.exec(select(AdminRole)).all()
    held: dict[int, dict[str, str]] = {}
    for role in roles:
        held.setdefault(role.user_id, {})[role.jurisdiction] = role.role
    return [Principal(u.id, u.name, u.superuser, held.get(u.id, {})) for u in users if u.id is not None]


def _user(session: Session, user_id: int) -> AdminUser:
    user = session.get(AdminUser, user_id)
    if user is None:
        raise NotFound(f"没有编号为 {user_id} 的用户", field="user")
    return user


def set_role(engine: Engine, user_id: int, jurisdiction: str, role: str | None, actor: str) -> None:
    """Give `role` in `jurisdiction` (replacing any other), or take it away with role=None."""
    if role is not None and role not in ROLES:
        raise Invalid(f"未知角色 {role}; 可用: {', '.join(ROLES)}", field="role")
    with UnitOfWork(engine) as uow:
        session = uow.session
        user = _user(session, user_id)
        current = session.exec(select(AdminRole).where(AdminRole.user_id == user_id,
                                                       AdminRole.jurisdiction == jurisdiction)).first()
        if current is not None:
            session.delete(current)
            session.flush()
        if role is not None:
            session.add(AdminRole(user_id=user_id, jurisdiction=jurisdiction, role=role))
        elif current is None:
            raise NotFound(f"用户 {user.name} 在辖区 {jurisdiction} 没有角色", field="jurisdiction")
        audit(session, actor, "role_set" if role else "role_removed", jurisdiction, None, user=user.name, role=role)


def reset_password(engine: Engine, user_id: int, password: str, actor: str) -> None:
    with Session(reader(engine)) as session:
        check_password(_user(session, user_id).name, password)
    password_hash = _hasher.hash(password)  # slow: hashed before the write lock is taken
    with UnitOfWork(engine) as uow:
        session = uow.session
        user = _user(session, user_id)
        user.password_hash = password_hash
        session.add(user)
        # a reset after a leak must also end the sessions signed in with the old password
        for row in session.exec(select(AdminSession)).all():
            if _session_uid(row.value) == user_id:
                session.delete(row)
        audit(session, actor, "password_reset", None, None, user=user.name)


def _session_uid(value: bytes) -> int | None:
    try:
        data = json.loads(value)
    except ValueError:
        return None
    return data.get("uid") if isinstance(data, dict) else None


# Sign-in throttling, counted in the database so every worker sees the same failures.
THROTTLE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_NAME = 5
MAX_FAILURES_PER_ADDRESS = 20


class TooManyAttempts(StoreError):
    status = 429
    title = "尝试次数过多 Too many requests"

    def __init__(self, retry_after: int, field: str):
        minutes = max(1, -(-retry_after // 60))
        super().__init__(f"登录失败次数过多, 请 {minutes} 分钟后再试 — too many failed sign-ins", field=field,
                         retry_after=retry_after)
        self.retry_after = retry_after


def sign_in(engine: Engine, name: str, password: str, address: str, now: datetime | None = None) -> Principal | None:
    """`authenticate`, refused with TooManyAttempts (before the password is even checked) after
    MAX_FAILURES_PER_NAME failures for the name or MAX_FAILURES_PER_ADDRESS from the address within
    THROTTLE_WINDOW. A success clears the name's failures."""
    now = now or utcnow()
    name, address = name.strip()[:64], address[:64]
    with Session(reader(engine)) as session:
        for column, value, limit in ((SignInFailure.name, name, MAX_FAILURES_PER_NAME),
                                     (SignInFailure.address, address, MAX_FAILURES_PER_ADDRESS)):
            recent = session.exec(select(SignInFailure.at).where(col(column) == value,
                                                                 col(SignInFailure.at) > now - THROTTLE_WINDOW)
                                  .order_by(col(SignInFailure.at).desc()).limit(limit)).all()
            if len(recent) >= limit:
                retry = int((recent[-1] + THROTTLE_WINDOW - now).total_seconds()) + 1
                raise TooManyAttempts(retry, "name" if column is SignInFailure.name else "address")
    user = authenticate(engine, name, password)
    with UnitOfWork(engine) as uow:
        if user is None:
            uow.session.exec(delete(SignInFailure).where(col(SignInFailure.at) <= now - THROTTLE_WINDOW))
            uow.session.add(SignInFailure(name=name, address=address, at=now))
        else:
            uow.session.exec(delete(SignInFailure).where(col(SignInFailure.name) == name))
    return user


def authenticate(engine: Engine, name: str, password: str) -> Principal | None:
    with Session(reader(engine)) as session:
        user = session.exec(select(AdminUser).where(AdminUser.name == name.strip())).first()
    try:
        _hasher.verify(user.password_hash if user else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or user.id is None:
        return None
    if _hasher.check_needs_rehash(user.password_hash):  # parameters were raised since it was stored
        password_hash = _hasher.hash(password)
        with UnitOfWork(engine) as uow:
            stored = _user(uow.session, user.id)
            stored.password_hash = password_hash
            uow.session.add(stored)
    return principal(engine, user.id)


def principal(engine: Engine, user_id: int) -> Principal | None:
    with Session(reader(engine)) as session:
        user = session.get(AdminUser, user_id)
        if user is None:
            return None
        roles = session.exec(select(AdminRole).where(AdminRole.user_id == user_id)).all()
        return Principal(user_id, user.name, user.superuser, {r.jurisdiction: r.role for r in roles})


def shared_secret(engine: Engine, name: str) -> str:
    """The named secret, created on first use; a concurrent first start keeps whichever row won."""
    with Session(reader(engine)) as session:
        row = session.get(AppSecret, name)
    if row is not None:
        return row.value
    try:
        with UnitOfWork(engine) as uow:
            uow.session.add(AppSecret(name=name, value=secrets.token_hex(16)))
    except IntegrityError:
        pass  # another worker's row won
    with Session(reader(engine)) as session:
        row = session.get(AppSecret, name)
    assert row is not None  # written above, by this worker or another
    return row.value
