"""ledger aggregates: patrol tallies per subject, activity and period, kept by intake; objects searched through an index

Cadences counted their records by scanning the patrols of every period they were asked about (a year's for a yearly
cadence); `patrol_tally` keeps the counts per unit or checked object, activity and period of each kind, added to
by patrol intake in its transaction, and is filled here from the records already stored. ix_patrol_activity served
only that scan; ix_patrol_unit_day serves the patrols of a grid over some days. The object list is ordered by grid and name through an index (which replaces ix_object_unit), and its search (name, pinyin,
initials, licence) goes through a trigram index: FTS5 on SQLite, pg_trgm on PostgreSQL.

Revision ID: 0013_ledger_aggregates
Revises: 0012_patrol_activity_index
Create Date: 2026-11-29 04:00:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from store.tallies import refill

revision: str = '0013_ledger_aggregates'
down_revision: Union[str, Sequence[str], None] = '0012_patrol_activity_index'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


# SQLite: an FTS5 trigram index over the objects' search keys (external content, kept by triggers); a phrase of
# three or more characters matches the keys containing it.
SQLITE_SEARCH = [
    "CREATE VIRTUAL TABLE object_search USING fts5(search_key, content='supervised_object', content_rowid='id', "
    "tokenize='trigram')",
    "CREATE TRIGGER object_search_insert AFTER INSERT ON supervised_object BEGIN "
    "INSERT INTO object_search(rowid, search_key) VALUES (new.id, new.search_key); END",
    "CREATE TRIGGER object_search_delete AFTER DELETE ON supervised_object BEGIN "
    "INSERT INTO object_search(object_search, rowid, search_key) VALUES ('delete', old.id, old.search_key); END",
    "CREATE TRIGGER object_search_update AFTER UPDATE OF search_key ON supervised_object BEGIN "
    "INSERT INTO object_search(object_search, rowid, search_key) VALUES ('delete', old.id, old.search_key); "
    "INSERT INTO object_search(rowid, search_key) VALUES (new.id, new.search_key); END",
    "INSERT INTO object_search(object_search) VALUES ('rebuild')",
]


def upgrade() -> None:
    op.create_table(
        'patrol_tally',
        sa.Column('jurisdiction', sa.String(length=64), nullable=False),
        sa.Column('per', sa.String(length=16), nullable=False),
        sa.Column('of_object', sa.Boolean(), nullable=False),
        sa.Column('period_start', sa.Date(), nullable=False),
        sa.Column('activity', sa.String(length=32), nullable=False),
        sa.Column('subject', sa.String(length=160), nullable=False),
        sa.Column('n', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('jurisdiction', 'per', 'of_object', 'period_start', 'activity', 'subject'),
    )
    with op.batch_alter_table('patrol_record', schema=None) as batch_op:
        batch_op.drop_index('ix_patrol_activity')
        batch_op.create_index('ix_patrol_unit_day', ['jurisdiction', 'unit', 'day'], unique=False)
    with op.batch_alter_table('supervised_object', schema=None) as batch_op:
        batch_op.drop_index('ix_object_unit')  # the first columns of ix_object_order
        batch_op.create_index('ix_object_order', ['jurisdiction', 'unit', 'name'], unique=False)
        batch_op.create_index('ix_object_kind', ['jurisdiction', 'kind', 'source_class'], unique=False)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')  # a trusted extension: the database owner may add it
        op.execute('CREATE INDEX ix_object_search ON supervised_object USING gin (search_key gin_trgm_ops)')
    else:
        for statement in SQLITE_SEARCH:
            op.execute(statement)
    refill(op.get_bind())  # its tally_stamp comes with 0014


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP INDEX ix_object_search')
    else:
        for name in ('object_search_insert', 'object_search_delete', 'object_search_update'):
            op.execute(f'DROP TRIGGER {name}')
        op.execute('DROP TABLE object_search')
    with op.batch_alter_table('supervised_object', schema=None) as batch_op:
        batch_op.drop_index('ix_object_kind')
        batch_op.drop_index('ix_object_order')
        batch_op.create_index('ix_object_unit', ['jurisdiction', 'unit'], unique=False)
    with op.batch_alter_table('patrol_record', schema=None) as batch_op:
        batch_op.drop_index('ix_patrol_unit_day')
        batch_op.create_index('ix_patrol_activity', ['jurisdiction', 'activity', 'day', 'unit'], unique=False)
    op.drop_table('patrol_tally')
