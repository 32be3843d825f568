"""dashboard: a revision per period of the patrol tallies, so the cadence trend caches its settled periods

Every write of a period's tallies bumps the period's revision in the same transaction; a cached figure of a period
whose revision changed is counted again. No backfill: a period without a row has revision 0 until its next write.

Revision ID: 0014_dashboard
Revises: 0013_ledger_aggregates
Create Date: 2026-11-29 14:00:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0014_dashboard'
down_revision: Union[str, Sequence[str], None] = '0013_ledger_aggregates'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'tally_stamp',
        sa.Column('jurisdiction', sa.String(length=64), nullable=False),
        sa.Column('per', sa.String(length=16), nullable=False),
        sa.Column('period_start', sa.Date(), nullable=False),
        sa.Column('revision', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('jurisdiction', 'per', 'period_start'),
    )


def downgrade() -> None:
    op.drop_table('tally_stamp')
