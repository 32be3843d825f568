"""Admin users and roles in the store, and the `gridpolicy user create` command (both databases)."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli.main import app
from store.db import make_engine, migrate
from store.errors import Conflict, Invalid
from store.tables import AdminUser
from store.users import authenticate, create_user, shared_secret
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
