"""ledger aggregates: patrol tallies per subject, activity and period, kept by intake; objects searched through an index

Cadences counted their records by scanning the patrols of every period they were asked about (a year's for a yearly
cadence); `patrol_tally` keeps the counts per unit or checked object, activity and period of each kind, added to
by patrol intake in its transaction, and is filled here from the records already stored. ix_patrol_activity served
only that scan. The object list is ordered by grid and name through an index, and its search (name, pinyin,
initials, licence) goes through a trigram index: FTS5 on SQLite, pg_trgm on PostgreSQL.

Revision ID: 0013_ledger_aggregates
Revises: 0012_patrol_activity_index
Create Date: 2026-11-29 04:00:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from store.tallies import rebuild

revision: str = '0013_ledger_aggregates'
down_revision: Union[str, Sequence[str], None] = '0012_patrol_activity_index'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'patrol_tally',
        sa.Column('jurisdiction', sa.String(length=64), nullable=False),
        sa.Column('per', sa.String(length=16), nullable=False),
        sa.Column('activity', sa.String(length=32), nullable=False),
        sa.Column('period_start', sa.Date(), nullable=False),
        sa.Column('subject', sa.String(length=160), nullable=False),
        sa.Column('n', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('jurisdiction', 'per', 'activity', 'period_start', 'subject'),
    )
    with op.batch_alter_table('patrol_record', schema=None) as batch_op:
        batch_op.drop_index('ix_patrol_activity')
    rebuild(op.get_bind())


def downgrade() -> None:
    with op.batch_alter_table('patrol_record', schema=None) as batch_op:
        batch_op.create_index('ix_patrol_activity', ['jurisdiction', 'activity', 'day', 'unit'], unique=False)
    op.drop_table('patrol_tally')
