"""Roles through a Slack user group fail closed in the running app: nothing is done for a
member of a group that is gone, or that Slack has not vouched for in too long."""

from __future__ import annotations

import pytest

from bot.app import RUNTIME
from emulators.sample import OPS, sample_policy
from tests.adversarial.common import row_counts
from tests.scenario.harness import Harness, running_app
from tests.scenario.test_gitlab_flow import approved

GROUP = "S0RELMGRS"
POLICY = sample_policy(roles={"release_manager": [GROUP]})


async def _refused(h: Harness, rid: int) -> None:
    """The group's former member is refused the deploy; nothing written, no pipeline."""
    before = await row_counts(h)
    assert "Only the release manager" in await h.says(OPS, f"deploy REL-{rid}")
    assert await row_counts(h) == before
    assert h.gitlab.pipelines == {}


@pytest.mark.parametrize("how", ["deleted", "disabled"])
async def test_a_deleted_group_gives_its_members_no_role(db_url: str, how: str) -> None:
    """The release managers' group is deleted (or disabled, Slack's delete): at the next
    refresh its former member can't deploy; nothing is written, GitLab is not asked."""
    async with running_app(db_url, POLICY) as h:
        h.slack.usergroups[GROUP] = [OPS]
        h.app[RUNTIME].directory.ttl = 0  # every request is the next refresh
        rid = await approved(h, "web", "v1.1.0")
        if how == "deleted":
            del h.slack.usergroups[GROUP]
        else:
            h.slack.disabled_usergroups.add(GROUP)
        await _refused(h, rid)
        h.slack.usergroups[GROUP] = [OPS]  # the role did come from the group: back, it works
        h.slack.disabled_usergroups.discard(GROUP)
        assert "pipeline is running" in await h.says(OPS, f"deploy REL-{rid}")


async def test_a_group_slack_cannot_answer_about_fails_closed(db_url: str) -> None:
    """Slack errs on the group past the allowed staleness: its member has no role."""
    async with running_app(db_url, POLICY) as h:
        h.slack.usergroups[GROUP] = [OPS]
        directory = h.app[RUNTIME].directory
        rid = await approved(h, "web", "v1.1.0")
        directory.ttl = directory.stale = 0  # every request refreshes; none may be stale
        h.slack.fail("usergroups.users.list", times=1000, error="internal_error")
        await _refused(h, rid)
