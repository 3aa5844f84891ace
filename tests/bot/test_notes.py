"""Release notes: grouping, rendering, escaping, clipping and building from GitLab."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from bot.gitlab import Commit, GitLabClient, MergeRequest
from bot.notes import ReleaseNotes, build_notes
from emulators.gitlab import GitLabEmulator

TOKEN = "glpat-test"


URL = "https://gitlab.example.com/acme/payments"


WHEN = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def mr(iid: int, title: str, *labels: str, shas: tuple[str, ...] = ()) -> MergeRequest:
    """A merged MR."""
    return MergeRequest(iid, title, f"{URL}/-/merge_requests/{iid}", "bob", WHEN, labels, shas)


def commit(sha: str, title: str, *parents: str) -> Commit:
    """A commit whose sha is a readable word."""
    return Commit(sha, sha[:8], title, "Alice", f"{URL}/-/commit/{sha}", WHEN, parents)


def sample() -> ReleaseNotes:
    """Notes with one MR of each kind and one direct push."""
    mrs = [mr(1, "Add refunds API", "feature", shas=("m1",)),
           mr(2, "Fix rounding", "type::Bug", shas=("m2",)),
           mr(3, "Tidy CI config", "ci", shas=("m3",)),
           mr(4, "Faster checkout", "enhancement", shas=("m4",))]
    commits = [commit("m1", "Merge refunds"), commit("m2", "Merge rounding"),
               commit("m3", "Merge CI"), commit("m4", "Merge checkout"),
               commit("direct1", "Bump version to 1.2.0")]
    return ReleaseNotes("acme/payments", "v1.0.0", "v1.1.0", mrs, commits)


def test_markdown_groups_by_label_kind() -> None:
    assert sample().render_markdown() == (
        "## acme/payments v1.1.0\n\nChanges since v1.0.0.\n\n"
        "### Features\n"
        f"- Add refunds API ([!1]({URL}/-/merge_requests/1))\n"
        f"- Faster checkout ([!4]({URL}/-/merge_requests/4))\n\n"
        "### Fixes\n"
        f"- Fix rounding ([!2]({URL}/-/merge_requests/2))\n\n"
        "### Other changes\n"
        f"- Tidy CI config ([!3]({URL}/-/merge_requests/3))\n\n"
        "### Other commits\n"
        f"- Bump version to 1.2.0 ([direct1]({URL}/-/commit/direct1))\n"
    )


def test_markdown_escapes_titles_and_says_when_empty() -> None:
    notes = ReleaseNotes("acme/web", None, "v1.0.0", [mr(5, "Use *bold* [x](evil)")], [])
    text = notes.render_markdown()
    assert r"- Use \*bold\* \[x\](evil) ([!5]" in text
    assert "First release" in text
    assert ReleaseNotes("acme/web", "v1", "v2", [], []).render_markdown().endswith(
        "No changes.\n")


def test_other_commits_skip_merged_branch_commits() -> None:
    base = commit("base", "Base")
    side = commit("side", "WIP on a branch", "base")
    direct = commit("direct", "Hotfix typo", "base")
    merge = commit("merge", "Merge branch 'x'", "direct", "side")
    notes = ReleaseNotes("acme/payments", "v1", "v2", [mr(9, "X", shas=("merge",))],
                         [base, side, direct, merge])
    assert [c.sha for c in notes.other_commits()] == ["base", "direct"]


@pytest.fixture
async def client() -> AsyncIterator[GitLabClient]:
    """A client for a started, seeded emulator."""
    async with GitLabEmulator(TOKEN) as emu:
        emu.seed_demo()
        yield GitLabClient(emu.url, TOKEN, timeout=5)


async def test_build_notes_between_tags(client: GitLabClient) -> None:
    notes = await build_notes(client, "acme/payments", "v1.0.0", "v1.1.0")
    assert [(heading, [m.iid for m in mrs]) for heading, mrs in notes.sections()] == [
        ("Fixes", [2]), ("Other changes", [1])]
    assert notes.other_commits() == []
    later = await build_notes(client, "acme/payments", "v1.1.0", "main")
    assert [m.iid for m in later.merge_requests] == [3]
    assert [c.title for c in later.other_commits()] == ["Bump version to 1.2.0-dev"]


async def test_build_notes_for_a_first_release(client: GitLabClient) -> None:
    notes = await build_notes(client, "acme/web", None, "main")
    assert notes.from_ref is None
    assert [c.title for c in notes.commits] == [
        "Initial commit", "Redesign checkout page", "Merge branch 'feature/checkout' into 'main'",
        "Update footer links"]
    assert [m.title for m in notes.merge_requests] == ["Redesign checkout page"]
    assert [c.title for c in notes.other_commits()] == ["Initial commit", "Update footer links"]
