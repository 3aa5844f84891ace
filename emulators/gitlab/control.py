"""Control endpoints (/_emulator/*) that script the emulator over HTTP, and the CLI."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from emulators.gitlab.emulator import GitLabEmulator
from emulators.gitlab.http import json_answer
from emulators.gitlab.records import iso
from emulators.gitlab.views import View

# ---------------------------------------------------------------- control endpoints

ControlHandler = Callable[[GitLabEmulator, web.Request], Awaitable[web.Response]]


async def _control_body(request: web.Request) -> dict[str, Any]:
    """The JSON body of a control request ({} when empty)."""
    text = await request.text()
    data = json.loads(text) if text.strip() else {}
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    return data


async def c_calls(emu: GitLabEmulator, request: web.Request) -> web.Response:
    """GET /_emulator/calls: every recorded API call."""
    return json_answer([{"method": c.method, "path": c.path, "canonical_path": c.canonical_path,
                   "query": c.query, "at": iso(c.at), "status": c.status} for c in emu.calls])


async def c_pipelines(emu: GitLabEmulator, request: web.Request) -> web.Response:
    """GET /_emulator/pipelines: every pipeline with its variables and jobs."""
    view = View(emu.base_url)
    return json_answer([view.pipeline(pl) | {"variables": pl.variables,
                                       "jobs": [view.job(job) for job in pl.jobs]}
                  for pl in emu.pipelines.values()])


async def c_status(emu: GitLabEmulator, request: web.Request) -> web.Response:
    """POST /_emulator/pipeline/{id}/status {status, failed_job?}."""
    body = await _control_body(request)
    pipeline_id = int(request.match_info["id"])
    emu.set_status(pipeline_id, body["status"], failed_job=body.get("failed_job"))
    return json_answer(View(emu.base_url).pipeline(emu.pipelines[pipeline_id]))


async def c_fault(emu: GitLabEmulator, request: web.Request) -> web.Response:
    """POST /_emulator/fault {times, status, retry_after, path_prefix, delay}."""
    body = await _control_body(request)
    emu.fail(times=int(body.get("times", 1)), status=int(body.get("status", 500)),
             retry_after=body.get("retry_after"), path_prefix=body.get("path_prefix", ""),
             delay=float(body.get("delay", 0.0)))
    return json_answer({"ok": True})


async def c_latency(emu: GitLabEmulator, request: web.Request) -> web.Response:
    """POST /_emulator/latency {seconds}."""
    emu.latency = float((await _control_body(request)).get("seconds", 0.0))
    return json_answer({"ok": True})


async def c_reset(emu: GitLabEmulator, request: web.Request) -> web.Response:
    """POST /_emulator/reset: clear calls, faults, latency and auto-advance."""
    emu.reset()
    return json_answer({"ok": True})


async def c_auto(emu: GitLabEmulator, request: web.Request) -> web.Response:
    """POST /_emulator/auto {steps?, every?, fail_refs?, fail_envs?, enabled?}."""
    body = await _control_body(request)
    emu.auto_advance(steps=body.get("steps", ("running", "success")),
                     every=float(body.get("every", 0.5)), fail_refs=body.get("fail_refs", ()),
                     fail_envs=body.get("fail_envs", ()), enabled=body.get("enabled", True))
    return json_answer({"ok": True})


async def c_push(emu: GitLabEmulator, request: web.Request) -> web.Response:
    """POST /_emulator/push {project, branch, title, message?, author?, files?, pipeline?}."""
    body = await _control_body(request)
    p = emu.project(body["project"])
    commit = emu.push(p, body["branch"], title=body["title"], message=body.get("message", ""),
                      author=body.get("author", "dev"), files=body.get("files"),
                      pipeline=bool(body.get("pipeline", False)))
    return json_answer(View(emu.base_url).commit(p, commit), status=201)


async def c_rename(emu: GitLabEmulator, request: web.Request) -> web.Response:
    """POST /_emulator/rename {project, path}: rename or move a project; its id stays."""
    body = await _control_body(request)
    p = emu.rename_project(body["project"], str(body["path"]))
    return json_answer(View(emu.base_url).project(p, emu.current_user))


async def c_hook(emu: GitLabEmulator, request: web.Request) -> web.Response:
    """POST /_emulator/hook {url, secret}: register (url null: remove) the automatic hook."""
    body = await _control_body(request)
    emu.register_hook(body.get("url"), body.get("secret"))
    return json_answer({"ok": True})


async def c_hooks(emu: GitLabEmulator, request: web.Request) -> web.Response:
    """GET /_emulator/hooks: every webhook delivery made."""
    return json_answer([{"url": d.url, "pipeline_id": d.pipeline_id, "status": d.pipeline_status,
                   "http_status": d.http_status, "event_uuid": d.event_uuid,
                   "idempotency_key": d.idempotency_key, "at": iso(d.at)}
                  for d in emu.hook_deliveries])


CONTROL_ROUTES: tuple[tuple[str, str, ControlHandler], ...] = (
    ("GET", "/_emulator/calls", c_calls),
    ("GET", "/_emulator/pipelines", c_pipelines),
    ("GET", "/_emulator/hooks", c_hooks),
    ("POST", "/_emulator/pipeline/{id:\\d+}/status", c_status),
    ("POST", "/_emulator/fault", c_fault),
    ("POST", "/_emulator/latency", c_latency),
    ("POST", "/_emulator/reset", c_reset),
    ("POST", "/_emulator/auto", c_auto),
    ("POST", "/_emulator/hook", c_hook),
    ("POST", "/_emulator/push", c_push),
    ("POST", "/_emulator/rename", c_rename),
)


# ---------------------------------------------------------------- standalone


async def serve(host: str, port: int, token: str, seed: bool, auto: bool) -> None:
    """Run an emulator until SIGINT/SIGTERM."""
    emu = GitLabEmulator(token)
    if seed:
        emu.seed_demo()
    if auto:
        emu.auto_advance()
    url = await emu.start(host, port)
    print(url, flush=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stopped.set)
    try:
        await stopped.wait()
    finally:
        await emu.stop()


def main(argv: Sequence[str] | None = None) -> None:
    """python -m emulators.gitlab --port N: serve the seeded demo data until killed."""
    parser = argparse.ArgumentParser(prog="python -m emulators.gitlab",
                                     description="A local GitLab REST API v4 emulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default="glpat-test")
    parser.add_argument("--no-seed", action="store_true", help="start with no projects")
    parser.add_argument("--auto", action="store_true", help="auto-advance new pipelines")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.token, not args.no_seed, args.auto))

