"""Release trains through the running app: several projects, one release, in dependency order."""

from __future__ import annotations

from typing import Any

import pytest

from bot.app import DEPS
from bot.policy import Policy
from emulators.gitlab import variable
from emulators.sample import CHANNEL, DBA, DEV, DIRECTOR, LEAD, OPS, TESTER, sample_policy
from handlers.blocks import ActionId
from storage import queries as q
from tests.fixtures import THREE_PROJECTS
from tests.scenario.harness import Harness, emulators, running_app
from tests.scenario.test_gitlab_flow import broadcasts, state

TRAIN = "payments@v2.0.0 web@v2.0.0 ledger@v2.0.0"


@pytest.fixture
def policy() -> Policy:
    """The sample policy with ledger: payments, then ledger, then web."""
    return sample_policy(projects=THREE_PROJECTS)


async def filed(h: Harness, text: str = f"{TRAIN} Checkout with ledger") -> int:
    """A train requested by the developer; its number."""
    answer = await h.says(DEV, f"request {text}")
    assert "Filed REL-" in answer, answer
    return int(answer.split("REL-")[1].split(".")[0])


async def signed_off(h: Harness, text: str = f"{TRAIN} Checkout with ledger") -> int:
    """A train with its report, both sign-offs and the checklist ticked."""
    rid = await filed(h, text)
    await h.says(TESTER, f"report REL-{rid} https://ci/r/{rid}")
    await h.says(DIRECTOR, f"approve REL-{rid}")
    await h.says(LEAD, f"approve REL-{rid}")
    await h.says(OPS, f"check REL-{rid} 1 2")
    await h.says(DBA, f"check REL-{rid} 3")
    await h.settle()
    return rid


def runs(h: Harness, rid: int) -> list[Any]:
    """The release's pipelines in the order they were started."""
    return sorted((p for p in h.gitlab.pipelines.values()
                   if variable(p.variables, "RELEASE_ID") == f"REL-{rid}"), key=lambda p: p.id)


def where(pipeline: Any) -> tuple[str, str, bool]:
    """(project, environment, rollback) of a pipeline."""
    return (pipeline.project.path.split("/")[-1], variable(pipeline.variables, "DEPLOY_ENV"),
            variable(pipeline.variables, "ROLLBACK") == "true")


async def finish(h: Harness, rid: int, status: str = "success") -> Any:
    """The newest pipeline of the release runs and ends with `status`, seen by one poll."""
    pipeline = runs(h, rid)[-1]
    h.gitlab.set_status(pipeline.id, "running")
    await h.poll()
    h.gitlab.set_status(pipeline.id, status, failed_job="deploy" if status == "failed" else None)
    assert await h.poll() == 1
    return pipeline


async def deploy_environment(h: Harness, rid: int, count: int) -> None:
    """Deploy the next environment: `count` pipelines, one after the other, all succeed."""
    await h.click(OPS, ActionId.DEPLOY)
    for _ in range(count):
        await finish(h, rid)


async def pins(h: Harness, rid: int) -> dict[str, str]:
    """Project → the commit the train pinned for it."""
    async with h.app[DEPS].sessions() as session:
        release = await q.get_release(session, rid)
        return {c.project: c.pinned_sha for c in await q.components_of(session, release)}


async def test_a_three_project_train_deploys_staging_then_production_in_order(
        db_url: str, policy: Policy) -> None:
    """payments, ledger, web: one pipeline at a time on each one's tag and pinned commit,
    staging accepted before production, verified once for the whole release."""
    async with running_app(db_url, policy) as h:
        rid = await signed_off(h)
        pinned = await pins(h, rid)
        assert list(pinned) == ["payments", "ledger", "web"]
        await h.click(OPS, ActionId.DEPLOY)
        assert [where(p) for p in runs(h, rid)] == [("payments", "staging", False)]
        assert await state(h, rid) == "deploying"
        await finish(h, rid)
        assert [where(p) for p in runs(h, rid)] == [("payments", "staging", False),
                                                   ("ledger", "staging", False)]
        assert await state(h, rid) == "deploying"
        await finish(h, rid)
        assert await state(h, rid) == "deployed"  # web has no staging: staging is done
        assert "REL-1 is on staging and not yet accepted there" in await h.says(
            OPS, "deploy REL-1")
        await h.says(TESTER, "verify REL-1 pass")
        await h.settle()
        await deploy_environment(h, rid, 3)
        assert [where(p) for p in runs(h, rid)] == [
            ("payments", "staging", False), ("ledger", "staging", False),
            ("payments", "production", False), ("ledger", "production", False),
            ("web", "production", False)]
        for pipeline in runs(h, rid):
            project = where(pipeline)[0]
            assert (pipeline.ref, pipeline.sha) == (f"release/REL-{rid}", pinned[project])
            assert variable(pipeline.variables, "RELEASE_SHA") == pinned[project]
        assert await state(h, rid) == "deployed"
        assert "Verified REL-1" in await h.says(TESTER, "verify REL-1 pass")
        assert await state(h, rid) == "observing"
        assert len(h.slack.messages(CHANNEL)) == 1
        assert sum("📦 Deployed" in b for b in broadcasts(h)) == 5


async def test_a_failed_component_stops_the_train_and_rollback_goes_in_reverse(
        db_url: str, policy: Policy) -> None:
    """ledger fails in production: web never starts; rollback undoes ledger, then payments,
    each to the commit that ran there before."""
    async with running_app(db_url, policy) as h:
        rid = await signed_off(h)
        await deploy_environment(h, rid, 2)
        await h.says(TESTER, "verify REL-1 pass")
        await h.settle()
        await h.click(OPS, ActionId.DEPLOY)
        await finish(h, rid)  # payments production
        await finish(h, rid, "failed")  # ledger production
        assert await state(h, rid) == "deploy_failed"
        assert [where(p) for p in runs(h, rid)][2:] == [("payments", "production", False),
                                                        ("ledger", "production", False)]
        await h.click(OPS, ActionId.ROLLBACK)
        assert where(runs(h, rid)[-1]) == ("ledger", "production", True)
        await finish(h, rid)
        assert await state(h, rid) == "rolling_back"
        assert where(runs(h, rid)[-1]) == ("payments", "production", True)
        back = await finish(h, rid)
        assert await state(h, rid) == "rolled_back"
        payments = h.gitlab.project("acme/payments")
        assert back.sha == h.gitlab.resolve(payments, "v1.0.0").sha  # what ran there before
        assert not any(where(p)[0] == "web" for p in runs(h, rid))


async def test_a_restart_with_a_train_in_flight_goes_on_once(db_url: str,
                                                             policy: Policy) -> None:
    """The bot stops while payments deploys to production; after a restart its result is
    taken once and web, next in the train, starts once and finishes the release."""
    async with emulators() as emus:
        async with running_app(db_url, policy, emus=emus) as h:
            rid = await signed_off(h, "web@v2.0.0 payments@v2.0.0 Footer and payments")
            await deploy_environment(h, rid, 1)
            await h.says(TESTER, f"verify REL-{rid} pass")
            await h.settle()
            await h.click(OPS, ActionId.DEPLOY)
            first = runs(h, rid)[-1]
            assert where(first) == ("payments", "production", False)
        emus[1].set_status(first.id, "success")
        async with running_app(db_url, policy, emus=emus) as h2:
            assert await h2.poll() == 1
            assert await h2.poll() == 0
            assert await state(h2, rid) == "deploying"
            assert [where(p) for p in runs(h2, rid)][1:] == [("payments", "production", False),
                                                            ("web", "production", False)]
            await finish(h2, rid)
            assert await state(h2, rid) == "deployed"
            thread = h2.thread(rid)
            assert sum("📦 Deployed" in t for t in thread) == 3
            assert len(h2.slack.messages(CHANNEL)) == 1
