"""Admin users: argon2 password hashes, roles per jurisdiction, and the shared secrets of the admin UI."""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from store.errors import Conflict, Invalid
from store.tables import AdminRole, AdminUser, AppSecret
from store.versions import audit

ROLES = {"viewer": 1, "editor": 2, "publisher": 3}
ROLE_LABELS = {"viewer": "查看", "editor": "编辑", "publisher": "发布"}
MIN_PASSWORD = 8
_hasher = PasswordHasher()
# Verified when the name is unknown, so a wrong name costs as much time as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


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


def create_user(engine: Engine, name: str, password: str, superuser: bool, roles: dict[str, str],
                actor: str) -> AdminUser:
    name = name.strip()
    if not name or len(name) > 64:
        raise Invalid("用户名须为 1–64 个字符", field="name")
    if len(password) < MIN_PASSWORD:
        raise Invalid(f"密码至少 {MIN_PASSWORD} 个字符", field="password")
    unknown = sorted(set(roles.values()) - set(ROLES))
    if unknown:
        raise Invalid(f"未知角色 {', '.join(unknown)}; 可用: {', '.join(ROLES)}", field="role")
    with Session(engine) as session:
        if session.exec(select(AdminUser).where(AdminUser.name == name)).first() is not None:
            raise Conflict(f"用户 {name} 已存在", field="name")
        user = AdminUser(name=name, password_hash=_hasher.hash(password), superuser=superuser)
        session.add(user)
        session.flush()
        for jid, role in roles.items():
            session.add(AdminRole(user_id=user.id, jurisdiction=jid, role=role))
        audit(session, actor, "user_created", None, None, user=name, superuser=superuser, roles=roles)
        session.commit()
        session.refresh(user)
        return user


def authenticate(engine: Engine, name: str, password: str) -> Principal | None:
    with Session(engine) as session:
        user = session.exec(select(AdminUser).where(AdminUser.name == name.strip())).first()
        try:
            _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        if user is None:
            return None
        if _hasher.check_needs_rehash(user.password_hash):  # parameters were raised since it was stored
            user.password_hash = _hasher.hash(password)
            session.add(user)
            session.commit()
    return principal(engine, user.id)


def principal(engine: Engine, user_id: int) -> Principal | None:
    with Session(engine) as session:
        user = session.get(AdminUser, user_id)
        if user is None:
            return None
        roles = session.exec(select(AdminRole).where(AdminRole.user_id == user_id)).all()
        return Principal(user.id, user.name, user.superuser, {r.jurisdiction: r.role for r in roles})


def shared_secret(engine: Engine, name: str) -> str:
    """The named secret, created on first use; a concurrent first start keeps whichever row won."""
    with Session(engine) as session:
        row = session.get(AppSecret, name)
        if row is not None:
            return row.value
        session.add(AppSecret(name=name, value=secrets.token_hex(16)))
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
    with Session(engine) as session:
        return session.get(AppSecret, name).value
