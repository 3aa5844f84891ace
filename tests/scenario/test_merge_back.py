"""A shipped hotfix must be merged back before a later release of its project is signed off."""

from __future__ import annotations

from bot.policy import Policy
from emulators.sample import DEV, DIRECTOR, LEAD, TESTER, sample_policy
from tests.scenario.harness import Harness, running_app
from tests.scenario.test_gitlab_flow import state
from tests.scenario.test_release_notes import live

HOTFIX = "hotfix/1.2.1"


async def requested(h: Harness, text: str) -> int:
    """File a release by command; its number."""
    answer = await h.says(DEV, f"request {text}")
    return int(answer.split("REL-")[1].split(".")[0])


async def ship_hotfix(h: Harness) -> tuple[int, str]:
    """A hotfix branched from v1.1.0, signed off and live in production; (number, commit)."""
    fix = h.gitlab.add_commit("acme/web", title="Fix crash on an empty cart",
                              branches=[HOTFIX], parent="v1.1.0")
    rid = await requested(h, f"web {HOTFIX} Empty cart crash --type hotfix")
    await h.says(TESTER, f"report REL-{rid} https://ci/r/{rid}")
    await h.says(DIRECTOR, f"approve REL-{rid}")
    await h.says(LEAD, f"approve REL-{rid}")
    await live(h, rid)
    return rid, fix.sha


async def test_sign_off_waits_for_the_hotfix_to_be_merged_back(db_url: str,
                                                               policy: Policy) -> None:
    """Refused while the pinned commit lacks the hotfix, named; signed off once merged."""
    async with running_app(db_url, policy) as h:
        before = await requested(h, "web main Next version")  # pinned before the hotfix ships
        await h.says(TESTER, f"report REL-{before} https://ci/r/1")
        fix, sha = await ship_hotfix(h)
        refusal = (f"REL-{before} does not contain hotfix REL-{fix} (`{HOTFIX}` @ {sha[:7]}): "
                   "merge it back first.")
        assert await h.says(DIRECTOR, f"approve REL-{before}") == refusal
        # Pinned after the hotfix shipped, the card says so as soon as sign-off is asked.
        older = await requested(h, "web v1.1.0 Old tag")
        await h.says(TESTER, f"report REL-{older} https://ci/r/2")
        await h.settle()
        card = str(h.card(older).blocks)
        assert f"REL-{older} does not contain hotfix REL-{fix} (`{HOTFIX}` @ {sha[:7]})" in card
        assert "merge it back first" in await h.says(LEAD, f"approve REL-{older}")
        # The developer merges the hotfix into main; the release takes the new commit.
        h.gitlab.merge("acme/web", HOTFIX, "main")
        await h.says(DEV, f"ref REL-{before} main")
        await h.says(TESTER, f"report REL-{before} https://ci/r/3")
        assert f"You approved REL-{before}" in await h.says(DIRECTOR, f"approve REL-{before}")
        assert f"You approved REL-{before}" in await h.says(LEAD, f"approve REL-{before}")
        assert await state(h, before) == "approved"


async def test_remind_only_lets_sign_off_through(db_url: str) -> None:
    """With `merge_back: remind`, the hotfix not merged back holds nothing."""
    async with running_app(db_url, sample_policy(merge_back="remind")) as h:
        await ship_hotfix(h)
        rid = await requested(h, "web main Next version")
        await h.says(TESTER, f"report REL-{rid} https://ci/r/1")
        await h.says(DIRECTOR, f"approve REL-{rid}")
        await h.says(LEAD, f"approve REL-{rid}")
        assert await state(h, rid) == "approved"
