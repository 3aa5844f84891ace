"""acceptances: a tester's verdict per environment before production; releases record arming

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from storage.models import UTCDateTime

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply."""
    op.create_table(
        'acceptances',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('release_id', sa.Integer(), nullable=False),
        sa.Column('revision', sa.Integer(), nullable=False),
        sa.Column('environment', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('passed', sa.Boolean(), nullable=False),
        sa.Column('tester', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('note', sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['release_id'], ['releases.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('release_id', 'revision', 'environment', name='uq_acceptance'),
    )
    op.create_index(op.f('ix_acceptances_release_id'), 'acceptances', ['release_id'],
                    unique=False)
    with op.batch_alter_table('releases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('armed_by', sqlmodel.sql.sqltypes.AutoString(length=32),
                                      nullable=True))
        batch_op.add_column(sa.Column('armed_at', UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('armed_revision', sa.Integer(), nullable=True))


def downgrade() -> None:
    """Revert."""
    with op.batch_alter_table('releases', schema=None) as batch_op:
        batch_op.drop_column('armed_revision')
        batch_op.drop_column('armed_at')
        batch_op.drop_column('armed_by')
    op.drop_index(op.f('ix_acceptances_release_id'), table_name='acceptances')
    op.drop_table('acceptances')
