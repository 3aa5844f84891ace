"""bug_counts: what a project's bug tracker said of a release's open bugs, at each gate

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-10 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from storage.models import UTCDateTime

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply."""
    op.create_table(
        'bug_counts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('release_id', sa.Integer(), nullable=False),
        sa.Column('revision', sa.Integer(), nullable=False),
        sa.Column('moment', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column('scope', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column('url', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column('bugs_a', sa.Integer(), nullable=False),
        sa.Column('bugs_b', sa.Integer(), nullable=False),
        sa.Column('bugs_c', sa.Integer(), nullable=False),
        sa.Column('ids', sa.JSON(), nullable=False),
        sa.Column('read_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['release_id'], ['releases.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(op.f('ix_bug_counts_release_id'), 'bug_counts', ['release_id'],
                    unique=False)


def downgrade() -> None:
    """Revert."""
    op.drop_index(op.f('ix_bug_counts_release_id'), table_name='bug_counts')
    op.drop_table('bug_counts')
