"""Who holds which role: the policy's user IDs plus members of its Slack user groups."""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from typing import Protocol

from bot.policy import Policy
from bot.workflow import Actor


def roles_of(policy: Policy, user: str,
             group_members: Mapping[str, Set[str]] | None = None) -> frozenset[str]:
    """Every role the policy gives this user, directly or through a user group."""
    groups = group_members or {}
    return frozenset(role for role, ids in policy.roles.items()
                     if user in ids or any(user in groups.get(i, ()) for i in ids))


def actor_for(policy: Policy, user: str,
              group_members: Mapping[str, Set[str]] | None = None) -> Actor:
    """The workflow's view of a person."""
    return Actor(user, roles_of(policy, user, group_members))


def user_groups(policy: Policy) -> set[str]:
    """The user group IDs (S…) the policy names (roles and notify), to be resolved to members."""
    named = [*(i for ids in policy.roles.values() for i in ids),
             *(i for ids in policy.notify.values() for i in ids)]
    return {i for i in named if i.startswith("S")}


class People(Protocol):
    """Who holds which roles, as the Slack side resolves them (user groups included)."""

    async def users_in_roles(self, roles: list[str]) -> list[str]:
        """Every user holding any of these roles."""
        ...

    async def actor(self, user: str) -> Actor:
        """A person with every role they hold."""
        ...


class PolicyPeople:
    """People as the policy names them directly; user groups are not expanded."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    async def users_in_roles(self, roles: Sequence[str]) -> list[str]:
        """The policy's user IDs for these roles, in a stable order."""
        users = (i for role in roles for i in self.policy.roles.get(role, [])
                 if not i.startswith("S"))
        return list(dict.fromkeys(users))

    async def actor(self, user: str) -> Actor:
        """The person with the roles the policy names them for."""
        return actor_for(self.policy, user)
