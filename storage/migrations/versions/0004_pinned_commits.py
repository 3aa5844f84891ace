"""releases pin a commit per revision; deployments record the commit shipped and the one before

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 13:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply."""
    with op.batch_alter_table('releases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pinned_sha', sqlmodel.sql.sqltypes.AutoString(length=40),
                                      nullable=True))
        batch_op.add_column(sa.Column('pinned_revision', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('newer_commits', sa.Integer(), nullable=False,
                                      server_default='0'))
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sha', sqlmodel.sql.sqltypes.AutoString(length=40),
                                      nullable=True))
        batch_op.add_column(sa.Column('previous_sha',
                                      sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True))
        batch_op.add_column(sa.Column('previous_release_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('runs_release_id', sa.Integer(), nullable=True))


def downgrade() -> None:
    """Revert."""
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.drop_column('runs_release_id')
        batch_op.drop_column('previous_release_id')
        batch_op.drop_column('previous_sha')
        batch_op.drop_column('sha')
    with op.batch_alter_table('releases', schema=None) as batch_op:
        batch_op.drop_column('newer_commits')
        batch_op.drop_column('pinned_revision')
        batch_op.drop_column('pinned_sha')
