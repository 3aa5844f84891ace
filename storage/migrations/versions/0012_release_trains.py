"""release_components: the projects of a release (a train), each with its ref and pinned commit

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-10 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply; every release filed before trains becomes a train of its one project."""
    op.create_table(
        'release_components',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('release_id', sa.Integer(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('project', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column('ref', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('pinned_sha', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column('newer_commits', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['release_id'], ['releases.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('release_id', 'project', name='uq_component_project'),
        sa.UniqueConstraint('release_id', 'position', name='uq_component_position'),
    )
    op.create_index(op.f('ix_release_components_release_id'), 'release_components',
                    ['release_id'], unique=False)
    op.execute(
        "INSERT INTO release_components (release_id, position, project, ref, pinned_sha, "
        "newer_commits) SELECT id, 0, project, ref, pinned_sha, newer_commits FROM releases")


def downgrade() -> None:
    """Revert."""
    op.drop_index(op.f('ix_release_components_release_id'), table_name='release_components')
    op.drop_table('release_components')
