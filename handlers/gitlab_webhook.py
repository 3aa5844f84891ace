"""`POST /gitlab/webhook`: Pipeline Hook events, checked, deduplicated, answered fast."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from bot.deploys import Deployer, PipelineResult
from bot.gitlab import FINAL, WAITING
from bot.policy import Policy
from bot.transition import Deps
from storage import queries as q
from storage.db import transaction

log = logging.getLogger(__name__)
MAX_BODY = 2 * 1024 * 1024
BODY_SECONDS = 10.0  # GitLab sends a hook at once; a slower body is a held connection


def project_key(policy: Policy, project: dict[str, Any],
                ids: Mapping[str, int] | None = None) -> str | None:
    """The policy's key for the GitLab project a hook names: by numeric ID, else by path.

    ids holds the ID known for each policy key. A project whose ID is known matches by that
    ID alone, so it is found under a new path after a rename, and a project that took its
    old path over is not taken for it.
    """
    known = ids or {}
    path, pid = str(project.get("path_with_namespace") or "").lower(), project.get("id")
    for key, project_id in known.items():
        if type(pid) is int and project_id == pid and key in policy.projects:
            return key
    for key, proj in policy.projects.items():
        if key not in known and str(proj.gitlab).lower() in (path, str(pid)):  # paths ignore case
            return key
    return None


def pipeline_result(policy: Policy, body: dict[str, Any],
                    ids: Mapping[str, int] | None = None) -> PipelineResult | None:
    """The pipeline a Pipeline Hook names, if it is about one of our projects.

    Only a trigger: the hook's status is read again from GitLab before anything moves.
    """
    attrs, project = _part(body, "object_attributes", dict), _part(body, "project", dict)
    key = project_key(policy, project, ids)
    if body.get("object_kind") != "pipeline" or key is None or type(attrs.get("id")) is not int:
        return None
    return PipelineResult(key, attrs["id"], str(attrs.get("status") or ""))


async def _read_up_to(request: web.Request, limit: int) -> bytes:
    """The body until its end or past `limit` bytes (one read returns only what has arrived)."""
    chunks: list[bytes] = []
    size = 0
    while size < limit and (chunk := await request.content.read(limit - size)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _part(body: dict[str, Any], key: str, kind: type) -> Any:
    """One part of a hook body, or an empty one when it is missing or of another type."""
    value = body.get(key)
    return value if isinstance(value, kind) else kind()


class GitLabWebhook:
    """Checks the token in constant time, answers at once, and processes in the background."""

    def __init__(self, deps: Deps, deployer: Deployer, secret: str | None) -> None:
        self.deps, self.deployer, self.secret = deps, deployer, secret
        self.tasks: set[asyncio.Task[None]] = set()

    async def handle(self, request: web.Request) -> web.Response:
        """401 for a wrong token (nothing written); 200 otherwise, duplicates included."""
        token = request.headers.get("X-Gitlab-Token", "")
        if not self.secret or not hmac.compare_digest(token.encode(), self.secret.encode()):
            return web.json_response({"error": "invalid token"}, status=401)
        try:  # a sender trickling its body must not hold the connection for minutes
            async with asyncio.timeout(BODY_SECONDS):  # not wait_for: it may swallow a cancel
                raw = await _read_up_to(request, MAX_BODY + 1)
        except TimeoutError:
            return web.json_response({"error": "body not received in time"}, status=408)
        if len(raw) > MAX_BODY:
            return web.json_response({"error": "body too large"}, status=413)
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):  # nested past the parser: 400
            return web.json_response({"error": "body is not JSON"}, status=400)
        result = (pipeline_result(self.deps.policy, body, await self._known_ids())
                  if isinstance(body, dict) and body.get("object_kind") == "pipeline" else None)
        if result is None:
            return web.json_response({"ok": True, "ignored": True})
        key = request.headers.get("Idempotency-Key") or request.headers.get("X-Gitlab-Event-UUID")
        task = asyncio.create_task(self._process(result, key))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return web.json_response({"ok": True})

    async def _known_ids(self) -> dict[str, int]:
        """The GitLab ID known for each policy project (none when they cannot be read)."""
        gitlab, found = self.deployer.gitlab, {}
        try:
            for key, project in self.deps.policy.projects.items():
                project_id = await gitlab.known_id(project.gitlab)
                if project_id is not None:
                    found[key] = project_id
        except Exception:  # the database is away: match by path as before, polling checks
            log.exception("learned GitLab project IDs unreadable; matching the hook by path")
            return {}
        return found

    async def _process(self, result: PipelineResult, key: str | None) -> None:
        """Take the result once; a failure leaves it to the poller."""
        try:
            if key:
                async with transaction(self.deps.sessions) as session:
                    if not await q.mark_seen(session, f"gitlab:{key[:150]}", self.deps.clock()):
                        return
            # A hook of a pipeline still on its way changes nothing; an ended or waiting one
            # makes the bot read it from GitLab (the poller watches the time).
            if result.status in FINAL | WAITING:
                await self.deployer.take_hook(result.project, result.pipeline_id)
        except Exception:
            log.exception("webhook for pipeline %s failed; polling will catch up",
                          result.pipeline_id)
