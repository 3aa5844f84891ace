"""releases record who confirmed the release type at review, and the executive's decision after
a failed online verification

A plan approved before this revision confirmed the type it had then: the reviewer is copied.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(name: str, length: int) -> sa.Column:
    """A nullable text column."""
    return sa.Column(name, sqlmodel.sql.sqltypes.AutoString(length=length), nullable=True)


def upgrade() -> None:
    """Apply."""
    with op.batch_alter_table('releases', schema=None) as batch_op:
        batch_op.add_column(_text('type_confirmed_by', 32))
        batch_op.add_column(_text('type_confirmed_as', 20))
        batch_op.add_column(_text('decision', 10))
        batch_op.add_column(_text('decided_by', 32))
        batch_op.add_column(_text('decision_reason', 4000))
        batch_op.add_column(sa.Column('decided_revision', sa.Integer(), nullable=True))
    op.execute("UPDATE releases SET type_confirmed_by = plan_reviewed_by, type_confirmed_as = type "
               "WHERE plan_review = 'ok'")


def downgrade() -> None:
    """Revert."""
    with op.batch_alter_table('releases', schema=None) as batch_op:
        for name in ('decided_revision', 'decision_reason', 'decided_by', 'decision',
                     'type_confirmed_as', 'type_confirmed_by'):
            batch_op.drop_column(name)
