"""Who holds which role: the policy's user IDs plus members of its Slack user groups."""

from __future__ import annotations

from collections.abc import Mapping, Set

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
