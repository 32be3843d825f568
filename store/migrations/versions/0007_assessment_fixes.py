"""assessment fixes: the case's workflow (step roles come from it) and the grid that found the case

`case_record.unit` is where the problem is; an upper grid that found it there is `finder_unit`, its ancestor at
`found_level`. Until now `unit` was the finder, so existing rows get finder_unit = unit. The workflow is copied
out of the stored decision so the assessment's joins need not read the decision JSON. The covering index follows.

Revision ID: 0007_assessment_fixes
Revises: 0004_assessment_indexes
Create Date: 2026-11-28 21:30:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


revision: str = '0007_assessment_fixes'
down_revision: Union[str, Sequence[str], None] = '0006_security'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('case_record', schema=None) as batch_op:
        batch_op.add_column(sa.Column('finder_unit', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('workflow', sa.String(length=64), nullable=True))
        batch_op.drop_index('ix_case_record_assess')
        batch_op.create_index('ix_case_record_assess', ['id', 'jurisdiction', 'workflow', 'finder_unit', 'found_level',
                                                        'closed_at'], unique=False)
    record = sa.table('case_record', sa.column('unit', sa.String), sa.column('finder_unit', sa.String),
                      sa.column('workflow', sa.String), sa.column('decision', sa.JSON))
    op.execute(record.update().values(finder_unit=record.c.unit, workflow=record.c.decision['workflow'].as_string()))


def downgrade() -> None:
    with op.batch_alter_table('case_record', schema=None) as batch_op:
        batch_op.drop_index('ix_case_record_assess')
        batch_op.create_index('ix_case_record_assess', ['id', 'jurisdiction', 'unit', 'found_level', 'closed_at'],
                              unique=False)
        batch_op.drop_column('workflow')
        batch_op.drop_column('finder_unit')
