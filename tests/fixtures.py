"""What tests share besides pytest fixtures: clocks, a freeze, the PostgreSQL server, releases."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from bot import releases
from bot.gitlab import Commit, GitLabClient, MergeRequest
from bot.notes import ReleaseNotes
from bot.people import actor_for
from bot.releases import NewRelease, ReportInput
from bot.transition import Deps
from bot.workflow import Actor, State
from emulators.gitlab import GitLabEmulator
from emulators.sample import DBA, DEV, DIRECTOR, LEAD, OPS, TESTER
from storage import queries as q

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/{db}"

# A freeze around the day FakeClock starts on, for `sample_policy(freezes=[SALES_WEEK])`.
SALES_WEEK: dict[str, Any] = {"from": date(2026, 11, 20), "to": date(2026, 11, 30),
                              "reason": "Sales week"}


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 23, 4, 0, tzinfo=UTC)  # a Monday, 12:00 Shanghai

    def __call__(self) -> datetime:
        """The current fake time."""
        return self.now

    def advance(self, **kw: float) -> None:
        """Move time forward."""
        self.now += timedelta(**kw)


def postgres_required() -> bool:
    """PostgreSQL tests fail rather than skip unless a person opts out explicitly."""
    return os.environ.get("RELEASEBOT_SKIP_POSTGRES") != "1"


async def pg_admin(sql: str) -> None:
    """Run one administrative statement on the server's `test` database."""
    conn = await asyncpg.connect(PG_DSN, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def pg_admin_sync(sql: str) -> None:
    """The same from sync code, even while a loop runs in this thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, pg_admin(sql)).result()


# --- GitLab ---------------------------------------------------------------------------------

# Refs the tests file releases at, beyond the demo's v1.0.0, v1.1.0, main and release.
TEST_REFS = ("v1", "v2", "v9", "v1.2", "v1.1.1", "v2.0.0", "v3.0.0", "v3.1.0", "r", "hotfix-1",
             *(f"v1.{minor}.0" for minor in range(2, 40)))


LEDGER = {"gitlab": "acme/ledger", "environments": ["staging", "production"],
          "depends_on": ["payments"]}
# The sample policy with a third project, for three-project trains: payments, ledger, web.
THREE_PROJECTS: dict[str, Any] = {"ledger": LEDGER, "web": {"depends_on": ["ledger"]}}


def seed_gitlab(gitlab: GitLabEmulator) -> GitLabEmulator:
    """The demo projects and acme/ledger, with a tag at main for every ref the tests name."""
    gitlab.seed_demo()
    _seed_ledger(gitlab)
    for project in gitlab.projects.values():
        for ref in TEST_REFS:
            gitlab.add_tag(project, ref, "main")
        # A commit nobody signed off, for tests that a ref change can't slip it in.
        gitlab.add_commit(project, title="Not signed off", branches=["unapproved"],
                          parent="main")
        gitlab.add_tag(project, "v-unapproved", "unapproved")
        # Production ran v1.0.0 before the bot came: GitLab's record is the first way back.
        gitlab.record_deployment(project, "production", "v1.0.0")
    return gitlab


def _seed_ledger(gitlab: GitLabEmulator) -> None:
    """acme/ledger (id 3), set up as the demo projects are, with v1.0.0 and a commit after."""
    ledger = gitlab.add_project("acme/ledger", id=3)
    gitlab.add_commit(ledger, title="Initial commit", author="gina")
    gitlab.add_tag(ledger, "v1.0.0", "main")
    gitlab.add_commit(ledger, title="Export the ledger nightly", author="gina")
    gitlab.set_variables_role(ledger, "maintainer")
    gitlab.protect_tag(ledger, "release/*")
    gitlab.protect_environment(ledger, "production")


@asynccontextmanager
async def sample_gitlab() -> AsyncIterator[GitLabEmulator]:
    """A seeded GitLab emulator served on loopback."""
    async with GitLabEmulator() as gitlab:
        yield seed_gitlab(gitlab)


def gitlab_client(gitlab: GitLabEmulator) -> GitLabClient:
    """The bot's GitLab client, pointed at the emulator."""
    return GitLabClient(gitlab.url, gitlab.token)


# --- releases filed through the services, for tests of what follows ---------------------------

def who(deps: Deps, user: str) -> Actor:
    """The actor for a user of the test policy."""
    return actor_for(deps.policy, user)


ROLLBACK_STEPS = {"rollback": "Redeploy the previous release tag; no database changes"}


# An emergency request's ground and reason, as typed after `--type emergency`.
EMERGENCY = '--ground live_bug --reason "Payouts are down"'


async def new_release(deps: Deps, *, project: str = "payments", type: str = "standard",
                      ref: str = "v1.1.0", plan: dict[str, str] = ROLLBACK_STEPS,
                      **kw: object) -> int:
    """File a release as the developer, with rollback steps unless told otherwise; its number."""
    if deps.policy.grounds_of(type):  # an emergency names its ground and reason
        kw = {"ground": "live_bug", "reason": "Payouts are down", **kw}
    out = await releases.request_release(deps, actor=who(deps, DEV), new=NewRelease(
        project=project, ref=ref, title="Faster checkout", type=type, plan=plan,
        **kw))  # type: ignore[arg-type]
    return out.release.id


async def signed_off(deps: Deps, approvers: tuple[str, ...] = (DIRECTOR, LEAD),
                     **kw: object) -> int:
    """A release with a passing report and every sign-off."""
    rid = await new_release(deps, **kw)
    await releases.attach_report(deps, release_id=rid, actor=who(deps, TESTER),
                            report=ReportInput("https://ci/r/1", {"A": 0, "B": 0, "C": 2}))
    for user in approvers:
        await releases.approve(deps, release_id=rid, actor=who(deps, user))
    return rid


async def tick_all(deps: Deps, rid: int) -> None:
    """Tick the payments checklist: the release manager's items, then the DBA's."""
    await releases.tick(deps, release_id=rid, actor=who(deps, OPS), items=(1, 2))
    await releases.tick(deps, release_id=rid, actor=who(deps, DBA), items=(3,))


async def state_of(deps: Deps, rid: int) -> State:
    """The stored state."""
    async with deps.sessions() as session:
        return State((await q.get_release(session, rid)).state)


# --- release notes built by hand, for the renderers ----------------------------------------------

NOTES_URL = "https://gitlab.example.com/acme/payments"
WHEN = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def merged_mr(iid: int, title: str, *labels: str, shas: tuple[str, ...] = ()) -> MergeRequest:
    """A merged MR."""
    url = f"{NOTES_URL}/-/merge_requests/{iid}"
    return MergeRequest(iid, title, url, "bob", WHEN, labels, shas)


def commit(sha: str, title: str, *parents: str) -> Commit:
    """A commit whose sha is a readable word."""
    return Commit(sha, sha[:8], title, "Alice", f"{NOTES_URL}/-/commit/{sha}", WHEN, parents)


def sample_notes() -> ReleaseNotes:
    """Notes with one MR of each kind and one direct push."""
    mrs = [merged_mr(1, "Add refunds API", "feature", shas=("m1",)),
           merged_mr(2, "Fix rounding", "type::Bug", shas=("m2",)),
           merged_mr(3, "Tidy CI config", "ci", shas=("m3",)),
           merged_mr(4, "Faster checkout", "enhancement", shas=("m4",))]
    commits = [commit("m1", "Merge refunds"), commit("m2", "Merge rounding"),
               commit("m3", "Merge CI"), commit("m4", "Merge checkout"),
               commit("direct1", "Bump version to 1.2.0")]
    return ReleaseNotes("acme/payments", "v1.0.0", "v1.1.0", mrs, commits)
