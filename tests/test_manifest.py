"""manifest.yml: the command, interactivity, Home, events, and exactly the scopes the code uses."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# Every Slack Web API method the code may call, and the bot scopes it needs.
SCOPES_BY_METHOD = {
    "chat_postMessage": {"chat:write"}, "chat_update": {"chat:write"},
    "chat_postEphemeral": {"chat:write"}, "chat_getPermalink": set(),
    "conversations_history": {"channels:history", "groups:history"},
    "conversations_replies": {"channels:history", "groups:history"},
    "usergroups_users_list": {"usergroups:read"}, "views_open": set(),
    "views_publish": set(), "auth_test": set(),
    "conversations_info": {"channels:read", "groups:read"}, "users_info": {"users:read"},
}


def manifest() -> dict:
    """The parsed manifest."""
    return yaml.safe_load((ROOT / "manifest.yml").read_text())


def slack_methods_called() -> set[str]:
    """Web API methods the product's code calls on a Slack client."""
    code = "\n".join(p.read_text() for d in ("bot", "handlers") for p in (ROOT / d).rglob("*.py"))
    return set(re.findall(r"client\.((?:chat|conversations|usergroups|views|users|auth|reactions"
                          r"|apps)_\w+)\(", code))


def test_scopes_are_exactly_what_the_code_uses() -> None:
    """No method without its scope, no scope without a method."""
    called = slack_methods_called()
    unknown = called - set(SCOPES_BY_METHOD)
    assert not unknown, f"add these to the table: {unknown}"
    needed = {"commands"}.union(*(SCOPES_BY_METHOD[m] for m in called))
    assert set(manifest()["oauth_config"]["scopes"]["bot"]) == needed


def test_command_interactivity_home_and_events() -> None:
    """One paste creates everything the bot listens to."""
    m = manifest()
    command = m["features"]["slash_commands"][0]
    assert command["command"] == "/release" and command["url"].endswith("/slack/events")
    assert m["settings"]["interactivity"]["is_enabled"] is True
    assert m["settings"]["interactivity"]["request_url"].endswith("/slack/events")
    assert m["features"]["app_home"]["home_tab_enabled"] is True
    assert m["settings"]["event_subscriptions"]["bot_events"] == ["app_home_opened"]
