"""Admin users and roles in the store, and the `gridpolicy user create` command (both databases)."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli.main import app
from store.db import make_engine, migrate
from store.errors import Conflict, Invalid, NotFound
from store.tables import AdminRole, AdminSession, AdminUser
from store.users import authenticate, create_user, list_users, reset_password, set_role, shared_secret
from sqlmodel import Session, select


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


def test_passwords_are_argon2_and_roles_rank(engine):
    create_user(engine, "li", "long-password", False, {"karamay": "editor"}, "test")
    with Session(engine) as session:
        assert session.exec(select(AdminUser.password_hash)).one().startswith("$argon2id$")
    assert authenticate(engine, "li", "wrong-password") is None and authenticate(engine, "nobody", "x") is None
    user = authenticate(engine, "li", "long-password")
    assert user.can("karamay", "viewer") and user.can("karamay", "editor")
    assert not user.can("karamay", "publisher") and not user.can("panjin", "viewer")


def test_bad_users_are_refused_and_change_nothing(engine):
    create_user(engine, "li", "long-password", True, {}, "test")
    for args, error in [(("li", "another-pass", True, {}), Conflict), (("wang", "short", True, {}), Invalid),
                        (("wang", "long-password", False, {"karamay": "owner"}), Invalid)]:
        with pytest.raises(error):
            create_user(engine, *args, actor="test")
    with Session(engine) as session:
        assert session.exec(select(AdminUser.name)).all() == ["li"]


def test_a_user_write_failing_midway_leaves_nothing_and_frees_the_lock(engine, monkeypatch):
    """The user and its role are flushed before the audit entry is written: when that step fails, neither stays,
    and the next write is not kept waiting for a lock the failed one held."""
    def unavailable(*_args, **_kwargs):
        raise RuntimeError("audit log unavailable")
    monkeypatch.setattr("store.users.audit", unavailable)
    with pytest.raises(RuntimeError, match="audit log unavailable"):
        create_user(engine, "li", "long-password", False, {"karamay": "editor"}, "test")
    with Session(engine) as session:
        assert session.exec(select(AdminUser)).all() == [] and session.exec(select(AdminRole)).all() == []
    monkeypatch.undo()
    create_user(engine, "li", "long-password", False, {"karamay": "editor"}, "test")
    assert [(u.name, u.roles) for u in list_users(engine)] == [("li", {"karamay": "editor"})]


def test_shared_secret_is_stable(engine):
    assert shared_secret(engine, "x") == shared_secret(engine, "x") != shared_secret(engine, "y")


def test_cli_user_create(tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDPOLICY_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    runner = CliRunner()
    ok = runner.invoke(app, ["user", "create", "zhao", "--role", "publisher", "--jurisdiction", "karamay",
                             "--password-stdin"], input="long-password\n")
    assert ok.exit_code == 0, ok.output
    assert runner.invoke(app, ["user", "create", "qian", "--superuser", "--role", "viewer"]).exit_code == 2
    assert runner.invoke(app, ["user", "create", "qian", "--role", "viewer", "--jurisdiction", "nowhere",
                               "--password-stdin"], input="long-password\n").exit_code == 2
    engine = make_engine(f"sqlite:///{tmp_path / 'cli.db'}")
    assert authenticate(engine, "zhao", "long-password").can("karamay", "publisher")


def test_roles_and_password_resets(engine):
    user = create_user(engine, "li", "long-password", False, {"karamay": "viewer"}, "test")
    set_role(engine, user.id, "karamay", "publisher", "root")
    set_role(engine, user.id, "panjin", "editor", "root")
    assert list_users(engine)[0].roles == {"karamay": "publisher", "panjin": "editor"}
    set_role(engine, user.id, "karamay", None, "root")
    assert authenticate(engine, "li", "long-password").roles == {"panjin": "editor"}
    other = create_user(engine, "wang", "long-password", False, {}, "test")
    with Session(engine) as session:
        for key, uid in (("li-1", user.id), ("li-2", user.id), ("wang-1", other.id)):
            session.add(AdminSession(key=key, value=json.dumps({"uid": uid}).encode()))
        session.commit()
    reset_password(engine, user.id, "another-password", "root")
    with Session(engine) as session:  # li is signed out everywhere, wang is not
        assert session.exec(select(AdminSession.key)).all() == ["wang-1"]
    assert authenticate(engine, "li", "long-password") is None
    assert authenticate(engine, "li", "another-password").can("panjin", "editor")


def test_bad_role_and_password_changes_change_nothing(engine):
    user = create_user(engine, "li", "long-password", False, {"karamay": "viewer"}, "test")
    for call, error in [(lambda: set_role(engine, user.id, "karamay", "owner", "root"), Invalid),
                        (lambda: set_role(engine, user.id, "panjin", None, "root"), NotFound),
                        (lambda: set_role(engine, 999, "karamay", "editor", "root"), NotFound),
                        (lambda: reset_password(engine, user.id, "short", "root"), Invalid),
                        (lambda: create_user(engine, "wang-wu-99", "WANG-WU-99", True, {}, "root"), Invalid),
                        (lambda: reset_password(engine, user.id, "x" * 2000, "root"), Invalid)]:
        with pytest.raises(error):
            call()
    assert authenticate(engine, "li", "long-password").roles == {"karamay": "viewer"}
    assert [u.name for u in list_users(engine)] == ["li"]


def test_every_admin_change_declares_the_role_its_guard_checks(tmp_path):
    """Roles are checked by one guard from what each handler declares (#15 §4: guards, not a `require` call per
    handler): every admin handler that changes something in a jurisdiction of its path declares the role it needs,
    and the guard refuses a signed-in viewer before the handler runs."""
    from litestar.testing import TestClient  # noqa: PLC0415

    from api.app import create_app  # noqa: PLC0415
    app = create_app(f"sqlite:///{tmp_path / 'roles.db'}", background=False)
    undeclared = [(route.path, handler.handler_name) for route in app.routes if route.path.startswith("/admin/j/{jid")
                  for handler in getattr(route, "route_handlers", ())
                  if handler.http_methods & {"POST", "PUT", "PATCH", "DELETE"} and "role" not in handler.opt]
    assert undeclared == []
    engine = app.state.services.policies.engine
    create_user(engine, "看看", "password-123", False, {"karamay": "viewer"}, "test")
    with TestClient(app) as client:
        form = client.get("/admin/login")
        token = form.cookies.get("gp_csrf")
        signed = client.post("/admin/login", data={"name": "看看", "password": "password-123"},
                             headers={"X-CSRFToken": token}, follow_redirects=False)
        assert signed.status_code in (302, 303)
        assert client.get("/admin/j/karamay/assessment").status_code == 200  # a viewer may look
        refused = client.post("/admin/j/karamay/drafts", headers={"X-CSRFToken": token})
        assert refused.status_code == 403 and "编辑" in refused.text
        assert client.get("/admin/j/karamay/v/1/e/units/kmy-l3-01").status_code == 403  # an editor's form
    engine.dispose()
