"""Settings: defaults, .env, rewriting, and one clear line per wrong value."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import (
    Settings,
    SettingsError,
    load_settings,
    require,
    shown_url,
    unset_warnings,
)

NAMES = [name.upper() for name in Settings.model_fields]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No stray variables or .env from the machine running the tests."""
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def error_of(**overrides: object) -> str:
    """The SettingsError message for these values."""
    with pytest.raises(SettingsError) as caught:
        load_settings(**overrides)
    return str(caught.value)


def test_defaults() -> None:
    s = load_settings()
    assert s.slack_bot_token is None and s.slack_signing_secret is None
    assert s.slack_app_token is None and s.gitlab_token is None
    assert s.gitlab_webhook_secret is None
    assert s.slack_api_url == "https://slack.com/api/"
    assert s.database_url == "sqlite+aiosqlite:///releasebot.db"
    assert s.gitlab_url == "https://gitlab.com"
    assert s.gitlab_poll_seconds == 30
    assert s.releasebot_config == Path("releasebot.yml")
    assert (s.host, s.port) == ("0.0.0.0", 3000)


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "8080")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-123")
    monkeypatch.setenv("RELEASEBOT_CONFIG", "/etc/releasebot.yml")
    s = load_settings()
    assert s.port == 8080
    assert s.slack_bot_token is not None and s.slack_bot_token.get_secret_value() == "xoxb-123"
    assert s.releasebot_config == Path("/etc/releasebot.yml")


def test_dotenv_is_read_and_environment_wins(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / ".env").write_text(
        "SLACK_SIGNING_SECRET=s3cret\nGITLAB_POLL_SECONDS=5\nPORT=4000\nUNRELATED=1\n"
    )
    monkeypatch.setenv("PORT", "5000")
    s = load_settings()
    assert s.slack_signing_secret is not None
    assert s.slack_signing_secret.get_secret_value() == "s3cret"
    assert s.gitlab_poll_seconds == 5
    assert s.port == 5000


def test_overrides_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "5000")
    assert load_settings(port=6000, host="127.0.0.1").port == 6000


def test_empty_value_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "")
    assert load_settings().slack_bot_token is None


def test_secrets_are_not_printed() -> None:
    s = load_settings(slack_bot_token="xoxb-very-secret")
    assert "very-secret" not in repr(s)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@db:5432/rb", "postgresql+asyncpg://u:p@db:5432/rb"),
        ("postgres://u:p@db/rb", "postgresql+asyncpg://u:p@db/rb"),
        ("postgresql+asyncpg://db/rb", "postgresql+asyncpg://db/rb"),
        ("sqlite:///data/rb.db", "sqlite+aiosqlite:///data/rb.db"),
        ("sqlite+aiosqlite:///rb.db", "sqlite+aiosqlite:///rb.db"),
    ],
)
def test_database_url_is_made_async(given: str, expected: str) -> None:
    assert load_settings(database_url=given).database_url == expected


def test_slack_api_url_gets_a_trailing_slash() -> None:
    assert load_settings(slack_api_url="http://127.0.0.1:9000/api").slack_api_url == (
        "http://127.0.0.1:9000/api/"
    )


def test_gitlab_url_loses_its_trailing_slash() -> None:
    assert load_settings(gitlab_url="https://git.acme.io/").gitlab_url == "https://git.acme.io"


def test_bad_port_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "abc")
    assert error_of() == ("PORT: must be an integer between 0 and 65535 (0: any free port) "
                          "(got 'abc')")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"port": "-1"}, "PORT: must be an integer between 0 and 65535 (0: any free port) "
                         "(got '-1')"),
        ({"port": 70000}, "PORT: must be an integer between 0 and 65535 (0: any free port) "
                          "(got '70000')"),
        (
            {"gitlab_poll_seconds": "0"},
            "GITLAB_POLL_SECONDS: must be a whole number of seconds, at least 1 (got '0')",
        ),
        (
            {"gitlab_poll_seconds": "2.5"},
            "GITLAB_POLL_SECONDS: must be a whole number of seconds, at least 1 (got '2.5')",
        ),
        ({"slack_bot_token": "xoxp-user-token"}, "SLACK_BOT_TOKEN: must start with xoxb-"),
        ({"slack_app_token": "xoxb-bot-token"}, "SLACK_APP_TOKEN: must start with xapp-"),
        (
            {"database_url": "mysql://root:hunter2@db/rb"},
            "DATABASE_URL: must be an async SQLAlchemy URL starting with sqlite+aiosqlite:// "
            "or postgresql+asyncpg:// (got mysql://…)",
        ),
        (
            {"database_url": "releasebot.db"},
            "DATABASE_URL: must be an async SQLAlchemy URL starting with sqlite+aiosqlite:// "
            "or postgresql+asyncpg:// (got a value without a scheme)",
        ),
        (
            {"slack_api_url": "slack.com/api"},
            "SLACK_API_URL: must be an http(s) URL like https://slack.com/api/ "
            "(got 'slack.com/api')",
        ),
        (
            {"gitlab_url": "ftp://git.acme.io"},
            "GITLAB_URL: must be an http(s) URL like https://gitlab.example.com "
            "(got 'ftp://git.acme.io')",
        ),
    ],
)
def test_invalid_values_give_one_line(overrides: dict[str, object], message: str) -> None:
    assert error_of(**overrides) == message


def test_password_is_not_echoed() -> None:
    assert "hunter2" not in error_of(database_url="mysql://root:hunter2@db/rb")


@pytest.mark.parametrize("overrides", [
    {"gitlab_url": "ftp://deploy:glpat-hunter2@git.acme.io"},
    {"gitlab_url": "deploy:glpat-hunter2@git.acme.io"},
    {"gitlab_url": "https://deploy:glpat-hunter2@git.acme.io"},
    {"slack_api_url": "proxy:hunter2@egress.acme.io/api/"},
    {"database_url": "postgresql+asyncpg://rb:hunter2@db:notaport/rb"},
    {"database_url": "postgresql+asyncpg://rb:p@hunter2@db/rb"},  # an unescaped @
])
def test_credentials_in_a_url_are_never_echoed(overrides: dict[str, object]) -> None:
    """A wrong URL is named in one line that shows no user, password or token in it."""
    message = error_of(**overrides)
    assert "hunter2" not in message and message.split(":")[0].isupper(), message


def test_gitlab_url_with_the_api_path_is_named() -> None:
    """python-gitlab adds /api/v4 itself: an address holding it would answer 404 to every call."""
    assert error_of(gitlab_url="https://gitlab.example.com/api/v4/") == (
        "GITLAB_URL: must be GitLab's address without /api/v4, which the bot adds itself "
        "(got 'https://gitlab.example.com/api/v4')")


def test_shown_url_hides_what_stands_before_the_host() -> None:
    assert shown_url("https://deploy:glpat-x@git.acme.io/x") == "https://***@git.acme.io/x"
    assert shown_url("deploy:glpat-x@git.acme.io") == "***@git.acme.io"
    assert shown_url("https://git.acme.io") == "https://git.acme.io"


def test_require_passes_when_set() -> None:
    s = load_settings(slack_bot_token="xoxb-1", slack_signing_secret="x")
    require(s, "SLACK_BOT_TOKEN", "slack_signing_secret")


def test_require_names_the_missing_setting() -> None:
    s = load_settings(slack_bot_token="xoxb-1")
    with pytest.raises(SettingsError) as caught:
        require(s, "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET")
    assert str(caught.value) == (
        "SLACK_SIGNING_SECRET is not set: it verifies every request from Slack "
        "(app's Basic Information page); set it in the environment or in .env"
    )


def test_require_names_every_missing_setting_on_one_line() -> None:
    with pytest.raises(SettingsError) as caught:
        require(load_settings(), "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN")
    assert str(caught.value) == (
        "SLACK_BOT_TOKEN is not set: the bot token (xoxb-…) from the Slack app's "
        "OAuth & Permissions page; SLACK_APP_TOKEN is not set: Socket Mode needs an "
        "app-level token (xapp-…) with connections:write; set them in the environment or in .env"
    )


def test_require_refuses_an_unknown_name() -> None:
    with pytest.raises(ValueError, match="SLACK_TOKEN is not a setting"):
        require(load_settings(), "SLACK_TOKEN")


def test_port_zero_means_any_free_port() -> None:
    assert load_settings(port="0").port == 0


def test_unset_gitlab_settings_are_named_with_what_will_not_work() -> None:
    warnings = unset_warnings(load_settings())
    assert [w.split(":")[0] for w in warnings] == ["GITLAB_TOKEN is not set",
                                                   "GITLAB_WEBHOOK_SECRET is not set"]
    assert "refused with 401" in warnings[1]
    both = load_settings(gitlab_token="glpat-x", gitlab_webhook_secret="hook")
    assert unset_warnings(both) == []
