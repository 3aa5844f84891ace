"""A project renamed or moved in GitLab keeps deploying: the bot goes by the ID it learned."""

from __future__ import annotations

import aiohttp

from bot.app import DEPS, WEBHOOK
from bot.policy import Policy
from emulators.gitlab import View
from emulators.sample import OPS, TESTER
from handlers.blocks import ActionId
from handlers.gitlab_webhook import project_key
from storage import queries as q
from tests.scenario.harness import HOOK_SECRET, Harness, emulators, running_app, wait_for
from tests.scenario.test_gitlab_flow import approved, state


def usurp_old_path(h: Harness) -> None:
    """Rename acme/payments; its old path then answers 404 and names another project."""
    h.gitlab.rename_project("acme/payments", "acme/billing")
    h.gitlab.redirect_moved_projects = False  # GitLab before API redirects: the harshest case
    squatter = h.gitlab.add_project("acme/payments", id=9)
    h.gitlab.add_commit(squatter, title="Someone else's project")


async def test_a_renamed_project_deploys_polls_and_takes_hooks(db_url: str,
                                                               policy: Policy) -> None:
    """Staging before the rename; the hook, production and its polling after, all by ID."""
    async with emulators() as emus:
        async with running_app(db_url, policy, emus=emus) as h:
            rid = await approved(h)
            await h.click(OPS, ActionId.DEPLOY)
            staging = h.pipeline_of(rid)
            async with h.app[DEPS].sessions() as session:
                assert await q.gitlab_project_ids(session) == {"acme/payments": 1}
            usurp_old_path(h)
            h.gitlab.set_status(staging.id, "success")
            assert await h.hook(staging.id) == 200  # the hook names acme/billing now
            assert await state(h, rid) == "deployed"
        h.gitlab.reset_calls()
        # A replica started after the rename knows the ID from the database alone.
        async with running_app(db_url, policy, emus=emus) as h:
            await h.says(TESTER, f"verify REL-{rid} pass")  # staging accepted
            await h.settle()
            h.gitlab.reset_calls()
            await h.click(OPS, ActionId.DEPLOY)
            production = h.pipeline_of(rid)
            assert (production.project.id, production.ref) == (1, f"release/REL-{rid}")
            h.gitlab.set_status(production.id, "success")
            assert await h.poll() == 1
            assert await state(h, rid) == "deployed"
            assert h.gitlab.count("/projects/acme%2Fpayments") == 0
            assert h.gitlab.count("/projects/acme%2Fbilling") == 0


async def test_a_hook_from_the_project_that_took_the_old_path_is_ignored(
        db_url: str, policy: Policy) -> None:
    """Matched by ID: the new acme/payments is not ours, whatever its path says."""
    async with running_app(db_url, policy) as h:
        rid = await approved(h)
        await h.click(OPS, ActionId.DEPLOY)
        ours = h.pipeline_of(rid)
        usurp_old_path(h)
        theirs = h.gitlab.create_pipeline(9, "main")
        h.gitlab.set_status(theirs.id, "success")
        body = View(h.gitlab.base_url).pipeline_hook(theirs)
        body["object_attributes"]["id"] = ours.id  # even one naming our pipeline's id
        assert body["project"]["path_with_namespace"] == "acme/payments"
        headers = {"X-Gitlab-Token": HOOK_SECRET, "X-Gitlab-Event": "Pipeline Hook"}
        async with aiohttp.ClientSession() as http, http.post(
                f"{h.url}/gitlab/webhook", json=body, headers=headers) as resp:
            assert (resp.status, await resp.json()) == (200, {"ok": True, "ignored": True})
        body["project"] = View(h.gitlab.base_url).pipeline_hook(ours)["project"]
        assert body["project"]["path_with_namespace"] == "acme/billing"
        async with aiohttp.ClientSession() as http, http.post(
                f"{h.url}/gitlab/webhook", json=body, headers=headers) as resp:
            assert (resp.status, await resp.json()) == (200, {"ok": True})
        await wait_for(lambda: not h.app[WEBHOOK].tasks)
        await h.settle()
        assert await state(h, rid) == "deploying"  # GitLab says ours still runs


def test_hooks_match_by_id_then_by_path(policy: Policy) -> None:
    """A known ID decides; a project with no known ID matches its path in any case."""
    ids = {"payments": 1}
    assert project_key(policy, {"id": 1, "path_with_namespace": "acme/billing"}, ids) == "payments"
    assert project_key(policy, {"id": 9, "path_with_namespace": "acme/payments"}, ids) is None
    assert project_key(policy, {"id": 2, "path_with_namespace": "ACME/Web"}, ids) == "web"
    assert project_key(policy, {"id": 2, "path_with_namespace": "acme/web"}, {}) == "web"
    assert project_key(policy, {"id": "1", "path_with_namespace": "x/y"}, ids) is None
