"""Tests of the Slack emulator and the signed-request driver."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from emulators.slack import SlackEmulator
from emulators.slack_driver import SlackDriver, tampered

# slack_sdk warns about blocks-only posts; those are deliberate here.
pytestmark = pytest.mark.filterwarnings("ignore:The top-level `text` argument:UserWarning")

SECRET = "test-signing-secret"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class FakeClock:
    """A settable clock for TTL rules."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def card_blocks(state: str = "requested") -> list[dict[str, Any]]:
    """A release card like the bot's: header, state, Approve/Reject buttons."""
    return [
        {"type": "header", "text": {"type": "plain_text", "text": "REL-1 payments v1.2"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"State: *{state}*"}},
        {"type": "actions", "block_id": "card", "elements": [
            {"type": "button", "action_id": "approve", "value": "REL-1",
             "text": {"type": "plain_text", "text": "Approve"}},
            {"type": "button", "action_id": "reject", "value": "REL-1",
             "text": {"type": "plain_text", "text": "Reject"}},
        ]},
    ]


@pytest.fixture
async def slack() -> AsyncIterator[SlackEmulator]:
    async with SlackEmulator() as emulator:
        yield emulator


@pytest.fixture
def client(slack: SlackEmulator) -> AsyncWebClient:
    return AsyncWebClient(token="xoxb-test", base_url=slack.base_url)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


# -- Web API ----------------------------------------------------------------------------------


async def test_auth_test_and_token_checks(
        slack: SlackEmulator, http: aiohttp.ClientSession) -> None:
    me = await AsyncWebClient(token="xoxb-test", base_url=slack.base_url).auth_test()
    assert (me["user_id"], me["bot_id"], me["team_id"]) == ("UBOT", "BBOT", "T0TEAM")
    async with http.post(slack.base_url + "auth.test") as resp:
        assert (await resp.json())["error"] == "not_authed"
    bad = AsyncWebClient(token="xoxb-invalid", base_url=slack.base_url)
    with pytest.raises(SlackApiError) as err:
        await bad.auth_test()
    assert err.value.response["error"] == "invalid_auth"


async def test_post_update_thread_broadcast_round_trip(
        slack: SlackEmulator, client: AsyncWebClient) -> None:
    card = await client.chat_postMessage(channel="C0RELEASES", text="REL-1", blocks=card_blocks())
    first = await client.chat_postMessage(channel="C0RELEASES", text="a", thread_ts=card["ts"])
    await client.chat_postMessage(channel="C0RELEASES", text="b", thread_ts=first["ts"],
                                  reply_broadcast=True)
    await client.chat_update(channel="C0RELEASES", ts=card["ts"], text="REL-1 approved",
                             blocks=card_blocks("approved"))
    [top] = slack.messages("C0RELEASES")
    assert top.ts == card["ts"] and top.text == "REL-1 approved"
    assert [v.text for v in top.edits] == ["REL-1"]
    replies = slack.thread("C0RELEASES", card["ts"])
    assert [(m.text, m.reply_broadcast) for m in replies] == [("a", False), ("b", True)]
    assert replies[0].ts < replies[1].ts and card["message"]["bot_id"] == "BBOT"
    link = await client.chat_getPermalink(channel="C0RELEASES", message_ts=card["ts"])
    assert link["permalink"].endswith(card["ts"].replace(".", ""))


async def test_form_encoded_blocks_are_decoded(
        slack: SlackEmulator, http: aiohttp.ClientSession) -> None:
    form = {"channel": "C1", "text": "fallback", "blocks": json.dumps(card_blocks())}
    headers = {"Authorization": "Bearer xoxb-test"}
    async with http.post(slack.base_url + "chat.postMessage", data=form, headers=headers) as resp:
        assert (await resp.json())["ok"] is True
    assert slack.messages("C1")[0].blocks == card_blocks()


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"text": "x", "blocks": [{"type": "divider"}] * 51}, "invalid_blocks"),
    ({"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]},
     "invalid_blocks"),
    ({"blocks": [{"type": "actions", "elements": [
        {"type": "button", "action_id": "a", "value": "v" * 2001,
         "text": {"type": "plain_text", "text": "Go"}}]}]}, "invalid_blocks"),
    ({"text": "x" * 40001}, "msg_too_long"),
    ({"text": ""}, "no_text"),
])
async def test_message_limits(slack: SlackEmulator, client: AsyncWebClient,
                              kwargs: dict[str, Any], error: str) -> None:
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel="C1", **kwargs)
    assert err.value.response["error"] == error
    assert slack.messages("C1") == []


async def test_lookup_errors(slack: SlackEmulator, client: AsyncWebClient) -> None:
    slack.missing_channels.add("C0GONE")
    for call, error in [
        (client.chat_postMessage(channel="C0GONE", text="x"), "channel_not_found"),
        (client.conversations_info(channel="C0GONE"), "channel_not_found"),
        (client.chat_update(channel="C1", ts="1.2", text="x"), "message_not_found"),
        (client.users_info(user="B0NOPE"), "user_not_found"),
        (client.usergroups_users_list(usergroup="S0NONE"), "no_such_subteam"),
        (client.api_call("files.upload"), "unknown_method"),
    ]:
        with pytest.raises(SlackApiError) as err:
            await call
        assert err.value.response["error"] == error


async def test_users_groups_channels_and_dms(slack: SlackEmulator, client: AsyncWebClient) -> None:
    slack.usergroups["S0TESTERS"] = ["U0TESTLEAD", "U0TESTER"]
    slack.users["U0CTO"] = {"real_name": "Ada CTO", "profile": {"display_name": "ada"}}
    assert (await client.usergroups_users_list(usergroup="S0TESTERS"))["users"] == [
        "U0TESTLEAD", "U0TESTER"]
    user = (await client.users_info(user="U0CTO"))["user"]
    assert (user["real_name"], user["profile"]["display_name"], user["tz"]) == (
        "Ada CTO", "ada", "Asia/Shanghai")
    assert (await client.conversations_info(channel="C0RELEASES"))["channel"]["id"] == "C0RELEASES"
    dm = (await client.conversations_open(users="U0CTO"))["channel"]["id"]
    await client.chat_postMessage(channel="U0CTO", text="your approval is needed")
    assert dm == "DU0CTO" and [m.text for m in slack.dms("U0CTO")] == ["your approval is needed"]
    await client.chat_postEphemeral(channel="C0RELEASES", user="U0CTO", text="only you")
    assert [e.text for e in slack.ephemerals("U0CTO")] == ["only you"]


async def test_a_dm_is_updated_by_its_im_id_and_only_the_bots_own(
        slack: SlackEmulator, client: AsyncWebClient) -> None:
    """As Slack: chat.update of a DM takes the IM id chat.postMessage answered, not the user
    id; a person's message can't be edited by the bot; a gone ts is message_not_found."""
    posted = await client.chat_postMessage(channel="U0CTO", text="sign REL-1?")
    assert posted["channel"] == "DU0CTO"
    for channel, ts, error in [("U0CTO", posted["ts"], "channel_not_found"),
                               ("DU0CTO", "1.2", "message_not_found"),
                               ("DU0CTO", slack.post_as("U0CTO", "DU0CTO", "hi").ts,
                                "cant_update_message")]:
        with pytest.raises(SlackApiError) as err:
            await client.chat_update(channel=channel, ts=ts, text="x")
        assert err.value.response["error"] == error
    updated = await client.chat_update(channel=posted["channel"], ts=posted["ts"], text="done",
                                       blocks=[])
    assert (updated["channel"], slack.dms("U0CTO")[0].text) == ("DU0CTO", "done")
    assert slack.dms("U0CTO")[0].blocks == [] and slack.dms("U0CTO")[1].text == "hi"


async def test_rate_limit_retry_after_is_honoured_and_posts_once(
        slack: SlackEmulator, client: AsyncWebClient) -> None:
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))
    slack.fail("chat.postMessage", status=429, retry_after=1)
    start = time.monotonic()
    await client.chat_postMessage(channel="C1", text="hi")
    assert time.monotonic() - start >= 1
    assert [c.status for c in slack.calls_to("chat.postMessage")] == [429, 200]
    assert [m.text for m in slack.messages("C1")] == ["hi"]


async def test_internal_error_that_landed(slack: SlackEmulator, client: AsyncWebClient) -> None:
    slack.fail("chat.postMessage", error="internal_error", land=True)
    slack.fail("chat.postMessage", error="internal_error")
    for text in ("landed", "lost"):
        with pytest.raises(SlackApiError) as err:
            await client.chat_postMessage(channel="C1", text=text)
        assert (err.value.response.status_code, err.value.response["error"]) == (
            200, "internal_error")
    assert [m.text for m in slack.messages("C1")] == ["landed"]


async def test_server_error_delay_and_latency(slack: SlackEmulator, client: AsyncWebClient) -> None:
    slack.fail("*", status=500)
    with pytest.raises(SlackApiError) as err:
        await client.auth_test()
    assert err.value.response.status_code == 500
    slack.fail("auth.test", status=200, delay=0.2)
    slack.latency = 0.1
    start = time.monotonic()
    assert (await client.auth_test())["ok"] is True
    assert time.monotonic() - start >= 0.3


async def test_response_url_rules(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    async with SlackEmulator(clock=clock) as slack:
        url = slack.new_response_url(user="U0TESTER", channel="C0RELEASES")
        statuses = []
        for i in range(6):
            async with http.post(url, json={"text": f"answer {i}"}) as resp:
                statuses.append((resp.status, await resp.text()))
        assert [s for s, _ in statuses] == [200] * 5 + [404]
        assert statuses[-1][1] == "used_url"
        assert [e.text for e in slack.ephemerals("U0TESTER")] == [f"answer {i}" for i in range(5)]
        late = slack.new_response_url(user="U0TESTER", channel="C0RELEASES")
        clock.now += 30 * 60 + 1
        async with http.post(late, json={"text": "too late"}) as resp:
            assert (resp.status, await resp.text()) == (404, "expired_url")


async def test_response_url_in_channel_and_replace(
        slack: SlackEmulator, client: AsyncWebClient, http: aiohttp.ClientSession) -> None:
    card = await client.chat_postMessage(channel="C0RELEASES", text="card", blocks=card_blocks())
    url = slack.new_response_url(user="U0X", channel="C0RELEASES", message_ts=card["ts"])
    await http.post(url, json={"response_type": "in_channel", "text": "announced"})
    await http.post(url, json={"replace_original": True, "text": "card v2"})
    assert [m.text for m in slack.messages("C0RELEASES")] == ["card v2", "announced"]
    assert slack.message("C0RELEASES", card["ts"]).blocks == []
    assert slack.responses(url)[0]["text"] == "announced"


async def test_trigger_ids_expire_and_are_single_use(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    view = {"type": "modal", "callback_id": "request", "title": {"type": "plain_text", "text": "R"},
            "blocks": []}
    async with SlackEmulator(clock=clock) as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.base_url)
        fresh, old = slack.new_trigger_id("U1"), slack.new_trigger_id("U1")
        opened = await client.views_open(trigger_id=fresh, view=view)
        assert opened["view"]["id"].startswith("V")
        assert slack.modals("U1")[0]["callback_id"] == "request"
        clock.now += 3.5
        for trigger in (fresh, old, "12345.67890.unknown"):
            with pytest.raises(SlackApiError) as err:
                await client.views_open(trigger_id=trigger, view=view)
            assert err.value.response["error"] == "expired_trigger_id"


async def test_views_update_and_app_home(slack: SlackEmulator, client: AsyncWebClient) -> None:
    view = {"type": "modal", "external_id": "req-1", "title": {"type": "plain_text", "text": "R"},
            "blocks": []}
    opened = (await client.views_open(trigger_id=slack.new_trigger_id("U1"), view=view))["view"]
    updated = await client.views_update(external_id="req-1", view={**view, "private_metadata": "7"})
    assert updated["view"]["id"] == opened["id"]
    assert slack.views[opened["id"]]["private_metadata"] == "7"
    with pytest.raises(SlackApiError) as err:
        await client.views_update(view_id=opened["id"], hash="stale", view=view)
    assert err.value.response["error"] == "hash_conflict"
    hello = {"type": "section", "text": {"type": "mrkdwn", "text": "Hi"}}
    home = {"type": "home", "blocks": [hello]}
    await client.views_publish(user_id="U1", view=home)
    assert slack.home("U1")["blocks"] == home["blocks"] and slack.home("U2") is None


async def test_render_channel(slack: SlackEmulator, client: AsyncWebClient) -> None:
    card = await client.chat_postMessage(channel="C0RELEASES", text="REL-1", blocks=card_blocks())
    await client.chat_postMessage(channel="C0RELEASES", text="Test report attached\nA=0 B=0",
                                  thread_ts=card["ts"], reply_broadcast=True)
    await client.chat_postMessage(channel="C0RELEASES", text="Approved by <@U0DIRECTOR>",
                                  thread_ts=card["ts"])
    await client.chat_update(channel="C0RELEASES", ts=card["ts"], blocks=card_blocks("approved"))
    await client.chat_postMessage(channel="C0RELEASES", text="hello")
    assert slack.render_channel("C0RELEASES") == (
        "REL-1 payments v1.2 (edited)\n"
        "State: *approved*\n"
        "[Approve] [Reject]\n"
        "    ↳ (also sent to channel) Test report attached\n"
        "      A=0 B=0\n"
        "    ↳ Approved by <@U0DIRECTOR>\n"
        "\n"
        "hello\n"
    )


async def test_standalone_process_and_control_api(http: aiohttp.ClientSession) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "emulators.slack", "--port", "0", cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        base_url = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()
        root = base_url.removesuffix("/api/")
        client = AsyncWebClient(token="xoxb-test", base_url=base_url)
        await http.post(root + "/_emulator/fault", json={"method": "chat.postMessage",
                                                         "error": "internal_error"})
        with pytest.raises(SlackApiError):
            await client.chat_postMessage(channel="C1", text="x")
        await client.chat_postMessage(channel="C1", text="y")
        async with http.get(root + "/_emulator/calls") as resp:
            calls = await resp.json()
        assert [(c["method"], c["response"]["ok"]) for c in calls] == [
            ("chat.postMessage", False), ("chat.postMessage", True)]
        async with http.get(root + "/_emulator/render", params={"channel": "C1"}) as resp:
            assert await resp.text() == "y\n"
        await http.post(root + "/_emulator/reset")
        async with http.get(root + "/_emulator/calls") as resp:
            assert await resp.json() == []
    finally:
        proc.terminate()
        await proc.wait()


# -- driver -----------------------------------------------------------------------------------


async def _echo(request: web.Request) -> web.Response:
    """Verify like Bolt does, then echo the parsed request back."""
    body = await request.read()
    if not SignatureVerifier(SECRET).is_valid_request(body, dict(request.headers)):
        return web.json_response({"error": "invalid request"}, status=401)
    if request.content_type == "application/json":
        parsed = json.loads(body)
    else:
        parsed = dict(parse_qsl(body.decode()))
        parsed = json.loads(parsed["payload"]) if "payload" in parsed else parsed
    slack_headers = {k: v for k, v in request.headers.items() if k.startswith("X-Slack-Retry")}
    return web.json_response({"body": parsed, "headers": slack_headers})


@pytest.fixture
async def app_url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/slack/events", _echo)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


@pytest.fixture
async def driver(app_url: str, slack: SlackEmulator) -> AsyncIterator[SlackDriver]:
    async with SlackDriver(app_url, SECRET, emulator=slack) as drv:
        yield drv


async def test_command_is_signed_and_carries_slack_fields(
        driver: SlackDriver, slack: SlackEmulator, client: AsyncWebClient) -> None:
    reply = await driver.command("U0OPS", "status REL-1")
    assert reply.status == 200 and reply.elapsed > 0
    form = reply.json["body"]
    assert (form["command"], form["text"], form["user_id"], form["channel_id"]) == (
        "/release", "status REL-1", "U0OPS", "C0RELEASES")
    assert form["response_url"].startswith(slack.url + "/response/")
    assert {"token", "team_id", "team_domain", "channel_name", "user_name", "api_app_id",
            "is_enterprise_install"} <= form.keys()
    typed = (await driver.command("U0OPS", "request web v1.1.0 R&D <team> fix")).json["body"]
    assert typed["text"] == "request web v1.1.0 R&amp;D &lt;team&gt; fix"  # as Slack sends it
    opened = await client.views_open(trigger_id=form["trigger_id"], view={"type": "modal"})
    assert opened["ok"] is True


async def test_tampered_old_and_unsigned_requests_fail(driver: SlackDriver) -> None:
    assert (await driver.command("U1", "help", timestamp=int(time.time()) - 60)).status == 200
    assert (await driver.command("U1", "help", tamper=True)).status == 401
    assert (await driver.command("U1", "help", timestamp=int(time.time()) - 600)).status == 401
    assert (await driver.command("U1", "help", sign=False)).status == 401
    assert tampered(b"text=abc") != b"text=abc" and len(tampered(b"text=abc")) == 8


async def test_click_finds_the_button_and_response_url_replaces(
        driver: SlackDriver, slack: SlackEmulator, client: AsyncWebClient,
        http: aiohttp.ClientSession) -> None:
    card = await client.chat_postMessage(channel="C0RELEASES", text="card", blocks=card_blocks())
    await client.chat_postMessage(channel="C0RELEASES", text="other")
    payload = (await driver.click("U0DIRECTOR", "approve", "REL-1")).json["body"]
    assert payload["type"] == "block_actions" and payload["user"]["id"] == "U0DIRECTOR"
    assert payload["container"] == {"type": "message", "message_ts": card["ts"],
                                    "channel_id": "C0RELEASES", "is_ephemeral": False}
    assert payload["message"]["blocks"] == card_blocks()
    assert payload["actions"][0] | {"action_ts": None} == {
        "action_id": "approve", "block_id": "card", "value": "REL-1", "type": "button",
        "action_ts": None}
    await http.post(payload["response_url"], json={"replace_original": True, "text": "done"})
    assert slack.message("C0RELEASES", card["ts"]).text == "done"


async def test_click_in_view_and_view_submission(driver: SlackDriver) -> None:
    clicked = await driver.click("U1", "add_item", "x", view={"id": "V9", "type": "modal"})
    assert clicked.json["body"]["container"] == {"type": "view", "view_id": "V9"}
    values = {"project": {"pick": {"type": "static_select",
                                   "selected_option": {"value": "payments"}}}}
    submitted = await driver.submit_view("U1", "release_request", values, private_metadata="m")
    view = submitted.json["body"]["view"]
    assert submitted.json["body"]["type"] == "view_submission"
    assert (view["callback_id"], view["private_metadata"], view["state"]["values"]) == (
        "release_request", "m", values)


async def test_event_retry_headers_ssl_check_and_raw(driver: SlackDriver) -> None:
    event = {"type": "app_home_opened", "user": "U1", "tab": "home"}
    reply = await driver.event(event, event_id="Ev1", retry_num=1)
    assert reply.json["headers"] == {"X-Slack-Retry-Num": "1",
                                     "X-Slack-Retry-Reason": "http_timeout"}
    envelope = reply.json["body"]
    assert (envelope["type"], envelope["event_id"], envelope["event"]) == (
        "event_callback", "Ev1", event)
    assert (await driver.ssl_check()).json["body"]["ssl_check"] == "1"
    assert (await driver.raw(b"\x00garbage", "text/plain", tamper=True)).status == 401


async def test_driver_with_standalone_emulator_url(
        app_url: str, slack: SlackEmulator, client: AsyncWebClient) -> None:
    card = await client.chat_postMessage(channel="C0RELEASES", text="card", blocks=card_blocks())
    async with SlackDriver(app_url + "/", SECRET, emulator=slack.url) as drv:
        form = (await drv.command("U1", "request")).json["body"]
        payload = (await drv.click("U1", "reject", "REL-1")).json["body"]
    assert form["response_url"] in {r.url for r in slack.response_urls.values()}
    assert (await client.views_open(trigger_id=form["trigger_id"], view={"type": "modal"}))["ok"]
    assert payload["container"]["message_ts"] == card["ts"]
