"""gitlab_projects: the numeric ID learned for each project path the policy names

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from storage.models import UTCDateTime

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply."""
    op.create_table('gitlab_projects',
    sa.Column('path', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('gitlab_id', sa.Integer(), nullable=False),
    sa.Column('learned_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('path')
    )


def downgrade() -> None:
    """Revert."""
    op.drop_table('gitlab_projects')
