"""The numeric GitLab project IDs the client learns, kept in the database for every replica.

Kept rather than re-learned on each start: once a project is renamed or moved in GitLab its
old path (the one the policy still names) may answer 404, refuse writes, or lead to another
project that took the path over, so only the ID learned before the rename is safe. One small
row per project; a replica reads them all in one query the first time it needs one.
"""

from __future__ import annotations

from bot.transition import Clock
from storage import queries as q
from storage.db import SessionMaker, transaction


class StoredProjectIds:
    """bot.gitlab.ProjectIds over the gitlab_projects table."""

    def __init__(self, sessions: SessionMaker, clock: Clock) -> None:
        self.sessions, self.clock = sessions, clock

    async def load(self) -> dict[str, int]:
        """Every kept path and its ID."""
        async with self.sessions() as session:
            return await q.gitlab_project_ids(session)

    async def save(self, path: str, project_id: int) -> int:
        """Keep the ID unless another replica kept one first; the ID kept."""
        async with transaction(self.sessions) as session:
            return await q.keep_gitlab_project_id(session, path=path, gitlab_id=project_id,
                                                  at=self.clock())
