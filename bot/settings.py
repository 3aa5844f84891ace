"""Start-up settings from the environment and `.env`: the only reader of os.environ."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr, ValidationError, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

_ASYNC_SCHEMES = ("sqlite+aiosqlite", "postgresql+asyncpg")
# Sync spellings people paste from other tools, and the async driver they mean.
_SCHEME_REWRITES = {
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
}
_PURPOSES = {
    "slack_bot_token": "the bot token (xoxb-…) from the Slack app's OAuth & Permissions page",
    "slack_signing_secret": "it verifies every request from Slack (app's Basic Information page)",
    "slack_app_token": "Socket Mode needs an app-level token (xapp-…) with connections:write",
    "gitlab_token": "a GitLab token with api scope runs the deploy pipelines",
    "gitlab_webhook_secret": "it must equal the X-Gitlab-Token header of GitLab's webhooks",
    "zentao_account": "a ZenTao bug tracker in the policy is read as this account",
    "zentao_password": "a ZenTao bug tracker in the policy is read with this password",
}


class SettingsError(Exception):
    """A missing or wrong setting, as one line naming the variable."""


def _invalid(reason: str) -> PydanticCustomError:
    """A validation error whose message is exactly `reason`."""
    return PydanticCustomError("invalid_setting", "{reason}", {"reason": reason})


def _int_between(value: Any, low: int, high: int | None, reason: str) -> int:
    """An int (or a string of digits) within [low, high]; otherwise `reason (got …)`."""
    text = str(value).strip()
    valid = not isinstance(value, bool) and text.lstrip("+-").isdigit()
    if not valid or int(text) < low or (high is not None and int(text) > high):
        raise _invalid(f"{reason} (got {str(value)!r})")
    return int(text)


def shown_url(value: str) -> str:
    """A URL as it may be shown: whatever stands before its last `@` (a user, a password, a
    token) replaced by ***, the scheme kept. Errors and `check` print URLs only this way."""
    head, at, host = value.rpartition("@")
    if not at:
        return value
    scheme, sep, _ = head.partition("://")
    return f"{scheme}://***@{host}" if sep else f"***@{host}"


def _http_url(value: str, example: str) -> str:
    """The URL, unless it is not http(s) with a host."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _invalid(f"must be an http(s) URL like {example} (got {shown_url(value)!r})")
    return value.strip()


class Settings(BaseSettings):
    """Everything the process needs to start, validated once."""

    # Unrelated keys in a shared .env are not ours to reject; an empty value means unset.
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True
    )

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    database_url: str = "sqlite+aiosqlite:///releasebot.db"
    gitlab_url: str = "https://gitlab.com"
    gitlab_token: SecretStr | None = None
    gitlab_webhook_secret: SecretStr | None = None
    metrics_token: SecretStr | None = None  # when set, /metrics wants `Authorization: Bearer …`
    zentao_account: str | None = None  # reads a ZenTao bug tracker (POST /api.php/v1/tokens)
    zentao_password: SecretStr | None = None
    gitlab_poll_seconds: int = 30
    scheduler_seconds: int = 60  # how often reminders, scheduled deploys and closes are checked
    releasebot_config: Path = Path("releasebot.yml")
    host: str = "0.0.0.0"
    port: int = 3000

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token_prefix(cls, value: SecretStr | None) -> SecretStr | None:
        """Catch a user or app token pasted in the bot token's place."""
        if value is not None and not value.get_secret_value().startswith("xoxb-"):
            raise _invalid("must start with xoxb-")
        return value

    @field_validator("slack_signing_secret")
    @classmethod
    def _signing_secret_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        """A blank secret verifies nothing (Bolt would answer every request with a 500)."""
        if value is not None and not value.get_secret_value().strip():
            raise _invalid("must not be blank")
        return value

    @field_validator("slack_app_token")
    @classmethod
    def _app_token_prefix(cls, value: SecretStr | None) -> SecretStr | None:
        """Socket Mode only works with an app-level token."""
        if value is not None and not value.get_secret_value().startswith("xapp-"):
            raise _invalid("must start with xapp-")
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _slack_api_url(cls, value: str) -> str:
        """The Slack client joins method names onto the base URL, so it must end with a slash."""
        url = _http_url(value, "https://slack.com/api/")
        return url if url.endswith("/") else url + "/"

    @field_validator("gitlab_url")
    @classmethod
    def _gitlab_url(cls, value: str) -> str:
        """python-gitlab appends /api/v4 itself; a trailing slash would double it.

        A user or password in the URL is refused: GITLAB_TOKEN authenticates, and python-gitlab
        would print the URL, password and all, in a warning.
        """
        url = _http_url(value, "https://gitlab.example.com").rstrip("/")
        if "@" in urlsplit(url).netloc:
            raise _invalid(f"must not hold a user or password; GITLAB_TOKEN authenticates "
                           f"(got {shown_url(url)!r})")
        if urlsplit(url).path.rstrip("/").endswith("/api/v4"):
            raise _invalid(f"must be GitLab's address without /api/v4, which the bot adds itself "
                           f"(got {shown_url(url)!r})")
        return url

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        """Rewrite sync URLs to their async driver; refuse other databases."""
        url = value.strip()
        scheme, sep, rest = url.partition("://")
        scheme = _SCHEME_REWRITES.get(scheme.lower(), scheme)
        if not sep or scheme not in _ASYNC_SCHEMES:
            # Show only the scheme: the rest may hold a password.
            got = f"{scheme}://…" if sep else "a value without a scheme"
            raise _invalid(
                f"must be an async SQLAlchemy URL starting with sqlite+aiosqlite:// "
                f"or postgresql+asyncpg:// (got {got})"
            )
        url = f"{scheme}://{rest}"
        try:
            host = make_url(url).host or ""
        except (ValueError, ArgumentError):
            host = "@"  # unreadable; its text may hold the password, so it is not shown
        if "@" in host:  # a password with an unescaped @ would make part of it the host
            raise _invalid(
                f"can't be read as a database URL (got {scheme}://…): check the port, and "
                "write @ / : ? # in the user name or password %-escaped (@ as %40)")
        return url

    @field_validator("gitlab_poll_seconds", "scheduler_seconds", mode="before")
    @classmethod
    def _poll_seconds(cls, value: Any) -> int:
        """A whole number of seconds; zero would poll in a busy loop."""
        return _int_between(value, 1, None, "must be a whole number of seconds, at least 1")

    @field_validator("port", mode="before")
    @classmethod
    def _port(cls, value: Any) -> int:
        """A TCP port; 0 lets `serve` pick a free one (and log which)."""
        return _int_between(value, 0, 65535,
                            "must be an integer between 0 and 65535 (0: any free port)")


def _describe(error: Any) -> str:
    """One pydantic error as `NAME: reason`."""
    name = str(error["loc"][0]).upper() if error["loc"] else "SETTINGS"
    if error["type"] == "invalid_setting":
        return f"{name}: {error['ctx']['reason']}"
    return f"{name}: {error['msg'][0].lower()}{error['msg'][1:]}"


# What stops working while an optional setting is unset: `serve` logs it, `check` prints it.
UNSET_EFFECTS = {
    "gitlab_token": "GitLab is called without a token, so deploys, rollbacks and commit pins "
                    "fail on private projects (set a token with api scope)",
    "gitlab_webhook_secret": "every GitLab webhook is refused with 401, so pipeline results "
                             "arrive only by polling (every GITLAB_POLL_SECONDS)",
}


def unset_warnings(settings: Settings) -> list[str]:
    """`NAME is not set: what will not work`, for each optional setting that is unset."""
    return [f"{field.upper()} is not set: {effect}" for field, effect in UNSET_EFFECTS.items()
            if getattr(settings, field) is None]


def load_settings(**overrides: Any) -> Settings:
    """Read the settings (overrides win over the environment); raise SettingsError if wrong."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError("; ".join(_describe(e) for e in exc.errors())) from None


def require(settings: Settings, *names: str) -> None:
    """Raise SettingsError naming every setting in `names` that is not set."""
    missing = []
    for name in names:
        field = name.lower()
        if field not in Settings.model_fields:
            raise ValueError(f"{name} is not a setting")
        if getattr(settings, field) is None:
            purpose = _PURPOSES.get(field, "it is needed here")
            missing.append(f"{field.upper()} is not set: {purpose}")
    if missing:
        where = "set it" if len(missing) == 1 else "set them"
        raise SettingsError("; ".join(missing) + f"; {where} in the environment or in .env")
