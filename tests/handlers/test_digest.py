"""The reminder digest's blocks, built without a database."""

from __future__ import annotations

from datetime import timedelta

from bot.workflow import State
from emulators.slack import block_errors
from handlers.blocks import MAX_BLOCKS, ActionId, button_value
from handlers.digest import DigestLine, build_digest, waited
from tests.handlers.test_cards import HOSTILE, RAW_MARKUP, T0, make_view, walk

LINK = "https://emulated.slack.com/archives/C0RELEASES/p1700000000000100"


def lines(n: int, waits: str = "approval", state: State = State.READY_FOR_SIGNOFF
          ) -> list[DigestLine]:
    """n releases (42, 43, …) waiting since T0 for the same thing."""
    return [DigestLine(make_view(state, id=42 + i, state_since=T0), waits, LINK)
            for i in range(n)]


def test_one_release_says_so_and_links_its_card_with_approve_beside_it() -> None:
    """The approver sees the release, how long it waited, the card link and Approve."""
    text, blocks = build_digest(lines(1), 0, T0 + timedelta(hours=5))
    assert text == "Reminder: REL-42 is waiting on you: REL-42"
    assert len(blocks) == 2
    body = blocks[1]["text"]["text"]
    assert f"<{LINK}|REL-42>" in body and "waits for your sign-off" in body
    assert "ready for sign-off for 5 h" in body
    button = blocks[1]["accessory"]
    assert button["action_id"] == ActionId.APPROVE and "confirm" in button
    assert button["value"] == button_value(lines(1)[0].view)


def test_many_releases_stay_within_slacks_50_blocks_and_count_the_rest() -> None:
    """60 listed and 15 more counted: 48 drawn, then '…and 27 more'."""
    text, blocks = build_digest(lines(60, "report", State.TESTING), 15, T0)
    assert len(blocks) == MAX_BLOCKS and not block_errors(blocks)
    assert blocks[0]["text"]["text"] == "⏰ *75 releases are waiting on you*"
    assert blocks[-1]["elements"][0]["text"].startswith("…and 27 more")
    assert "`/release report REL-42 &lt;url&gt; A=0 B=0 C=0`" in blocks[1]["text"]["text"]
    assert all("accessory" not in b for b in blocks)  # a report is attached from the card
    assert text.startswith("Reminder: 75 releases are waiting on you: REL-42, REL-43")
    assert text.endswith("…") and len(text) <= 1000


def test_past_the_verification_deadline_roll_back_is_beside_it() -> None:
    """The release manager may roll back from the digest, behind a confirmation."""
    deployed = lines(1, "verify_deadline", State.DEPLOYED)
    _, blocks = build_digest(deployed, 0, T0)
    assert blocks[1]["accessory"]["action_id"] == ActionId.ROLLBACK
    assert blocks[1]["accessory"]["confirm"]["style"] == "danger"


def test_escalation_names_the_roles_still_missing() -> None:
    """The release manager learns whose sign-off is late."""
    line = DigestLine(make_view(id=7, state_since=T0), "escalation", None,
                      {"waiting_on": ["test_lead"]})
    _, blocks = build_digest([line], 0, T0 + timedelta(days=3))
    body = blocks[1]["text"]["text"]
    assert body.startswith("*REL-7* ·") and "sign-off by test_lead" in body
    assert "for 3 d" in body and "accessory" not in blocks[1]


def test_user_text_stays_inert() -> None:
    """A hostile title or ref mentions nobody."""
    view = make_view(id=9, title=HOSTILE, ref="v1<!here>", state_since=T0)
    _, blocks = build_digest([DigestLine(view, "approval", None)], 0, T0)
    texts = [d["text"] for d in walk(blocks) if isinstance(d.get("text"), str)]
    assert not any(raw in t for t in texts for raw in RAW_MARKUP)


def test_waits_read_as_people_say_them() -> None:
    """Minutes, hours, days."""
    assert [waited(timedelta(minutes=m)) for m in (0, 59, 60, 47 * 60, 48 * 60)] == [
        "0 min", "59 min", "1 h", "47 h", "2 d"]
