"""Traces: refused privileged attempts are logged and counted; publish is audited; no GitLab
call happens before the role is checked."""

from __future__ import annotations

import logging

import pytest

from bot.app import METRICS
from bot.policy import Policy
from emulators.sample import DEV, OPS, TESTER
from handlers.blocks import ActionId
from tests.adversarial.common import audit, row_counts
from tests.scenario.harness import Harness, running_app
from tests.scenario.test_gitlab_flow import approved, through_production


def refusals(h: Harness, event: str) -> float:
    """The privileged-refusal counter for one event."""
    value = h.app[METRICS].registry.get_sample_value(
        "releasebot_privileged_refusals_total", {"event": event})
    return value or 0.0


async def test_a_refused_privileged_attempt_is_logged_and_counted(
        db_url: str, policy: Policy, caplog: pytest.LogCaptureFixture) -> None:
    """The developer tries to deploy: refused, logged with user and event, counted, no write."""
    async with running_app(db_url, policy) as h:
        rid = await approved(h, "web", "v1.1.0")
        before = await row_counts(h)
        with caplog.at_level(logging.WARNING, logger="bot.transition"):
            assert "Only the release manager" in await h.says(DEV, f"deploy REL-{rid}")
        assert refusals(h, "deploy") == 1
        assert any("'deploy'" in r.getMessage() and DEV in r.getMessage()
                   and f"REL-{rid}" in r.getMessage() for r in caplog.records)
        assert await row_counts(h) == before
        assert h.gitlab.pipelines == {}


async def test_close_checks_the_role_before_asking_gitlab(db_url: str, policy: Policy) -> None:
    """A developer's close is refused without a single GitLab request for release notes."""
    async with running_app(db_url, policy) as h:
        rid = await approved(h)
        await through_production(h, rid)
        await h.click(TESTER, ActionId.VERIFY_PASS)
        await h.settle()
        calls, before = len(h.gitlab.calls), await row_counts(h)
        assert "Only the release manager" in await h.says(DEV, f"close REL-{rid}")
        assert len(h.gitlab.calls) == calls
        assert await row_counts(h) == before
        assert refusals(h, "close") == 1


async def test_publish_needs_a_deployed_release_and_is_audited(db_url: str,
                                                              policy: Policy) -> None:
    """Cancelled: refused before GitLab is asked. Deployed: published, with an audit row."""
    async with running_app(db_url, policy) as h:
        cancelled = await approved(h, "payments", "v1.0.0")
        await h.says(DEV, f"cancel REL-{cancelled} not now")
        calls, before = len(h.gitlab.calls), await row_counts(h)
        assert "nothing more can happen" in await h.says(OPS, f"notes REL-{cancelled} publish")
        assert len(h.gitlab.calls) == calls and await row_counts(h) == before
        assert "v1.0.0" not in h.gitlab.projects[1].releases
        rid = await approved(h)
        await through_production(h, rid)
        assert "Published v1.1.0" in await h.says(OPS, f"notes REL-{rid} publish")
        entry = (await audit(h, rid))[-1]
        assert (entry.actor, entry.action, entry.detail["tag"]) == (OPS, "publish notes", "v1.1.0")
        assert entry.detail["url"].startswith("http")
