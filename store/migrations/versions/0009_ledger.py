"""ledger: supervised objects, patrol records, cadence obligations

监管对象台账 (supervised_object, its change history object_change), 巡查记录 (patrol_record, the objects each checked,
cases opened from findings or found at an object: case_link), and the cadence sweeper's obligations
(cadence_obligation); a notification may now be about an obligation instead of a case.

Revision ID: 0009_ledger
Revises: 0004_assessment_indexes
Create Date: 2026-11-28 21:23:24.671672

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision: str = '0009_ledger'
down_revision: Union[str, Sequence[str], None] = '0007_assessment_fixes'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('patrol_record',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('jurisdiction', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('unit', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('activity', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('patrolled_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('patrollers', sa.JSON(), nullable=False),
    sa.Column('signed_by', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('findings', sa.JSON(), nullable=False),
    sa.Column('photos', sa.JSON(), nullable=False),
    sa.Column('idempotency_key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('jurisdiction', 'idempotency_key'),
    sa.UniqueConstraint('jurisdiction', 'unit', 'activity', 'patrolled_at', 'signed_by')
    )
    with op.batch_alter_table('patrol_record', schema=None) as batch_op:
        batch_op.create_index('ix_patrol_compliance', ['jurisdiction', 'day', 'activity', 'unit'], unique=False)
        batch_op.create_index('ix_patrol_latest', ['jurisdiction', 'patrolled_at'], unique=False)

    op.create_table('supervised_object',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('jurisdiction', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('unit', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('source_class', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True),
    sa.Column('classed_by', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('classed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('class_reason', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('identifier', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('address', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('longitude', sa.Float(), nullable=True),
    sa.Column('latitude', sa.Float(), nullable=True),
    sa.Column('registered_on', sa.Date(), nullable=False),
    sa.Column('search_key', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('jurisdiction', 'identifier')
    )
    with op.batch_alter_table('supervised_object', schema=None) as batch_op:
        batch_op.create_index('ix_object_unit', ['jurisdiction', 'unit'], unique=False)
        batch_op.create_index(batch_op.f('ix_supervised_object_jurisdiction'), ['jurisdiction'], unique=False)

    op.create_table('cadence_obligation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('jurisdiction', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('cadence', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=160), nullable=False),
    sa.Column('unit', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('object_id', sa.Integer(), nullable=True),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('period_end', sa.Date(), nullable=False),
    sa.Column('required', sa.Integer(), nullable=False),
    sa.Column('recorded', sa.Integer(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('changed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['object_id'], ['supervised_object.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('jurisdiction', 'cadence', 'period_start', 'subject')
    )
    with op.batch_alter_table('cadence_obligation', schema=None) as batch_op:
        batch_op.create_index('ix_obligation_status', ['jurisdiction', 'period_end', 'status'], unique=False)

    op.create_table('case_link',
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('object_id', sa.Integer(), nullable=True),
    sa.Column('patrol_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['case_record.id'], ),
    sa.ForeignKeyConstraint(['object_id'], ['supervised_object.id'], ),
    sa.ForeignKeyConstraint(['patrol_id'], ['patrol_record.id'], ),
    sa.PrimaryKeyConstraint('case_id')
    )
    with op.batch_alter_table('case_link', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_link_object_id'), ['object_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_case_link_patrol_id'), ['patrol_id'], unique=False)

    op.create_table('object_change',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('object_id', sa.Integer(), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('changes', sa.JSON(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
    sa.ForeignKeyConstraint(['object_id'], ['supervised_object.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('object_change', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_object_change_object_id'), ['object_id'], unique=False)

    op.create_table('patrol_object',
    sa.Column('patrol_id', sa.Integer(), nullable=False),
    sa.Column('object_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.ForeignKeyConstraint(['object_id'], ['supervised_object.id'], ),
    sa.ForeignKeyConstraint(['patrol_id'], ['patrol_record.id'], ),
    sa.PrimaryKeyConstraint('patrol_id', 'object_id')
    )
    with op.batch_alter_table('patrol_object', schema=None) as batch_op:
        batch_op.create_index('ix_patrol_object_object', ['object_id', 'patrol_id'], unique=False)

    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.add_column(sa.Column('obligation_id', sa.Integer(), nullable=True))
        batch_op.alter_column('case_id',
               existing_type=sa.INTEGER(),
               nullable=True)
        batch_op.create_index(batch_op.f('ix_notification_obligation_id'), ['obligation_id'], unique=False)
        batch_op.create_foreign_key('fk_notification_obligation_id', 'cadence_obligation', ['obligation_id'], ['id'])



def downgrade() -> None:
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_constraint('fk_notification_obligation_id', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_notification_obligation_id'))
        batch_op.alter_column('case_id',
               existing_type=sa.INTEGER(),
               nullable=False)
        batch_op.drop_column('obligation_id')

    with op.batch_alter_table('patrol_object', schema=None) as batch_op:
        batch_op.drop_index('ix_patrol_object_object')

    op.drop_table('patrol_object')
    with op.batch_alter_table('object_change', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_object_change_object_id'))

    op.drop_table('object_change')
    with op.batch_alter_table('case_link', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_link_patrol_id'))
        batch_op.drop_index(batch_op.f('ix_case_link_object_id'))

    op.drop_table('case_link')
    with op.batch_alter_table('cadence_obligation', schema=None) as batch_op:
        batch_op.drop_index('ix_obligation_status')

    op.drop_table('cadence_obligation')
    with op.batch_alter_table('supervised_object', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_supervised_object_jurisdiction'))
        batch_op.drop_index('ix_object_unit')

    op.drop_table('supervised_object')
    with op.batch_alter_table('patrol_record', schema=None) as batch_op:
        batch_op.drop_index('ix_patrol_latest')
        batch_op.drop_index('ix_patrol_compliance')

    op.drop_table('patrol_record')
