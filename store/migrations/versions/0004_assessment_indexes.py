"""assessment indexes: covering indexes for the period's events and clocks and the cases they join

The assessment reads only a few narrow columns of case_event, case_clock and case_record; these indexes hold
them, so SQLite (and PostgreSQL, with index-only scans) range-scans the period without reading the wide rows
(notes, JSON data, decisions). The two new event and clock indexes start with the columns of the indexes they
replace, so every query those served is served still.

Revision ID: 0004_assessment_indexes
Revises: 0003_assessment
Create Date: 2026-11-23 12:00:00

"""
from typing import Sequence, Union

from alembic import op


revision: str = '0004_assessment_indexes'
down_revision: Union[str, Sequence[str], None] = '0003_assessment'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('case_event', schema=None) as batch_op:
        batch_op.drop_index('ix_case_event_action_at')
        batch_op.create_index('ix_case_event_assess', ['action', 'at', 'unit', 'from_status', 'level', 'case_id'],
                              unique=False)
    with op.batch_alter_table('case_clock', schema=None) as batch_op:
        batch_op.drop_index('ix_clock_started')
        batch_op.create_index('ix_clock_assess_started', ['started_at', 'step', 'unit', 'stopped_at', 'overdue_at',
                                                          'due_at', 'case_id'], unique=False)
        batch_op.create_index('ix_clock_assess_due', ['due_at', 'step', 'unit', 'case_id'], unique=False)
    with op.batch_alter_table('case_record', schema=None) as batch_op:
        batch_op.create_index('ix_case_record_assess', ['id', 'jurisdiction', 'unit', 'found_level', 'closed_at'],
                              unique=False)
    if op.get_bind().dialect.name == "sqlite":
        # SQLite has no autovacuum gathering statistics: without them its planner drives the assessment's joins from
        # the jurisdiction index (every case) instead of the period's range; a database with cases gets them now
        op.execute("ANALYZE")


def downgrade() -> None:
    with op.batch_alter_table('case_record', schema=None) as batch_op:
        batch_op.drop_index('ix_case_record_assess')
    with op.batch_alter_table('case_clock', schema=None) as batch_op:
        batch_op.drop_index('ix_clock_assess_due')
        batch_op.drop_index('ix_clock_assess_started')
        batch_op.create_index('ix_clock_started', ['started_at'], unique=False)
    with op.batch_alter_table('case_event', schema=None) as batch_op:
        batch_op.drop_index('ix_case_event_assess')
        batch_op.create_index('ix_case_event_action_at', ['action', 'at'], unique=False)
