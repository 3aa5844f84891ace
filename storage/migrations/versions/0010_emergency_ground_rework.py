"""releases record an emergency's ground and reason, and the last rejection sent for rework

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply."""
    with op.batch_alter_table('releases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ground', sqlmodel.sql.sqltypes.AutoString(length=32),
                                      nullable=True))
        batch_op.add_column(sa.Column('ground_reason',
                                      sqlmodel.sql.sqltypes.AutoString(length=4000),
                                      nullable=True))
        batch_op.add_column(sa.Column('rejected_by', sqlmodel.sql.sqltypes.AutoString(length=32),
                                      nullable=True))
        batch_op.add_column(sa.Column('rejection_reason',
                                      sqlmodel.sql.sqltypes.AutoString(length=4000),
                                      nullable=True))


def downgrade() -> None:
    """Revert."""
    with op.batch_alter_table('releases', schema=None) as batch_op:
        batch_op.drop_column('rejection_reason')
        batch_op.drop_column('rejected_by')
        batch_op.drop_column('ground_reason')
        batch_op.drop_column('ground')
