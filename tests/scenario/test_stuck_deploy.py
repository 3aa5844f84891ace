"""A deploy stuck on a manual job: reported in the thread and to the release manager, abandoned."""

from __future__ import annotations

from bot.policy import Policy
from emulators.gitlab import JobSpec
from emulators.sample import DEV, OPS, TESTER
from handlers.blocks import ActionId
from tests.scenario.harness import Harness, readable, running_app
from tests.scenario.test_gitlab_flow import approved, broadcasts, state
from tests.scenario.test_slack_flow import submit_modal, text_values

WEB = "acme/web"
WAITING = "waiting on the manual job `deploy:production` in stage deploy"


def cancels(h: Harness, pipeline_id: int) -> int:
    """How many times the bot asked GitLab to cancel this pipeline."""
    return h.gitlab.count(f"/projects/2/pipelines/{pipeline_id}/cancel", "POST")


def stuck_dms(h: Harness, user: str) -> list[str]:
    """The stuck reports a person got directly."""
    return [readable(m) for m in h.slack.dms(user) if "is stuck" in (m.text or "")]


async def test_a_pipeline_stuck_on_a_manual_job_is_reported_then_abandoned(
        db_url: str, policy: Policy) -> None:
    """Reported once in the thread and to the release manager; only the release manager,
    with a reason, abandons it: GitLab is asked to cancel, the lock is freed, a new deploy runs."""
    async with running_app(db_url, policy) as h:
        h.gitlab.set_jobs(WEB, manual_deploy=True)
        rid = await approved(h, "web")
        assert "pipeline is running" in await h.says(OPS, f"deploy REL-{rid}")
        pipeline = h.pipeline_of(rid)
        h.gitlab.set_status(pipeline.id, "manual")
        assert await h.poll() == 0
        [line] = [t for t in h.thread(rid) if "is stuck" in t]
        assert f"The production deploy of REL-{rid} is stuck: {WAITING}" in line
        [dm] = stuck_dms(h, OPS)
        assert WAITING in dm and f"/release abandon REL-{rid} &lt;reason&gt;" in dm
        assert any(e.get("action_id") == ActionId.ABANDON for m in h.slack.dms(OPS)
                   for b in m.blocks if b["type"] == "actions" for e in b["elements"])
        assert stuck_dms(h, DEV) == [] and stuck_dms(h, TESTER) == []
        assert h.buttons(rid) == [ActionId.ABANDON]
        await h.poll()
        assert len([t for t in h.thread(rid) if "is stuck" in t]) == 1 and len(
            stuck_dms(h, OPS)) == 1

        assert await h.says(DEV, f"abandon REL-{rid} it hangs") == (
            "Only the release manager can do that.")
        assert await h.says(OPS, f"abandon REL-{rid}") == (
            f"Please give a reason: `/release abandon REL-{rid} &lt;reason…&gt;`")
        assert await h.says(OPS, f'abandon REL-{rid} " "') == (
            f"Please give a reason: `/release abandon REL-{rid} &lt;reason…&gt;`")
        assert cancels(h, pipeline.id) == 0 and await state(h, rid) == "deploying"

        answer = await h.says(OPS, f"abandon REL-{rid} nobody may start the deploy job today")
        assert answer.startswith(f"Abandoned the production deploy of REL-{rid}; it counts as "
                                 "failed. A cancel leaves manual jobs alone")
        await h.settle()
        assert cancels(h, pipeline.id) == 1
        assert h.gitlab.pipelines[pipeline.id].status == "manual"  # as GitLab leaves it
        assert await state(h, rid) == "deploy_failed"
        assert any("abandoned the deploy to production: nobody may start the deploy job today"
                   in b for b in broadcasts(h))
        assert ActionId.DEPLOY in h.buttons(rid)

        h.gitlab.set_jobs(WEB, [JobSpec("build", "build"), JobSpec("deploy", "deploy", True)])
        assert "pipeline is running" in await h.says(OPS, f"deploy REL-{rid}")
        assert h.pipeline_of(rid).id != pipeline.id
        assert await state(h, rid) == "deploying"


async def test_the_abandon_button_asks_for_a_reason_and_cancels_the_pipeline(
        db_url: str, policy: Policy) -> None:
    """Abandon on the card: the role is checked before the form; an empty reason stays in it."""
    async with running_app(db_url, policy) as h:
        h.gitlab.canceling_seconds = None
        rid = await approved(h, "web")
        await h.click(OPS, ActionId.DEPLOY)
        pipeline = h.pipeline_of(rid)
        h.gitlab.set_status(pipeline.id, "running")
        assert await h.click(DEV, ActionId.ABANDON) == "Only the release manager can do that."
        assert h.slack.modals(DEV) == []
        await h.click(OPS, ActionId.ABANDON)
        reply = await submit_modal(h, OPS, text_values(reason=" "))
        assert reply.json["response_action"] == "errors" and "reason" in reply.json["errors"]
        assert await state(h, rid) == "deploying" and cancels(h, pipeline.id) == 0
        await submit_modal(h, OPS, text_values(reason="the runner is gone"))
        assert cancels(h, pipeline.id) == 1
        assert h.gitlab.pipelines[pipeline.id].status == "canceling"
        assert await state(h, rid) == "deploy_failed"
        h.gitlab.finish_canceling(pipeline.id)
        assert await h.hook(pipeline.id) == 200
        assert await state(h, rid) == "deploy_failed"
        assert sum("abandoned the deploy" in t for t in h.thread(rid)) == 1
