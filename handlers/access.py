"""Who may talk to the bot: its own workspace (or Grid organization), members, not guests.

The bot's own workspace comes from `auth.test`, asked once; each person's account from
`users.info`, cached for a few minutes. A Slack error refuses: nobody is let in on a guess.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.policy import SlackAccess

log = logging.getLogger(__name__)
OUTSIDER = "Sorry, this release bot only takes requests from members of its own workspace."
USER_TTL = 300.0


@dataclass(frozen=True)
class Home:
    """The workspaces and organization admitted: the policy's, or the bot token's own."""

    team_ids: frozenset[str]
    enterprise_id: str | None

    def admits(self, team: str | None, enterprise: str | None) -> bool:
        """Whether a workspace (or, on Grid, an organization) is ours."""
        if team and team.startswith("E"):  # Grid payloads may name the organization here
            team, enterprise = None, enterprise or team
        return bool((team and team in self.team_ids)
                    or (enterprise and enterprise == self.enterprise_id))


def request_origin(body: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(user, workspace, organization) a request came from, in every shape Slack sends.

    An org-wide install sends `"team": null` and names the workspace in `user.team_id`.
    """
    user = body.get("user") if isinstance(body.get("user"), dict) else {}
    team = body.get("team") if isinstance(body.get("team"), dict) else {}
    enterprise = body.get("enterprise") if isinstance(body.get("enterprise"), dict) else {}
    event = body.get("event") if isinstance(body.get("event"), dict) else {}
    auths = body.get("authorizations") if isinstance(body.get("authorizations"), list) else []
    auth = auths[0] if auths and isinstance(auths[0], dict) else {}
    who = body.get("user_id") or user.get("id") or event.get("user")
    workspace = body.get("team_id") or team.get("id") or user.get("team_id")
    org = (body.get("enterprise_id") or enterprise.get("id") or team.get("enterprise_id")
           or auth.get("enterprise_id"))
    return _text(who), _text(workspace), _text(org)


def _text(value: Any) -> str | None:
    """A non-empty string, or None."""
    return value if isinstance(value, str) and value else None


class Access:
    """Decides whether a request's sender may be served at all."""

    def __init__(self, rules: SlackAccess, client: AsyncWebClient) -> None:
        self.rules, self.client = rules, client
        self._home: Home | None = None
        self._users: dict[str, tuple[float, bool]] = {}

    async def admits(self, body: dict[str, Any]) -> bool:
        """Whether the sender is one of ours and allowed to act."""
        user, team, enterprise = request_origin(body)
        home = await self.home()
        if home is None or user is None or not home.admits(team, enterprise):
            if home is not None:
                log.info("refused a request from workspace %s / org %s", team, enterprise)
            return False
        return await self._member(user, home)

    async def home(self) -> Home | None:
        """The admitted workspaces; None while Slack can't say which is ours."""
        if self._home is None:
            own_team, own_org = None, None
            if not (self.rules.team_ids or self.rules.enterprise_id):
                try:
                    resp = await self.client.auth_test()
                except SlackApiError as exc:
                    log.warning("auth.test failed: %s", exc.response.get("error"))
                    return None
                own_team, own_org = resp.get("team_id"), resp.get("enterprise_id")
            teams = self.rules.team_ids or ([own_team] if own_team else [])
            self._home = Home(frozenset(teams), self.rules.enterprise_id or own_org)
        return self._home

    async def _member(self, user: str, home: Home) -> bool:
        """Whether this person is a member (not a guest, not external) unless the policy allows."""
        now = time.monotonic()
        cached = self._users.get(user)
        if cached and now - cached[0] < USER_TTL:
            return cached[1]
        try:
            info = (await self.client.users_info(user=user)).get("user") or {}
        except SlackApiError as exc:
            log.warning("users.info for %s failed: %s", user, exc.response.get("error"))
            return False
        ok = self._allowed(info, home)
        self._users[user] = (now, ok)
        return ok

    def _allowed(self, info: dict[str, Any], home: Home) -> bool:
        """A guest or a Slack Connect user only when the policy says so."""
        guest = bool(info.get("is_restricted") or info.get("is_ultra_restricted"))
        org = (info.get("enterprise_user") or {}).get("enterprise_id")
        external = not home.admits(info.get("team_id"), org)
        if guest and not self.rules.allow_guests:
            log.info("refused guest %s", info.get("id"))
            return False
        if external and not self.rules.allow_external_users:
            log.info("refused external user %s of %s", info.get("id"), info.get("team_id"))
            return False
        return True
