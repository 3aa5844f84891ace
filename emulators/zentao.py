"""A local ZenTao REST API v1 emulator: tokens, products and their bugs, for tests and the demo.

It answers as ZenTao's `api.php/v1` entries do:
- `POST /api.php/v1/tokens {account, password}` → 201 `{"token"}`; a wrong pair → 400
  `{"error": "…"}` (ZenTao's login-failed sentence).
- Every other call needs the `Token` header; a missing, unknown or expired one → 401
  `{"error": "Unauthorized"}`. Tokens are PHP sessions: `expire_tokens()` ends them all.
- `GET /api.php/v1/products` → `{page, total, limit, products}`; `GET /products/{id}` → the
  product, or 404 `{"error": "404 Not found"}`.
- `GET /api.php/v1/products/{id}/bugs?status=&limit=&page=&order=` → `{page, total, limit,
  bugs}`. `status` is ZenTao's browse type: unclosed (default), all, unresolved (status
  active), toclosed (resolved). A bug's `status` is an object `{code, name}` whose code shows
  `confirmed` for a confirmed active bug; `severity` is 1–4 (ZenTao's default list); a page
  past the last answers page 1 again, as ZenTao's pager does.

Not modelled: writes (bugs are made by set-up helpers), branches, modules, executions'
own bug lists, custom severity lists beyond numbers, login lock-out after failed attempts,
and the session cookie ZenTao also sets.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

API = "/api.php/v1"
LOGIN_FAILED = "登录失败，请检查您的用户名或密码是否填写正确。"
STATUS_NAMES = {"active": "激活", "resolved": "已解决", "closed": "已关闭",
                "confirmed": "已确认"}
BROWSE = {"all": lambda b: True, "unclosed": lambda b: b.status != "closed",
          "unresolved": lambda b: b.status == "active",
          "toclosed": lambda b: b.status == "resolved"}


@dataclass
class Product:
    """A ZenTao product."""

    id: int
    name: str
    created: datetime


@dataclass
class Bug:
    """A ZenTao bug; openedBuild lists build IDs (or `trunk`) comma-separated."""

    id: int
    product: int
    title: str
    severity: int
    status: str = "active"  # active, resolved or closed
    confirmed: bool = False
    resolution: str = ""
    opened_build: str = "trunk"
    project: int = 0
    pri: int = 3
    opened: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class Call:
    """One request the emulator answered (the body is never kept: it may hold a password)."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    token: bool  # whether a Token header came with it


class ZenTaoEmulator:
    """ZenTao over HTTP on loopback, scripted by the test that owns it."""

    def __init__(self, account: str = "releasebot", password: str = "zentao-secret-pw") -> None:
        self.account, self.password = account, password
        self.products: dict[int, Product] = {}
        self.bugs: dict[int, Bug] = {}
        self.calls: list[Call] = []
        self.tokens: set[str] = set()
        self.faults: list[list[int]] = []  # [status, remaining] (-1: forever)
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    # ------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """What a policy's `bug_tracker.url` names, e.g. http://127.0.0.1:PORT."""
        if self._url is None:
            raise RuntimeError("ZenTaoEmulator is not started")
        return self._url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0: any free port)."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self._url = f"http://{host}:{self._runner.addresses[0][1]}"
        return self._url

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ZenTaoEmulator:
        """Start on a free local port."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop."""
        await self.stop()

    # ------------------------------------------------------------ set-up helpers

    def add_product(self, name: str, id: int | None = None) -> Product:
        """A product (IDs count up from 1)."""
        product_id = id if id is not None else max(self.products, default=0) + 1
        self.products[product_id] = Product(product_id, name, datetime.now(UTC))
        return self.products[product_id]

    def add_bug(self, product: int, title: str, *, severity: int = 3, build: str = "trunk",
                project: int = 0, confirmed: bool = False) -> Bug:
        """An active bug of a product."""
        if product not in self.products:
            raise ValueError(f"no product {product}")
        bug = Bug(max(self.bugs, default=0) + 1, product, title, severity, confirmed=confirmed,
                  opened_build=build, project=project)
        self.bugs[bug.id] = bug
        return bug

    def resolve(self, bug_id: int, resolution: str = "fixed") -> Bug:
        """A developer resolves it (it leaves the active list)."""
        bug = self.bugs[bug_id]
        bug.status, bug.resolution = "resolved", resolution
        return bug

    def close(self, bug_id: int) -> Bug:
        """A tester closes it."""
        self.bugs[bug_id].status = "closed"
        return self.bugs[bug_id]

    def activate(self, bug_id: int) -> Bug:
        """Reopened: active again."""
        bug = self.bugs[bug_id]
        bug.status, bug.resolution = "active", ""
        return bug

    def expire_tokens(self) -> None:
        """Every session ends, as after ZenTao's session timeout."""
        self.tokens.clear()

    def fail(self, status: int = 503, times: int = 1) -> None:
        """Answer the next `times` requests (-1: all) with a server error."""
        if status not in (500, 502, 503, 504):
            raise ValueError("status must be 500, 502, 503 or 504")
        self.faults.append([status, times])

    def recover(self) -> None:
        """No more scripted failures."""
        self.faults.clear()

    def count(self, path_part: str = "", method: str | None = None) -> int:
        """How many requests matched."""
        return sum(1 for c in self.calls if path_part in c.path
                   and (method is None or c.method == method.upper()))

    # ------------------------------------------------------------ HTTP

    async def _dispatch(self, request: web.Request) -> web.Response:
        """Answer one request and record it."""
        response = await self._answer(request)
        self.calls.append(Call(request.method, request.path, dict(request.query),
                               response.status, "Token" in request.headers))
        return response

    async def _answer(self, request: web.Request) -> web.Response:
        """Faults, then the route."""
        if fault := self._take_fault():
            return web.Response(status=fault, content_type="text/html",
                                text=f"<html><body><h1>{fault}</h1></body></html>")
        path = request.path.removeprefix(API)
        if not request.path.startswith(API):
            return _error(404, "404 Not found")
        if request.method == "POST" and path == "/tokens":
            return await self._login(request)
        if request.headers.get("Token") not in self.tokens:
            return _error(401, "Unauthorized")
        route = self._route(request.method, path.strip("/").split("/"))
        return route(request) if route else _error(404, "404 Not found")

    def _take_fault(self) -> int | None:
        """Use up one scripted failure, if any."""
        for fault in self.faults:
            if fault[1] != 0:
                fault[1] -= 1 if fault[1] > 0 else 0
                return fault[0]
        return None

    def _route(self, method: str, parts: list[str]
               ) -> Callable[[web.Request], web.Response] | None:
        """The handler for a GET path, if there is one."""
        if method != "GET":
            return None
        if parts == ["products"]:
            return self._products
        if len(parts) == 2 and parts[0] == "products" and parts[1].isdigit():
            return lambda r: self._product(int(parts[1]))
        if len(parts) == 3 and parts[0] == "products" and parts[2] == "bugs" and (
                parts[1].isdigit()):
            return lambda r: self._bugs(r, int(parts[1]))
        if len(parts) == 2 and parts[0] == "bugs" and parts[1].isdigit():
            return lambda r: self._bug(int(parts[1]))
        return None

    async def _login(self, request: web.Request) -> web.Response:
        """POST /tokens: a token for the right account and password."""
        try:
            body = await request.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        if body.get("account") != self.account or body.get("password") != self.password:
            return _error(400, LOGIN_FAILED)
        token = secrets.token_hex(13)
        self.tokens.add(token)
        return web.json_response({"token": token}, status=201)

    def _products(self, request: web.Request) -> web.Response:
        """GET /products."""
        rows = [self._product_json(p) for p in self.products.values()]
        return web.json_response({"page": 1, "total": len(rows), "limit": 20, "products": rows})

    def _product(self, product_id: int) -> web.Response:
        """GET /products/{id}."""
        product = self.products.get(product_id)
        return web.json_response(self._product_json(product)) if product else _error(
            404, "404 Not found")

    def _bugs(self, request: web.Request, product_id: int) -> web.Response:
        """GET /products/{id}/bugs: one page of the browse type, newest first by default."""
        if product_id not in self.products:
            return _error(400, "error")
        wanted = BROWSE.get(request.query.get("status", "unclosed"), BROWSE["unclosed"])
        order = request.query.get("order", "id_desc")
        rows = sorted((b for b in self.bugs.values() if b.product == product_id and wanted(b)),
                      key=lambda b: b.id, reverse=order != "id_asc")
        limit = _int(request.query.get("limit"), 20)
        pages = math.ceil(len(rows) / limit)
        page = _int(request.query.get("page"), 1)
        page = page if 0 < page <= pages else 1  # ZenTao's pager: out of range is page 1
        chunk = rows[(page - 1) * limit: page * limit]
        return web.json_response({"page": page, "total": len(rows), "limit": limit,
                                  "bugs": [self._bug_json(b, listed=True) for b in chunk]})

    def _bug(self, bug_id: int) -> web.Response:
        """GET /bugs/{id}: the status as a plain string here, unlike the list."""
        bug = self.bugs.get(bug_id)
        return web.json_response(self._bug_json(bug, listed=False)) if bug else _error(
            404, "404 Not found")

    @staticmethod
    def _product_json(p: Product) -> dict[str, Any]:
        """A product entity."""
        return {"id": p.id, "program": 0, "name": p.name, "code": "", "type": "normal",
                "status": "normal", "desc": "", "acl": "open",
                "createdDate": p.created.strftime("%Y-%m-%dT%H:%M:%SZ")}

    @staticmethod
    def _bug_json(b: Bug, *, listed: bool) -> dict[str, Any]:
        """A bug entity; the list shows its status as {code, name}."""
        code = "confirmed" if b.status == "active" and b.confirmed else b.status
        status: Any = {"code": code, "name": STATUS_NAMES[code]} if listed else b.status
        return {"id": b.id, "product": b.product, "project": b.project, "execution": 0,
                "title": b.title, "severity": b.severity, "pri": b.pri, "type": "codeerror",
                "status": status, "confirmed": int(b.confirmed), "resolution": b.resolution,
                "openedBuild": b.opened_build, "openedBy": {"id": 7, "account": "tester1",
                                                            "realname": "Tester"},
                "openedDate": b.opened.strftime("%Y-%m-%dT%H:%M:%SZ"), "deleted": False}


def _int(value: str | None, default: int) -> int:
    """A number from the query, as PHP would cast it."""
    try:
        return max(int(value or default), 1)
    except ValueError:
        return default


def _error(status: int, message: str) -> web.Response:
    """ZenTao's sendError: `{"error": message}`."""
    return web.json_response({"error": message}, status=status)

