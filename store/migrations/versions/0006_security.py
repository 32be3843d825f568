"""security: the request hash behind each Idempotency-Key, and failed sign-ins for throttling

Revision ID: 0006_security
Revises: 0004_assessment_indexes
Create Date: 2026-11-28 21:40:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0006_security'
down_revision: Union[str, Sequence[str], None] = '0004_assessment_indexes'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('case_record', schema=None) as batch_op:
        batch_op.add_column(sa.Column('request_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
    op.create_table(
        'signin_failure',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('address', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('signin_failure', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signin_failure_name'), ['name'], unique=False)
        batch_op.create_index(batch_op.f('ix_signin_failure_address'), ['address'], unique=False)
        batch_op.create_index(batch_op.f('ix_signin_failure_at'), ['at'], unique=False)


def downgrade() -> None:
    op.drop_table('signin_failure')
    with op.batch_alter_table('case_record', schema=None) as batch_op:
        batch_op.drop_column('request_hash')
