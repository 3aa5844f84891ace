"""Figure 5: Slack calls per release from request to close, and updates that change nothing.

A `payments` release (staging then production) goes the whole way through the running app:
request, report, two Approve clicks, checklist, Deploy staging, accept, Deploy production, verify,
close. Every call the emulator receives is counted by method. Then every `chat.update` is
compared with the content it replaced: one that shows exactly what was there is a call that
changes nothing. A second walk adds what people do: a double click on Approve, a look at
`status` and `list`, and a refused Deploy click.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from bench.common import database
from bench.inproc import App, running_app
from emulators.sample import CHANNEL, DBA, DEV, DIRECTOR, LEAD, OPS, TESTER
from handlers.blocks import ActionId

Json = dict[str, Any]
PEOPLE = {"response_url", "chat.postEphemeral"}


def identical_updates(app: App) -> list[Json]:
    """Each chat.update that left a message showing exactly what it showed before."""
    found = []
    for channel in list(app.slack._messages):
        for msg in app.slack.all_messages(channel):
            versions = [(v.text, v.blocks) for v in msg.edits] + [(msg.text, msg.blocks)]
            for i in range(1, len(versions)):
                if versions[i] == versions[i - 1]:
                    found.append({"channel": channel, "ts": msg.ts, "edit": i})
    return found


def tally(app: App, start: int) -> Json:
    """Calls since index `start`, by method and by who they were for."""
    calls = app.slack.calls[start:]
    by_method = Counter(c.method for c in calls)
    channel_posts = sum(1 for c in calls if c.method == "chat.postMessage"
                        and str(c.args.get("channel", "")).startswith("C"))
    dms = by_method["chat.postMessage"] - channel_posts
    return {"total": len(calls), "by_method": dict(by_method),
            "answers_to_people": sum(by_method[m] for m in PEOPLE),
            "channel_posts": channel_posts, "card_updates": by_method["chat.update"],
            "dms": dms, "other": len(calls) - sum(by_method[m] for m in PEOPLE)
            - by_method["chat.postMessage"] - by_method["chat.update"],
            "errors": sum(1 for c in calls if not c.response.get("ok", True))}


async def walk(app: App, rid: int, *, people_too: bool) -> None:
    """Request to close; with `people_too`, the extra clicks and looks people add."""
    await app.command(DEV, "request payments v1.1.0 Faster checkout")
    await app.command(TESTER, f"report REL-{rid} https://ci.example/r/{rid} C=1")
    await app.click(DIRECTOR, ActionId.APPROVE)
    if people_too:
        await app.click(DIRECTOR, ActionId.APPROVE)  # the double click
        await app.command(DEV, f"status REL-{rid}")
        await app.command(DEV, "list")
    await app.click(LEAD, ActionId.APPROVE)
    if people_too:
        await app.click(DEV, ActionId.DEPLOY)  # not the release manager: refused
    await app.command(OPS, f"check REL-{rid} 1 2")
    await app.command(DBA, f"check REL-{rid} 3")
    for _env in ("staging", "production"):
        await app.click(OPS, ActionId.DEPLOY)
        app.gitlab.set_status(app.pipeline_of(rid).id, "success")
        await app.poll()
        await app.click(TESTER, ActionId.VERIFY_PASS)  # "Staging OK", then verification
    await app.command(OPS, f"close REL-{rid}")


async def measure(workdir: Any) -> Json:
    """Both walks on SQLite; counts and the identical updates found."""
    out: Json = {}
    for name, people_too in (("happy_path", False), ("with_double_click_and_looks", True)):
        async with database("sqlite", workdir) as url, running_app(url) as app:
            start = len(app.slack.calls)
            await walk(app, 1, people_too=people_too)
            same = identical_updates(app)
            out[name] = {**tally(app, start), "identical_updates": len(same),
                         "identical_detail": same[:10],
                         "cards": len(app.slack.messages(CHANNEL)),
                         "thread_replies": sum(len(app.slack.thread(CHANNEL, m.ts))
                                               for m in app.slack.messages(CHANNEL))}
    return out
