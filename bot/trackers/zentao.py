"""ZenTao's REST API v1: a token from the bot's account, then a product's active bugs.

`POST /api.php/v1/tokens {account, password}` answers 201 `{"token"}`; every other call sends
it in the `Token` header and gets 401 `{"error": "Unauthorized"}` once it has expired. A
product's bugs come from `GET /api.php/v1/products/{id}/bugs?status=unresolved` (ZenTao's
"unresolved" browse: status active) as `{page, total, limit, bugs}`. ZenTao answers a page past
the last with the first page again, so paging stops by `total`, never by an empty page.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
from pydantic import SecretStr

from bot.policy import BugTracker
from bot.trackers import Bug, BugCount, Scope, TrackerError

PAGE = 100  # bugs per request
MAX_PAGES = 50  # past this many pages the count is refused rather than guessed
_API = "/api.php/v1"


class ZenTaoClient:
    """One ZenTao instance read as the bot's account; the token is kept until it expires."""

    def __init__(self, url: str, account: str | None, password: SecretStr | None, *,
                 timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._account, self._password = account, password
        self._token: str | None = None
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    def __repr__(self) -> str:
        """Never the password or token."""
        return f"ZenTaoClient({self.url!r})"

    async def product(self, product: int) -> dict[str, Any]:
        """One product (`GET /products/{id}`): its name and status."""
        return await self.get(f"/products/{product}")

    async def active_bugs(self, product: int) -> list[dict[str, Any]]:
        """Every active bug of a product, page by page, as ZenTao lists them."""
        bugs: list[dict[str, Any]] = []
        page, pages = 1, 1
        while page <= pages:
            body = await self.get(f"/products/{product}/bugs",
                                  {"status": "unresolved", "limit": PAGE, "page": page})
            rows = body.get("bugs")
            if not isinstance(rows, list):
                raise TrackerError("ZenTao sent a bug list without its bugs")
            bugs += [row for row in rows if isinstance(row, dict)]
            pages = math.ceil(_number(body.get("total")) / max(_number(body.get("limit")), 1))
            if pages > MAX_PAGES:
                raise TrackerError(f"ZenTao lists more than {MAX_PAGES * PAGE} active bugs in "
                                   f"product {product}")
            page += 1
        return bugs

    async def login(self) -> None:
        """Exchange the account and password for a token (kept for the next calls)."""
        if not self._account or self._password is None:
            raise TrackerError("ZENTAO_ACCOUNT and ZENTAO_PASSWORD are not set, so ZenTao "
                               "can't be read")
        body = {"account": self._account, "password": self._password.get_secret_value()}
        status, answer = await self._call("POST", "/tokens", json=body)
        if status == 201 and isinstance(answer, dict) and answer.get("token"):
            self._token = str(answer["token"])
            return
        if status == 400:
            raise TrackerError(f"ZenTao refused the bot's account (ZENTAO_ACCOUNT, "
                               f"ZENTAO_PASSWORD): {_error(answer)}")
        raise _failure(status, answer)

    async def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """A GET with the token, logging in first or again when ZenTao asks for it."""
        for _ in range(2):
            if self._token is None:
                await self.login()
            status, answer = await self._call("GET", path, params=params,
                                              headers={"Token": self._token or ""})
            if status == 200 and isinstance(answer, dict):
                return answer
            if status != 401:
                raise _failure(status, answer)
            self._token = None  # expired (a PHP session): log in again, once
        raise TrackerError("ZenTao refused the bot's token (401) right after issuing it")

    async def _call(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        """One request; its status and JSON body (None when not JSON)."""
        try:
            async with aiohttp.ClientSession(timeout=self._timeout) as http:
                async with http.request(method, f"{self.url}{_API}{path}", **kw) as resp:
                    try:
                        return resp.status, await resp.json(content_type=None)
                    except ValueError:
                        return resp.status, None
        except TimeoutError:
            raise TrackerError("ZenTao did not answer in time") from None
        except aiohttp.ClientError:  # people read this: no exception class names
            raise TrackerError("ZenTao can't be reached") from None


def _number(value: Any) -> int:
    """A count ZenTao sends as a number or a numeric string."""
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0


def _error(answer: Any) -> str:
    """ZenTao's own words: `{"error": "…"}`."""
    text = answer.get("error") if isinstance(answer, dict) else None
    return " ".join(str(text or "no reason given").split())[:200]


def _failure(status: int, answer: Any) -> TrackerError:
    """One sentence for an unexpected answer."""
    if status >= 500:
        return TrackerError(f"ZenTao is unavailable ({status})")
    if status == 403:
        return TrackerError("ZenTao denied the bot's account access (403)")
    if status == 404:
        return TrackerError("ZenTao has no such product (404)")
    return TrackerError(f"ZenTao answered {status}: {_error(answer)}")


class ZenTaoTracker:
    """A ZenTao product's active bugs (optionally of one build or project) by severity."""

    source = "ZenTao"

    def __init__(self, client: ZenTaoClient, config: BugTracker,
                 clock: Callable[[], datetime]) -> None:
        self.client, self.config, self.clock = client, config, clock
        self.product = int(config.product or 0)

    async def count(self, scope: Scope) -> BugCount:
        """The product's active bugs now, mapped to A, B and C."""
        rows = [row for row in await self.client.active_bugs(self.product) if self._ours(row)]
        severities = self.config.severities
        bugs = tuple(Bug(f"#{row.get('id')}", severities[level].value,
                         str(row.get("title") or ""), self._bug_url(row))
                     for row in rows if (level := severity(row)) in severities)
        return BugCount(self.source, self._where(), self.list_url(), self.clock(), bugs)

    async def unmapped(self) -> dict[int, int]:
        """Active bugs per ZenTao severity that `severity_map` leaves uncounted."""
        levels: dict[int, int] = {}
        for row in await self.client.active_bugs(self.product):
            level = severity(row)
            if self._ours(row) and level not in self.config.severities:
                levels[level] = levels.get(level, 0) + 1
        return levels

    def list_url(self) -> str:
        """ZenTao's own page of the product's active bugs."""
        query = urlencode({"m": "bug", "f": "browse", "productID": self.product,
                           "browseType": "unresolved"})
        return f"{self.client.url}/index.php?{query}"

    def _ours(self, row: dict[str, Any]) -> bool:
        """Still active, and of the configured build and project, when those are set."""
        if status_code(row) in ("resolved", "closed", "postponed"):
            return False
        builds = str(row.get("openedBuild") or "").split(",")
        if self.config.build is not None and self.config.build not in builds:
            return False
        return self.config.project is None or _number(row.get("project")) == self.config.project

    def _where(self) -> str:
        """`product 3, build 12`."""
        parts = [f"product {self.product}"]
        if self.config.build is not None:
            parts.append(f"build {self.config.build}")
        if self.config.project is not None:
            parts.append(f"project {self.config.project}")
        return ", ".join(parts)

    def _bug_url(self, row: dict[str, Any]) -> str:
        """The bug's page in ZenTao."""
        query = urlencode({"m": "bug", "f": "view", "bugID": row.get("id")})
        return f"{self.client.url}/index.php?{query}"


def severity(row: dict[str, Any]) -> int:
    """A bug's severity number (ZenTao may send it as text)."""
    return _number(row.get("severity"))


def status_code(row: dict[str, Any]) -> str:
    """The list's status object `{code, name}`, or a plain status string."""
    status = row.get("status")
    return str(status.get("code") if isinstance(status, dict) else status or "")
