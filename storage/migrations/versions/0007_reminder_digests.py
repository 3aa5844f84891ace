"""reminder digests: when each person last got one

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from storage.models import UTCDateTime

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply."""
    op.create_table(
        'reminder_digests',
        sa.Column('user', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('last_sent', UTCDateTime(), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('user'),
    )


def downgrade() -> None:
    """Revert."""
    op.drop_table('reminder_digests')
