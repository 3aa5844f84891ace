"""`releasebot check`, Slack's part: the bot token, the release channel and every role's members."""

from __future__ import annotations

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.cli.check import CheckLine
from bot.policy import Policy
from bot.settings import Settings
from handlers.http import slack_client

_NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)


def _slack_reason(exc: Exception) -> str:
    """Slack's error code (and the scope it wants), or the network failure."""
    if isinstance(exc, SlackApiError):
        error = str(exc.response.get("error"))
        needed = exc.response.get("needed")
        return f"{error} (the app needs the {needed} scope)" if needed else error
    said = f": {exc}" if str(exc) else ""
    return f"Slack unreachable ({type(exc).__name__}{said})"


async def check_slack(settings: Settings, policy: Policy | None) -> list[CheckLine]:
    """The bot token, the release channel and every role's members."""
    if settings.slack_bot_token is None:
        token = CheckLine(False, "Slack token", "SLACK_BOT_TOKEN is not set")
        return [token, *_not_checked(policy, "the Slack token is not set")]
    client = slack_client(settings)  # the app's own client: same base URL, same retries
    try:
        auth = await client.auth_test()
    except (SlackApiError, *_NETWORK_ERRORS) as exc:
        token = CheckLine(False, "Slack token", f"auth.test failed: {_slack_reason(exc)}")
        return [token, *_not_checked(policy, "the Slack token does not work")]
    lines = [CheckLine(True, "Slack token",
                       f"bot @{auth.get('user')} in workspace {auth.get('team')}")]
    if policy is not None:
        lines.append(await check_channel(client, policy.release_channel))
        lines += [await check_channel(client, channel, "notify channel")
                  for channel in notify_channels(policy)]
        lines += await check_roles(client, policy)
    return lines


def notify_channels(policy: Policy) -> list[str]:
    """The channels `notify` posts to, each once, in the order the policy names them."""
    named = (t for targets in policy.notify.values() for t in targets)
    return list(dict.fromkeys(t for t in named if t[0] in "CG"))


def _not_checked(policy: Policy | None, why: str) -> list[CheckLine]:
    """Lines for the Slack checks that could not run, so none goes unmentioned."""
    if policy is None:
        return []
    channel = CheckLine(False, "release channel", f"not checked: {why}")
    return [channel, *(CheckLine(False, f"role {r}", f"not checked: {why}") for r in policy.roles)]


async def check_channel(client: AsyncWebClient, channel: str,
                        what: str = "release channel") -> CheckLine:
    """A channel the bot posts to exists, is not archived and has the bot in it."""
    try:
        info = (await client.conversations_info(channel=channel)).get("channel") or {}
    except (SlackApiError, *_NETWORK_ERRORS) as exc:
        return CheckLine(False, what, f"{channel}: {_slack_reason(exc)}")
    name = f"#{info.get('name', channel)} ({channel})"
    if info.get("is_archived"):
        return CheckLine(False, what, f"{name} is archived")
    if info.get("is_member") is False:
        return CheckLine(False, what, f"{name}: the bot is not a member; /invite @ReleaseBot there")
    return CheckLine(True, what, name)


async def check_roles(client: AsyncWebClient, policy: Policy) -> list[CheckLine]:
    """One line per role: every user is a live account, every user group has members."""
    known: dict[str, str | None] = {}  # id -> problem (None when fine), each asked once
    names: dict[str, str] = {}
    lines = []
    for role, ids in policy.roles.items():
        for ident in ids:
            if ident not in known:
                known[ident], names[ident] = await _resolve_member(client, ident)
        problems = [f"{i}: {known[i]}" for i in ids if known[i]]
        if problems:
            lines.append(CheckLine(False, f"role {role}", "; ".join(problems)))
        else:
            lines.append(CheckLine(True, f"role {role}", ", ".join(names[i] for i in ids)))
    return lines


async def _resolve_member(client: AsyncWebClient, ident: str) -> tuple[str | None, str]:
    """(problem or None, how to show it) for a user (U…/W…) or user group (S…) ID."""
    try:
        if ident.startswith("S"):
            users = (await client.usergroups_users_list(usergroup=ident)).get("users") or []
            if not users:
                return "the user group has no members", ident
            return None, f"{ident} ({len(users)} members)"
        user = (await client.users_info(user=ident)).get("user") or {}
    except (SlackApiError, *_NETWORK_ERRORS) as exc:
        reason = _slack_reason(exc)
        if reason == "user_not_found":
            reason = "no such user in this workspace (user_not_found)"
        elif reason == "no_such_subteam":
            reason = "no such user group in this workspace (no_such_subteam)"
        return reason, ident
    if user.get("deleted"):
        return "the account is deactivated", ident
    return None, f"{ident} ({user.get('real_name') or user.get('name') or 'no name'})"
