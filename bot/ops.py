"""Operator commands: `releasebot check` (does every connection work?) and `export`."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, Literal, TextIO

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from bot.gitlab import GitLabClient, GitLabError
from bot.policy import Policy, PolicyError, load_policy
from bot.settings import Settings
from storage import queries as q
from storage.db import make_engine, make_sessionmaker
from storage.models import AuditEntry

ExportFormat = Literal["csv", "json"]
COLUMNS = ("id", "release", "at", "actor", "action", "from", "to", "detail")
PAGE = 500  # audit rows read per query: memory stays flat however long the trail is
_NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)


class CommandError(Exception):
    """A command could not do its job; the message is one line for the operator."""


# --- check --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CheckLine:
    """One thing checked: what, whether it passed, and why."""

    ok: bool
    what: str
    detail: str

    def __str__(self) -> str:
        """`ok    what: detail` or `FAIL  what: detail`."""
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.what}: {self.detail}"


def _slack_reason(exc: Exception) -> str:
    """Slack's error code (and the scope it wants), or the network failure."""
    if isinstance(exc, SlackApiError):
        error = str(exc.response.get("error"))
        needed = exc.response.get("needed")
        return f"{error} (the app needs the {needed} scope)" if needed else error
    said = f": {exc}" if str(exc) else ""
    return f"Slack unreachable ({type(exc).__name__}{said})"


async def check_all(settings: Settings) -> list[CheckLine]:
    """Every check, in the order an operator fixes things: policy, Slack, GitLab."""
    lines: list[CheckLine] = []
    policy = _check_policy(settings, lines)
    lines += await check_slack(settings, policy)
    lines += await check_gitlab(settings, policy)
    return lines


def _check_policy(settings: Settings, lines: list[CheckLine]) -> Policy | None:
    """Load the policy file, adding its line; None when it is unusable."""
    where = str(settings.releasebot_config)
    try:
        policy = load_policy(settings.releasebot_config)
    except PolicyError as exc:
        lines.append(CheckLine(False, "policy file", str(exc)))
        return None
    lines.append(CheckLine(True, "policy file", f"{where} ({len(policy.projects)} projects, "
                                                f"{len(policy.roles)} roles)"))
    return policy


async def check_slack(settings: Settings, policy: Policy | None) -> list[CheckLine]:
    """The bot token, the release channel and every role's members."""
    from bot.app import slack_client  # the app's own client: same base URL, same retries

    if settings.slack_bot_token is None:
        token = CheckLine(False, "Slack token", "SLACK_BOT_TOKEN is not set")
        return [token, *_not_checked(policy, "the Slack token is not set")]
    client = slack_client(settings)
    try:
        auth = await client.auth_test()
    except (SlackApiError, *_NETWORK_ERRORS) as exc:
        token = CheckLine(False, "Slack token", f"auth.test failed: {_slack_reason(exc)}")
        return [token, *_not_checked(policy, "the Slack token does not work")]
    lines = [CheckLine(True, "Slack token",
                       f"bot @{auth.get('user')} in workspace {auth.get('team')}")]
    if policy is not None:
        lines.append(await check_channel(client, policy.release_channel))
        lines += await check_roles(client, policy)
    return lines


def _not_checked(policy: Policy | None, why: str) -> list[CheckLine]:
    """Lines for the Slack checks that could not run, so none goes unmentioned."""
    if policy is None:
        return []
    channel = CheckLine(False, "release channel", f"not checked: {why}")
    return [channel, *(CheckLine(False, f"role {r}", f"not checked: {why}") for r in policy.roles)]


async def check_channel(client: AsyncWebClient, channel: str) -> CheckLine:
    """The release channel exists, is not archived and has the bot in it."""
    try:
        info = (await client.conversations_info(channel=channel)).get("channel") or {}
    except (SlackApiError, *_NETWORK_ERRORS) as exc:
        return CheckLine(False, "release channel", f"{channel}: {_slack_reason(exc)}")
    name = f"#{info.get('name', channel)} ({channel})"
    if info.get("is_archived"):
        return CheckLine(False, "release channel", f"{name} is archived")
    if info.get("is_member") is False:
        return CheckLine(False, "release channel",
                         f"{name}: the bot is not a member; /invite @ReleaseBot there")
    return CheckLine(True, "release channel", name)


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


async def check_gitlab(settings: Settings, policy: Policy | None) -> list[CheckLine]:
    """The GitLab token, then every project the policy names."""
    if settings.gitlab_token is None:
        token = CheckLine(False, "GitLab token", "GITLAB_TOKEN is not set")
        return [token, *_projects_not_checked(policy, "the GitLab token is not set")]
    gitlab = GitLabClient(settings.gitlab_url, settings.gitlab_token.get_secret_value())
    try:
        username = await gitlab.check()
    except GitLabError as exc:
        token = CheckLine(False, "GitLab token", f"{settings.gitlab_url}: {exc}")
        return [token, *_projects_not_checked(policy, "the GitLab token does not work")]
    lines = [CheckLine(True, "GitLab token", f"{settings.gitlab_url} as @{username}")]
    for key, project in (policy.projects if policy else {}).items():
        try:
            branch = await gitlab.default_branch(project.gitlab)
        except GitLabError as exc:
            lines.append(CheckLine(False, f"project {key}", f"{project.gitlab}: {exc}"))
            continue
        lines.append(CheckLine(True, f"project {key}",
                               f"{project.gitlab} (default branch {branch})"))
    return lines


def _projects_not_checked(policy: Policy | None, why: str) -> list[CheckLine]:
    """Lines for the GitLab projects that could not be checked."""
    projects = policy.projects if policy else {}
    return [CheckLine(False, f"project {key}", f"not checked: {why}") for key in projects]


async def run_check(settings: Settings, out: TextIO) -> int:
    """Print one line per check and a summary; 0 only when everything passed."""
    lines = await check_all(settings)
    for line in lines:
        print(line, file=out, flush=True)
    failed = sum(not line.ok for line in lines)
    if failed:
        print(f"{failed} of {len(lines)} checks failed", file=out)
        return 1
    print(f"all {len(lines)} checks passed", file=out)
    return 0


# --- export -------------------------------------------------------------------------------------

def parse_since(text: str) -> datetime:
    """`YYYY-MM-DD` as the start of that day in UTC (the export's own timezone)."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a date like 2026-01-31") from None
    return datetime.combine(day, time(0), tzinfo=UTC)


def utc_iso(when: datetime) -> str:
    """ISO 8601 in UTC with a Z, e.g. 2026-11-23T04:00:00.123456Z."""
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def audit_record(entry: AuditEntry) -> dict[str, Any]:
    """One audit row as exported."""
    return {"id": entry.id, "release": f"REL-{entry.release_id}", "at": utc_iso(entry.at),
            "actor": entry.actor, "action": entry.action, "from": entry.from_state,
            "to": entry.to_state, "detail": entry.detail}


async def audit_pages(database_url: str, since: datetime | None = None,
                      page: int = PAGE) -> AsyncIterator[list[AuditEntry]]:
    """The audit trail in id order, a page at a time (keyset paging: no OFFSET rescans)."""
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    after = 0
    try:
        while True:
            async with sessions() as session:
                rows = list(await q.audit_page(session, after_id=after, since=since, limit=page))
            if not rows:
                return
            yield rows
            after = rows[-1].id or after
    finally:
        await engine.dispose()


def _csv_writer(out: TextIO) -> tuple[Callable[[dict[str, Any]], None], Callable[[], None]]:
    """Write one record / finish, for CSV with a header row."""
    writer = csv.writer(out)
    writer.writerow(COLUMNS)

    def write(record: dict[str, Any]) -> None:
        detail = json.dumps(record["detail"], ensure_ascii=False, sort_keys=True)
        writer.writerow([*(record[c] if record[c] is not None else "" for c in COLUMNS[:-1]),
                         detail])

    return write, lambda: None


def _json_writer(out: TextIO) -> tuple[Callable[[dict[str, Any]], None], Callable[[], None]]:
    """Write one record / finish, as one JSON array written element by element."""
    first = [True]
    out.write("[")

    def write(record: dict[str, Any]) -> None:
        out.write("\n" if first[0] else ",\n")
        out.write(json.dumps(record, ensure_ascii=False, sort_keys=True))
        first[0] = False

    return write, lambda: out.write("\n]\n" if not first[0] else "]\n")


WRITERS = {"csv": _csv_writer, "json": _json_writer}


def _check_database(database_url: str) -> None:
    """Refuse a SQLite path that does not exist: connecting would create an empty file."""
    url = make_url(database_url)
    path = url.database
    if url.get_backend_name() == "sqlite" and path and path != ":memory:" and (
            not Path(path).exists()):
        raise CommandError(f"no database at {path} (check DATABASE_URL)")


async def export_audit(database_url: str, out: TextIO, *, fmt: ExportFormat,
                       since: datetime | None = None, page: int = PAGE) -> int:
    """Stream the audit trail to `out`; how many rows were written."""
    _check_database(database_url)
    write, finish = WRITERS[fmt](out)
    count = 0
    try:
        async for rows in audit_pages(database_url, since, page):
            for entry in rows:
                write(audit_record(entry))
            count += len(rows)
    except SQLAlchemyError as exc:
        shown = make_url(database_url).render_as_string(hide_password=True)
        first = str(getattr(exc, "orig", exc)).splitlines()[0]
        raise CommandError(f"cannot read the audit trail from {shown}: {first} "
                           "(has `releasebot migrate` run?)") from None
    finish()
    return count


async def run_export(settings: Settings, *, fmt: ExportFormat, since: datetime | None,
                     output: Path | None, out: TextIO, err: TextIO) -> int:
    """`releasebot export`: to a file (UTF-8) or to `out`; a count on `err`."""
    _check_database(settings.database_url)  # before opening the output: no empty file is left
    if output is None:
        count = await export_audit(settings.database_url, out, fmt=fmt, since=since)
        out.flush()
    else:
        try:
            with output.open("w", encoding="utf-8", newline="") as file:
                count = await export_audit(settings.database_url, file, fmt=fmt, since=since)
        except OSError as exc:
            raise CommandError(f"cannot write {output}: {exc.strerror}") from None
    where = f" to {output}" if output else ""
    print(f"exported {count} audit rows{where}", file=err)
    return 0

