"""The Slack and GitLab emulators in their own process, with a few benchmark-only routes.

`python -m bench.emulators` prints one JSON line with the URLs, then serves until SIGTERM.
The Slack emulator is the project's, plus: response_urls made up by the load generator are
accepted without a round trip to register them, messages are found by ts in O(1), every
`chat.update` is recorded with its arrival time and whether it changed anything, and
`/_bench/*` routes seed cards and read those records.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from typing import Any

from aiohttp import web

from bench.load import BUSY_WORD
from emulators.gitlab import GitLabEmulator
from emulators.sample import CHANNEL
from emulators.slack import Message, ResponseUrl, SlackEmulator

Json = dict[str, Any]


class BenchSlackEmulator(SlackEmulator):
    """SlackEmulator with an index by ts, lazy response_urls and chat.update records."""

    def reset(self) -> None:
        """Also forget the index and the update records."""
        super().reset()
        self.by_ts: dict[tuple[str, str], Message] = {}
        self.updates: list[tuple[str, float, bool]] = []  # (ts, arrival, identical)
        self.responses: list[tuple[str, float, bool]] = []  # (response_url id, arrival, busy)
        self.update_seen = asyncio.Event() if _has_loop() else None

    def build_app(self) -> web.Application:
        """The emulator's routes plus the benchmark's."""
        app = super().build_app()
        app.router.add_post("/_bench/cards", self._bench_cards)
        app.router.add_get("/_bench/updates", self._bench_updates)
        app.router.add_get("/_bench/wait_update", self._bench_wait_update)
        app.router.add_get("/_bench/stats", self._bench_stats)
        app.router.add_get("/_bench/responses", self._bench_responses)
        return app

    def message(self, channel: str, ts: str) -> Message | None:
        """One live message by channel and ts, without scanning the channel."""
        found = self.by_ts.get((channel, ts))
        return found if found is not None and not found.deleted else None

    def _store(self, channel: str, text: str, blocks: list[Json], thread_ts: str | None = None,
               broadcast: bool = False) -> Message:
        """Store and index."""
        message = super()._store(channel, text, blocks, thread_ts, broadcast)
        self.by_ts[(channel, message.ts)] = message
        return message

    def _chat_update(self, args: Json) -> Json:
        """Record when each update arrived and whether it changed the message at all."""
        channel = str(args.get("channel") or "")
        before = self.by_ts.get((channel, str(args.get("ts") or "")))
        old = (before.text, before.blocks) if before is not None else None
        result = super()._chat_update(args)
        new = (str(args.get("text") or ""), args.get("blocks") or [])
        self.updates.append((str(result["ts"]), time.time(), old == new))
        if self.update_seen is not None:
            self.update_seen.set()
            self.update_seen = asyncio.Event()
        return result

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        """Accept `b~user~channel~message_ts~n` ids the load generator makes up."""
        rid = request.match_info["rid"]
        busy = BUSY_WORD in (await request.text())  # the bot shed this request
        self.responses.append((rid, time.time(), busy))
        if rid.startswith("b~") and rid not in self.response_urls:
            _, user, channel, ts, _n = rid.split("~")
            url = f"{self.url}/response/{rid}"
            self.response_urls[rid] = ResponseUrl(rid, url, self.clock(), user, channel,
                                                  None if ts == "-" else ts)
        return await super()._handle_response_url(request)

    async def _bench_cards(self, request: web.Request) -> web.Response:
        """Post cards as the bot would have: [{text, blocks}] → their ts, in order."""
        spec = await request.json()
        channel = spec.get("channel", CHANNEL)
        ts = [self._store(channel, c["text"], c["blocks"]).ts for c in spec["cards"]]
        return web.json_response({"ts": ts})

    async def _bench_updates(self, request: web.Request) -> web.Response:
        """chat.update records from index `after` on."""
        after = int(request.query.get("after", "0"))
        return web.json_response({"updates": self.updates[after:], "next": len(self.updates)})

    async def _bench_responses(self, request: web.Request) -> web.Response:
        """response_url posts (id, arrival) from index `after` on."""
        after = int(request.query.get("after", "0"))
        return web.json_response({"responses": self.responses[after:],
                                  "next": len(self.responses)})

    async def _bench_wait_update(self, request: web.Request) -> web.Response:
        """Wait (up to `timeout` s) for an update of card `ts` that arrived after `since`."""
        ts, since = request.query["ts"], float(request.query["since"])
        deadline = time.monotonic() + float(request.query.get("timeout", "10"))
        checked = 0
        while True:
            for uts, at, same in self.updates[checked:]:
                if uts == ts and at >= since:
                    return web.json_response({"at": at, "identical": same})
            checked = len(self.updates)
            left = deadline - time.monotonic()
            if left <= 0 or self.update_seen is None:
                return web.json_response({"at": None})
            try:
                await asyncio.wait_for(self.update_seen.wait(), left)
            except TimeoutError:
                return web.json_response({"at": None})

    async def _bench_stats(self, request: web.Request) -> web.Response:
        """Calls by method, and how many chat.updates changed nothing."""
        by_method = Counter(c.method for c in self.calls)
        errors = Counter(f"{c.method}:{c.response.get('error')}" for c in self.calls
                         if not c.response.get("ok", True))
        identical = sum(1 for _ts, _at, same in self.updates if same)
        return web.json_response({"calls": dict(by_method), "errors": dict(errors),
                                  "updates": len(self.updates), "identical_updates": identical})


def _has_loop() -> bool:
    """Whether an event loop runs (reset() is also called from __init__)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def serve() -> None:
    """Run both emulators until SIGTERM; print their URLs as one JSON line."""
    slack = BenchSlackEmulator()
    await slack.start()
    slack.update_seen = asyncio.Event()
    gitlab = GitLabEmulator(token="glpat-bench")
    await gitlab.start()
    gitlab.seed_demo()
    print(json.dumps({"slack_api": slack.base_url, "slack_root": slack.url,
                      "gitlab": gitlab.url}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await gitlab.stop()
        await slack.stop()


if __name__ == "__main__":
    asyncio.run(serve())
