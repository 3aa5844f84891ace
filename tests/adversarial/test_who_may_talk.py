"""Only the bot's own workspace is served: other teams, guests and outsiders get one sentence."""

from __future__ import annotations

from bot.policy import Policy
from emulators.sample import DEV, DIRECTOR, sample_policy
from emulators.slack_driver import SlackDriver
from handlers.access import OUTSIDER
from handlers.blocks import ActionId
from tests.adversarial.common import approvals, button_value, ready, row_counts
from tests.scenario.harness import SECRET, Harness, readable, running_app, wait_for

GUEST, STRANGER = "U0GUEST", "U0STRANGER"


async def _answer(h: Harness, driver: SlackDriver, user: str, text: str) -> str:
    """A command sent by `driver`; the private answer the user gets."""
    before = len(h.slack.ephemerals(user))
    assert (await driver.command(user, text)).status == 200
    await wait_for(lambda: len(h.slack.ephemerals(user)) > before)
    await h.settle()
    return readable(h.slack.ephemerals(user)[before])


async def test_another_teams_signed_request_is_refused(db_url: str, policy: Policy) -> None:
    """A signed request from another workspace files nothing and lists nothing."""
    async with running_app(db_url, policy) as h:
        await ready(h)
        before = await row_counts(h)
        async with SlackDriver(h.url, SECRET, h.slack, team_id="T0OTHER") as other:
            assert await _answer(h, other, DEV, "request web v1.2.0 Sneaky") == OUTSIDER
            assert await _answer(h, other, DEV, "list all") == OUTSIDER
            value = button_value(h, 1)
            reply = await other.click(DIRECTOR, ActionId.APPROVE, value)
            assert reply.status == 200
        await h.settle()
        assert await row_counts(h) == before
        assert await approvals(h, 1) == []


async def test_guests_and_external_users_may_not_act(db_url: str, policy: Policy) -> None:
    """A guest and a Slack Connect user from another team, both in our workspace's channel."""
    async with running_app(db_url, policy) as h:
        h.slack.users[GUEST] = {"is_ultra_restricted": True}
        h.slack.users[STRANGER] = {"team_id": "T0PARTNER"}
        before = await row_counts(h)
        assert await h.says(GUEST, "request web v1.2.0 Guest") == OUTSIDER
        assert await h.says(STRANGER, "request web v1.2.0 Partner") == OUTSIDER
        assert await row_counts(h) == before


async def test_the_policy_may_allow_guests_and_other_teams(db_url: str) -> None:
    """`slack: {team_ids, allow_guests}` widens who is served."""
    policy = sample_policy(slack={"team_ids": ["T0TEAM", "T0OTHER"], "allow_guests": True})
    async with running_app(db_url, policy) as h:
        h.slack.users[GUEST] = {"is_restricted": True}
        assert "Filed" in await h.says(GUEST, "request web v1.2.0 Guest")
        async with SlackDriver(h.url, SECRET, h.slack, team_id="T0OTHER") as other:
            h.slack.users[STRANGER] = {"team_id": "T0OTHER"}
            assert "Filed" in await _answer(h, other, STRANGER, "request web v1.3.0 Other")


async def test_the_policy_may_narrow_to_one_other_team(db_url: str) -> None:
    """team_ids replaces the bot's own workspace: its own members are then refused."""
    async with running_app(db_url, sample_policy(slack={"team_ids": ["T0ELSE"]})) as h:
        assert await h.says(DEV, "request web v1.2.0 Narrow") == OUTSIDER


async def test_an_org_wide_click_works_when_allowed(db_url: str, policy: Policy) -> None:
    """Enterprise Grid, installed org-wide: `"team": null`, the workspace in user.team_id."""
    async with running_app(db_url, policy) as h:
        h.slack.enterprise_id = "E0ORG"
        rid = await ready(h)
        async with SlackDriver(h.url, SECRET, h.slack, enterprise_id="E0ORG",
                               org_wide=True) as grid:
            reply = await grid.click(DIRECTOR, ActionId.APPROVE, button_value(h, rid))
            assert reply.status == 200, reply.body
            await h.settle()
            assert [a.approver for a in await approvals(h, rid)] == [DIRECTOR]
            assert "Filed" in await _answer(h, grid, DEV, "request web v1.2.0 From the org")


async def test_an_org_wide_click_from_another_org_is_refused(db_url: str,
                                                             policy: Policy) -> None:
    """The same shape from an organization that is not ours: nothing recorded."""
    async with running_app(db_url, policy) as h:
        h.slack.enterprise_id = "E0ORG"
        rid = await ready(h)
        async with SlackDriver(h.url, SECRET, h.slack, team_id="T0ELSE",
                               enterprise_id="E0ELSE", org_wide=True) as grid:
            await grid.click(DIRECTOR, ActionId.APPROVE, button_value(h, rid))
            await h.settle()
        assert await approvals(h, rid) == []
