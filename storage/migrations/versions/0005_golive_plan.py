"""releases carry a go-live plan (field → text) and its review, replacing four loose columns

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = (('rollback_plan', 'rollback'), ('impact', 'impact'), ('deploy_order', 'deploy_order'))


def upgrade() -> None:
    """Apply: move the old columns' text into the plan, then drop them."""
    with op.batch_alter_table('releases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('plan', sa.JSON(), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('plan_review', sqlmodel.sql.sqltypes.AutoString(length=10),
                                      nullable=True))
        batch_op.add_column(sa.Column('plan_reviewed_by',
                                      sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
        batch_op.add_column(sa.Column('plan_review_note',
                                      sqlmodel.sql.sqltypes.AutoString(length=4000),
                                      nullable=True))
    _copy_into_plan()
    # Plain DROP COLUMN (SQLite 3.35+, PostgreSQL): a batch copy of `releases` would break the
    # foreign keys that point at it.
    for column, _ in _OLD:
        op.drop_column('releases', column)
    op.drop_column('releases', 'db_scripts')


def _copy_into_plan() -> None:
    """Each release's old plan text, as plan fields (db_scripts was only yes or no)."""
    bind = op.get_bind()
    rows = bind.execute(sa.text(
        "SELECT id, rollback_plan, impact, deploy_order, db_scripts FROM releases")).fetchall()
    table = sa.table('releases', sa.column('id', sa.Integer), sa.column('plan', sa.JSON))
    for row in rows:
        plan = {key: text for (_, key), text in zip(_OLD, row[1:4], strict=True) if text}
        if row[4]:
            plan['db_scripts'] = 'yes'
        if plan:
            bind.execute(table.update().where(table.c.id == row[0]).values(plan=plan))


def downgrade() -> None:
    """Revert (the plan's other fields are lost)."""
    with op.batch_alter_table('releases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rollback_plan', sa.String(4000), nullable=False,
                                      server_default=''))
        batch_op.add_column(sa.Column('db_scripts', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('impact', sa.String(4000), nullable=False,
                                      server_default=''))
        batch_op.add_column(sa.Column('deploy_order', sa.String(4000), nullable=False,
                                      server_default=''))
        batch_op.drop_column('plan_review_note')
        batch_op.drop_column('plan_reviewed_by')
        batch_op.drop_column('plan_review')
        batch_op.drop_column('plan')
