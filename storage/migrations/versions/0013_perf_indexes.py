"""deployments: an index for what runs in each environment now (`status`, a way back)

`status` shows, per environment, the last successful deploy of the project there; without this
index the database reads every successful deploy of the project (or of every project) and sorts
them, tens of milliseconds with 100,000 releases. With it, one index probe.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 19:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply."""
    op.create_index('ix_deployments_live', 'deployments',
                    ['project', 'environment', 'status', 'finished_at', 'id'])


def downgrade() -> None:
    """Revert."""
    op.drop_index('ix_deployments_live', table_name='deployments')
