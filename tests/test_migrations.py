"""Migrations: a server's start skips alembic when the database is already at the newest migration."""
from __future__ import annotations

import subprocess
import sys

from alembic.config import Config
from alembic.script import ScriptDirectory

from store.db import MIGRATIONS, head_revision, make_engine, migrate


def test_the_newest_file_names_alembics_head():
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_heads() == [head_revision()]


def test_a_database_at_the_head_is_not_migrated_again(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    engine = make_engine(url)
    migrate(engine)  # a new database: every migration
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == head_revision()
    engine.dispose()
    # a second start finds the head and never imports alembic
    probe = ("import sys; from store.db import make_engine, migrate; "
             f"migrate(make_engine({url!r})); print('alembic' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                          cwd=MIGRATIONS.parents[1]).stdout.strip() == "False"


def test_the_tallies_are_kept_in_key_order_on_sqlite_and_survive_the_migration(tmp_path):
    """0015: patrol_tally becomes WITHOUT ROWID on SQLite (read by key prefix); its rows are carried over, and a
    downgrade gives them back to a rowid table."""
    from alembic import command

    url = f"sqlite:///{tmp_path / 'x.db'}"
    engine = make_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    rows = [("hefei", "month", 0, "2026-11-01", "patrol", f"hf-l4-{i:03d}", i) for i in range(1, 40)]

    def upgrade_or_downgrade(step, target):
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            step(config, target)

    def stored():
        with engine.connect() as connection:
            ddl = connection.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'patrol_tally'").scalar()
            found = connection.exec_driver_sql("SELECT * FROM patrol_tally ORDER BY n").all()
        return "WITHOUT ROWID" in ddl, [tuple(r) for r in found]

    upgrade_or_downgrade(command.upgrade, "0014_dashboard")
    with engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO patrol_tally VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    assert stored() == (False, rows)
    upgrade_or_downgrade(command.upgrade, "head")
    assert stored() == (True, rows)
    upgrade_or_downgrade(command.downgrade, "0014_dashboard")
    assert stored() == (False, rows)
    engine.dispose()
