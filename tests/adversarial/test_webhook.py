"""GitLab's Pipeline Hook: a wrong or missing token writes nothing; a re-sent event moves once."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp
import pytest

from bot.app import WEBHOOK
from bot.policy import Policy
from emulators.gitlab import View
from emulators.sample import OPS
from handlers.blocks import ActionId
from tests.adversarial.common import audit, release, row_counts, signed, thread_count
from tests.scenario.harness import HOOK_SECRET, Harness, running_app, wait_for


async def post_hook(h: Harness, body: bytes, headers: dict[str, str]) -> int:
    """POST a body to the app's webhook endpoint as GitLab would; the HTTP status."""
    sent = {"Content-Type": "application/json", "X-Gitlab-Event": "Pipeline Hook", **headers}
    async with aiohttp.ClientSession() as http, http.post(
            f"{h.url}/gitlab/webhook", data=body, headers=sent) as resp:
        await resp.read()
        return resp.status


async def deploying(h: Harness) -> tuple[int, dict[str, Any]]:
    """A release whose pipeline finished at GitLab; its id and the hook body saying so."""
    rid = await signed(h)
    await h.click(OPS, ActionId.DEPLOY)
    pipeline = h.pipeline_of(rid)
    h.gitlab.set_status(pipeline.id, "success")
    return rid, View(h.gitlab.base_url).pipeline_hook(pipeline)


async def test_a_wrong_or_missing_token_is_refused(db_url: str, policy: Policy) -> None:
    """401 for each bad token, no row written anywhere, the release still deploying."""
    async with running_app(db_url, policy) as h:
        rid, body = await deploying(h)
        await h.settle()
        before = await row_counts(h)
        for token in (None, "", "wrong", HOOK_SECRET[:-1], HOOK_SECRET + "x",
                      HOOK_SECRET.upper(), "x" * 4000):
            headers = {"Idempotency-Key": f"k-{token!s:.8}"}
            if token is not None:
                headers["X-Gitlab-Token"] = token
            assert await post_hook(h, json.dumps(body).encode(), headers) == 401, (token or "")[:20]
        await wait_for(lambda: not h.app[WEBHOOK].tasks)
        await h.settle()
        assert await row_counts(h) == before
        assert (await release(h, rid)).state == "deploying"


async def test_no_configured_secret_refuses_every_hook(db_url: str, policy: Policy) -> None:
    """Without GITLAB_WEBHOOK_SECRET the endpoint trusts nobody, even without a token."""
    async with running_app(db_url, policy) as h:
        h.app[WEBHOOK].secret = None  # what create_app hands it when the setting is unset
        _rid, body = await deploying(h)
        await h.settle()
        before = await row_counts(h)
        for headers in ({}, {"X-Gitlab-Token": ""}, {"X-Gitlab-Token": HOOK_SECRET}):
            assert await post_hook(h, json.dumps(body).encode(), headers) == 401
        await h.settle()
        assert await row_counts(h) == before


async def test_the_same_event_twice_is_one_transition(db_url: str, policy: Policy,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """One Idempotency-Key sent five times at once and once more later: one transition."""
    caplog.set_level(logging.WARNING)
    async with running_app(db_url, policy) as h:
        rid, body = await deploying(h)
        raw = json.dumps(body).encode()
        headers = {"X-Gitlab-Token": HOOK_SECRET, "Idempotency-Key": "same-key",
                   "X-Gitlab-Event-UUID": "uuid-1"}
        statuses = await asyncio.gather(*[post_hook(h, raw, headers) for _ in range(5)])
        assert statuses == [200] * 5
        await wait_for(lambda: not h.app[WEBHOOK].tasks)
        await h.settle()
        assert await post_hook(h, raw, headers) == 200
        await wait_for(lambda: not h.app[WEBHOOK].tasks)
        await h.settle()
        assert (await release(h, rid)).state == "deployed"
        actions = [e.action for e in await audit(h, rid)]
        assert actions.count("deploy succeeded") == 1
        assert thread_count(h, rid, "📦 Deployed") == 1
        assert [r.getMessage() for r in caplog.records if r.name.startswith("handlers")] == []


async def test_a_forged_success_changes_nothing_while_gitlab_says_running(
        db_url: str, policy: Policy) -> None:
    """The right token and `status: success` are not enough: GitLab's own answer decides."""
    async with running_app(db_url, policy) as h:
        rid = await signed(h)
        await h.click(OPS, ActionId.DEPLOY)
        pipeline = h.pipeline_of(rid)
        h.gitlab.set_status(pipeline.id, "running")
        body = View(h.gitlab.base_url).pipeline_hook(pipeline)
        body["object_attributes"]["status"] = "success"  # what the forger claims
        headers = {"X-Gitlab-Token": HOOK_SECRET, "Idempotency-Key": "forged"}
        assert await post_hook(h, json.dumps(body).encode(), headers) == 200
        await wait_for(lambda: not h.app[WEBHOOK].tasks)
        await h.settle()
        assert (await release(h, rid)).state == "deploying"
        assert [e.action for e in await audit(h, rid)].count("deploy succeeded") == 0
        h.gitlab.set_status(pipeline.id, "success")  # GitLab really finishes: the hook counts
        headers["Idempotency-Key"] = "real"
        body["object_attributes"]["status"] = "success"
        assert await post_hook(h, json.dumps(body).encode(), headers) == 200
        await wait_for(lambda: not h.app[WEBHOOK].tasks)
        await h.settle()
        assert (await release(h, rid)).state == "deployed"
