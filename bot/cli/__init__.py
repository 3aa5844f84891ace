"""The `releasebot` command line; `check`, `export` and the demo live in modules beside it."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from bot.policy import Policy, PolicyError, load_policy
from bot.settings import Settings, SettingsError, load_settings, require, unset_warnings

log = logging.getLogger(__name__)


class CommandError(Exception):
    """A command could not do its job; the message is one line for the operator."""


def _reach_database(settings: Settings, *, existing: bool = False) -> None:
    """Stop with one line, not a traceback, when the database can't be reached.

    `existing`: the command only reads (export, audit), so a SQLite file must already be there;
    nothing is created either way.
    """
    from storage.db import unreachable

    url = settings.database_url
    why = asyncio.run(unreachable(url, existing=existing))
    if why:
        server = "" if url.startswith("sqlite") else " and that the server is up"
        raise CommandError(f"cannot use the database {_safe_url(url)}: {why} "
                           f"(check DATABASE_URL{server})")


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    """Bring the database schema up to date."""
    from storage.migrate import upgrade

    _reach_database(settings)
    upgrade(settings.database_url)
    print(f"database is up to date ({_safe_url(settings.database_url)})")
    if args.grant_to:
        _grant(settings.database_url, args.grant_to)
    return 0


def _grant(url: str, role: str) -> None:
    """Give `serve`'s role what it needs and no more (see docs/operations.md, Hardening)."""
    from sqlalchemy.exc import SQLAlchemyError

    from storage.migrate import grant_app_role

    try:
        grant_app_role(url, role)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    except SQLAlchemyError as exc:
        first = str(getattr(exc, "orig", exc)).splitlines()[0]
        raise CommandError(f"cannot grant to {role}: {first}") from None
    print(f"{role} may now run `serve`: audit trail insert and select only")


def _safe_url(url: str) -> str:
    """A database URL without its password, for people to read."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _check_policy(args: argparse.Namespace, settings: Settings) -> int:
    """Validate the policy file."""
    from bot.cli.check import policy_size

    policy = load_policy(settings.releasebot_config)
    print(f"{settings.releasebot_config}: ok ({policy_size(policy)})")
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the bot: Slack over HTTP (or Socket Mode), GitLab webhooks, health, metrics, jobs."""
    from bot.cli.workers import WorkersError, default_workers, serve_workers
    from bot.logs import setup_logging
    from bot.trackers.registry import uses_zentao

    if args.socket_mode:
        require(settings, "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN")
    else:  # every HTTP request from Slack must be verified: no secret, no start
        require(settings, "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET")
    policy = load_policy(settings.releasebot_config)
    if uses_zentao(policy):  # its bugs can't be counted without the bot's ZenTao account
        require(settings, "ZENTAO_ACCOUNT", "ZENTAO_PASSWORD")
    settings = _claim_port(settings)  # before migrations and the scheduler start
    _reach_database(settings)
    setup_logging()
    for warning in unset_warnings(settings):
        log.warning("%s", warning)
    workers = args.workers or default_workers(settings.database_url)
    try:
        if workers > 1:
            return serve_workers(settings, policy, workers, socket_mode=args.socket_mode)
        return _serve_one(settings, policy, socket_mode=args.socket_mode)
    except WorkersError as exc:
        raise CommandError(str(exc)) from None


def _claim_port(settings: Settings) -> Settings:
    """The settings with a port known to be free (port 0: one chosen now); one line if not."""
    from bot.cli.workers import WorkersError, free_port

    try:
        port = free_port(settings.host, settings.port)
    except WorkersError as exc:
        raise CommandError(str(exc)) from None
    return settings.model_copy(update={"port": port})


def _serve_one(settings: Settings, policy: Policy, *, socket_mode: bool) -> int:
    """Serve in this process until stopped."""
    from aiohttp import web

    from bot.app import create_app
    from bot.app import socket_mode as socket_ctx

    app = create_app(settings, policy)
    if socket_mode:
        app.cleanup_ctx.append(socket_ctx)

    def listening(_banner: str) -> None:  # aiohttp calls it once the socket is bound
        log.info("listening on %s:%s", settings.host, settings.port)

    try:
        web.run_app(app, host=settings.host, port=settings.port, print=listening)
    except OSError as exc:  # someone took the port between the check and now
        if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
            raise
        raise CommandError(f"cannot listen on {settings.host}:{settings.port}: "
                           f"{os.strerror(exc.errno)}") from None
    return 0


def _check(args: argparse.Namespace, settings: Settings) -> int:
    """Validate the policy and try every connection: one line each."""
    from bot.cli.check import run_check

    return asyncio.run(run_check(settings, sys.stdout))


def _export(args: argparse.Namespace, settings: Settings) -> int:
    """Write the audit trail as CSV or JSON."""
    from bot.cli.export import run_export

    _reach_database(settings, existing=True)  # before the output is opened: no empty file left
    return asyncio.run(run_export(settings, fmt=args.format, since=args.since,
                                  output=args.output, out=sys.stdout, err=sys.stderr))


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    """Check the audit trail's hash chain."""
    from bot.cli.audit import run_verify

    _reach_database(settings, existing=True)
    return asyncio.run(run_verify(settings, sys.stdout, sys.stderr))


def _demo(args: argparse.Namespace) -> int:
    """Four releases end to end, offline, against the built-in emulators."""
    from bot.cli.demo import run_demo

    try:
        return asyncio.run(run_demo(sys.stdout, slow=args.slow, keep=args.keep, port=args.port))
    except BrokenPipeError:  # whoever read the output left (`| head`): stop without a word
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:  # the port is taken, or no temporary folder can be made
        raise CommandError(f"the demo could not start: {exc}") from None


def _say(args: argparse.Namespace) -> int:
    """One signed /release command to a running demo; prints the private answer."""
    from bot.cli.demo import run_say

    return run_say(args.text, user=args.user, url=args.url, secret=args.secret,
                   slack=args.slack)


COMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace, Settings], int]]] = {
    "serve": ("run the bot (HTTP mode; --socket-mode for Slack over a WebSocket)", _serve),
    "migrate": ("bring the database schema up to date (Alembic)", _migrate),
    "policy": ("validate the policy file (RELEASEBOT_CONFIG)", _check_policy),
    "check": ("validate the policy file and test the Slack and GitLab connections", _check),
    "export": ("write the audit trail as CSV or JSON", _export),
    "audit": ("`audit verify`: check the audit trail's hash chain; names the first broken row",
              _audit),
}
# Commands that need no settings at all: they run on a fresh machine whatever the environment.
STANDALONE: dict[str, tuple[str, Callable[[argparse.Namespace], int]]] = {
    "demo": ("run four releases end to end offline against built-in Slack and GitLab", _demo),
    "say": ("send one /release command to a running `demo --keep` and print the answer", _say),
}

HELP_ORDER = ("demo", "say", "serve", "migrate", "policy", "check", "export", "audit")


def _since(text: str) -> datetime:
    """argparse type for --since."""
    from bot.cli.export import parse_since

    try:
        return parse_since(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    """argparse type for a count of at least one."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _add_options(name: str, sub: argparse.ArgumentParser) -> None:
    """The options of one subcommand."""
    if name in ("serve", "migrate", "policy"):
        sub.add_argument("--host", help="override HOST")
        sub.add_argument("--port", type=int, help="override PORT")
    if name == "migrate":
        sub.add_argument("--grant-to", metavar="ROLE",
                         help="then grant PostgreSQL role ROLE what `serve` needs, and no more")
    if name == "serve":
        sub.add_argument("--socket-mode", action="store_true",
                         help="take Slack traffic over Socket Mode (needs SLACK_APP_TOKEN)")
        sub.add_argument("--workers", type=_positive, metavar="N",
                         help="N processes on the one port, each a full replica (default: one "
                         "per core on PostgreSQL, 1 on SQLite)")
    elif name == "export":
        sub.add_argument("--format", choices=("csv", "json"), required=True)
        sub.add_argument("--since", type=_since, metavar="YYYY-MM-DD",
                         help="only rows from this day on (UTC)")
        sub.add_argument("--output", type=Path, metavar="FILE", help="write here, not stdout")
    elif name == "audit":
        sub.add_argument("action", choices=("verify",), help="what to do with the trail")
    elif name == "demo":
        sub.add_argument("--slow", action="store_true", help="pause between steps to watch")
        sub.add_argument("--keep", action="store_true",
                         help="keep serving afterwards for `releasebot say`, until Ctrl-C")
        sub.add_argument("--port", type=int, default=0,
                         help="the bot's port (default: any free one)")
    elif name == "say":
        sub.add_argument("text", help='what you would type, e.g. "/release list"')
        sub.add_argument("--as", dest="user", required=True, metavar="USER",
                         help="the Slack user ID sending it, e.g. U0DEV")
        sub.add_argument("--url", help="the bot (default: the running demo's)")
        sub.add_argument("--secret", help="its signing secret (default: the running demo's)")
        sub.add_argument("--slack", metavar="URL",
                         help="the Slack emulator it answers through (default: the demo's)")


def parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    root = argparse.ArgumentParser(prog="releasebot", description="Releases run in Slack.")
    subs = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    every = COMMANDS | STANDALONE
    for name in HELP_ORDER:
        help_text = every[name][0]
        sub = subs.add_parser(name, help=help_text, description=help_text)
        _add_options(name, sub)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; configuration problems end in one clear line, never a traceback."""
    args = parser().parse_args(argv)
    try:
        if args.command in STANDALONE:
            return STANDALONE[args.command][1](args)
        overrides = {k: v for k in ("host", "port") if (v := getattr(args, k, None)) is not None}
        settings = load_settings(**overrides)
        return COMMANDS[args.command][1](args, settings)
    except (SettingsError, PolicyError) as exc:
        print(f"releasebot: {exc}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"releasebot: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
