"""Release notes a reader can trust: from what was live to the pinned commit, with known issues."""

from __future__ import annotations

from bot.policy import Policy
from emulators.sample import CTO, DEV, DIRECTOR, OPS, TESTER
from handlers.blocks import ActionId
from tests.fixtures import EMERGENCY
from tests.scenario.harness import Harness, running_app
from tests.scenario.test_gitlab_flow import approved


async def ship(h: Harness, rid: int) -> None:
    """Deploy a release to its next environment by command; GitLab reports success."""
    assert "pipeline is running" in await h.says(OPS, f"deploy REL-{rid}")
    h.gitlab.set_status(h.pipeline_of(rid).id, "success")
    assert await h.poll() == 1


async def live(h: Harness, rid: int) -> None:
    """Deploy a single-environment release and verify it."""
    await ship(h, rid)
    assert "Verified" in await h.says(TESTER, f"verify REL-{rid} pass")


async def test_notes_run_from_the_live_commit_to_the_pin(db_url: str, policy: Policy) -> None:
    """A release signed off before another shipped starts its notes at what is live now."""
    async with running_app(db_url, policy) as h:
        web = h.gitlab.project("acme/web")
        await live(h, await approved(h, "web", "v1.0.0"))
        later = await approved(h, "web", "main")  # REL-2: filed and signed off first…
        shipped = await approved(h, "web", "v1.1.0")  # …but REL-3 goes live before it
        await live(h, shipped)
        v110, main = h.gitlab.resolve(web, "v1.1.0").sha, h.gitlab.resolve(web, "main").sha
        span = f"REL-{shipped} release/REL-{shipped} @ {v110[:7]} → main @ {main[:7]}"
        notes = await h.says(DEV, f"notes REL-{later}")
        assert span in notes
        assert "Update footer links" in notes and "Redesign checkout page" not in notes
        # An approver reads the same from the button in their ask, privately.
        asked = await h.click(DIRECTOR, ActionId.NOTES, str(later),
                              channel=h.slack.dm_channel(DIRECTOR))
        assert f"Release notes of REL-{later}" in asked and span in asked
        # Deployed, its notes still start at what it replaced, not at itself.
        await ship(h, later)
        assert span in await h.says(DEV, f"notes REL-{later}")


async def test_notes_name_the_known_issues_and_who_accepted_them(db_url: str,
                                                                 policy: Policy) -> None:
    """An emergency shipped with an open B bug: the notes say so, with the executive and why."""
    async with running_app(db_url, policy) as h:
        answer = await h.says(
            DEV, "request web v1.1.0 Stop the double charge --type emergency " + EMERGENCY)
        rid = int(answer.split("REL-")[1].split(".")[0])
        await h.says(TESTER, f"report REL-{rid} https://ci/r/1 A=0 B=1 C=2")
        await h.says(CTO, f"accept REL-{rid} Double charges cost more than one layout bug")
        notes = await h.says(DIRECTOR, f"notes REL-{rid}")
        assert "*Known issues*\n• Open bugs: A 0 · B 1 · C 2\n" in notes
        assert (f"• Shipped with known issues (1 open B bug (limit 0)), accepted by <@{CTO}>: "
                "Double charges cost more than one layout bug") in notes
        asked = await h.click(DIRECTOR, ActionId.NOTES, str(rid),
                              channel=h.slack.dm_channel(DIRECTOR))
        assert "accepted by" in asked and "*Known issues*" in asked
