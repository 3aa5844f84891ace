"""GitLabClient against the local GitLab emulator."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.gitlab import Commit, GitLabClient, GitLabError, Job, Pipeline
from emulators.gitlab import GitLabEmulator, JobSpec

TOKEN = "glpat-test"
DEPLOY = {"RELEASE_ID": "REL-7", "DEPLOY_ENV": "production"}


@pytest.fixture
async def emu() -> AsyncIterator[GitLabEmulator]:
    """A started emulator with the demo projects."""
    async with GitLabEmulator(TOKEN) as emulator:
        emulator.seed_demo()
        yield emulator


@pytest.fixture
def client(emu: GitLabEmulator) -> GitLabClient:
    """A client with the emulator's token."""
    return GitLabClient(emu.url, TOKEN, timeout=5)


async def test_create_and_get_pipeline_with_variables(
    emu: GitLabEmulator, client: GitLabClient,
) -> None:
    created = await client.create_pipeline("acme/payments", "v1.1.0", DEPLOY)
    assert isinstance(created, Pipeline)
    assert (created.project, created.ref, created.status) == ("acme/payments", "v1.1.0", "created")
    assert created.sha == emu.projects[1].tags["v1.1.0"].sha
    assert created.updated_at is not None and created.updated_at.tzinfo == UTC
    assert emu.pipelines[created.id].variables[1] == {
        "key": "DEPLOY_ENV", "value": "production", "variable_type": "env_var"}
    emu.set_status(created.id, "running")
    emu.set_status(created.id, "success")
    fetched = await client.get_pipeline("acme/payments", created.id)
    assert (fetched.status, fetched.duration) == ("success", 0)
    assert fetched.finished_at is not None
    assert fetched.web_url.endswith(f"/acme/payments/-/pipelines/{created.id}")


async def test_pipelines_updated_since_is_one_request(
    emu: GitLabEmulator, client: GitLabClient,
) -> None:
    old = emu.create_pipeline(1, "main", [])
    cursor = datetime.now(UTC) + timedelta(seconds=1)
    emu.clock = lambda: cursor + timedelta(seconds=5)
    fresh = emu.create_pipeline(1, "main", [])
    emu.set_status(fresh.id, "running")
    await client.project_id("acme/payments")  # learned once per project, then kept
    emu.reset_calls()
    changed = await client.pipelines_updated_since("acme/payments", cursor)
    assert [p.id for p in changed] == [fresh.id]
    assert changed[0].status == "running"
    assert emu.count("/projects/1", method="GET") == 1
    everything = await client.pipelines_updated_since(1, None)
    assert [p.id for p in everything] == [fresh.id, old.id]


@pytest.mark.parametrize("count", [3, 4])  # a part-full last page, and an exactly full one
async def test_pipelines_updated_since_follows_pages_and_stops_at_the_last(
    emu: GitLabEmulator, client: GitLabClient, count: int,
) -> None:
    ids = [emu.create_pipeline(1, "main", []).id for _ in range(count)]
    since = datetime.now(UTC) - timedelta(minutes=1)
    emu.reset_calls()
    changed = await client.pipelines_updated_since(1, since, per_page=2)
    assert sorted(p.id for p in changed) == ids
    assert emu.count("/projects/1/pipelines", method="GET") == 2  # no empty third page


async def test_failed_job(emu: GitLabEmulator, client: GitLabClient) -> None:
    pipeline = emu.create_pipeline(1, "main", [{"key": "DEPLOY_ENV", "value": "staging"}])
    assert await client.failed_job(1, pipeline.id) is None
    emu.set_status(pipeline.id, "running")
    emu.set_status(pipeline.id, "failed", failed_job="deploy:staging")
    job = await client.failed_job("acme/payments", pipeline.id)
    assert isinstance(job, Job)
    assert (job.name, job.stage, job.status, job.failure_reason) == (
        "deploy:staging", "deploy", "failed", "script_failure")


async def test_the_failed_job_is_the_latest_stage_s(emu: GitLabEmulator,
                                                    client: GitLabClient) -> None:
    """A job allowed to fail earlier is not what failed the pipeline: the deploy job is."""
    emu.add_project("acme/lint", id=9, jobs=[
        JobSpec("lint", "test", allow_failure=True), JobSpec("deploy", "deploy", deploys=True)])
    emu.add_commit("acme/lint", title="Initial commit")
    pipeline = emu.create_pipeline(9, "main", [{"key": "DEPLOY_ENV", "value": "production"}])
    emu.set_status(pipeline.id, "running")
    emu.set_status(pipeline.id, "failed", failed_job=["lint", "deploy:production"])
    job = await client.failed_job(9, pipeline.id)
    assert job is not None and (job.name, job.stage) == ("deploy:production", "deploy")


async def test_last_deployment(emu: GitLabEmulator, client: GitLabClient) -> None:
    assert await client.last_deployment(1, "production") is None
    done = await client.create_pipeline(1, "v1.0.0", DEPLOY)
    emu.set_status(done.id, "success")
    broken = await client.create_pipeline(1, "v1.1.0", DEPLOY)
    emu.set_status(broken.id, "failed")
    assert await client.last_deployment(1, "production") == (done.sha, "v1.0.0")
    assert await client.last_deployment(1, "staging") is None


async def test_tags_are_made_once_and_read_after(emu: GitLabEmulator,
                                                 client: GitLabClient) -> None:
    """ensure_tag creates a missing tag and reports where an existing one points."""
    sha = await client.resolve(1, "v1.0.0")
    assert await client.ensure_tag(1, "release/REL-7", sha) == sha
    assert emu.projects[1].tags["release/REL-7"].sha == sha
    main = await client.resolve(1, "main")
    assert await client.ensure_tag(1, "release/REL-7", main) == sha  # unchanged, and said so
    assert await client.commits_between(1, sha, "main") > 0


async def test_compare_between_tags(client: GitLabClient) -> None:
    commits = await client.compare("acme/payments", "v1.0.0", "v1.1.0")
    assert [c.title for c in commits] == [
        "Add refunds API", "Merge branch 'feature/refunds' into 'main'",
        "Fix rounding in currency conversion", "Merge branch 'fix/rounding' into 'main'",
    ]
    assert all(c.committed_at is not None and len(c.short_id) == 8 for c in commits)
    assert commits[1].parent_ids == (commits[0].sha,)
    assert await client.compare("acme/payments", "v1.1.0", "release") == []


async def test_recent_commits(client: GitLabClient) -> None:
    commits = await client.recent_commits("acme/web", "main", limit=2)
    assert [c.title for c in commits] == ["Merge branch 'feature/checkout' into 'main'",
                                          "Update footer links"]


async def test_merge_requests_for_commits(emu: GitLabEmulator, client: GitLabClient) -> None:
    commits = await client.compare("acme/payments", "v1.0.0", "v1.1.0")
    emu.reset_calls()
    mrs = await client.merge_requests_for("acme/payments", commits)
    assert [(mr.iid, mr.author, mr.labels) for mr in mrs] == [
        (1, "bob", ("api",)), (2, "carol", ("bug",))]
    assert mrs[0].commit_shas == (commits[0].sha, commits[1].sha)
    assert mrs[0].merged_at is not None and mrs[0].web_url.endswith("/merge_requests/1")
    assert len(emu.calls) == 1  # one listing, nothing looked up commit by commit


async def test_merge_requests_without_dates_look_commits_up(
    emu: GitLabEmulator, client: GitLabClient,
) -> None:
    merge = emu.projects[1].merge_requests[3].merge_commit_sha or ""
    undated = Commit(merge, merge[:8], "Merge", "Bob", "")
    mrs = await client.merge_requests_for(1, [undated])
    assert [mr.iid for mr in mrs] == [3]
    assert await client.merge_requests_for(1, []) == []


async def test_is_ancestor(emu: GitLabEmulator, client: GitLabClient) -> None:
    assert await client.is_ancestor("acme/payments", "v1.0.0", "main") is True
    assert await client.is_ancestor("acme/payments", "main", "release") is False
    release_head = emu.projects[1].branches["release"]
    assert await client.is_ancestor(1, release_head, "main") is True


async def test_default_branch_and_tags(client: GitLabClient) -> None:
    assert await client.default_branch("acme/web") == "main"
    assert await client.tag_exists("acme/web", "v1.1.0") is True
    assert await client.tag_exists("acme/web", "v9.9.9") is False
    with pytest.raises(GitLabError, match="project acme/nope not found"):
        await client.tag_exists("acme/nope", "v1.0.0")


async def test_create_release_and_duplicate(emu: GitLabEmulator, client: GitLabClient) -> None:
    url = await client.create_release("acme/payments", "v1.1.0", "Payments 1.1.0", "notes")
    assert url.endswith("/acme/payments/-/releases/v1.1.0")
    assert emu.projects[1].releases["v1.1.0"].description == "notes"
    with pytest.raises(GitLabError) as err:
        await client.create_release("acme/payments", "v1.1.0", "again", "")
    assert err.value.status == 409
    assert str(err.value) == f"GitLab release v1.1.0 already exists in acme/payments: {url}"
    await client.create_release(1, "v1.2.0", "Payments 1.2.0", "", ref="main")
    assert emu.projects[1].tags["v1.2.0"].sha == emu.projects[1].branches["main"]


async def test_check_returns_username(client: GitLabClient) -> None:
    assert await client.check() == "releasebot"


async def test_wrong_token(emu: GitLabEmulator) -> None:
    client = GitLabClient(emu.url, "glpat-wrong")
    with pytest.raises(GitLabError) as err:
        await client.check()
    assert (err.value.status, str(err.value)) == (401, "GitLab refused the token (401)")
    with pytest.raises(GitLabError, match=r"refused the token \(401\)"):
        await client.get_pipeline(1, 1)


async def test_unknown_project_and_pipeline(client: GitLabClient) -> None:
    with pytest.raises(GitLabError) as err:
        await client.pipelines_updated_since("acme/nope", None)
    assert (err.value.status, str(err.value)) == (404, "GitLab project acme/nope not found")
    with pytest.raises(GitLabError) as err:
        await client.get_pipeline("acme/payments", 999)
    assert str(err.value) == "GitLab pipeline 999 not found in acme/payments"


async def test_bad_ref_is_a_plain_sentence(client: GitLabClient) -> None:
    with pytest.raises(GitLabError) as err:
        await client.create_pipeline("acme/payments", "no-such-branch", {})
    assert err.value.status == 400
    assert str(err.value) == (
        "GitLab rejected the request in acme/payments (400): base: Reference not found")


async def test_500_once_is_retried(emu: GitLabEmulator, client: GitLabClient) -> None:
    emu.fail(times=1, status=500, path_prefix="/projects/1/pipelines")
    assert await client.pipelines_updated_since(1, None) == []
    assert [c.status for c in emu.calls] == [500, 200]


async def test_502_persisting_fails_fast(emu: GitLabEmulator, client: GitLabClient) -> None:
    emu.fail(times=-1, status=502)
    with pytest.raises(GitLabError) as err:
        await client.pipelines_updated_since(1, None)
    assert (err.value.status, str(err.value)) == (502, "GitLab unavailable (502)")
    assert len(emu.calls) == 2


async def test_429_surfaces_at_once_with_retry_after(
    emu: GitLabEmulator, client: GitLabClient,
) -> None:
    emu.fail(times=1, status=429, retry_after=2)
    started = time.monotonic()
    with pytest.raises(GitLabError) as err:
        await client.pipelines_updated_since(1, None)
    assert time.monotonic() - started < 1.5
    assert (err.value.status, err.value.retry_after) == (429, 2.0)
    assert str(err.value) == "GitLab is rate limiting us (429), retry in 2 s"
    assert len(emu.calls) == 1


async def test_429_without_retry_after(emu: GitLabEmulator, client: GitLabClient) -> None:
    emu.fail(times=1, status=429)
    with pytest.raises(GitLabError) as err:
        await client.check()
    assert (err.value.status, err.value.retry_after) == (429, None)
    assert str(err.value) == "GitLab is rate limiting us (429)"


async def test_unreachable_gitlab() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = GitLabClient(f"http://127.0.0.1:{port}", TOKEN, timeout=2)
    with pytest.raises(GitLabError) as err:
        await client.check()
    assert (err.value.status, str(err.value)) == (None, "GitLab can't be reached")


# ---------------------------------------------------------------- project IDs


class DictIds:
    """A ProjectIds kept in a dict, as the database keeps it for every replica."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}

    async def load(self) -> dict[str, int]:
        """Every kept ID."""
        return dict(self.rows)

    async def save(self, path: str, project_id: int) -> int:
        """The first ID kept for a path wins."""
        return self.rows.setdefault(path, project_id)


async def test_a_path_is_looked_up_once_then_calls_go_by_id(
    emu: GitLabEmulator, client: GitLabClient,
) -> None:
    """One GET /projects/:path, then every call names the project by its numeric ID."""
    created = await client.create_pipeline("ACME/Payments", "v1.1.0", DEPLOY)
    await client.get_pipeline("acme/payments", created.id)  # paths ignore case
    assert [(c.method, c.path) for c in emu.calls] == [
        ("GET", "/api/v4/projects/ACME%2FPayments"), ("POST", "/api/v4/projects/1/pipeline"),
        ("GET", f"/api/v4/projects/1/pipelines/{created.id}")]
    assert await client.known_id("acme/payments") == 1 and await client.known_id(7) == 7


async def test_a_renamed_project_keeps_working_by_its_kept_id(emu: GitLabEmulator) -> None:
    """After a rename a new client (another replica) uses the kept ID; the old path is gone."""
    ids = DictIds()
    first = GitLabClient(emu.url, TOKEN, timeout=5, ids=ids)
    assert await first.project_id("acme/payments") == 1
    assert ids.rows == {"acme/payments": 1}
    emu.rename_project(1, "acme/billing")
    emu.redirect_moved_projects = False  # the harshest case: the old path answers 404
    emu.add_project("acme/payments", id=9)  # and another project takes the old path over
    emu.reset_calls()
    second = GitLabClient(emu.url, TOKEN, timeout=5, ids=ids)
    created = await second.create_pipeline("acme/payments", "v1.1.0", DEPLOY)
    assert emu.pipelines[created.id].project.id == 1
    assert (await second.project_settings("acme/payments")).path == "acme/billing"
    assert emu.count("/projects/acme%2Fpayments") == 0
    fresh = GitLabClient(emu.url, TOKEN, timeout=5)  # nothing kept: it learns the new owner
    assert await fresh.project_id("acme/payments") == 9


async def test_a_redirecting_gitlab_teaches_the_id_through_the_old_path(
    emu: GitLabEmulator, client: GitLabClient,
) -> None:
    """GitLab's 301 for a GET by an old path leads to the ID; the write then goes by ID."""
    emu.rename_project(1, "acme/billing")
    created = await client.create_pipeline("acme/payments", "v1.1.0", DEPLOY)
    assert emu.pipelines[created.id].project.id == 1
    assert [(c.method, c.path, c.status) for c in emu.calls] == [
        ("GET", "/api/v4/projects/acme%2Fpayments", 301), ("GET", "/api/v4/projects/1", 200),
        ("POST", "/api/v4/projects/1/pipeline", 201)]
