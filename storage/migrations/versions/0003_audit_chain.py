"""audit trail: each row chained to the one before by sha256; TRUNCATE refused on PostgreSQL

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from storage.models import UTCDateTime, audit_chain

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PG_NO_TRUNCATE = """
CREATE OR REPLACE FUNCTION audit_trail_no_truncate() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION 'the audit trail cannot be truncated'; END $$ LANGUAGE plpgsql
"""
_SQLITE_NO_UPDATE = ("CREATE TRIGGER audit_trail_no_update BEFORE UPDATE ON audit_trail "
                     "BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END")

_rows = sa.table(
    'audit_trail', sa.column('id', sa.Integer()), sa.column('release_id', sa.Integer()),
    sa.column('at', UTCDateTime()), sa.column('actor', sa.String()),
    sa.column('action', sa.String()), sa.column('from_state', sa.String()),
    sa.column('to_state', sa.String()), sa.column('detail', sa.JSON()),
    sa.column('chain', sa.String()))


def upgrade() -> None:
    """Apply."""
    op.add_column('audit_trail', sa.Column(
        'chain', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False, server_default=''))
    postgres = op.get_bind().dialect.name == "postgresql"
    # The append-only guard is lifted only for this one fill, inside the migration's transaction.
    if postgres:
        op.execute("ALTER TABLE audit_trail DISABLE TRIGGER audit_trail_no_change")
    else:
        op.execute("DROP TRIGGER audit_trail_no_update")
    _fill_chain()
    if postgres:
        op.execute("ALTER TABLE audit_trail ENABLE TRIGGER audit_trail_no_change")
        op.execute(_PG_NO_TRUNCATE)
        op.execute("CREATE TRIGGER audit_trail_no_truncate BEFORE TRUNCATE ON audit_trail "
                   "FOR EACH STATEMENT EXECUTE FUNCTION audit_trail_no_truncate()")
    else:
        op.execute(_SQLITE_NO_UPDATE)


def _fill_chain() -> None:
    """Chain the rows already there, oldest first."""
    bind = op.get_bind()
    previous = ""
    for row in bind.execute(sa.select(_rows).order_by(_rows.c.id)).mappings().all():
        previous = audit_chain(previous, release_id=row['release_id'], at=row['at'],
                               actor=row['actor'], action=row['action'],
                               from_state=row['from_state'], to_state=row['to_state'],
                               detail=row['detail'])
        bind.execute(sa.update(_rows).where(_rows.c.id == row['id']).values(chain=previous))


def downgrade() -> None:
    """Revert."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_trail_no_truncate ON audit_trail")
        op.execute("DROP FUNCTION audit_trail_no_truncate()")
        op.drop_column('audit_trail', 'chain')
        return
    op.execute("DROP TRIGGER audit_trail_no_update")
    op.drop_column('audit_trail', 'chain')
    op.execute(_SQLITE_NO_UPDATE)
