"""ask_messages keep every DM with buttons: a sign-off ask, or a notice's prompt (verify,
accept, arm, decide, abandon), with the environment it is about

Rows from before this revision are sign-off asks.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 01:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply."""
    with op.batch_alter_table('ask_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=20),
                                      nullable=False, server_default='signoff'))
        batch_op.add_column(sa.Column('environment',
                                      sqlmodel.sql.sqltypes.AutoString(length=64),
                                      nullable=True))


def downgrade() -> None:
    """Revert."""
    with op.batch_alter_table('ask_messages', schema=None) as batch_op:
        batch_op.drop_column('environment')
        batch_op.drop_column('kind')
