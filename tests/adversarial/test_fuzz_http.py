"""Random and hostile input over HTTP: never a 500, never a broken Slack call, no @channel."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, TypeVar
from urllib.parse import urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.app import RUNTIME, WEBHOOK
from bot.policy import Policy
from emulators.gitlab import View
from emulators.sample import CTO, DBA, DEV, DIRECTOR, LEAD, OPS, SUPPORT, TESTER
from emulators.slack_driver import FORM
from handlers.blocks import ActionId, FormId
from tests.adversarial.common import bot_texts, ready, signed
from tests.adversarial.test_webhook import post_hook
from tests.handlers.test_fuzz import PIECES, field_answers, slack_values
from tests.handlers.test_fuzz import mixed_text as any_text
from tests.scenario.harness import HOOK_SECRET, Harness, running_app, wait_for

T = TypeVar("T")
PEOPLE = [DEV, TESTER, LEAD, DIRECTOR, OPS, CTO, DBA, SUPPORT]
EXAMPLES = 60
HOSTILE = ["<!channel>", "<!here>", "<!everyone>", "<@U123>", "<@W999|boss>",
           "<!subteam^S123|@team>", "<https://evil.example|click>", "@channel", "&lt;!here&gt;"]
hostile = st.sampled_from(HOSTILE)


def utf8(value: T) -> T:
    """The value with lone surrogates replaced: Slack's JSON is UTF-8 and can't carry them."""
    return json.loads(json.dumps(value, ensure_ascii=False).encode("utf-8", "replace").decode())


mixed_text = any_text.map(utf8)
words = st.one_of(st.sampled_from(["request", "report", "approve", "reject", "accept", "ref",
                                   "override", "deploy", "status", "list", "cancel", "verify",
                                   "check", "notes", "calendar", "help", "REL-1", "REL-2", "web",
                                   "payments", "v1.1.0", "--type", "--at", "--version",
                                   "https://ci/r/1", "A=0", "emergency"]),
                  hostile, st.sampled_from(PIECES), mixed_text)
command_text = st.lists(words, max_size=10).map(" ".join)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | mixed_text | hostile,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(mixed_text, inner, max_size=4),
    max_leaves=12)


def examples(strategy: st.SearchStrategy[T], count: int = EXAMPLES) -> list[T]:
    """Draw examples with hypothesis (edge cases included) to replay against the running app."""
    drawn: list[T] = []

    @settings(max_examples=count, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value: T) -> None:
        drawn.append(value)

    collect()
    return drawn


def live_mentions(h: Harness) -> Iterator[str]:
    """Mentions and broadcasts in what the bot sent that don't name one of our people."""
    for text in bot_texts(h):
        for found in re.finditer(r"<[!@][^>]*>", text):
            if not re.fullmatch(r"<@(" + "|".join(PEOPLE) + r")>", found.group()):
                yield text[max(0, found.start() - 80):found.end() + 20]


async def after_each(h: Harness) -> None:
    """Let the listener finish before the next example."""
    await wait_for(lambda: h.app[RUNTIME].inflight == 0)


async def check_clean(h: Harness) -> None:
    """Everything delivered, every Slack call accepted, no mention built from user text."""
    await h.settle(30)
    rejected = [(c.method, c.args.get("channel"), c.response) for c in h.slack.calls
                if not c.response.get("ok")]
    assert not rejected, repr(rejected)[:3000]
    mentions = list(live_mentions(h))
    assert not mentions, mentions[:10]


async def test_slash_commands_survive_hostile_text(db_url: str, policy: Policy) -> None:
    """Random /release text from every kind of user, plus 100 kB and missing fields."""
    async with running_app(db_url, policy) as h:
        await ready(h, "web v1.1.0 <!channel> please <@U123>")
        await signed(h, "payments v1.1.0 <!here>")
        cases = examples(st.tuples(st.sampled_from(PEOPLE), command_text))
        cases += [(DEV, "request web v1.1.0 " + "<!channel> x" * 9000),
                  (DEV, "x" * 100_000), (OPS, ""), (OPS, "   "), (CTO, "\x00\ufeff")]
        for user, text in cases:
            reply = await h.driver.command(user, text)
            assert reply.status == 200, (user, text[:200], reply.status, reply.body[:200])
            await after_each(h)
        for form in ({"command": "/release"}, {"command": "/release", "text": "list"},
                     {"command": "/release", "user_id": DEV, "text": "request web main <!here>"},
                     {"command": "/release", "user_id": ["x"], "text": "help"}):
            reply = await h.driver.raw(urlencode(form, doseq=True).encode(), FORM)
            assert reply.status < 500, (form, reply.status)
            await after_each(h)
        await check_clean(h)


async def test_modal_submissions_survive_hostile_values(db_url: str, policy: Policy) -> None:
    """Random answers and metadata in every form: errors in the form or a polite refusal."""
    async with running_app(db_url, policy) as h:
        await ready(h, "web v1.1.0 Target")
        metadata = st.one_of(st.sampled_from(["1:1", "1:2", "1:", "", ":", "x:1", "1:²", "²:1",
                                              "9" * 5000 + ":1", "1:" + "9" * 5000, "-1:1"]),
                             mixed_text)
        cases = examples(st.tuples(st.sampled_from(PEOPLE), st.sampled_from(
            [FormId.REQUEST, FormId.REPORT, FormId.REJECT, FormId.VERIFY_FAIL, FormId.PLAN,
             FormId.PLAN_CHANGES]),
            field_answers.map(utf8), metadata))
        good = {"project": ("select", "web"), "ref": ("input", "main"),
                "title": ("input", "<!channel> <@U123> *bold* `code`"),
                "plan_rollback": ("input", "<!here> redeploy"),
                "items": ("input", "!1\n<!everyone>")}
        cases += [(DEV, FormId.REQUEST, good, meta)
                  for meta in ("<!channel>", "x", "C0RELEASES", "")]
        for user, callback, fields, meta in cases:
            values = slack_values(fields)
            if callback in (FormId.REJECT, FormId.VERIFY_FAIL):
                values["reason"] = {"value": {"type": "plain_text_input",
                                              "value": "".join(str(v[1]) for v in fields.values())
                                              or "<!channel>"}}
            reply = await h.driver.submit_view(user, callback, values, private_metadata=meta)
            assert reply.status == 200, (user, callback, fields, meta[:50], reply.body[:200])
            await after_each(h)
        await check_clean(h)


async def test_clicks_with_broken_payloads_are_answered(db_url: str, policy: Policy) -> None:
    """Buttons with hostile values, and interactivity payloads missing their parts."""
    async with running_app(db_url, policy) as h:
        await ready(h, "web v1.1.0 Target")
        values = examples(st.one_of(st.sampled_from(["1:1:ready_for_signoff", "1", "1:9:x", ":",
                                                     "²:1", "9" * 5000, "-1:1", "1:1:" + "x" * 50]),
                                    mixed_text), 30)
        for n, value in enumerate(values):
            action = [ActionId.APPROVE, ActionId.DEPLOY, ActionId.REJECT, ActionId.VERIFY_PASS,
                      ActionId.CLOSE][n % 5]
            reply = await h.driver.click(PEOPLE[n % len(PEOPLE)], action, value or "x")
            assert reply.status == 200, (action, value[:80], reply.body[:200])
            await after_each(h)
        broken: list[dict[str, Any]] = [
            {"type": "block_actions"}, {"type": "block_actions", "actions": "x"},
            {"type": "block_actions", "actions": [{}]},
            {"type": "block_actions", "actions": [{"action_id": ActionId.APPROVE}], "user": "x"},
            {"type": "block_actions", "actions": [{"action_id": ActionId.APPROVE, "value": 5}],
             "user": {"id": DIRECTOR}},
            {"type": "view_submission"}, {"type": "view_submission", "view": "x"},
            {"type": "view_submission", "view": {"callback_id": FormId.REPORT, "state": []}},
            {"type": "view_submission", "user": {"id": TESTER},
             "view": {"callback_id": FormId.REPORT, "private_metadata": "1:1",
                      "state": {"values": {"url": "x"}}}},
            {"type": "nonsense"}, {}]
        for payload in broken:
            body = urlencode({"payload": json.dumps(payload)}).encode()
            reply = await h.driver.raw(body, FORM)
            assert reply.status < 500, (payload, reply.status, reply.body[:200])
            await after_each(h)
        for raw in (b"payload=%7Bnot json", b"payload=[1,2]", b'{"type": "event_callback"',
                    b"\xff\xfe\x00garbage", b"payload=" + b"x" * 100_000):
            reply = await h.driver.raw(raw, FORM)
            assert reply.status < 500, (raw[:40], reply.status)
        await check_clean(h)


async def test_webhook_bodies_survive_hostile_json(db_url: str, policy: Policy) -> None:
    """Broken JSON, random JSON, 100 kB and hostile fields with the right token: never a 500."""
    async with running_app(db_url, policy) as h:
        rid = await signed(h, "web v1.1.0 Hooked")
        await h.click(OPS, ActionId.DEPLOY)
        pipeline = h.pipeline_of(rid)
        good = View(h.gitlab.base_url).pipeline_hook(pipeline)
        mutated = st.builds(
            lambda attrs, builds, status: {**good, "object_attributes": {
                **good["object_attributes"], **attrs, "status": status}, "builds": builds},
            st.dictionaries(st.sampled_from(["id", "ref", "sha", "url", "name"]), json_values,
                            max_size=3),
            st.one_of(json_values, st.lists(st.fixed_dictionaries(
                {"name": st.one_of(hostile, mixed_text), "status": st.just("failed")}),
                max_size=3)),
            st.sampled_from(["failed", "success", "running", "canceled", "", "<!channel>"]))
        bodies = [json.dumps(b).encode() for b in examples(st.one_of(mutated, json_values))]
        bodies += [b"", b"{", b"[]", b"null", b'"x"', b"\xff\xfe", b"{" * 5000,
                   json.dumps({**good, "pad": "x" * 100_000}).encode(),
                   json.dumps({"object_kind": "pipeline"}).encode(),
                   json.dumps({"object_kind": "pipeline", "object_attributes": [],
                               "project": "acme/web"}).encode()]
        for n, body in enumerate(bodies):
            status = await post_hook(h, body, {"X-Gitlab-Token": HOOK_SECRET,
                                               "Idempotency-Key": f"fuzz-{n}"})
            assert status < 500, (body[:200], status)
        await wait_for(lambda: not h.app[WEBHOOK].tasks)
        await check_clean(h)
