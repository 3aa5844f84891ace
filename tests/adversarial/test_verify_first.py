"""Verify before reading: unsigned bodies leave no trace, nesting is a 400, /metrics is guarded."""

from __future__ import annotations

import asyncio
import json
import time
from functools import partial
from urllib.parse import urlencode

import aiohttp
import pytest

from bot.app import DEPS
from bot.metrics import Metrics
from bot.policy import Policy
from emulators.sample import DEV
from emulators.slack_driver import FORM
from handlers import gitlab_webhook, http
from tests.adversarial.common import row_counts
from tests.scenario.harness import HOOK_SECRET, Harness, running_app


async def _metrics(h: Harness, token: str | None = None) -> tuple[int, bytes]:
    """GET /metrics, with a bearer token when given."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.get(f"{h.url}/metrics",
                                                         headers=headers) as resp:
        return resp.status, await resp.read()


def _series(text: bytes) -> list[bytes]:
    """The sample lines of a Prometheus exposition, values left out."""
    return sorted(line.rsplit(b" ", 1)[0] for line in text.splitlines()
                  if line and not line.startswith(b"#"))


async def test_unsigned_hostile_types_do_not_grow_metrics(db_url: str, policy: Policy) -> None:
    """200 unsigned bodies with a new `type` each: 401, no new series, /metrics the same size."""
    async with running_app(db_url, policy) as h:
        await h.driver.raw(b"warm=up", FORM, sign=False)  # the "invalid" series exists now
        _, before = await _metrics(h)
        rows = await row_counts(h)
        for i in range(200):
            body = urlencode({"payload": json.dumps({"type": f"x{i}" * 40})}).encode()
            assert (await h.driver.raw(body, FORM, sign=False)).status == 401
            as_json = json.dumps({"type": f"event{i}" * 40}).encode()
            assert (await h.driver.raw(as_json, "application/json", sign=False)).status == 401
        _, after = await _metrics(h)
        assert _series(after) == _series(before)
        assert abs(len(after) - len(before)) < 200  # only counts changed, by a few digits
        assert b"x0x0" not in after and b"event0" not in after
        assert await row_counts(h) == rows


async def test_a_signed_hostile_type_is_counted_as_other(db_url: str, policy: Policy) -> None:
    """Even signed, a kind Slack does not send gets the label "other", not its own."""
    async with running_app(db_url, policy) as h:
        body = urlencode({"payload": json.dumps({"type": "x" * 500})}).encode()
        assert (await h.driver.raw(body, FORM)).status < 500
        _, text = await _metrics(h)
        assert b'kind="other"' in text and b"xxxx" not in text


async def test_a_deeply_nested_body_is_a_400(db_url: str, policy: Policy) -> None:
    """Signed JSON nested past the parser's depth: 400, never a 500; nothing written."""
    async with running_app(db_url, policy) as h:
        rows = await row_counts(h)
        nested = b"[" * 100_000 + b"]" * 100_000
        reply = await h.driver.raw(nested, "application/json")
        assert reply.status == 400, (reply.status, reply.body[:200])
        payload = urlencode({"payload": '{"a":' * 50_000 + "1" + "}" * 50_000}).encode()
        reply = await h.driver.raw(payload, FORM)
        assert reply.status == 400, (reply.status, reply.body[:200])
        hook = await _post_hook(h, nested)
        assert hook == 400
        assert await row_counts(h) == rows


async def _post_hook(h: Harness, body: bytes) -> int:
    """POST a body to the GitLab webhook with the right token."""
    async with aiohttp.ClientSession() as http, http.post(
            f"{h.url}/gitlab/webhook", data=body,
            headers={"X-Gitlab-Token": HOOK_SECRET, "Content-Type": "application/json"}) as resp:
        return resp.status


async def test_metrics_token_is_required_when_set(db_url: str, policy: Policy) -> None:
    """With METRICS_TOKEN set: 401 without it or with another, the exposition with it."""
    async with running_app(db_url, policy, metrics_token="scrape-me") as h:
        assert (await _metrics(h))[0] == 401
        assert (await _metrics(h, "wrong"))[0] == 401
        status, text = await _metrics(h, "scrape-me")
        assert status == 200 and b"releasebot_requests" in text


async def test_a_slow_metrics_render_does_not_hold_other_requests(
        db_url: str, policy: Policy, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rendering /metrics takes a second (as a huge exposition would): meanwhile Slack's
    requests are still answered at once, since the rendering runs off the event loop."""
    render = Metrics.render

    def slow(self: Metrics) -> bytes:
        time.sleep(1.0)
        return render(self)

    monkeypatch.setattr(Metrics, "render", slow)
    async with running_app(db_url, policy) as h:
        scrape = asyncio.create_task(_metrics(h))
        await asyncio.sleep(0.1)  # the scrape is rendering now
        started = time.perf_counter()
        reply = await h.driver.command(DEV, "help")
        assert reply.status == 200 and time.perf_counter() - started < 0.5
        assert not scrape.done()
        assert (await scrape)[0] == 200


async def test_healthz_says_only_ok_or_not(db_url: str, policy: Policy) -> None:
    """A database that does not answer gives 503 and {"ok": false}, no error text."""
    async with running_app(db_url, policy) as h:
        async with aiohttp.ClientSession() as http, http.get(f"{h.url}/healthz") as resp:
            assert (resp.status, await resp.json()) == (200, {"ok": True})
        real = h.app[DEPS].sessions

        def broken() -> object:
            raise OSError("password=hunter2 host=db.internal refused")

        h.app[DEPS].sessions = broken  # type: ignore[assignment]
        try:
            async with aiohttp.ClientSession() as http, http.get(f"{h.url}/healthz") as resp:
                assert (resp.status, await resp.json()) == (503, {"ok": False})
        finally:
            h.app[DEPS].sessions = real  # type: ignore[assignment]


async def _trickle(h: Harness, path: str, headers: str = f"Content-Type: {FORM}\r\n") -> bytes:
    """Send headers promising 100 bytes, then only 2; the status line the bot answers with."""
    host, port = h.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\n{headers}"
                 "Content-Length: 100\r\n\r\nab".encode())
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()


async def test_a_trickled_body_is_a_408_and_frees_the_connection(
        db_url: str, policy: Policy, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sender holding a connection open by trickling its body is cut off; nothing is written."""
    monkeypatch.setattr(http, "read_body", partial(http.read_body, within=0.3))
    monkeypatch.setattr(gitlab_webhook, "BODY_SECONDS", 0.3)
    async with running_app(db_url, policy) as h:
        rows = await row_counts(h)
        assert (await _trickle(h, "/slack/events")).startswith(b"HTTP/1.1 408")
        token = (f"Content-Type: application/json\r\nX-Gitlab-Event: Pipeline Hook\r\n"
                 f"X-Gitlab-Token: {HOOK_SECRET}\r\n")
        assert (await _trickle(h, "/gitlab/webhook", token)).startswith(b"HTTP/1.1 408")
        assert await row_counts(h) == rows
