"""People and roles: the policy's user IDs plus Slack user-group members, cached."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.people import actor_for, user_groups
from bot.policy import Policy
from bot.workflow import Actor

log = logging.getLogger(__name__)
TTL_SECONDS = 300.0  # how often user groups are asked again
STALE_SECONDS = 900.0  # the longest a group Slack can't answer about keeps its last members
# Slack's answer for a group that does not exist or was disabled (its "delete").
GONE = frozenset({"no_such_subteam"})


class Directory:
    """Resolves user groups through `usergroups.users.list`; failing closed.

    A group Slack says is gone gives no roles from the next refresh on (at most TTL_SECONDS).
    A group Slack can't answer about keeps its last members for at most STALE_SECONDS after
    they were last confirmed, then gives no roles until Slack answers again.
    """

    def __init__(self, policy: Policy, client: AsyncWebClient, ttl: float = TTL_SECONDS,
                 stale: float = STALE_SECONDS, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.policy, self.client, self.ttl, self.stale = policy, client, ttl, stale
        self.clock = clock
        self._members: dict[str, frozenset[str]] = {}
        self._confirmed_at: dict[str, float] = {}
        self._fetched_at = -1e18

    async def groups(self) -> dict[str, frozenset[str]]:
        """Members of every user group the policy names, as far as Slack vouches for them."""
        now = self.clock()
        if now - self._fetched_at >= self.ttl:
            for group in sorted(user_groups(self.policy)):
                await self._refresh(group, now)
            self._fetched_at = now
        return {group: members for group, members in self._members.items()
                if now - self._confirmed_at.get(group, -1e18) <= self.stale}

    async def _refresh(self, group: str, now: float) -> None:
        """Ask Slack for one group; forget it at once when Slack says it is gone."""
        try:
            resp = await self.client.usergroups_users_list(usergroup=group)
        except SlackApiError as exc:
            error = str(exc.response.get("error"))
            log.warning("usergroup %s not resolved: %s", group, error)
            if error in GONE:
                self._members.pop(group, None)
                self._confirmed_at.pop(group, None)
            return
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("usergroup %s not resolved: %s", group, type(exc).__name__)
            return
        self._members[group] = frozenset(resp.get("users") or [])
        self._confirmed_at[group] = now

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
