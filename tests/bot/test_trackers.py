"""The trackers' clients against the emulators, and the pure rules of counting and sending back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from bot import bugs
from bot.bugs import BugPoller
from bot.gitlab import GitLabClient
from bot.policy import BugTracker
from bot.trackers import Bug, BugCount, Scope, TrackerError
from bot.trackers.gitlab import GitLabTracker
from bot.trackers.registry import build_trackers, uses_zentao
from bot.trackers.zentao import ZenTaoClient, ZenTaoTracker, severity, status_code
from bot.workflow import Refused
from emulators.gitlab import GitLabEmulator
from emulators.sample import sample_policy
from emulators.zentao import ZenTaoEmulator
from tests.fixtures import FakeClock

SCOPE = Scope("web", "REL-4", "1.2.0")
NOW = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)


def config(**kw: Any) -> BugTracker:
    """A tracker configuration as the policy would read it."""
    return BugTracker.model_validate(kw)


@pytest.fixture
async def zentao() -> AsyncIterator[ZenTaoEmulator]:
    """ZenTao with product 1."""
    async with ZenTaoEmulator() as emulator:
        emulator.add_product("Web")
        yield emulator


def zentao_tracker(z: ZenTaoEmulator, password: str | None = None, **kw: Any) -> ZenTaoTracker:
    """The bot's tracker for product 1."""
    client = ZenTaoClient(z.url, z.account, SecretStr(password or z.password))
    return ZenTaoTracker(client, config(kind="zentao", url=z.url, product=1, **kw), lambda: NOW)


async def test_zentao_pages_by_total_and_maps_severities(zentao: ZenTaoEmulator) -> None:
    """250 active bugs in three pages, not one more request; severity 4 counts as C."""
    for n in range(250):
        zentao.add_bug(1, f"Bug {n}", severity=n % 4 + 1)
    zentao.resolve(1)
    count = await zentao_tracker(zentao).count(SCOPE)
    assert count.counts == {"A": 62, "B": 63, "C": 124}
    assert zentao.count("/products/1/bugs") == 3 and zentao.count("/tokens") == 1
    assert (count.source, count.where) == ("ZenTao", "product 1")
    assert count.url == (f"{zentao.url}/index.php?m=bug&f=browse&productID=1"
                         "&browseType=unresolved")
    assert count.bugs[0].url == f"{zentao.url}/index.php?m=bug&f=view&bugID=250"


async def test_zentao_filters_by_build_and_project(zentao: ZenTaoEmulator) -> None:
    """Only bugs found in the build (openedBuild lists several) and of the project count."""
    zentao.add_bug(1, "In 12", severity=2, build="11,12", project=5)
    zentao.add_bug(1, "In trunk", severity=2, project=5)
    zentao.add_bug(1, "Other project", severity=2, build="12", project=6)
    count = await zentao_tracker(zentao, build=12, project=5).count(SCOPE)
    assert [b.title for b in count.bugs] == ["In 12"]
    assert count.where == "product 1, build 12, project 5"


async def test_zentao_logs_in_again_when_its_session_expires(zentao: ZenTaoEmulator) -> None:
    """A 401 costs one new token, then the count goes on."""
    tracker = zentao_tracker(zentao)
    zentao.add_bug(1, "Crash", severity=1)
    await tracker.count(SCOPE)
    zentao.expire_tokens()
    assert (await tracker.count(SCOPE)).counts["A"] == 1
    assert zentao.count("/tokens") == 2


async def test_zentao_failures_are_sentences_without_secrets(zentao: ZenTaoEmulator) -> None:
    """Refused account, missing settings, server error, nobody listening."""
    with pytest.raises(TrackerError) as err:
        await zentao_tracker(zentao, password="wrong-password-123").count(SCOPE)
    assert str(err.value).startswith("ZenTao refused the bot's account (ZENTAO_ACCOUNT, "
                                     "ZENTAO_PASSWORD): ")
    assert "wrong-password-123" not in str(err.value)
    bare = ZenTaoTracker(ZenTaoClient(zentao.url, None, None),
                         config(kind="zentao", url=zentao.url, product=1), lambda: NOW)
    with pytest.raises(TrackerError, match="ZENTAO_ACCOUNT and ZENTAO_PASSWORD are not set"):
        await bare.count(SCOPE)
    zentao.fail(502)
    with pytest.raises(TrackerError, match=r"ZenTao is unavailable \(502\)"):
        await zentao_tracker(zentao).count(SCOPE)
    tracker = zentao_tracker(zentao)
    await zentao.stop()
    with pytest.raises(TrackerError, match=r"^ZenTao can't be reached$"):
        await tracker.count(SCOPE)
    assert zentao.password not in repr(tracker.client)


def test_zentao_fields_read_as_text_or_numbers() -> None:
    """ZenTao may send numbers as strings, and a status as text or as {code, name}."""
    assert severity({"severity": "2"}) == 2 and severity({"severity": None}) == 0
    assert status_code({"status": {"code": "active", "name": "激活"}}) == "active"
    assert status_code({"status": "resolved"}) == "resolved"


@pytest.fixture
async def gitlab() -> AsyncIterator[GitLabEmulator]:
    """GitLab with acme/web (id 2)."""
    async with GitLabEmulator() as emulator:
        emulator.seed_demo()
        emulator.add_milestone("acme/web", "1.2.0")
        yield emulator


def gitlab_tracker(g: GitLabEmulator, **kw: Any) -> GitLabTracker:
    """The bot's tracker for acme/web."""
    return GitLabTracker(GitLabClient(g.url, g.token), "acme/web",
                         config(kind="gitlab", **kw), lambda: NOW)


async def test_gitlab_counts_the_gravest_label_of_each_open_issue(gitlab: GitLabEmulator
                                                                  ) -> None:
    """Own labels; an issue with two severities counts once, as the gravest; others not."""
    labels = {"A": "P1", "B": "P2", "C": "P3"}
    gitlab.add_issue("acme/web", "Two", labels=["P3", "P1"], milestone="1.2.0")
    gitlab.add_issue("acme/web", "Unlabelled", milestone="1.2.0")
    for n in range(120):
        gitlab.add_issue("acme/web", f"Minor {n}", labels=["P3"], milestone="1.2.0")
    count = await gitlab_tracker(gitlab, labels=labels).count(SCOPE)
    assert count.counts == {"A": 1, "B": 0, "C": 120}
    assert count.bugs[0] == Bug("#1", "A", "Two", f"{gitlab.url}/acme/web/-/issues/1")
    assert gitlab.count("/projects/2/issues") == 2  # 121 issues, two pages of 100
    assert count.url == f"{gitlab.url}/acme/web/-/issues?state=opened&milestone_title=1.2.0"
    assert await gitlab_tracker(gitlab, labels=labels).missing_labels() == ["P2"]
    gitlab.add_label("acme/web", "P2")
    assert await gitlab_tracker(gitlab, labels=labels).missing_labels() == []
    assert await gitlab_tracker(gitlab).missing_labels() == [
        "severity::A", "severity::B", "severity::C"]


async def test_gitlab_refuses_a_milestone_that_does_not_exist(gitlab: GitLabEmulator) -> None:
    """GitLab lists nothing for an unknown milestone: that must not read as zero bugs."""
    with pytest.raises(TrackerError) as err:
        await gitlab_tracker(gitlab).count(Scope("web", "REL-4", "1.3.0"))
    assert str(err.value) == ("GitLab has no milestone '1.3.0' in acme/web, so its issues "
                              "can't be counted; create it, or give the release its "
                              "milestone's title as its version")


async def test_gitlab_by_label_reads_the_release_id(gitlab: GitLabEmulator) -> None:
    """scope: label counts issues carrying REL-n, whatever their milestone."""
    gitlab.add_issue("acme/web", "Ours", labels=["severity::B", "REL-4"])
    gitlab.add_issue("acme/web", "Not ours", labels=["severity::A", "REL-5"])
    count = await gitlab_tracker(gitlab, scope="label").count(SCOPE)
    assert (count.counts, count.where) == ({"A": 0, "B": 1, "C": 0}, "label REL-4")
    assert count.url.endswith("/acme/web/-/issues?state=opened&label_name%5B%5D=REL-4")


async def test_trackers_are_built_per_project() -> None:
    """One ZenTao client per address; a GitLab tracker without GitLab fails every count."""
    tracker = {"kind": "zentao", "url": "https://zentao.example", "product": 1}
    policy = sample_policy(projects={"payments": {"bug_tracker": tracker},
                                     "web": {"bug_tracker": {"kind": "gitlab"}}})
    built = build_trackers(policy, None, zentao_account="bot", zentao_password=None,
                           clock=lambda: NOW)
    assert uses_zentao(policy) and not uses_zentao(sample_policy())
    payments, web = built.for_project("payments"), built.for_project("web")
    assert isinstance(payments, ZenTaoTracker)
    assert web is not None and web.source == "GitLab issues"
    with pytest.raises(TrackerError, match="GitLab is not connected"):
        await web.count(SCOPE)


# --- the rules -----------------------------------------------------------------------------------

def counted(*bugs_: tuple[str, str]) -> BugCount:
    """A count of (id, severity) bugs."""
    return BugCount("ZenTao", "product 1", "https://z", NOW,
                    tuple(Bug(i, sev, f"Bug {i}", f"https://z/{i}") for i, sev in bugs_))


def test_typed_counts_may_be_higher_never_lower() -> None:
    """Left out: the tracker's; higher: kept; lower: refused naming both."""
    count = counted(("#1", "B"), ("#2", "C"))
    assert bugs.report_counts("REL-4", {}, count) == {"A": 0, "B": 1, "C": 1}
    assert bugs.report_counts("REL-4", {"C": 4}, count) == {"A": 0, "B": 1, "C": 4}
    assert bugs.report_counts("REL-4", {"B": 1}, None) == {"A": 0, "B": 1, "C": 0}
    with pytest.raises(Refused) as err:
        bugs.report_counts("REL-4", {"A": 0, "B": 0, "C": 0}, count)
    assert err.value.sentence == (
        "REL-4's report can't show fewer open bugs than its tracker: you typed B=0 C=0, and "
        "ZenTao (product 1) shows B=1 C=1. Leave the counts out to take the tracker's, or give "
        "at least those.")


def test_what_sends_a_release_back() -> None:
    """New A or B bugs, whatever the limit; new C bugs only past C's limit."""
    limits = {"A": 0, "B": 1, "C": 2}
    known = {"B": ["#1"], "C": ["#2"]}
    assert bugs.sending_back(counted(("#1", "B"), ("#2", "C")), known, limits) == []
    assert [b.id for b in bugs.sending_back(counted(("#1", "B"), ("#3", "B")), known,
                                            limits)] == ["#3"]
    assert bugs.sending_back(counted(("#2", "C"), ("#4", "C")), known, limits) == []
    assert [b.id for b in bugs.sending_back(counted(("#2", "C"), ("#4", "C"), ("#5", "C")),
                                            known, limits)] == ["#4", "#5"]
    assert bugs.sending_back(counted(), known, limits) == []  # fixed: nothing new


async def test_the_poll_waits_as_the_tracker_asks(deps: Any, clock: FakeClock) -> None:
    """A 429's Retry-After, else twice as long each time; a success forgets the failures."""
    poller = BugPoller(deps)
    poller._back_off("web", TrackerError("GitLab is rate limiting us (429)", retry_after=90),
                     clock())
    assert poller.backoff_until["web"] == clock() + timedelta(seconds=90)
    poller._back_off("web", TrackerError("ZenTao is unavailable (503)"), clock())
    assert clock() + timedelta(seconds=60) <= poller.backoff_until["web"] <= (
        clock() + timedelta(seconds=120))
    assert poller.failures["web"] == 2
