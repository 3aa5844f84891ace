"""The emulator does what GitLab does where a release bot could be fooled (via python-gitlab)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import gitlab
import pytest

from emulators.gitlab import (
    DEVELOPER,
    MAINTAINER,
    OWNER,
    PIPELINE_STATUSES,
    GitLabEmulator,
    JobSpec,
    View,
)
from tests.emulators.test_gitlab_emulator import TOKEN, deploy_vars, run

RELEASE_JOBS = [JobSpec("build", "build"), JobSpec("lint", "test", allow_failure=True),
                JobSpec("test", "test"), JobSpec("deploy", "deploy", deploys=True)]


@pytest.fixture
async def emu() -> AsyncIterator[GitLabEmulator]:
    """A started emulator with the demo projects (acme/payments is 1, acme/web is 2)."""
    async with GitLabEmulator(TOKEN) as emulator:
        emulator.seed_demo()
        yield emulator


@pytest.fixture
def gl(emu: GitLabEmulator) -> gitlab.Gitlab:
    """A python-gitlab client with the emulator's token."""
    return gitlab.Gitlab(emu.url, private_token=TOKEN)


async def refused(call: Callable[[], Any]) -> tuple[int, Any]:
    """The status and message of a call GitLab refuses."""
    with pytest.raises(gitlab.GitlabError) as err:
        await run(call)
    return err.value.response_code or 0, err.value.error_message


# ---------------------------------------------------------------- branches that move


async def test_push_moves_the_branch_past_a_pinned_commit(
    emu: GitLabEmulator, gl: gitlab.Gitlab,
) -> None:
    project = gl.projects.get(1, lazy=True)
    pinned = (await run(lambda: project.branches.get("release"))).commit["id"]
    pushed = emu.push(1, "release", title="Late fix", files={"app.py": "print(2)\n"})
    assert pushed.parent_ids == [pinned]
    assert (await run(lambda: project.branches.get("release"))).commit["id"] == pushed.sha
    newer = await run(lambda: project.repository_compare(pinned, "release"))
    assert [c["title"] for c in newer["commits"]] == ["Late fix"]
    with pytest.raises(ValueError):
        emu.push(1, "no-such-branch", title="x")


async def test_push_control_endpoint(emu: GitLabEmulator) -> None:
    async with aiohttp.ClientSession(emu.url) as http:
        async with http.post("/_emulator/push", json={
                "project": "acme/web", "branch": "main", "title": "Hotfix", "pipeline": True}) as r:
            assert r.status == 201
            body = await r.json()
        async with http.post("/_emulator/push", json={
                "project": "acme/web", "branch": "nope", "title": "x"}) as r:
            assert r.status == 400
    assert emu.projects[2].branches["main"] == body["id"]
    (pipeline,) = emu.pipelines_for(2)
    assert (pipeline.source, pipeline.sha, pipeline.variables) == ("push", body["id"], [])


# ---------------------------------------------------------------- tags


async def test_create_tag_and_its_refusals(emu: GitLabEmulator, gl: gitlab.Gitlab) -> None:
    project = gl.projects.get(1, lazy=True)
    head = emu.projects[1].branches["main"]
    tag = await run(lambda: project.tags.create({"tag_name": "release/REL-1", "ref": head}))
    assert (tag.name, tag.target, tag.commit["id"], tag.protected) == (
        "release/REL-1", head, head, True)  # the sample protects release/* for maintainers
    assert emu.calls[-1].status == 201
    assert await refused(lambda: project.tags.create(
        {"tag_name": "release/REL-1", "ref": "main"})) == (400, "Tag release/REL-1 already exists")
    assert await refused(lambda: project.tags.create(
        {"tag_name": "release/REL-2", "ref": "nope"})) == (400, "Target nope is invalid")
    assert await refused(lambda: project.tags.create(
        {"tag_name": "bad..name", "ref": "main"})) == (400, "Tag name invalid")


async def test_protected_tags_stop_a_developer(emu: GitLabEmulator, gl: gitlab.Gitlab) -> None:
    project = gl.projects.get(1, lazy=True)
    rule = await run(lambda: project.protectedtags.create({"name": "hotfix/*"}))
    assert rule.create_access_levels[0]["access_level"] == MAINTAINER
    assert rule.create_access_levels[0]["access_level_description"] == "Maintainers"
    listed = await run(lambda: project.protectedtags.list(get_all=True))
    assert [r.name for r in listed] == ["release/*", "hotfix/*"]
    emu.set_access_level(1, "releasebot", DEVELOPER)
    member = await run(lambda: project.members_all.get(emu.current_user.id))
    assert member.access_level == DEVELOPER
    assert await refused(lambda: project.tags.create({"tag_name": "release/REL-9", "ref": "main"})
                         ) == (400, "You are not allowed to create this tag as it is protected.")
    assert (await run(lambda: project.tags.create({"tag_name": "v9", "ref": "main"}))).name == "v9"
    assert await refused(lambda: project.protectedtags.create({"name": "v*"})) == (
        403, "403 Forbidden")
    # Reading the rules is a maintainer's right too (read_protected_tags).
    assert await refused(lambda: project.protectedtags.list(get_all=True)) == (
        403, "403 Forbidden")


async def test_a_protected_tag_may_allow_one_user(emu: GitLabEmulator, gl: gitlab.Gitlab) -> None:
    """A user entry lets that developer create; it reads as access level 40 with a user_id."""
    emu.protect_tag(1, "deploy/*", 0, users=["releasebot"])
    emu.set_access_level(1, "releasebot", DEVELOPER)
    project = gl.projects.get(1, lazy=True)
    assert (await run(lambda: project.tags.create({"tag_name": "deploy/1", "ref": "main"}))
            ).name == "deploy/1"
    emu.set_access_level(1, "releasebot", MAINTAINER)
    rule = await run(lambda: project.protectedtags.get("deploy/*"))
    assert [(a["access_level"], a["user_id"], a["access_level_description"])
            for a in rule.create_access_levels] == [
        (0, None, "No one"), (MAINTAINER, emu.current_user.id, "ReleaseBot")]
    emu.set_access_level(1, "someone", DEVELOPER)
    emu.current_user = emu.user("someone")
    assert (await refused(lambda: project.tags.create({"tag_name": "deploy/2", "ref": "main"}))
            )[0] == 400


async def test_a_pipeline_on_a_protected_tag_needs_the_right_to_create_it(
    emu: GitLabEmulator, gl: gitlab.Gitlab,
) -> None:
    emu.add_tag(1, "release/REL-1", "main")  # release/* is protected for maintainers
    emu.set_access_level(1, "releasebot", DEVELOPER)
    project = gl.projects.get(1, lazy=True)
    code, message = await refused(lambda: project.pipelines.create({"ref": "release/REL-1"}))
    assert (code, message["base"][0].split(".")[0]) == (
        400, "You do not have sufficient permission to run a pipeline on 'release/REL-1'")


# ---------------------------------------------------------------- stages and jobs


async def test_failing_a_stage_skips_the_later_ones(emu: GitLabEmulator, gl: gitlab.Gitlab) -> None:
    pipeline_id = emu.create_pipeline(1, "main", deploy_vars()).id
    emu.set_status(pipeline_id, "running")
    emu.set_status(pipeline_id, "failed", failed_job="test")
    pipeline = gl.projects.get(1, lazy=True).pipelines.get(pipeline_id, lazy=True)
    jobs = await run(lambda: pipeline.jobs.list(get_all=True))
    assert [(j.stage, j.status) for j in jobs] == [
        ("build", "success"), ("test", "failed"), ("deploy", "skipped")]
    assert emu.pipelines[pipeline_id].status == "failed"
    assert emu.projects[1].deployments[-1].status == "skipped"


async def test_hook_builds_carry_every_stage_and_each_failed_job(emu: GitLabEmulator) -> None:
    emu.add_project("acme/api", id=5, jobs=RELEASE_JOBS)
    emu.add_commit(5, title="Initial commit")
    pipeline = emu.create_pipeline(5, "main", deploy_vars())
    emu.set_status(pipeline.id, "failed", failed_job=["lint", "deploy"])
    body = View(emu.base_url).pipeline_hook(pipeline)
    assert body["object_attributes"]["stages"] == ["build", "test", "deploy"]
    assert [(b["name"], b["stage"], b["status"], b["allow_failure"]) for b in body["builds"]] == [
        ("build", "build", "success", False), ("lint", "test", "failed", True),
        ("test", "test", "success", False), ("deploy:production", "deploy", "failed", False)]
    with pytest.raises(ValueError, match="allow_failure"):
        emu.set_status(emu.create_pipeline(5, "main").id, "failed", failed_job=["build", "deploy"])


# ---------------------------------------------------------------- every status


@pytest.mark.parametrize("status", [s for s in PIPELINE_STATUSES
                                    if s not in ("manual", "scheduled")])
async def test_every_pipeline_status_reads_back(
    emu: GitLabEmulator, gl: gitlab.Gitlab, status: str,
) -> None:
    pipeline_id = emu.create_pipeline(1, "main", deploy_vars()).id
    emu.set_status(pipeline_id, status)
    fetched = await run(lambda: gl.projects.get(1, lazy=True).pipelines.get(pipeline_id))
    assert (fetched.status, fetched.detailed_status["group"]) == (
        status, status.replace("_", "-"))


async def test_a_pipeline_blocked_on_a_manual_deploy_reports_manual_and_cancel_leaves_it(
    emu: GitLabEmulator, gl: gitlab.Gitlab,
) -> None:
    emu.add_project("acme/ops", id=9, manual_deploy=True)
    emu.add_commit(9, title="Initial commit")
    pipeline_id = emu.create_pipeline(9, "main", deploy_vars()).id
    emu.set_status(pipeline_id, "manual")
    assert [j.status for j in emu.pipelines[pipeline_id].jobs] == ["success", "success", "manual"]
    pipeline = await run(lambda: gl.projects.get(9, lazy=True).pipelines.get(pipeline_id))
    await run(pipeline.cancel)  # GitLab cancels no manual job: nothing here is cancelable
    assert emu.pipelines[pipeline_id].status == "manual"
    assert emu.projects[9].deployments[-1].status == "blocked"


async def test_a_delayed_deploy_shows_scheduled_and_cancel_cancels_it(
    emu: GitLabEmulator, gl: gitlab.Gitlab,
) -> None:
    emu.add_project("acme/later", id=7, jobs=[
        JobSpec("build", "build"), JobSpec("deploy", "deploy", True, "delayed")])
    emu.add_commit(7, title="Initial commit")
    pipeline_id = emu.create_pipeline(7, "main", deploy_vars()).id
    emu.set_status(pipeline_id, "scheduled")
    assert [j.status for j in emu.pipelines[pipeline_id].jobs] == ["success", "scheduled"]
    with pytest.raises(ValueError, match="no delayed job"):
        emu.set_status(emu.create_pipeline(1, "main", deploy_vars()).id, "scheduled")
    pipeline = await run(lambda: gl.projects.get(7, lazy=True).pipelines.get(pipeline_id))
    assert (pipeline.status, pipeline.detailed_status["group"]) == ("scheduled", "scheduled")
    await run(pipeline.cancel)  # unlike a manual job, a delayed one is cancelable
    assert emu.pipelines[pipeline_id].status == "canceled"


async def test_a_project_can_switch_to_a_manual_deploy(emu: GitLabEmulator) -> None:
    emu.set_jobs(1, manual_deploy=True)
    pipeline = emu.create_pipeline(1, "main", deploy_vars())
    emu.set_status(pipeline.id, "manual")
    assert [(j.stage, j.status) for j in pipeline.jobs] == [
        ("build", "success"), ("test", "success"), ("deploy", "manual")]


async def test_an_optional_manual_deploy_lets_the_pipeline_pass(emu: GitLabEmulator) -> None:
    emu.add_project("acme/opt", id=8, jobs=[
        JobSpec("build", "build"), JobSpec("deploy", "deploy", True, "manual", True)])
    emu.add_commit(8, title="Initial commit")
    pipeline = emu.create_pipeline(8, "main", deploy_vars())
    emu.set_job_status(pipeline.id, "build", "success")
    emu.set_job_status(pipeline.id, "deploy", "manual")
    assert pipeline.status == "success"  # GitLab's when: manual defaults to allow_failure
    with pytest.raises(ValueError, match="blocking manual"):
        emu.set_status(pipeline.id, "manual")


async def test_cancel_passes_canceling_then_canceled_and_leaves_a_finished_one(
    emu: GitLabEmulator, gl: gitlab.Gitlab,
) -> None:
    emu.canceling_seconds = None
    project = gl.projects.get(1, lazy=True)
    running = emu.create_pipeline(1, "main", deploy_vars()).id
    emu.set_status(running, "running")
    pipeline = project.pipelines.get(running, lazy=True)
    await run(pipeline.cancel)
    assert emu.calls[-1].status == 200  # GitLab answers 200, unlike retry's 201
    assert [j.status for j in emu.pipelines[running].jobs] == ["canceling", "canceled",
                                                               "canceled"]
    assert (await run(lambda: project.pipelines.get(running))).status == "canceling"
    emu.finish_canceling(running)
    assert (await run(lambda: project.pipelines.get(running))).status == "canceled"
    done = emu.create_pipeline(1, "main", deploy_vars()).id
    emu.set_status(done, "success")
    await run(project.pipelines.get(done, lazy=True).cancel)
    assert emu.pipelines[done].status == "success"


async def test_canceling_ends_by_itself(emu: GitLabEmulator) -> None:
    emu.canceling_seconds = 0.01
    pipeline = emu.create_pipeline(1, "main", deploy_vars())
    emu.set_status(pipeline.id, "running")
    emu.cancel_pipeline(pipeline.id)
    assert pipeline.status == "canceling"
    for _ in range(100):
        if pipeline.status == "canceled":
            break
        await asyncio.sleep(0.01)
    assert pipeline.status == "canceled"


async def test_auto_advance_stops_at_a_manual_deploy_until_played(emu: GitLabEmulator) -> None:
    emu.add_project("acme/ops", id=9, manual_deploy=True)
    emu.add_commit(9, title="Initial commit")
    emu.auto_advance(every=0.01)
    pipeline = emu.create_pipeline(9, "main", deploy_vars())
    await until(lambda: pipeline.status == "manual")
    emu.play_job(9, pipeline.jobs[-1].id)
    await until(lambda: pipeline.status == "success")
    assert [j.status for j in pipeline.jobs] == ["success"] * 3


async def until(check: Callable[[], bool]) -> None:
    """Wait up to two seconds for check to hold."""
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


# ---------------------------------------------------------------- pipeline variables


async def test_pipeline_variables_restricted_by_role(
    emu: GitLabEmulator, gl: gitlab.Gitlab,
) -> None:
    project = await run(lambda: gl.projects.get(1))
    assert (project.ci_pipeline_variables_minimum_override_role,
            project.restrict_user_defined_variables) == ("maintainer", True)
    assert project.permissions["project_access"]["access_level"] == MAINTAINER
    emu.set_variables_role(1, "owner")
    assert await refused(lambda: project.pipelines.create(
        {"ref": "release", "variables": deploy_vars()})) == (
        400, {"base": ["Insufficient permissions to set pipeline variables"]})
    assert (await run(lambda: project.pipelines.create({"ref": "release"}))).status == "created"
    emu.set_access_level(1, "releasebot", OWNER)
    assert (await run(lambda: project.pipelines.create(
        {"ref": "release", "variables": deploy_vars()}))).status == "created"
    emu.set_variables_role(1, "no_one_allowed")
    assert (await refused(lambda: project.pipelines.create(
        {"ref": "release", "variables": deploy_vars()})))[0] == 400
    emu.set_access_level(1, "releasebot", DEVELOPER)
    as_developer = await run(lambda: gl.projects.get(1))
    assert "ci_pipeline_variables_minimum_override_role" not in as_developer.attributes


# ---------------------------------------------------------------- environments


async def test_environment_last_deployment_and_protection(
    emu: GitLabEmulator, gl: gitlab.Gitlab,
) -> None:
    good = emu.create_pipeline(1, "v1.0.0", deploy_vars()).id
    emu.set_status(good, "success")
    emu.set_status(emu.create_pipeline(1, "v1.1.0", deploy_vars()).id, "failed")
    emu.protect_environment(1, "production", MAINTAINER)
    project = gl.projects.get(1, lazy=True)
    env_id = emu.projects[1].environments["production"].id
    env = await run(lambda: project.environments.get(env_id))
    last = env.last_deployment
    assert (last["sha"], last["ref"], last["status"]) == (
        emu.projects[1].tags["v1.0.0"].sha, "v1.0.0", "success")
    assert (last["deployable"]["name"], last["deployable"]["pipeline"]["id"]) == (
        "deploy:production", good)
    protected = await run(lambda: project.protected_environments.list(get_all=True))
    assert [(p.name, p.deploy_access_levels[0]["access_level"]) for p in protected] == [
        ("production", MAINTAINER)]
    emu.set_access_level(1, "releasebot", DEVELOPER)
    assert (await refused(lambda: project.protected_environments.list(get_all=True)))[0] == 403


async def test_deployments_refuse_the_queries_gitlab_refuses(
    emu: GitLabEmulator, gl: gitlab.Gitlab,
) -> None:
    """DeploymentsFinder's pairing rules: finished_at filters need finished_at sorting and
    status=success, and never come with updated_at filters; what the bot asks passes."""
    emu.set_status(emu.create_pipeline(1, "v1.0.0", deploy_vars()).id, "success")
    project = gl.projects.get(1, lazy=True)
    since = "2020-01-01T00:00:00Z"
    for bad, problem in (
            ({"order_by": "finished_at"}, "`finished_at` filter and `finished_at` sorting"),
            ({"finished_after": since, "status": "success"}, "must be paired"),
            ({"finished_after": since, "order_by": "finished_at"}, "with `success` status"),
            ({"finished_after": since, "updated_after": since, "order_by": "finished_at",
              "status": "success"}, "can not be specified")):
        code, message = await refused(lambda q=bad: project.deployments.list(**q))
        assert code == 400 and message.startswith("400 Bad request - ") and problem in message
    done = await run(lambda: project.deployments.list(
        finished_after=since, order_by="finished_at", status="success", get_all=False))
    bots = await run(lambda: project.deployments.list(
        environment="production", status="success", order_by="id", sort="desc", per_page=1,
        get_all=False))
    assert [d.ref for d in done] == [d.ref for d in bots] == ["v1.0.0"]


# ---------------------------------------------------------------- compare


async def test_compare_returns_real_diffs(emu: GitLabEmulator, gl: gitlab.Gitlab) -> None:
    base = emu.push(2, "main", title="Add config", files={"app.cfg": "a=1\nb=2\n",
                                                          "old.txt": "gone\n"})
    emu.push(2, "main", title="Tune config", files={"app.cfg": "a=1\nb=3\n", "old.txt": None,
                                                    "new.txt": "hello\n"})
    result = await run(lambda: gl.projects.get(2, lazy=True).repository_compare(base.sha, "main"))
    diffs = {d["new_path"]: d for d in result["diffs"]}
    assert diffs["app.cfg"]["diff"] == "@@ -1,2 +1,2 @@\n a=1\n-b=2\n+b=3\n"
    assert (diffs["new.txt"]["new_file"], diffs["new.txt"]["diff"]) == (
        True, "@@ -0,0 +1 @@\n+hello\n")
    assert (diffs["old.txt"]["deleted_file"], diffs["old.txt"]["b_mode"]) == (True, "0")
    assert [c["title"] for c in result["commits"]] == ["Tune config"]


# ---------------------------------------------------------------- projects


async def test_project_paths_are_case_insensitive_and_follow_renames(
    emu: GitLabEmulator, gl: gitlab.Gitlab,
) -> None:
    """A GET by the old path is redirected to the id (python-gitlab follows it)."""
    assert (await run(lambda: gl.projects.get("ACME/Payments"))).id == 1
    emu.rename_project(1, "acme/billing")
    renamed = await run(lambda: gl.projects.get("acme/payments"))
    assert (renamed.id, renamed.path_with_namespace) == (1, "acme/billing")
    assert (await run(lambda: gl.projects.get(1))).path_with_namespace == "acme/billing"
    assert (await refused(lambda: gl.projects.get("payments")))[0] == 404
    emu.set_access_level(2, "releasebot", None)
    assert await refused(lambda: gl.projects.get(2)) == (404, "404 Project Not Found")


async def test_a_moved_project_redirects_gets_and_refuses_writes(emu: GitLabEmulator) -> None:
    """find_project!: 301 to /projects/:id for GET, 405 for POST, by the old path only."""
    emu.rename_project("acme/payments", "acme/billing")
    headers = {"PRIVATE-TOKEN": TOKEN}
    api = f"{emu.url}/api/v4/projects"
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"{api}/acme%2Fpayments/pipelines?per_page=5",
                            allow_redirects=False) as resp:
            assert resp.status == 301
            assert resp.headers["Location"] == f"{api}/1/pipelines?per_page=5"
            assert "moved permanently" in await resp.text()
        async with http.post(f"{api}/acme%2Fpayments/pipeline", json={"ref": "main"}) as resp:
            assert (resp.status, await resp.json()) == (
                405, {"message": "Non GET methods are not allowed for moved projects"})
        async with http.post(f"{api}/acme%2Fbilling/pipeline", json={"ref": "release"}) as resp:
            assert resp.status == 201
        emu.redirect_moved_projects = False  # GitLab before API redirects: the old path is gone
        async with http.get(f"{api}/acme%2Fpayments", allow_redirects=False) as resp:
            assert (resp.status, await resp.json()) == (404, {"message": "404 Project Not Found"})
        emu.add_project("acme/payments", id=7)  # a new project takes the old path over
        emu.redirect_moved_projects = True
        async with http.get(f"{api}/acme%2Fpayments") as resp:
            assert (await resp.json())["id"] == 7
        async with http.post(f"{emu.url}/_emulator/rename",
                             json={"project": 7, "path": "acme/payments-old"}) as resp:
            assert (await resp.json())["path_with_namespace"] == "acme/payments-old"


# ---------------------------------------------------------------- pipelines on tags


async def test_a_pipeline_on_a_tag(emu: GitLabEmulator, gl: gitlab.Gitlab) -> None:
    project = gl.projects.get("acme/payments", lazy=True)
    created = await run(lambda: project.pipelines.create({"ref": "v1.0.0"}))
    fetched = await run(lambda: project.pipelines.get(created.id))
    assert (fetched.tag, fetched.ref, fetched.sha, fetched.project_id, fetched.status) == (
        True, "v1.0.0", emu.projects[1].tags["v1.0.0"].sha, 1, "created")
    emu.add_tag(1, "release", "v1.0.0")  # a tag named like the release branch
    assert await refused(lambda: project.pipelines.create({"ref": "release"})) == (
        400, {"base": ["Ref is ambiguous"]})
