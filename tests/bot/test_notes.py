"""Release notes: grouping, rendering, escaping, clipping and building from GitLab."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest

from bot.gitlab import GitLabClient
from bot.notes import ReleaseNotes, build_notes, known_issues, plan_impact
from emulators.gitlab import GitLabEmulator
from tests.fixtures import NOTES_URL, commit, merged_mr, sample_notes

TOKEN = "glpat-test"


def test_markdown_groups_by_label_kind() -> None:
    assert sample_notes().render_markdown() == (
        "## acme/payments v1.1.0\n\nChanges since v1.0.0.\n\n"
        "### Features\n"
        f"- Add refunds API ([!1]({NOTES_URL}/-/merge_requests/1))\n"
        f"- Faster checkout ([!4]({NOTES_URL}/-/merge_requests/4))\n\n"
        "### Fixes\n"
        f"- Fix rounding ([!2]({NOTES_URL}/-/merge_requests/2))\n\n"
        "### Other changes\n"
        f"- Tidy CI config ([!3]({NOTES_URL}/-/merge_requests/3))\n\n"
        "### Other commits\n"
        f"- Bump version to 1.2.0 ([direct1]({NOTES_URL}/-/commit/direct1))\n"
    )


def test_markdown_escapes_titles_and_says_when_empty() -> None:
    notes = ReleaseNotes("acme/web", None, "v1.0.0", [merged_mr(5, "Use *bold* [x](evil)")], [])
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
    notes = ReleaseNotes("acme/payments", "v1", "v2", [merged_mr(9, "X", shas=("merge",))],
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


def test_impact_comes_from_the_plan() -> None:
    """The go-live plan's impact scope, trimmed; none when the plan leaves it out."""
    assert plan_impact(SimpleNamespace(plan={"impact": " Checkout, all users "})) == (
        "Checkout, all users")
    assert plan_impact(SimpleNamespace(plan={"rollback": "x"})) is None


def test_problems_kept_live_by_the_executive_are_known_issues() -> None:
    """What online verification found, who kept the release live with it and why."""
    rel = SimpleNamespace(decision="accept", decided_revision=2, revision=2,
                          verification_note="Receipt logo is blurry", decided_by="U0CTO",
                          decision_reason="Cosmetic", risk_accepted_by=None, risk_reason=None)
    issues = known_issues(None, rel, {"A": 0, "B": 0, "C": 5})  # type: ignore[arg-type]
    notes = ReleaseNotes("acme/web", "v1", "v2", [], [], known_issues=issues)
    assert notes.issue_lines() == [
        "None known.",
        "Found in online verification: Receipt logo is blurry; kept live as it is by U0CTO: "
        "Cosmetic"]
    fixed = SimpleNamespace(**{**vars(rel), "decision": "fix"})
    assert known_issues(None, fixed, {}) is None  # type: ignore[arg-type]
