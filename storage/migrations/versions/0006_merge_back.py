"""releases remember which shipped hotfixes their pinned commit was checked against

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply."""
    with op.batch_alter_table('releases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('merge_back', sa.JSON(), nullable=True))


def downgrade() -> None:
    """Revert."""
    with op.batch_alter_table('releases', schema=None) as batch_op:
        batch_op.drop_column('merge_back')
