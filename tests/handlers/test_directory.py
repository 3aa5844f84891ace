"""Roles through Slack user groups fail closed: a deleted or unanswerable group gives no role."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from emulators.sample import CTO, OPS, sample_policy
from emulators.slack import SlackEmulator
from handlers.directory import STALE_SECONDS, TTL_SECONDS, Directory

GROUP = "S0RELMGRS"
POLICY = sample_policy(roles={"release_manager": [GROUP], "executive": [CTO]})


class Ticks:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        """The current time."""
        return self.now


@pytest.fixture
async def slack() -> AsyncIterator[SlackEmulator]:
    """The Slack emulator with one user group holding the release manager."""
    async with SlackEmulator() as emulator:
        emulator.usergroups[GROUP] = [OPS]
        yield emulator


def directory(slack: SlackEmulator, clock: Ticks) -> Directory:
    """A directory asking the emulator."""
    return Directory(POLICY, AsyncWebClient(token="xoxb-test", base_url=slack.base_url),
                     clock=clock)


async def test_a_deleted_group_removes_its_roles_at_the_next_refresh(slack: SlackEmulator
                                                                    ) -> None:
    """Slack disables ("deletes") the group: its members lose the role within TTL_SECONDS."""
    clock = Ticks()
    people = directory(slack, clock)
    assert "release_manager" in (await people.actor(OPS)).roles
    slack.disabled_usergroups.add(GROUP)
    clock.now += TTL_SECONDS
    assert (await people.actor(OPS)).roles == frozenset()
    assert await people.users_in_roles(["release_manager"]) == []
    del slack.usergroups[GROUP]
    clock.now += TTL_SECONDS
    assert (await people.actor(OPS)).roles == frozenset()


async def test_a_group_slack_cannot_answer_about_expires(slack: SlackEmulator) -> None:
    """Errors keep the last confirmed members for at most STALE_SECONDS, then none."""
    clock = Ticks()
    people = directory(slack, clock)
    assert "release_manager" in (await people.actor(OPS)).roles
    slack.fail("usergroups.users.list", times=2, error="internal_error")
    clock.now += TTL_SECONDS
    assert "release_manager" in (await people.actor(OPS)).roles  # a blip is not an outage
    clock.now += STALE_SECONDS - TTL_SECONDS + 1
    assert (await people.actor(OPS)).roles == frozenset()
    assert (await people.actor(CTO)).roles == frozenset({"executive"})  # listed by ID: kept


async def test_a_disabled_group_is_hidden_unless_asked_for(slack: SlackEmulator) -> None:
    """The emulator answers as Slack documents: disabled groups only with include_disabled."""
    client = AsyncWebClient(token="xoxb-test", base_url=slack.base_url)
    slack.disabled_usergroups.add(GROUP)
    with pytest.raises(Exception, match="no_such_subteam"):
        await client.usergroups_users_list(usergroup=GROUP)
    resp = await client.usergroups_users_list(usergroup=GROUP, include_disabled=True)
    assert resp["users"] == [OPS]
