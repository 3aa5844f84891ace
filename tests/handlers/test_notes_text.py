"""Release notes as Slack mrkdwn: grouped, linked, escaped and clipped."""

from __future__ import annotations

from bot.notes import ReleaseNotes
from handlers.notes_text import notes_mrkdwn
from tests.fixtures import NOTES_URL, merged_mr, sample_notes


def test_slack_groups_and_links() -> None:
    assert notes_mrkdwn(sample_notes()) == "\n".join([
        "*Release notes: acme/payments v1.0.0 → v1.1.0*",
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
