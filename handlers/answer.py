"""What a person is told privately: the shared sentences, and the one shape of every answer.

Commands, buttons and forms all ack, run their work with `answer_after`, and answer through
`tell`; they differ only in how they parse and where they answer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import ClientError, ClientSession, ClientTimeout
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import calendar
from bot.plan import listed
from bot.policy import Policy
from bot.transition import Outcome
from bot.workflow import Event, Refused, State
from handlers.blocks import Block, an, clip, escape
from handlers.render import sole_signer_sentence
from storage import queries as q
from storage.models import Release

if TYPE_CHECKING:  # the runtime imports the deliverer, which must not import listeners' code
    from handlers.runtime import Runtime

log = logging.getLogger(__name__)
Reply = str | tuple[str, list[Block]]  # text, or text with blocks; "" says nothing
Work = Callable[[], Awaitable[Reply]]

SORRY = "Sorry, something went wrong on our side. It has been logged; please try again."
BUSY = "I'm swamped right now; nothing was done. Please try again in a minute."
STALE_BUTTON = "That button isn't one of mine any more."
STALE_FORM = "That form isn't one of mine any more."


@dataclass(frozen=True)
class Asker:
    """The person to answer, and where their request came from."""

    user: str
    channel: str | None = None
    response_url: str | None = None


async def answer_after(ack: Callable[..., Awaitable[Any]], rt: Runtime, work: Work, *,
                       asker: Asker, doing: str) -> None:
    """Ack, run `work`, and tell the person how it went; `doing` names it in the log."""
    await ack()
    with q.noting_outbox() as queued:
        try:
            reply = await work()
        except Refused as exc:
            reply = escape(exc.sentence)  # refusals quote what people typed
        except Exception:
            log.exception("%s by %s failed", doing, asker.user)
            reply = SORRY
    if queued:  # deliver what the work announced now; a look changed nothing to deliver
        rt.deliverer.kick(queued)
    if reply:
        text, blocks = (reply, None) if isinstance(reply, str) else reply
        await tell(rt.client, user=asker.user, text=text, blocks=blocks, channel=asker.channel,
                   response_url=asker.response_url)


async def open_form(rt: Runtime, trigger_id: str, view: Block, fallback: str) -> str:
    """Open a modal now (trigger ids live 3 s); if Slack refuses, say how to do it by command."""
    try:
        await rt.client.views_open(trigger_id=trigger_id, view=view)
    except SlackApiError as exc:
        log.info("form not opened: %s", exc.response.get("error"))
        return f"I couldn't open the form in time. Use `{escape(fallback)}` instead."
    return ""


# --- what each change is answered with, whichever way it was asked -------------------------------

def planned_hold(release: Release, policy: Policy) -> str | None:
    """What holds a new release's deploy at its planned time, if it has one."""
    at = release.scheduled_at
    return calendar.planned_hold(at, policy, release.type) if at is not None else None


def filed(out: Outcome, channel: str, channel_problem: str | None = None,
          hold: str | None = None) -> str:
    """A new release, where its card is (or what keeps it out of the channel), a role nobody
    else can sign, and what holds its deploy at its planned time (`hold`)."""
    text = f"Filed {out.release.rel_id}. Its card is in <#{channel}>."
    if channel_problem:  # Slack refused our last post there: say so, not where the card is
        text = (f"Filed {out.release.rel_id}. Slack refused my last post in <#{channel}> "
                f"({channel_problem}): if nobody has yet, please invite me there "
                "(`/invite @releasebot`); its card follows once I'm in.")
    if sole := out.detail.get("sole_signers"):
        text += " " + escape(sole_signer_sentence(sole))  # role names come from the policy
    if hold:
        text += f" ⚠️ Its planned time {escape(hold)}."
    return text


def plan_edited(out: Outcome) -> str:
    """A plan change, and what it voided."""
    rid = out.release.rel_id
    lacking = out.detail.get("missing")
    still = f" It still lacks {escape(listed(lacking))}." if isinstance(lacking, list) else ""
    if out.detail.get("voided_approvals"):
        return f"Saved {rid}'s go-live plan; the approvers must sign it off again.{still}"
    if out.detail.get("review_voided"):
        return f"Saved {rid}'s go-live plan; it needs its review again.{still}"
    return f"Saved {rid}'s go-live plan.{still}"


def plan_reviewed(out: Outcome) -> str:
    """The reviewer's verdict on the plan."""
    rid = out.release.rel_id
    kind = an(out.release.type)
    if old := out.detail.get("old_type"):
        done = f"You changed {rid} from {escape(str(old))} to {escape(out.release.type)}"
        if out.event is Event.RETYPE:  # a type whose plan nobody reviews: nothing more to do
            then = ("its test report is held to that standard again, so it is back in testing"
                    if out.to_state is State.TESTING else "its approvers sign again")
            return (f"{done}; as {kind} release its go-live plan needs no review, and {then}. "
                    "The requester is told.")
        if out.event is Event.PLAN_OK:
            return (f"{done}, approved its go-live plan and confirmed it as {kind} release; "
                    "its approvers sign again.")
        return f"{done} and asked for changes to its go-live plan; the requester is told."
    if out.event is Event.PLAN_OK:
        return f"You approved {rid}'s go-live plan and confirmed it as {kind} release."
    return f"You asked for changes to {rid}'s go-live plan; the requester is told."


def decided(out: Outcome) -> str:
    """The executive's decision after a failed online verification."""
    rid = out.release.rel_id
    if out.event is Event.DECIDE_FIX:
        return (f"Recorded: {rid}'s problems get fixed. The requester is told to set the fixed "
                "ref; it is tested and signed off again.")
    return (f"Recorded: {rid} stays live with its problems as known issues; they are in its "
            "close summary and release notes.")


def testing(out: Outcome) -> str:
    """A tester picked the release up."""
    return f"You're testing {out.release.rel_id}. Attach the report with `/release report`."


def report_attached(out: Outcome) -> str:
    """A test report, measured against the go-live standard (with the tracker's counts)."""
    rid, tracker = out.release.rel_id, out.detail.get("tracker")
    if isinstance(tracker, dict):
        bugs = out.detail["bugs"]
        counts = " · ".join(f"{sev} {bugs.get(sev, 0)}" for sev in "ABC")
        rid = (f"{rid} with {counts} open ({escape(str(tracker.get('source')))}, "
               f"{escape(str(tracker.get('where')))})")
    if out.detail["passes"]:
        return f"Report attached to {rid}; it meets the go-live standard."
    return (f"Report attached to {rid}, but it does not meet the go-live standard: "
            f"{'; '.join(out.detail['failures'])}.")


def approved(out: Outcome) -> str:
    """A sign-off, with the role it counted for."""
    return f"You approved {out.release.rel_id} as {out.detail['role']}."


def rejected(out: Outcome) -> str:
    """A rejection."""
    return f"You rejected {out.release.rel_id}."


def ticked(out: Outcome, unticked: Sequence[int] = ()) -> str:
    """Checklist progress; a tick that adds nothing says that ticks stay, and so does a click
    that unticked a box while ticking another."""
    detail = out.detail
    progress = f"Checklist of {out.release.rel_id}: {detail['done']}/{detail['total']} ticked."
    if not detail.get("items"):
        return (f"Nothing new was ticked; ticks can't be undone (who ticked what is audited). "
                f"{progress}")
    if unticked:
        which = listed([str(i) for i in unticked])
        item = "item" if len(unticked) == 1 else "items"
        return (f"{progress} Unticking {item} {which} was ignored: ticks are audited and "
                "final.")
    return progress


def deploy_started(out: Outcome) -> str:
    """What the deployer did, in a sentence."""
    env = out.detail.get("environment", "")
    if out.event is Event.DEPLOY_FAILED:
        return (f"The {escape(str(env))} pipeline of {out.release.rel_id} did not start: "
                f"{escape(str(out.detail.get('error')))}")
    if out.detail.get("train"):
        then = out.detail.get("then") or []
        follow = (f"; then {', '.join(escape(str(p)) for p in then)}, one pipeline at a time"
                  if then else "")
        return (f"{out.release.rel_id}: the {env} pipeline of "
                f"{escape(str(out.detail.get('component')))} is running{follow}. Follow it on "
                "the card.")
    return f"{out.release.rel_id}: the {env} pipeline is running. Follow it on the card."


def verified(out: Outcome, passed: bool) -> str:
    """The acceptance or verification, acknowledged."""
    rid, env = out.release.rel_id, escape(str(out.detail.get("environment")))
    if out.event is Event.ACCEPTANCE_PASS:
        return (f"Recorded: {rid} passed acceptance on {env}; it may now be deployed to "
                f"{escape(str(out.detail.get('next')))}.")
    if out.event is Event.ACCEPTANCE_FAIL:
        return (f"Recorded: {rid} failed acceptance on {env}. It is held until a new ref "
                f"(`/release ref {rid} &lt;ref&gt;`) or a cancel.")
    if passed:
        return f"Verified {out.release.rel_id}; the observation period has started."
    rid, rollback = out.release.rel_id, out.detail.get("rollback", True)
    then = ("the release manager rolls it back" if rollback else
            f"with no earlier version to roll back to, the requester sets the fixed ref "
            f"(`/release ref {rid} &lt;ref&gt;`)")
    if out.detail.get("decides"):
        then = ("an executive decides whether its problems get fixed or it stays live with "
                "them" + ("; the release manager may roll it back meanwhile" if rollback else ""))
    return f"Recorded the failed verification of {rid}: {then}."


def armed(out: Outcome) -> str:
    """The scheduled deploy may now go on its own."""
    when = out.detail.get("when")
    at = f" at {escape(str(when))}" if when else ""
    return f"Armed: {out.release.rel_id} deploys on its own{at}."


def rolling_back(out: Outcome) -> str:
    """The rollback pipeline, started or not."""
    if out.event is Event.ROLLBACK_FAILED:
        return (f"The rollback pipeline of {out.release.rel_id} did not start: "
                f"{escape(str(out.detail.get('error')))}")
    sha = out.detail.get("sha")
    at = f" @ `{sha[:7]}`" if isinstance(sha, str) and sha else ""
    if out.detail.get("train"):
        return (f"Rolling {out.release.rel_id} back, one pipeline at a time, last deployed "
                f"first: {escape(str(out.detail.get('component')))} to "
                f"`{escape(str(out.detail.get('ref')))}`{at} now.")
    return f"Rolling {out.release.rel_id} back to `{escape(str(out.detail.get('ref')))}`{at}."


def abandoned(out: Outcome) -> str:
    """An abandoned deploy, or the result GitLab had already reached."""
    rid, env = out.release.rel_id, escape(str(out.detail.get("environment", "")))
    if out.event is not Event.ABANDON:
        status = escape(str(out.detail.get("status", "")))
        return (f"The {env} pipeline of {rid} had already ended ({status}) before the cancel; "
                f"{rid} is {out.to_state.label} now.")
    what = "rollback" if out.detail.get("rollback") else "deploy"
    line = f"Abandoned the {env} {what} of {rid}; it counts as failed."
    if out.detail.get("gitlab_status") == "manual":
        line += (" A cancel leaves manual jobs alone, so GitLab still shows the pipeline "
                 "waiting on one: don't start it.")
    return line


def closed(out: Outcome) -> str:
    """The release is over."""
    return f"{out.release.rel_id} is closed."


# --- how: privately, whichever way Slack still allows ---------------------------------------------


async def tell(client: AsyncWebClient, *, user: str, text: str, channel: str | None = None,
               response_url: str | None = None, blocks: list[dict[str, Any]] | None = None
               ) -> str:
    """Ephemeral via response_url, else chat.postEphemeral, else a DM; returns the way used."""
    text = clip(text, 3000)
    if response_url and await _respond(response_url, text, blocks, client.session):
        return "response_url"
    if not _slack_id(user, "UW"):  # Slack always names the person; nobody to answer otherwise
        log.warning("no way to answer %r: %s", user, text[:100])
        return "none"
    if _slack_id(channel, "CG"):  # a channel, not a DM or something a form smuggled in
        try:
            await client.chat_postEphemeral(channel=channel, user=user, text=text, blocks=blocks)
            return "ephemeral"
        except SlackApiError as exc:
            log.info("ephemeral to %s failed: %s", user, exc.response.get("error"))
    try:
        await client.chat_postMessage(channel=user, text=text, blocks=blocks)
        return "dm"
    except SlackApiError as exc:
        log.warning("could not answer %s: %s", user, exc.response.get("error"))
        return "none"


def _slack_id(value: object, kinds: str) -> bool:
    """Whether `value` looks like a Slack id starting with one of `kinds` (U…, C…)."""
    return (isinstance(value, str) and value[:1] in kinds and value.isascii()
            and value.isalnum())


async def _respond(url: str, text: str, blocks: list[dict[str, Any]] | None,
                   session: ClientSession | None) -> bool:
    """One response_url use; False when Slack refuses it (used five times, or expired).

    Posted straight through aiohttp on the shared connection pool: the SDK's webhook client
    costs a new client object, headers rebuilt and a response wrapper per answer.
    """
    if not url.startswith(("https://", "http://")):
        return False
    body: dict[str, Any] = {"text": text, "response_type": "ephemeral",
                            "replace_original": False}
    if blocks is not None:
        body["blocks"] = blocks
    try:
        if session is None or session.closed:
            async with ClientSession(timeout=ClientTimeout(total=15)) as own:
                return await _post_json(own, url, body)
        return await _post_json(session, url, body)
    except (ClientError, TimeoutError, OSError) as exc:
        log.info("response_url failed: %s", exc)
        return False


async def _post_json(session: ClientSession, url: str, body: dict[str, Any]) -> bool:
    """POST the JSON body; whether it was taken (200)."""
    async with session.post(url, data=json.dumps(body), headers=_JSON) as resp:
        await resp.read()
        return resp.status == 200


_JSON = {"Content-Type": "application/json;charset=utf-8"}
