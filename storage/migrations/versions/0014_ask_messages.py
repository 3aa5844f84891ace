"""ask_messages: each sign-off ask sent as a DM, so its buttons go once the ask is over

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 00:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from storage.models import UTCDateTime

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply."""
    op.create_table(
        'ask_messages',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('release_id', sa.Integer(), nullable=False),
        sa.Column('revision', sa.Integer(), nullable=False),
        sa.Column('outbox_id', sa.Integer(), nullable=True),
        sa.Column('user', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('ts', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('asked_at', UTCDateTime(), nullable=False),
        sa.Column('settled_at', UTCDateTime(), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.ForeignKeyConstraint(['release_id'], ['releases.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('channel', 'ts', name='uq_ask_message'),
    )
    op.create_index('ix_ask_messages_open', 'ask_messages', ['release_id', 'settled_at'])
    op.create_index(op.f('ix_ask_messages_outbox_id'), 'ask_messages', ['outbox_id'])


def downgrade() -> None:
    """Revert."""
    op.drop_index(op.f('ix_ask_messages_outbox_id'), table_name='ask_messages')
    op.drop_index('ix_ask_messages_open', table_name='ask_messages')
    op.drop_table('ask_messages')
