"""The emulators' bug trackers as their real services answer: GitLab issues (through
python-gitlab) and ZenTao's REST API v1 (over plain HTTP)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import gitlab
import pytest

from emulators.gitlab import GitLabEmulator
from emulators.zentao import LOGIN_FAILED, ZenTaoEmulator
from tests.emulators.test_gitlab_emulator import TOKEN, run


@pytest.fixture
async def emu() -> AsyncIterator[GitLabEmulator]:
    """GitLab with acme/web (id 2) and a few issues."""
    async with GitLabEmulator(TOKEN) as emulator:
        emulator.seed_demo()
        emulator.add_issue("acme/web", "Crash", labels=["severity::A", "bug"], milestone="1.2")
        emulator.add_issue("acme/web", "Typo", labels=["severity::C"], milestone="1.2")
        emulator.add_issue("acme/web", "Idea", milestone="1.3")
        emulator.close_issue("acme/web", emulator.add_issue(
            "acme/web", "Fixed", labels=["severity::B"], milestone="1.2").iid)
        yield emulator


@pytest.fixture
def web(emu: GitLabEmulator) -> Any:
    """acme/web through python-gitlab."""
    return gitlab.Gitlab(emu.url, private_token=TOKEN).projects.get(2, lazy=True)


def titles(rows: list[Any]) -> list[str]:
    """The titles of listed issues."""
    return [row.title for row in rows]


async def test_issues_default_to_every_state_newest_first(web: Any) -> None:
    """GitLab lists opened and closed issues unless told, created_at descending."""
    assert titles(await run(lambda: web.issues.list(get_all=True))) == [
        "Fixed", "Idea", "Typo", "Crash"]


async def test_issues_filter_by_state_milestone_and_every_label(web: Any) -> None:
    """Labels must all be present; a milestone is matched by title; None and Any as GitLab."""
    async def listed(**query: Any) -> list[str]:
        return titles(await run(lambda: web.issues.list(get_all=True, **query)))

    assert await listed(state="opened", milestone="1.2") == ["Typo", "Crash"]
    assert await listed(labels=["severity::A", "bug"]) == ["Crash"]
    assert await listed(labels=["severity::C", "bug"]) == []
    assert await listed(labels="None") == ["Idea"]
    assert await listed(milestone="9.9") == []  # an unknown milestone is no error: no issues
    assert await listed(state="opened", order_by="created_at", sort="asc") == [
        "Crash", "Typo", "Idea"]
    with pytest.raises(gitlab.GitlabListError) as err:
        await listed(state="open")
    assert err.value.response_code == 400


async def test_issue_entity_and_pagination_headers(emu: GitLabEmulator, web: Any) -> None:
    """The entity people follow (web_url, labels, milestone) and GitLab's offset paging."""
    for n in range(25):
        emu.add_issue("acme/web", f"Bulk {n}", labels=["severity::C"], milestone="1.2")
    first = await run(lambda: web.issues.list(state="opened", milestone="1.2", per_page=20,
                                              page=1, get_all=False))
    assert len(first) == 20
    async with aiohttp.ClientSession(headers={"PRIVATE-TOKEN": TOKEN}) as http:
        url = f"{emu.url}/api/v4/projects/2/issues?state=opened&milestone=1.2&per_page=20"
        async with http.get(url) as resp:
            rows = await resp.json()
            assert (resp.headers["X-Total"], resp.headers["X-Total-Pages"],
                    resp.headers["X-Next-Page"]) == ("27", "2", "2")
            assert 'rel="next"' in resp.headers["Link"]
    row = rows[-1]
    assert (row["iid"], row["state"], row["labels"], row["milestone"]["title"]) == (
        10, "opened", ["severity::C"], "1.2")
    assert row["web_url"] == f"{emu.url}/acme/web/-/issues/10"
    assert row["references"]["full"] == "acme/web#10" and row["type"] == "ISSUE"
    everything = await run(lambda: list(web.issues.list(state="opened", milestone="1.2",
                                                        iterator=True, per_page=20)))
    assert len(everything) == 27


async def test_scoped_labels_are_exclusive(emu: GitLabEmulator) -> None:
    """Two labels of one scope (severity::) leave the last, as GitLab does."""
    issue = emu.add_issue("acme/web", "Both", labels=["severity::A", "ui", "severity::C"])
    assert issue.labels == ["ui", "severity::C"]


async def test_labels_and_milestones_are_listed(web: Any) -> None:
    """The project's labels by name; milestones found by exact title."""
    names = [label.name for label in await run(lambda: web.labels.list(get_all=True))]
    assert names == ["bug", "severity::A", "severity::B", "severity::C"]
    found = await run(lambda: web.milestones.list(title="1.2", include_ancestors=True))
    assert [m.title for m in found] == ["1.2"]
    assert await run(lambda: web.milestones.list(title="1")) == []


# --- ZenTao ---------------------------------------------------------------------------------------

@pytest.fixture
async def zentao() -> AsyncIterator[ZenTaoEmulator]:
    """ZenTao with product 1 and its bugs."""
    async with ZenTaoEmulator() as emulator:
        emulator.add_product("Payments")
        yield emulator


async def call(z: ZenTaoEmulator, method: str, path: str, token: str | None = None,
               **kw: Any) -> tuple[int, Any]:
    """One request; its status and JSON body."""
    headers = {"Token": token} if token else {}
    async with aiohttp.ClientSession() as http, http.request(
            method, f"{z.url}/api.php/v1{path}", headers=headers, **kw) as resp:
        return resp.status, await resp.json(content_type=None)


async def token_of(z: ZenTaoEmulator) -> str:
    """A fresh token for the bot's account."""
    status, body = await call(z, "POST", "/tokens",
                              json={"account": z.account, "password": z.password})
    assert status == 201
    return str(body["token"])


async def test_tokens_come_from_the_account_and_expire(zentao: ZenTaoEmulator) -> None:
    """201 {token}; a wrong password is 400 with ZenTao's sentence; no token is 401."""
    assert await call(zentao, "POST", "/tokens", json={"account": zentao.account,
                                                       "password": "wrong"}) == (
        400, {"error": LOGIN_FAILED})
    token = await token_of(zentao)
    assert (await call(zentao, "GET", "/products", token))[0] == 200
    assert await call(zentao, "GET", "/products") == (401, {"error": "Unauthorized"})
    zentao.expire_tokens()
    assert await call(zentao, "GET", "/products", token) == (401, {"error": "Unauthorized"})
    assert not any(zentao.password in str(c) for c in zentao.calls)


async def test_bugs_list_by_browse_type_with_zentaos_shapes(zentao: ZenTaoEmulator) -> None:
    """status=unresolved is the active bugs; the list's status is {code, name}."""
    zentao.add_bug(1, "Crash", severity=1, confirmed=True)
    zentao.resolve(zentao.add_bug(1, "Fixed", severity=2).id)
    zentao.close(zentao.add_bug(1, "Closed", severity=3).id)
    token = await token_of(zentao)
    status, body = await call(zentao, "GET", "/products/1/bugs?status=unresolved", token)
    assert status == 200 and (body["page"], body["total"], body["limit"]) == (1, 1, 20)
    [bug] = body["bugs"]
    assert (bug["id"], bug["severity"], bug["status"], bug["openedBuild"]) == (
        1, 1, {"code": "confirmed", "name": "已确认"}, "trunk")
    _, unclosed = await call(zentao, "GET", "/products/1/bugs", token)  # the default
    assert [b["title"] for b in unclosed["bugs"]] == ["Fixed", "Crash"]
    _, one = await call(zentao, "GET", "/bugs/2", token)
    assert one["status"] == "resolved"  # a single bug's status is a plain string
    assert (await call(zentao, "GET", "/products/9", token)) == (404, {"error": "404 Not found"})


async def test_a_page_past_the_last_is_the_first_again(zentao: ZenTaoEmulator) -> None:
    """ZenTao's pager: paging must stop by total, never by an empty page."""
    for n in range(25):
        zentao.add_bug(1, f"Bug {n}")
    token = await token_of(zentao)
    _, second = await call(zentao, "GET", "/products/1/bugs?limit=20&page=2", token)
    _, past = await call(zentao, "GET", "/products/1/bugs?limit=20&page=3", token)
    assert (second["page"], len(second["bugs"]), second["total"]) == (2, 5, 25)
    assert (past["page"], len(past["bugs"])) == (1, 20)


async def test_faults_answer_as_a_proxy_would(zentao: ZenTaoEmulator) -> None:
    """A scripted 503 is an HTML page, then ZenTao answers again."""
    zentao.fail(503)
    async with aiohttp.ClientSession() as http, http.get(f"{zentao.url}/api.php/v1/products") as r:
        assert (r.status, r.content_type) == (503, "text/html")
    assert (await call(zentao, "GET", "/products"))[0] == 401
