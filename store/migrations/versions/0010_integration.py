"""integration: what a report carries, unit boundaries, the event outbox and webhook deliveries

Revision ID: 0010_integration
Revises: 0004_assessment_indexes
Create Date: 2026-11-28 21:40:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


revision: str = '0010_integration'
down_revision: Union[str, Sequence[str], None] = '0009_ledger'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('case_record', schema=None) as batch_op:
        batch_op.add_column(sa.Column('channel', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('reporter', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('lat', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('lon', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('coord_system', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('address', sa.String(length=500), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('attachments', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('observed_at', sa.DateTime(), nullable=True))
    op.create_table(
        'unit_boundaries',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('jurisdiction', sa.String(length=64), nullable=False, index=True),
        sa.Column('version_number', sa.Integer(), nullable=False),
        sa.Column('content_hash', sa.String(length=32), nullable=False),
        sa.Column('geojson', sa.JSON(), nullable=False),
        sa.Column('author', sa.String(length=128), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.UniqueConstraint('jurisdiction', 'version_number'),
    )
    op.create_table(
        'outbox_event',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('seq', sa.Integer(), nullable=True, unique=True),
        sa.Column('jurisdiction', sa.String(length=64), nullable=False, index=True),
        sa.Column('case_id', sa.Integer(), sa.ForeignKey('case_record.id'), nullable=False, index=True),
        sa.Column('kind', sa.String(length=40), nullable=False),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.Column('data', sa.JSON(), nullable=False),
    )
    op.create_index('ix_outbox_unsequenced', 'outbox_event', ['seq', 'id'])
    op.create_table(
        'webhook_subscription',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('jurisdiction', sa.String(length=64), nullable=False, index=True),
        sa.Column('url', sa.String(length=2000), nullable=False),
        sa.Column('kinds', sa.JSON(), nullable=False),
        sa.Column('secret', sa.String(length=200), nullable=False),
        sa.Column('description', sa.String(length=200), nullable=False),
        sa.Column('created_by', sa.String(length=128), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('active', sa.Boolean(), nullable=False),
    )
    op.create_table(
        'webhook_delivery',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('subscription_id', sa.Integer(), sa.ForeignKey('webhook_subscription.id'), nullable=False,
                  index=True),
        sa.Column('event_id', sa.Integer(), sa.ForeignKey('outbox_event.id'), nullable=False),
        sa.Column('case_id', sa.Integer(), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
        sa.Column('lease_until', sa.DateTime(), nullable=True),
        sa.Column('last_error', sa.String(length=500), nullable=False),
        sa.Column('last_status', sa.Integer(), nullable=True),
        sa.Column('delivered_at', sa.DateTime(), nullable=True),
    )
    op.create_index('ix_delivery_due', 'webhook_delivery', ['status', 'next_attempt_at'])
    op.create_index('ix_delivery_order', 'webhook_delivery', ['subscription_id', 'case_id', 'status', 'seq'])


def downgrade() -> None:
    op.drop_table('webhook_delivery')
    op.drop_table('webhook_subscription')
    op.drop_table('outbox_event')
    op.drop_table('unit_boundaries')
    with op.batch_alter_table('case_record', schema=None) as batch_op:
        for column in ('observed_at', 'attachments', 'address', 'coord_system', 'lon', 'lat', 'reporter', 'channel'):
            batch_op.drop_column(column)
