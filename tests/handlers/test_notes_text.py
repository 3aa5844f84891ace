"""Release notes as Slack mrkdwn: grouped, linked, escaped and clipped."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.gitlab import Commit, MergeRequest
from bot.notes import ReleaseNotes
from handlers.notes_text import notes_mrkdwn

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


def test_slack_groups_and_links() -> None:
    assert notes_mrkdwn(sample()) == "\n".join([
        "*Release notes: acme/payments v1.0.0 → v1.1.0*",
        "*Features*",
        f"• <{URL}/-/merge_requests/1|!1 Add refunds API>",
        f"• <{URL}/-/merge_requests/4|!4 Faster checkout>",
        "*Fixes*",
        f"• <{URL}/-/merge_requests/2|!2 Fix rounding>",
        "*Other changes*",
        f"• <{URL}/-/merge_requests/3|!3 Tidy CI config>",
        "*Other commits*",
        f"• <{URL}/-/commit/direct1|direct1> Bump version to 1.2.0",
    ])


def test_slack_escapes_mentions_and_markup() -> None:
    notes = ReleaseNotes("acme/web", None, "v1.0.0",
                         [mr(7, "Ping <!channel> & <@U123|boss>")], [])
    text = notes_mrkdwn(notes)
    assert "<!channel>" not in text and "<@U123" not in text
    assert "|!7 Ping &lt;!channel&gt; &amp; &lt;@U123|boss&gt;>" in text
    assert "(first release)" in text


def test_slack_is_clipped_with_a_count() -> None:
    mrs = [mr(i, f"Change number {i}", "feature") for i in range(1, 101)]
    notes = ReleaseNotes("acme/payments", "v1", "v2", mrs, [])
    text = notes_mrkdwn(notes, limit=500)
    assert len(text) <= 500
    shown = text.count("• ")
    assert shown > 3
    assert text.endswith(f"…and {100 - shown} more")
    assert len(notes_mrkdwn(notes)) <= 2900
