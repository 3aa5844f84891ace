"""People and roles: the policy's user IDs plus Slack user-group members, cached."""

from __future__ import annotations

import logging
import time

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.people import actor_for, user_groups
from bot.policy import Policy
from bot.workflow import Actor

log = logging.getLogger(__name__)
TTL_SECONDS = 300.0


class Directory:
    """Resolves user groups through `usergroups.users.list`, refreshed every few minutes."""

    def __init__(self, policy: Policy, client: AsyncWebClient, ttl: float = TTL_SECONDS) -> None:
        self.policy, self.client, self.ttl = policy, client, ttl
        self._members: dict[str, frozenset[str]] = {}
        self._fetched_at = -1e18

    async def groups(self) -> dict[str, frozenset[str]]:
        """Members of every user group the policy names (stale data beats none on errors)."""
        if time.monotonic() - self._fetched_at < self.ttl:
            return self._members
        for group in sorted(user_groups(self.policy)):
            try:
                resp = await self.client.usergroups_users_list(usergroup=group)
                self._members[group] = frozenset(resp.get("users") or [])
            except SlackApiError as exc:
                log.warning("usergroup %s not resolved: %s", group, exc.response.get("error"))
        self._fetched_at = time.monotonic()
        return self._members

    async def actor(self, user: str) -> Actor:
        """A person with every role the policy gives them."""
        return actor_for(self.policy, user, await self.groups())

    async def users_in_roles(self, roles: list[str]) -> list[str]:
        """Every user holding any of these roles, groups expanded, in a stable order."""
        groups = await self.groups()
        users: dict[str, None] = {}
        for role in roles:
            for ident in self.policy.roles.get(role, []):
                for user in sorted(groups.get(ident, ())) if ident.startswith("S") else [ident]:
                    users[user] = None
        return list(users)
