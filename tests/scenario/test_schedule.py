"""The scheduled half through the running app: nobody clicks, the scheduler does it."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.policy import Policy
from emulators.sample import DBA, DEV, DIRECTOR, LEAD, OPS, TESTER
from tests.fixtures import ShiftClock
from tests.scenario.harness import running_app, wait_for
from tests.scenario.test_gitlab_flow import state


async def test_campaign_deploys_itself_at_its_time(db_url: str, policy: Policy) -> None:
    """Requested with --at, signed off, checklist done: at its time the pipeline starts."""
    clock = ShiftClock()
    clock.jump_to(datetime(2026, 11, 23, 4, 0, tzinfo=UTC))  # Monday noon in Shanghai
    async with running_app(db_url, policy, clock=clock, scheduler_seconds=1) as h:
        answer = await h.says(DEV, 'request payments v1.1.0 Winter sale --type campaign '
                                   '--at "2026-11-23 20:00"')
        assert "Filed REL-1" in answer, answer
        await h.says(TESTER, "report REL-1 https://ci/r/1")
        await h.says(DIRECTOR, "approve REL-1")
        await h.says(LEAD, "approve REL-1")
        await h.says(OPS, "check REL-1 1 2")
        await h.says(DBA, "check REL-1 3")
        calendar = await h.says(DEV, "calendar")
        assert "2026-11-23 20:00 CST *REL-1*" in calendar and "Deploys are open now" in calendar
        assert await state(h, 1) == "scheduled"
        clock.jump_to(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))  # 20:00 in Shanghai
        await wait_for(lambda: h.pipeline_of(1) is not None, 10)
        pipeline = h.pipeline_of(1)
        assert pipeline.ref == "release/REL-1"
        assert pipeline.sha == h.gitlab.resolve(h.gitlab.project(pipeline.project.id),
                                                "v1.1.0").sha
        await h.settle()
        assert await state(h, 1) == "deploying"
        assert any("started the deploy" in t for t in h.thread(1))
        assert len([p for p in h.gitlab.pipelines.values()]) == 1
