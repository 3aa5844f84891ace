"""approvals: one row per person unless the policy lets one person sign for several roles

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply."""
    with op.batch_alter_table('approvals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seat', sqlmodel.sql.sqltypes.AutoString(length=64),
                                      nullable=False, server_default=''))
        batch_op.drop_constraint('uq_approval_person', type_='unique')
        batch_op.create_unique_constraint(
            'uq_approval_person', ['release_id', 'revision', 'approver', 'seat'])


def downgrade() -> None:
    """Revert."""
    with op.batch_alter_table('approvals', schema=None) as batch_op:
        batch_op.drop_constraint('uq_approval_person', type_='unique')
        batch_op.create_unique_constraint(
            'uq_approval_person', ['release_id', 'revision', 'approver'])
        batch_op.drop_column('seat')
