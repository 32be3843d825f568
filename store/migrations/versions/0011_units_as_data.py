"""units as data: a version's units are content-addressed chunks shared by all versions (store/unitchunks.py)

Revision ID: 0011_units_as_data
Revises: 0010_integration
Create Date: 2026-11-29 01:00:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from store.unitchunks import chunked

revision: str = '0011_units_as_data'
down_revision: Union[str, Sequence[str], None] = '0010_integration'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_chunk = sa.table('unit_chunk', sa.column('hash', sa.String), sa.column('units', sa.JSON))
_version = sa.table('policy_version', sa.column('id', sa.Integer), sa.column('document', sa.JSON),
                    sa.column('unit_chunks', sa.JSON))


def upgrade() -> None:
    op.create_table(
        'unit_chunk',
        sa.Column('hash', sa.String(length=32), primary_key=True),
        sa.Column('units', sa.JSON(), nullable=False),
    )
    with op.batch_alter_table('policy_version', schema=None) as batch_op:
        batch_op.add_column(sa.Column('unit_chunks', sa.JSON(), nullable=False, server_default='[]'))
    conn = op.get_bind()
    stored: set[str] = set()
    for (vid,) in conn.execute(sa.select(_version.c.id)).all():  # one document in memory at a time
        document = conn.execute(sa.select(_version.c.document).where(_version.c.id == vid)).scalar_one()
        chunks = chunked(document.get('units', []))
        new = [{'hash': h, 'units': units} for h, units in chunks if h not in stored]
        if new:
            conn.execute(_chunk.insert(), new)
            stored.update(row['hash'] for row in new)
        conn.execute(_version.update().where(_version.c.id == vid).values(
            document={**document, 'units': []}, unit_chunks=[h for h, _ in chunks]))


def downgrade() -> None:
    conn = op.get_bind()
    for vid, document, hashes in conn.execute(sa.select(_version)).all():
        found = dict(conn.execute(sa.select(_chunk.c.hash, _chunk.c.units).where(_chunk.c.hash.in_(hashes))).all())
        conn.execute(_version.update().where(_version.c.id == vid).values(
            document={**document, 'units': [u for h in hashes for u in found[h]]}))
    with op.batch_alter_table('policy_version', schema=None) as batch_op:
        batch_op.drop_column('unit_chunks')
    op.drop_table('unit_chunk')
