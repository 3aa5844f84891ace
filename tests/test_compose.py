"""compose.yaml: the bot runs as the application role, never the superuser; no default password."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# `${NAME:?message}`: compose refuses to start while NAME is unset or empty.
REQUIRED = re.compile(r"^\$\{([A-Z_]+):\?[^}]*\}$")


def services() -> dict:
    """The parsed services of compose.yaml."""
    return yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]


def _user_and_password(service: dict) -> tuple[str, str]:
    """The database user and the password as written in a service's DATABASE_URL."""
    userinfo = service["environment"]["DATABASE_URL"].split("://", 1)[1].rsplit("@", 1)[0]
    user, _, password = userinfo.partition(":")
    return user, password


def test_the_bot_runs_as_the_application_role() -> None:
    """serve connects as releasebot_app; only `migrate --grant-to` uses the owner."""
    bot, migrate = services()["releasebot"], services()["migrate"]
    assert _user_and_password(bot)[0] == "releasebot_app"
    assert _user_and_password(migrate)[0] == "releasebot_owner"
    assert migrate["command"] == ["releasebot", "migrate", "--grant-to", "releasebot_app"]
    initdb = (ROOT / "compose.initdb.sh").read_text()
    for role in ("releasebot_owner", "releasebot_app"):
        assert f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE" in initdb


def test_no_password_has_a_default() -> None:
    """Every password is `${…:?…}`: compose will not start without it being set."""
    every = services()
    passwords = [_user_and_password(every[name])[1] for name in ("releasebot", "migrate")]
    passwords += [value for key, value in every["db"]["environment"].items()
                  if key.endswith("PASSWORD")]
    assert len(passwords) == 5
    assert all(REQUIRED.match(str(p)) for p in passwords), passwords
