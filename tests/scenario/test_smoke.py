"""Smoke: the app answers Slack."""

from __future__ import annotations

from bot.policy import Policy
from emulators.sample import CHANNEL
from tests.scenario.harness import running_app


async def test_request_posts_a_card(db_url: str, policy: Policy) -> None:
    """A one-line request files REL-1 and its card appears with a thread entry."""
    async with running_app(db_url, policy) as h:
        answer = await h.says("U0DEV", "request payments v1.1.0 Faster checkout")
        assert answer.startswith("Filed REL-1")
        await h.settle()
        card = h.card(1)
        assert card is not None and "Faster checkout" in card.text
        assert len(h.slack.messages(CHANNEL)) == 1
        assert "requested" in h.thread(1)[0]
