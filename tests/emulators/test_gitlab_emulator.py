"""Tests of the GitLab emulator through the real python-gitlab client."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import gitlab
import pytest
from aiohttp import web

from emulators.gitlab import GitLabEmulator, JobSpec, iso

TOKEN = "glpat-test"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


class ManualClock:
    """A clock the test moves by hand, so timestamps are exact."""

    def __init__(self) -> None:
        """Start at a fixed instant."""
        self.now = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        """The current fake time."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> ManualClock:
    """Time under the test's control."""
    return ManualClock()


@pytest.fixture
async def emu(clock: ManualClock) -> AsyncIterator[GitLabEmulator]:
    """A started emulator with the demo projects."""
    async with GitLabEmulator(TOKEN, clock=clock) as emulator:
        emulator.seed_demo()
        yield emulator


@pytest.fixture
def gl(emu: GitLabEmulator) -> gitlab.Gitlab:
    """A python-gitlab client configured as the app configures it."""
    return gitlab.Gitlab(emu.url, private_token=TOKEN, retry_transient_errors=True)


async def run(fn: Callable[[], T]) -> T:
    """Run blocking python-gitlab code off the event loop the emulator serves on."""
    return await asyncio.to_thread(fn)


def deploy_vars(env: str = "production") -> list[dict[str, str]]:
    """The variables the bot sends with a deploy pipeline."""
    return [{"key": "RELEASE_ID", "value": "REL-7"}, {"key": "DEPLOY_ENV", "value": env},
            {"key": "ROLLBACK", "value": "false"}]


async def test_project_by_path_and_by_id(emu: GitLabEmulator, gl: gitlab.Gitlab) -> None:
    by_path = await run(lambda: gl.projects.get("acme/payments"))
    by_id = await run(lambda: gl.projects.get(2))
    assert (by_path.id, by_path.path_with_namespace, by_path.default_branch) == (
        1, "acme/payments", "main")
    assert by_path.web_url == f"{emu.url}/acme/payments"
    assert (by_id.name, by_id.path_with_namespace) == ("web", "acme/web")
    with pytest.raises(gitlab.GitlabGetError) as err:
        await run(lambda: gl.projects.get("acme/nope"))
    assert err.value.response_code == 404
    assert err.value.error_message == "404 Project Not Found"
    assert emu.count("/projects/1") == 1  # the path spelling counts as project 1 too
    assert emu.calls[-1].status == 404


async def test_create_pipeline_and_read_variables(emu: GitLabEmulator, gl: gitlab.Gitlab) -> None:
    project = gl.projects.get("acme/payments", lazy=True)
    pipeline = await run(lambda: project.pipelines.create(
        {"ref": "v1.1.0", "variables": deploy_vars()}))
    assert (pipeline.status, pipeline.source, pipeline.ref, pipeline.tag) == (
        "created", "api", "v1.1.0", True)
    assert pipeline.sha == emu.projects[1].tags["v1.1.0"].sha
    variables = await run(lambda: pipeline.variables.list(get_all=True))
    assert {v.key: v.value for v in variables}["DEPLOY_ENV"] == "production"
    assert variables[0].variable_type == "env_var"
    jobs = await run(lambda: pipeline.jobs.list(get_all=True))
    assert [(j.name, j.stage, j.status) for j in jobs] == [
        ("build", "build", "created"), ("test", "test", "created"),
        ("deploy:production", "deploy", "created")]
    with pytest.raises(gitlab.GitlabCreateError) as err:
        await run(lambda: project.pipelines.create({"ref": "no-such-branch"}))
    assert (err.value.response_code, err.value.error_message) == (
        400, {"base": ["Reference not found"]})


async def test_list_updated_after_and_three_pages(
    emu: GitLabEmulator, gl: gitlab.Gitlab, clock: ManualClock,
) -> None:
    ids = []
    for _ in range(5):
        ids.append(emu.create_pipeline(1, "main", deploy_vars("staging")).id)
        clock.advance(10)
    cursor = iso(emu.pipelines[ids[2]].updated_at)
    project = gl.projects.get(1, lazy=True)
    recent = await run(lambda: project.pipelines.list(updated_after=cursor, get_all=True))
    assert [p.id for p in recent] == [ids[4], ids[3], ids[2]]  # inclusive, newest first
    emu.reset_calls()
    pages = await run(lambda: project.pipelines.list(iterator=True, per_page=2, sort="asc"))
    assert (pages.total, pages.total_pages, pages.per_page) == (5, 3, 2)
    assert [p.id for p in await run(lambda: list(pages))] == ids
    assert emu.count("/projects/1/pipelines", method="GET") == 3
    assert emu.calls[-1].query == {"page": "3", "per_page": "2", "sort": "asc"}


async def test_set_status_moves_jobs_and_records_deployment(
    emu: GitLabEmulator, gl: gitlab.Gitlab, clock: ManualClock,
) -> None:
    pipeline_id = emu.create_pipeline("acme/payments", "main", deploy_vars()).id
    clock.advance(5)
    emu.set_status(pipeline_id, "running")
    clock.advance(60)
    emu.set_status(pipeline_id, "success")
    project = gl.projects.get(1, lazy=True)
    pipeline = await run(lambda: project.pipelines.get(pipeline_id))
    assert (pipeline.status, pipeline.duration, pipeline.queued_duration) == ("success", 60, 5)
    assert pipeline.finished_at == iso(clock.now)
    assert pipeline.detailed_status["label"] == "passed"
    job = (await run(lambda: pipeline.jobs.list(get_all=True)))[0]
    assert (job.status, job.duration, job.pipeline["id"]) == ("success", 60.0, pipeline_id)
    deployments = await run(lambda: project.deployments.list(
        environment="production", status="success", order_by="id", sort="desc", get_all=True))
    assert len(deployments) == 1
    assert deployments[0].environment["name"] == "production"
    assert deployments[0].deployable["pipeline"]["id"] == pipeline_id
    assert deployments[0].sha == pipeline.sha
    environments = await run(lambda: project.environments.list(get_all=True))
    assert [(e.name, e.tier) for e in environments] == [("production", "production")]


async def test_failed_job_cancel_and_retry(emu: GitLabEmulator, gl: gitlab.Gitlab) -> None:
    pipeline_id = emu.create_pipeline(1, "main", deploy_vars()).id
    emu.set_status(pipeline_id, "running")
    emu.set_status(pipeline_id, "failed", failed_job="deploy")
    project = gl.projects.get(1, lazy=True)
    pipeline = await run(lambda: project.pipelines.get(pipeline_id))
    failed = (await run(lambda: pipeline.jobs.list(get_all=True)))[-1]
    assert (pipeline.status, failed.status, failed.failure_reason) == (
        "failed", "failed", "script_failure")
    await run(pipeline.retry)
    jobs = await run(lambda: pipeline.jobs.list(get_all=True))
    assert [(j.name, j.status) for j in jobs] == [
        ("build", "success"), ("test", "success"), ("deploy:production", "pending")]
    assert jobs[-1].id != failed.id
    await run(pipeline.cancel)
    assert emu.pipelines[pipeline_id].status == "canceled"
    statuses = [d.status for d in emu.projects[1].deployments]
    assert statuses == ["failed", "canceled"]  # one deployment per deploy-job run


async def test_manual_job_play(emu: GitLabEmulator, gl: gitlab.Gitlab) -> None:
    emu.add_project("acme/ops", id=9, manual_deploy=True,
                    jobs=[JobSpec("deploy", "deploy", deploys=True)])
    emu.add_commit(9, title="Initial commit")
    pipeline = emu.create_pipeline(9, "main", deploy_vars())
    job_id = pipeline.jobs[0].id
    assert (pipeline.status, pipeline.jobs[0].status) == ("manual", "manual")
    job = gl.projects.get(9, lazy=True).jobs.get(job_id, lazy=True)
    await run(job.play)
    assert (pipeline.status, pipeline.jobs[0].status) == ("pending", "pending")
    with pytest.raises(gitlab.GitlabJobPlayError):
        await run(job.play)


async def test_compare_between_tags(emu: GitLabEmulator, gl: gitlab.Gitlab) -> None:
    project = gl.projects.get("acme/payments", lazy=True)
    result = await run(lambda: project.repository_compare("v1.0.0", "v1.1.0"))
    assert [c["title"] for c in result["commits"]] == [
        "Add refunds API", "Merge branch 'feature/refunds' into 'main'",
        "Fix rounding in currency conversion", "Merge branch 'fix/rounding' into 'main'",
    ]
    assert result["commit"]["id"] == emu.projects[1].tags["v1.1.0"].sha
    assert (result["diffs"], result["compare_timeout"], result["compare_same_ref"]) == (
        [], False, False)
    same = await run(lambda: project.repository_compare("v1.1.0", "release"))
    assert (same["commits"], same["compare_same_ref"]) == ([], True)
    base = await run(lambda: project.repository_merge_base(["main", "v1.0.0"]))
    assert base["id"] == emu.projects[1].tags["v1.0.0"].sha


async def test_merge_requests_for_a_commit(emu: GitLabEmulator, gl: gitlab.Gitlab) -> None:
    project = gl.projects.get(1, lazy=True)
    merged = await run(lambda: project.mergerequests.list(state="merged", get_all=True))
    assert [mr.iid for mr in merged] == [3, 2, 1]
    mr = next(m for m in merged if m.iid == 1)
    commit = project.commits.get(mr.merge_commit_sha, lazy=True)
    found = await run(commit.merge_requests)
    assert [(m["iid"], m["title"], m["author"]["username"]) for m in found] == [
        (1, "Add refunds API", "bob")]
    refs = await run(lambda: commit.refs("tag"))
    assert [r["name"] for r in refs] == ["v1.1.0"]


async def test_releases_create_and_duplicate(emu: GitLabEmulator, gl: gitlab.Gitlab) -> None:
    project = gl.projects.get(1, lazy=True)
    release = await run(lambda: project.releases.create(
        {"tag_name": "v1.2.0", "name": "Payments 1.2.0", "description": "notes", "ref": "main"}))
    assert (release.tag_name, release.name) == ("v1.2.0", "Payments 1.2.0")
    assert emu.projects[1].tags["v1.2.0"].sha == emu.projects[1].branches["main"]
    with pytest.raises(gitlab.GitlabCreateError) as err:
        await run(lambda: project.releases.create({"tag_name": "v1.2.0", "ref": "main"}))
    assert (err.value.response_code, err.value.error_message) == (409, "Release already exists")
    fetched = await run(lambda: project.releases.get("v1.2.0"))
    assert fetched.description == "notes"


async def test_transient_500_is_retried(emu: GitLabEmulator, gl: gitlab.Gitlab) -> None:
    emu.fail(times=1, status=500, path_prefix="/projects/1/pipelines")
    pipelines = await run(lambda: gl.projects.get(1, lazy=True).pipelines.list(get_all=True))
    assert pipelines == []
    assert [c.status for c in emu.calls] == [500, 200]


async def test_429_retry_after_is_waited_on(emu: GitLabEmulator, gl: gitlab.Gitlab) -> None:
    emu.fail(times=1, status=429, retry_after=1)
    started = time.monotonic()
    user = await run(lambda: gl.http_get("/user"))
    assert user["username"] == "releasebot"
    assert time.monotonic() - started >= 1.0
    assert [c.status for c in emu.calls] == [429, 200]


async def test_wrong_token_is_refused(emu: GitLabEmulator) -> None:
    client = gitlab.Gitlab(emu.url, private_token="glpat-wrong")
    with pytest.raises(gitlab.GitlabAuthenticationError) as err:
        await run(client.auth)
    assert err.value.error_message == "401 Unauthorized"


async def test_unknown_route_is_404(emu: GitLabEmulator, gl: gitlab.Gitlab) -> None:
    with pytest.raises(gitlab.GitlabHttpError) as err:
        await run(lambda: gl.http_get("/projects/1/wikis"))
    assert (err.value.response_code, err.value.error_message) == (404, "404 Not Found")


class Receiver:
    """A tiny webhook receiver that records what it gets."""

    def __init__(self) -> None:
        """No deliveries yet."""
        self.got: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        """Record the delivery and answer 200."""
        self.got.append((dict(request.headers), await request.json()))
        self.arrived.set()
        return web.json_response({"ok": True})


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    """A running receiver and its URL."""
    recv = Receiver()
    app = web.Application()
    app.router.add_post("/gitlab/webhook", recv.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield recv, f"http://127.0.0.1:{port}/gitlab/webhook"
    await runner.cleanup()


async def test_send_pipeline_hook(emu: GitLabEmulator, receiver: tuple[Receiver, str]) -> None:
    recv, url = receiver
    pipeline_id = emu.create_pipeline(1, "main", deploy_vars()).id
    emu.set_status(pipeline_id, "running")
    emu.set_status(pipeline_id, "success")
    status = await emu.send_pipeline_hook(url, "s3cret", pipeline_id, idempotency_key="key-1",
                                          event_uuid="uuid-1")
    assert status == 200
    headers, body = recv.got[0]
    assert headers["X-Gitlab-Event"] == "Pipeline Hook"
    assert headers["X-Gitlab-Token"] == "s3cret"
    assert (headers["Idempotency-Key"], headers["X-Gitlab-Event-UUID"]) == ("key-1", "uuid-1")
    assert headers["X-Gitlab-Instance"] == emu.url
    assert headers["User-Agent"].startswith("GitLab/")
    attrs = body["object_attributes"]
    assert body["object_kind"] == "pipeline" and body["merge_request"] is None
    assert (attrs["id"], attrs["status"], attrs["detailed_status"]) == (
        pipeline_id, "success", "passed")
    assert attrs["url"] == f"{emu.url}/acme/payments/-/pipelines/{pipeline_id}"
    assert attrs["finished_at"].endswith(" UTC")  # hooks use GitLab's non-ISO time format
    assert {"key": "DEPLOY_ENV", "value": "production"} in attrs["variables"]
    assert body["project"]["path_with_namespace"] == "acme/payments"
    build = body["builds"][-1]
    assert (build["name"], build["status"], build["environment"]) == (
        "deploy:production", "success",
        {"name": "production", "action": "start", "deployment_tier": "production"})
    assert emu.hook_deliveries[0].http_status == 200


async def test_registered_hook_pushes_every_change(
    emu: GitLabEmulator, receiver: tuple[Receiver, str],
) -> None:
    recv, url = receiver
    emu.register_hook(url, "s3cret")
    pipeline_id = emu.create_pipeline(1, "main", deploy_vars()).id
    emu.set_status(pipeline_id, "running")
    emu.set_status(pipeline_id, "failed")
    await asyncio.wait_for(emu.drain_hooks(), 5)
    assert [body["object_attributes"]["status"] for _, body in recv.got] == [
        "created", "running", "failed"]
    assert len({headers["Idempotency-Key"] for headers, _ in recv.got}) == 3


async def test_auto_advance_reaches_success(emu: GitLabEmulator, gl: gitlab.Gitlab) -> None:
    emu.auto_advance(every=0.05, fail_envs={"staging"})
    project = gl.projects.get(1, lazy=True)
    good = await run(lambda: project.pipelines.create({"ref": "main",
                                                       "variables": deploy_vars()}))
    bad = await run(lambda: project.pipelines.create({"ref": "main",
                                                      "variables": deploy_vars("staging")}))
    for _ in range(100):
        if emu.pipelines[bad.id].status in ("success", "failed") and \
                emu.pipelines[good.id].status in ("success", "failed"):
            break
        await asyncio.sleep(0.02)
    assert (await run(lambda: project.pipelines.get(good.id))).status == "success"
    assert emu.pipelines[bad.id].status == "failed"


async def test_control_endpoints(emu: GitLabEmulator, gl: gitlab.Gitlab) -> None:
    pipeline_id = emu.create_pipeline(1, "main", deploy_vars()).id
    async with aiohttp.ClientSession(emu.url) as http:
        async with http.post(f"/_emulator/pipeline/{pipeline_id}/status",
                             json={"status": "failed", "failed_job": "deploy:production"}) as r:
            assert (r.status, (await r.json())["status"]) == (200, "failed")
        async with http.post("/_emulator/fault", json={"status": 503, "times": 1}) as r:
            assert r.status == 200
        await run(lambda: gl.projects.get(1))
        async with http.get("/_emulator/calls") as r:
            assert [c["status"] for c in await r.json()] == [503, 200]
        async with http.get("/_emulator/pipelines") as r:
            assert [[j["status"] for j in p["jobs"]] for p in await r.json()] == [
                ["success", "success", "failed"]]
        async with http.post("/_emulator/reset") as r:
            assert r.status == 200
    assert emu.calls == []


async def test_standalone_process_serves_seeded_data() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "emulators.gitlab", "--port", "0", cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        url = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()
        client = gitlab.Gitlab(url, private_token=TOKEN)
        project = await run(lambda: client.projects.get("acme/web"))
        assert project.id == 2
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
