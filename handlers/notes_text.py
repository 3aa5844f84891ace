"""Release notes as Slack mrkdwn: user text escaped, clipped to fit one message."""

from __future__ import annotations

from bot.notes import IMPACT, KNOWN_ISSUES, OTHER_COMMITS, NotesUnavailable, ReleaseNotes
from handlers.blocks import clip, escape, link, mention


def notes_mrkdwn(notes: ReleaseNotes | NotesUnavailable, limit: int = 2900) -> str:
    """Slack mrkdwn, GitLab's text escaped, clipped to limit characters with '…and N more'."""
    if isinstance(notes, NotesUnavailable):
        return escape(clip(notes.sentence, limit))
    return _clip(_lines(notes), limit)


def _lines(notes: ReleaseNotes) -> list[tuple[str, bool]]:
    """Each line and whether it is an item (a heading is not)."""
    span = f"{escape(notes.shown_from)} → " if notes.shown_from else ""
    first = "" if notes.from_ref else " (first release)"
    # Every place showing this heads it "Release notes" already: the project and span suffice.
    lines = [(f"*{escape(notes.project)} {span}{escape(notes.shown_to)}*{first}", False)]
    for heading, mrs in notes.sections():
        lines.append((f"*{heading}*", False))
        lines += [(f"• {link(mr.web_url, f'!{mr.iid} {escape(mr.title)}')}", True) for mr in mrs]
    if others := notes.other_commits():
        lines.append((f"*{OTHER_COMMITS}*", False))
        lines += [(f"• {link(c.web_url, escape(c.short_id))} {escape(c.title)}", True)
                  for c in others]
    if not notes.merge_requests and not others:
        lines.append(("No changes.", False))
    # Known issues and impact go first: clipping a long list of changes must never drop them.
    return [lines[0], *_issues_and_impact(notes), *lines[1:]]


def _issues_and_impact(notes: ReleaseNotes) -> list[tuple[str, bool]]:
    """The known issues (with who accepted them) and the impact."""
    lines: list[tuple[str, bool]] = []
    if (issues := notes.known_issues) is not None:
        lines.append((f"*{KNOWN_ISSUES}*", False))
        bugs = f"Open bugs: {issues.open_bugs}" if issues.open_bugs else "None known."
        lines.append((f"• {bugs}", False))
        if issues.accepted_by:
            over = f" ({escape('; '.join(issues.failures))})" if issues.failures else ""
            reason = escape(clip(issues.reason or "no reason given", 1000))
            lines.append((f"• Shipped with known issues{over}, accepted by "
                          f"{mention(issues.accepted_by)}: {reason}", False))
        if issues.online:
            found, by, why = issues.online
            lines.append((f"• Found in online verification: "
                          f"{escape(clip(found or 'no note', 500))}; kept live as it is by "
                          f"{mention(by)}: {escape(clip(why, 500))}", False))
    if notes.impact:
        lines += [(f"*{IMPACT}*", False), (escape(clip(notes.impact, 1000)), False)]
    return lines


def _clip(lines: list[tuple[str, bool]], limit: int) -> str:
    """Join lines, or as many as fit with room for '…and N more' about the items left out."""
    text = "\n".join(line for line, _ in lines)
    if len(text) <= limit:
        return text
    total = sum(1 for _, item in lines if item)
    reserve = len(f"\n…and {total} more")
    kept: list[tuple[str, bool]] = []
    length = -1  # no newline before the first line
    for line, item in lines:
        if length + 1 + len(line) + reserve > limit:
            break
        kept.append((line, item))
        length += 1 + len(line)
    while len(kept) > 1 and not kept[-1][1]:
        kept.pop()  # a heading whose items were all cut would mislead
    left = total - sum(1 for _, item in kept if item)
    return "\n".join([*(line for line, _ in kept), f"…and {left} more"])

