"""Release trains through the running app: several projects, one release, in dependency order."""

from __future__ import annotations

from typing import Any

import pytest

from bot.app import DEPS
from bot.cli.export import DEPLOY_ACTIONS
from bot.policy import Policy
from emulators.gitlab import variable
from emulators.sample import CHANNEL, DBA, DEV, DIRECTOR, LEAD, OPS, TESTER, sample_policy
from handlers.blocks import ActionId
from storage import queries as q
from tests.fixtures import THREE_PROJECTS
from tests.scenario.harness import Harness, emulators, readable, running_app
from tests.scenario.test_gitlab_flow import broadcasts, state
from tests.scenario.test_merge_back import HOTFIX, ship_hotfix
from tests.scenario.test_slack_flow import select, submit_modal, text_values

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
        thread = h.thread(rid)
        for pipeline in runs(h, rid):  # each pipeline has its own lines, naming its component
            project, env, _ = where(pipeline)
            lines = [t for t in thread if f"/pipelines/{pipeline.id}|" in t]
            assert [t[0] for t in lines] == ["⏳", "📦"], lines
            assert f"of {project} is running for {env}" in lines[0]
            assert lines[1].startswith(f"📦 Deployed {project} `v2.0.0` @ "
                                       f"`{pinned[project][:7]}` to {env}")
        assert any("started the deploy to production, one pipeline at a time: payments, then "
                   "ledger, then web" in t for t in thread)
        card = readable(h.card(rid))
        assert "*Train* 3 projects, deployed in this order: payments → ledger → web" in card
        for project in pinned:
            assert f"{project} `v2.0.0` @ `{pinned[project][:7]}`" in card
        assert "web `v2.0.0` @ `" in card and "— staging  ✅ production" in card
        listed = await h.says(OPS, "list")
        assert "🚆 payments `v2.0.0` → ledger `v2.0.0` → web `v2.0.0` — Checkout with ledger" in (
            listed)
        status = await h.says(OPS, "status REL-1")
        assert "*Components*" in status and "• ledger: staging: this release" in status
        assert "deploy of web `release/REL-1` to production: success" in status
        async with h.app[DEPS].sessions() as session:
            audit = await q.audit_of(session, rid)
        deploy_rows = [a for a in audit if a.action in DEPLOY_ACTIONS]
        assert len(deploy_rows) == 12 and all(a.detail["component"] for a in deploy_rows)


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
        failure = next(b for b in broadcasts(h) if b.startswith("❌"))
        assert failure.startswith("❌ Deploy of ledger to production failed at job ")
        assert failure.endswith(". The train stopped: web did not deploy. Roll back from the "
                                "card: ledger, then payments.")
        card = readable(h.card(rid))
        assert "✅ staging  ✅ production" in card and "✅ staging  ❌ production" in card
        assert "— staging  ▫️ production" in card
        await h.click(OPS, ActionId.ROLLBACK)
        assert where(runs(h, rid)[-1]) == ("ledger", "production", True)
        await finish(h, rid)
        assert await state(h, rid) == "rolling_back"
        assert where(runs(h, rid)[-1]) == ("payments", "production", True)
        back = await finish(h, rid)
        assert await state(h, rid) == "rolled_back"
        ledger_back, payments_back = runs(h, rid)[-2:]
        for pipeline, path in ((ledger_back, "acme/ledger"), (payments_back, "acme/payments")):
            # Each goes back to what GitLab says ran in its production before: v1.0.0.
            assert pipeline.sha == h.gitlab.resolve(h.gitlab.project(path), "v1.0.0").sha
        assert back is payments_back
        assert not any(where(p)[0] == "web" for p in runs(h, rid))
        thread = h.thread(rid)
        assert any("is rolling back production, one pipeline at a time: ledger, then payments"
                   in t for t in thread)
        assert any(t.startswith("↩️ Rolled back ledger production to ") and "Next: payments."
                   in t for t in thread)


async def test_a_one_project_deploy_of_a_train_says_why_it_is_alone(db_url: str) -> None:
    """Of web and payments only payments has staging: the thread says so, not that it is the
    only one 'still to go there'."""
    async with running_app(db_url, sample_policy()) as h:
        rid = await signed_off(h, "web@v2.0.0 payments@v2.0.0 Footer and payments")
        await h.click(OPS, ActionId.DEPLOY)
        assert any("to staging, the only project of the train that deploys there." in t
                   for t in h.thread(rid))


async def test_a_train_deployed_again_names_who_is_there_already(db_url: str,
                                                                policy: Policy) -> None:
    """ledger fails on staging and is deployed again alone: payments is there already."""
    async with running_app(db_url, policy) as h:
        rid = await signed_off(h)
        await h.click(OPS, ActionId.DEPLOY)
        await finish(h, rid)
        await finish(h, rid, "failed")  # ledger on staging
        await h.says(OPS, f"deploy REL-{rid}")
        await h.settle()
        line = [t for t in h.thread(rid) if t.startswith("🚀")][-1]
        assert line.startswith(f"🚀 <@{OPS}> started the deploy of ledger `v2.0.0` @ "), line
        assert line.endswith("to staging; payments deployed there already."), line


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


async def released(h: Harness) -> int:
    """How many releases are on file."""
    async with h.app[DEPS].sessions() as session:
        return len(await q.list_releases(session, limit=100))


async def test_bad_trains_are_refused_with_one_sentence_and_nothing_filed(
        db_url: str, policy: Policy) -> None:
    """An order against depends_on, an unknown project, one named twice, a ref GitLab lacks."""
    async with running_app(db_url, policy) as h:
        refusals = {
            "request payments@v2.0.0 web@v2.0.0 Web first --order web,payments":
                "--order web,payments contradicts depends_on: web depends on payments, so "
                "payments deploys first.",
            "request payments@v2.0.0 billing@v2.0.0 Billing":
                "There is no project 'billing'; known projects: ledger, payments, web.",
            "request payments@v2.0.0 web@v2.0.0 payments@v3.0.0 Twice":
                "payments is named twice; a release lists each project once.",
            "request payments@v2.0.0 web@v7.7.7 Missing": "GitLab has no ref `v7.7.7` in web.",
        }
        for text, sentence in refusals.items():
            assert await h.says(DEV, text) == sentence
        assert await released(h) == 0 and h.slack.messages(CHANNEL) == []
        # An order that only tightens depends_on is taken.
        rid = await filed(h, "web@v2.0.0 ledger@v2.0.0 payments@v2.0.0 Tight --order "
                             "payments,ledger")
        assert list(await pins(h, rid)) == ["payments", "ledger", "web"]


async def test_a_new_ref_for_one_component_voids_the_approvals(db_url: str,
                                                               policy: Policy) -> None:
    """web@v3.0.0: a new revision, tested and signed off again; only web's ref changes."""
    async with running_app(db_url, policy) as h:
        rid = await signed_off(h)
        assert await state(h, rid) == "approved"
        assert "REL-1 is a train of payments, ledger, web: name the project" in await h.says(
            DEV, "ref REL-1 v3.0.0")
        assert "payments in REL-1 now points at `v3.0.0`" in await h.says(
            DEV, "ref REL-1 payments@v3.0.0")
        assert await state(h, rid) == "testing"
        await h.settle()
        assert any("changed payments's ref from `v2.0.0` to `v3.0.0`. Earlier approvals and "
                   "the test report no longer count." in t for t in h.thread(rid))
        assert "⏳ tech_director   ⏳ test_lead" in readable(h.card(rid))
        async with h.app[DEPS].sessions() as session:
            release = await q.get_release(session, rid)
            comps = await q.components_of(session, release)
            approvals = await q.approvals_of(session, release)
        assert [(c.project, c.ref) for c in comps] == [
            ("payments", "v3.0.0"), ("ledger", "v2.0.0"), ("web", "v2.0.0")]
        assert release.ref == "v3.0.0" and approvals == []
        assert "REL-1 is in testing: no test report yet." in await h.says(OPS, "deploy REL-1")


async def test_a_train_filed_from_the_form(db_url: str, policy: Policy) -> None:
    """The form takes more projects as project@ref lines and an order; a bad line stays in it."""
    async with running_app(db_url, policy) as h:
        await h.command(DEV, "request")
        await h.settle()
        values = {"project": select("web"), "type": select("standard"),
                  **text_values(ref="v2.0.0", title="Footer and payments",
                                more="payments v2.0.0")}
        reply = await submit_modal(h, DEV, values)
        assert reply.json == {"response_action": "errors", "errors": {
            "more": "Write each project as project@ref, e.g. web@v2.0.0 (not 'payments v2.0.0')."}}
        values.update(text_values(more="payments@v2.0.0", order="web,payments"))
        reply = await submit_modal(h, DEV, values)
        assert reply.json["errors"] == {"order": "--order web,payments contradicts depends_on: "
                                                 "web depends on payments, so payments deploys "
                                                 "first."}
        values.update(text_values(more="payments@v2.0.0\nledger@v2.0.0", order=""))
        reply = await submit_modal(h, DEV, values)
        assert reply.status == 200 and not reply.body
        assert list(await pins(h, 1)) == ["payments", "ledger", "web"]


async def test_release_notes_of_each_component_in_one_message(db_url: str,
                                                              policy: Policy) -> None:
    """One private answer: each project's changes since its production, in deploy order."""
    async with running_app(db_url, policy) as h:
        rid = await signed_off(h, "web@v2.0.0 payments@v2.0.0 Footer and payments")
        notes = await h.says(DEV, f"notes REL-{rid}")
        payments, web = notes.index("*acme/payments"), notes.index(
            "*acme/web")
        assert payments < web
        assert "Add payout webhooks" in notes[payments:web]
        assert "Update footer links" in notes[web:]
        assert notes.count("Known issues") == 1


async def test_each_component_must_contain_its_projects_shipped_hotfixes(
        db_url: str, policy: Policy) -> None:
    """A hotfix shipped to web holds a train's sign-off while web's pinned commit lacks it,
    named; merged, and the train given web's new commit, it signs off."""
    async with running_app(db_url, policy) as h:
        fix, sha = await ship_hotfix(h)
        rid = await filed(h, "payments@main web@main Loyalty points")
        await h.says(TESTER, f"report REL-{rid} https://ci/r/{rid}")
        refusal = (f"REL-{rid} does not contain hotfix REL-{fix} (`{HOTFIX}` @ {sha[:7]}): "
                   "merge it back first.")
        assert await h.says(DIRECTOR, f"approve REL-{rid}") == refusal
        h.gitlab.merge("acme/web", HOTFIX, "main")
        await h.says(DEV, f"ref REL-{rid} web@main")
        await h.says(TESTER, f"report REL-{rid} https://ci/r/{rid}b")
        assert f"You approved REL-{rid}" in await h.says(DIRECTOR, f"approve REL-{rid}")
        assert f"You approved REL-{rid}" in await h.says(LEAD, f"approve REL-{rid}")
        assert await state(h, rid) == "approved"
