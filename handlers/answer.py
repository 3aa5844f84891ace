"""Answering one person privately, whichever way Slack still allows."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import ClientError, ClientSession
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from handlers.blocks import clip

log = logging.getLogger(__name__)


async def tell(client: AsyncWebClient, *, user: str, text: str, channel: str | None = None,
               response_url: str | None = None, blocks: list[dict[str, Any]] | None = None
               ) -> str:
    """Ephemeral via response_url, else chat.postEphemeral, else a DM; returns the way used."""
    text = clip(text, 3000)
    if response_url and await _respond(response_url, text, blocks, client.session):
        return "response_url"
    if not _slack_id(user, "UW"):  # Slack always names the person; nobody to answer otherwise
        log.warning("no way to answer %r: %s", user, text[:100])
        return "none"
    if _slack_id(channel, "CG"):  # a channel, not a DM or something a form smuggled in
        try:
            await client.chat_postEphemeral(channel=channel, user=user, text=text, blocks=blocks)
            return "ephemeral"
        except SlackApiError as exc:
            log.info("ephemeral to %s failed: %s", user, exc.response.get("error"))
    try:
        await client.chat_postMessage(channel=user, text=text, blocks=blocks)
        return "dm"
    except SlackApiError as exc:
        log.warning("could not answer %s: %s", user, exc.response.get("error"))
        return "none"


def _slack_id(value: object, kinds: str) -> bool:
    """Whether `value` looks like a Slack id starting with one of `kinds` (U…, C…)."""
    return (isinstance(value, str) and value[:1] in kinds and value.isascii()
            and value.isalnum())


async def _respond(url: str, text: str, blocks: list[dict[str, Any]] | None,
                   session: ClientSession | None) -> bool:
    """One response_url use; False when Slack refuses it (used five times, or expired)."""
    if not url.startswith(("https://", "http://")):
        return False
    try:
        resp = await AsyncWebhookClient(url, timeout=15, session=session).send(
            text=text, blocks=blocks, response_type="ephemeral", replace_original=False)
    except (ClientError, TimeoutError, OSError) as exc:
        log.info("response_url failed: %s", exc)
        return False
    return resp.status_code == 200
