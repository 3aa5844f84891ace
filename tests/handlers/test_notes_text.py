"""Release notes as Slack mrkdwn: grouped, linked, escaped and clipped."""

from __future__ import annotations

from dataclasses import replace

from bot.notes import KnownIssues, ReleaseNotes
from handlers.notes_text import notes_mrkdwn
from tests.fixtures import NOTES_URL, merged_mr, sample_notes


def test_slack_groups_and_links() -> None:
    assert notes_mrkdwn(sample_notes()) == "\n".join([
        "*acme/payments v1.0.0 → v1.1.0*",
        "*Features*",
        f"• <{NOTES_URL}/-/merge_requests/1|!1 Add refunds API>",
        f"• <{NOTES_URL}/-/merge_requests/4|!4 Faster checkout>",
        "*Fixes*",
        f"• <{NOTES_URL}/-/merge_requests/2|!2 Fix rounding>",
        "*Other changes*",
        f"• <{NOTES_URL}/-/merge_requests/3|!3 Tidy CI config>",
        "*Other commits*",
        f"• <{NOTES_URL}/-/commit/direct1|direct1> Bump version to 1.2.0",
    ])


def test_slack_escapes_mentions_and_markup() -> None:
    notes = ReleaseNotes("acme/web", None, "v1.0.0",
                         [merged_mr(7, "Ping <!channel> & <@U123|boss>")], [])
    text = notes_mrkdwn(notes)
    assert "<!channel>" not in text and "<@U123" not in text
    assert "|!7 Ping &lt;!channel&gt; &amp; &lt;@U123|boss&gt;>" in text
    assert "(first release)" in text


def test_slack_is_clipped_with_a_count() -> None:
    mrs = [merged_mr(i, f"Change number {i}", "feature") for i in range(1, 101)]
    notes = ReleaseNotes("acme/payments", "v1", "v2", mrs, [])
    text = notes_mrkdwn(notes, limit=500)
    assert len(text) <= 500
    shown = text.count("• ")
    assert shown > 3
    assert text.endswith(f"…and {100 - shown} more")
    assert len(notes_mrkdwn(notes)) <= 2900


def test_known_issues_and_impact_come_first() -> None:
    """Approvers read the accepted bugs, who accepted them and the impact before any change."""
    issues = KnownIssues({"A": 0, "B": 1, "C": 2}, ("1 open B bugs (limit 0)",), "U0CTO",
                         "Outage <costs> more")
    notes = replace(sample_notes(), known_issues=issues, impact="Checkout for all users",
                    from_label="REL-3 release/REL-3 @ abc1234", to_label="v1.1.0 @ def5678")
    assert notes_mrkdwn(notes).split("\n")[:6] == [
        "*acme/payments REL-3 release/REL-3 @ abc1234 → v1.1.0 @ def5678*",
        "*Known issues*",
        "• Open bugs: A 0 · B 1 · C 2",
        "• Shipped with known issues (1 open B bugs (limit 0)), accepted by <@U0CTO>: "
        "Outage &lt;costs&gt; more",
        "*Impact*",
        "Checkout for all users",
    ]
    assert "### Known issues\n- Open bugs: A 0 · B 1 · C 2\n" in notes.render_markdown()
    assert notes.render_markdown().endswith("### Impact\nCheckout for all users\n")


def test_a_clean_report_says_none_known() -> None:
    """A report with no open bugs is a known-issues section that says so."""
    notes = replace(sample_notes(), known_issues=KnownIssues({"A": 0, "B": 0, "C": 0}))
    assert "*Known issues*\n• None known.\n" in notes_mrkdwn(notes)
