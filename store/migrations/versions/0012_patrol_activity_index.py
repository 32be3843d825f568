"""patrol activity index: cadences count one activity's records over a period

A yearly or quarterly cadence of a rare activity (a plan, an assessment) counted its few records by range-scanning every
patrol of the year through ix_patrol_compliance (jurisdiction, day, …); with the activity before the day the scan covers
only that activity's records.

Revision ID: 0012_patrol_activity_index
Revises: 0011_units_as_data
Create Date: 2026-11-29 01:30:00

"""
from typing import Sequence, Union

from alembic import op


revision: str = '0012_patrol_activity_index'
down_revision: Union[str, Sequence[str], None] = '0011_units_as_data'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('patrol_record', schema=None) as batch_op:
        batch_op.create_index('ix_patrol_activity', ['jurisdiction', 'activity', 'day', 'unit'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('patrol_record', schema=None) as batch_op:
        batch_op.drop_index('ix_patrol_activity')
