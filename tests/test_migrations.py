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
