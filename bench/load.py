"""The load generator, run in its own process: signed Slack requests, timed at the client.

`python -m bench.load CONFIG.json` reads its job from the file and writes results to
`config["out"]`. Modes:
- `ack`: `clients` concurrent clients for `duration` s, each sending a mix of
  `/release status REL-n`, `/release list` and Approve clicks; with `think` > 0 each client
  waits a random (exponential) time between requests, otherwise it sends back to back.
- `click2channel`: one Approve click at a time on fresh releases; for each, the time until
  the emulator received the card's `chat.update`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import sys
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import aiohttp

from emulators.sample import DEV, DIRECTOR, LEAD
from emulators.slack_driver import signature

Json = dict[str, Any]
TEAM = {"id": "T0TEAM", "domain": "releasebot-emulator"}
APP_ID = "A0RELEASEBOT"
TOKEN = "emulator-verification-token"
FORM = "application/x-www-form-urlencoded"


class Requests:
    """Builds signed Slack request bodies the way Slack sends them."""

    def __init__(self, cfg: Json) -> None:
        self.secret: str = cfg["secret"]
        self.slack_root: str = cfg["slack_root"]
        self.channel: str = cfg["channel"]
        self.blocks: list[Json] = cfg["card_blocks"]
        self.serial = itertools.count(1)
        self.last_response_id = ""

    def _response_url(self, user: str, ts: str | None) -> str:
        """A response_url the bench emulator accepts without registration."""
        self.last_response_id = f"b~{user}~{self.channel}~{ts or '-'}~{next(self.serial)}"
        return f"{self.slack_root}/response/{self.last_response_id}"

    def _trigger(self) -> str:
        """A trigger_id (only views.open would check it)."""
        n = next(self.serial)
        return f"{n}.{1_000_000 + n}.{uuid.uuid4().hex[:20]}"

    def command(self, user: str, text: str) -> bytes:
        """A form-encoded slash command."""
        form = {"token": TOKEN, "team_id": TEAM["id"], "team_domain": TEAM["domain"],
                "channel_id": self.channel, "channel_name": self.channel.lower(),
                "user_id": user, "user_name": user.lower(), "command": "/release",
                "text": text, "api_app_id": APP_ID, "is_enterprise_install": "false",
                "response_url": self._response_url(user, None), "trigger_id": self._trigger()}
        return urlencode(form).encode()

    def approve_click(self, user: str, rid: int, ts: str) -> bytes:
        """A block_actions payload for the Approve button of a card."""
        value = f"{rid}:1:ready_for_signoff"
        payload = {
            "type": "block_actions", "team": TEAM,
            "user": {"id": user, "username": user.lower(), "name": user.lower(),
                     "team_id": TEAM["id"]},
            "api_app_id": APP_ID, "token": TOKEN, "trigger_id": self._trigger(),
            "is_enterprise_install": False, "enterprise": None,
            "container": {"type": "message", "message_ts": ts, "channel_id": self.channel,
                          "is_ephemeral": False},
            "channel": {"id": self.channel, "name": self.channel.lower()},
            "message": {"type": "message", "user": "UBOT", "ts": ts, "bot_id": "BBOT",
                        "app_id": APP_ID, "text": f"REL-{rid}", "team": TEAM["id"],
                        "blocks": self.blocks},
            "response_url": self._response_url(user, ts), "state": {"values": {}},
            "actions": [{"action_id": "release_approve", "block_id": f"card:{rid}",
                         "value": value, "type": "button", "action_ts": f"{time.time():.6f}",
                         "text": {"type": "plain_text", "text": "Approve", "emoji": True},
                         "style": "primary"}],
        }
        return urlencode({"payload": json.dumps(payload)}).encode()

    def headers(self, body: bytes) -> dict[str, str]:
        """Slack's signing headers for a body sent now."""
        stamp = str(int(time.time()))
        return {"Content-Type": FORM, "X-Slack-Request-Timestamp": stamp,
                "X-Slack-Signature": signature(self.secret, stamp, body)}


class AckLoad:
    """Closed-loop (or paced) clients sending the mix; latencies kept per request kind."""

    def __init__(self, cfg: Json) -> None:
        self.cfg = cfg
        self.req = Requests(cfg)
        self.pool: list[tuple[int, str]] = [(int(r), str(t)) for r, t in cfg["approve_pool"]]
        self.status_ids: list[int] = cfg["status_ids"]
        self.mix: dict[str, float] = cfg["mix"]
        self.dup_ratio: float = cfg.get("dup_ratio", 0.0)
        self.next_approval = itertools.count()
        self.latency: dict[str, list[float]] = {k: [] for k in self.mix}
        self.statuses: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.approvals: list[tuple[int, str, float, bool]] = []  # rid, user, sent at, dup
        self.sent: list[tuple[str, str, float]] = []  # response_url id, kind, sent at
        self.inline: list[tuple[str, float, bool]] = []  # answered in the ack: id, at, busy
        self.rng = random.Random(cfg.get("seed", 1))

    def _pick(self) -> tuple[str, bytes, tuple[int, str, bool] | None]:
        """The next request: its kind, body and (for clicks) release, user and dup flag."""
        kind = self.rng.choices(list(self.mix), weights=list(self.mix.values()))[0]
        if kind == "status":
            rid = self.rng.choice(self.status_ids)
            return kind, self.req.command(DEV, f"status REL-{rid}"), None
        if kind == "list":
            return kind, self.req.command(DEV, "list"), None
        if kind == "help":  # no database at all: what any answered command costs
            return kind, self.req.command(DEV, "help"), None
        k = next(self.next_approval)
        if k > 200 and self.rng.random() < self.dup_ratio:  # a double click on a done card
            rid, ts = self.pool[self.rng.randrange(0, min(k // 2 - 50, len(self.pool)))]
            return kind, self.req.approve_click(DIRECTOR, rid, ts), (rid, DIRECTOR, True)
        rid, ts = self.pool[(k // 2) % len(self.pool)]
        user = DIRECTOR if k % 2 == 0 else LEAD
        return kind, self.req.approve_click(user, rid, ts), (rid, user, False)

    async def client(self, session: aiohttp.ClientSession, url: str, end: float,
                     think: float) -> None:
        """One client: send, wait for the answer, (think,) repeat until `end`."""
        while time.perf_counter() < end:
            if think:
                left = end - time.perf_counter()
                await asyncio.sleep(min(left, self.rng.expovariate(1 / think)))
                if time.perf_counter() >= end:
                    return
            kind, body, click = self._pick()
            response_id = self.req.last_response_id
            headers = self.req.headers(body)
            sent_wall, started = time.time(), time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    text = (await resp.read()).decode(errors="replace")
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                name = type(exc).__name__
                self.errors[name] = self.errors.get(name, 0) + 1
                continue
            self.latency[kind].append(time.perf_counter() - started)
            self.sent.append((response_id, kind, sent_wall))
            if text.strip():  # answered in the ack itself (the bot's "busy, retry" answer)
                self.inline.append((response_id, time.time(), BUSY_WORD in text))
            self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
            if click is not None:
                self.approvals.append((click[0], click[1], sent_wall, click[2]))

    async def run(self) -> Json:
        """All clients for the configured duration."""
        cfg = self.cfg
        timeout = aiohttp.ClientTimeout(total=10)
        connector = aiohttp.TCPConnector(limit=cfg["clients"] + 5)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            end = time.perf_counter() + cfg["duration"]
            await asyncio.gather(*(self.client(session, cfg["url"], end, cfg.get("think", 0))
                                   for _ in range(cfg["clients"])))
        wall = time.perf_counter() - wall0
        return {"latency": self.latency, "statuses": self.statuses, "errors": self.errors,
                "approvals": self.approvals, "sent": self.sent, "inline": self.inline,
                "wall": wall,
                "client_cpu": time.process_time() - cpu0}


async def click_to_channel(cfg: Json) -> Json:
    """One Approve click at a time; seconds from sending it to the card's chat.update."""
    req = Requests(cfg)
    samples: list[float] = []
    acks: list[float] = []
    missing = 0
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for rid, ts in cfg["pool"]:
            body = req.approve_click(DIRECTOR, int(rid), str(ts))
            sent, started = time.time(), time.perf_counter()
            async with session.post(cfg["url"], data=body, headers=req.headers(body)) as resp:
                await resp.read()
            acks.append(time.perf_counter() - started)
            params = {"ts": str(ts), "since": str(sent), "timeout": "10"}
            async with session.get(f"{cfg['slack_root']}/_bench/wait_update",
                                   params=params) as resp:
                at = (await resp.json())["at"]
            if at is None:
                missing += 1
            else:
                samples.append(at - sent)
            await asyncio.sleep(cfg.get("gap", 0.02))
    return {"samples": samples, "acks": acks, "missing": missing}


BUSY_WORD = "swamped"  # in the bot's answer when it sheds a request (handlers/answer.py)


def main() -> None:
    """Run the job in the config file given as the only argument."""
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    if cfg["mode"] == "ack":
        result = asyncio.run(AckLoad(cfg).run())
    else:
        result = asyncio.run(click_to_channel(cfg))
    with open(cfg["out"], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
