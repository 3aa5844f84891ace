"""Open bugs counted by the tracker, through the running app: GitLab issues and ZenTao alike."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest
from sqlmodel import select

from bot.app import BUGS, DEPS
from bot.policy import Policy
from emulators.gitlab import GitLabEmulator
from emulators.sample import CTO, DEV, DIRECTOR, LEAD, OPS, TESTER, sample_policy
from emulators.slack import SlackEmulator
from emulators.zentao import ZenTaoEmulator
from handlers.blocks import ActionId
from storage import queries as q
from storage.models import Approval, AuditEntry, OutboxMessage, TestReport
from tests.fixtures import EMERGENCY
from tests.scenario.harness import Harness, emulators, readable, running_app
from tests.scenario.test_gitlab_flow import state

Emus = tuple[SlackEmulator, GitLabEmulator]


class GitLabBugs:
    """acme/web's issues in milestone 1.2.0, by severity label."""

    source, where = "GitLab issues", "milestone 1.2.0"

    def __init__(self, emus: Emus) -> None:
        self.emus, self.gitlab = emus, emus[1]
        self.settings: dict[str, str] = {}
        self.gitlab.add_milestone("acme/web", "1.2.0")
        for sev in "ABC":
            self.gitlab.add_label("acme/web", f"severity::{sev}")
        # Not the release's bugs: another milestone, no severity, closed.
        self.gitlab.add_issue("acme/web", "Old crash", labels=["severity::A"], milestone="1.1.0")
        self.gitlab.add_issue("acme/web", "Idea: dark mode", milestone="1.2.0")
        self.gitlab.close_issue("acme/web", self.gitlab.add_issue(
            "acme/web", "Fixed typo", labels=["severity::B"], milestone="1.2.0").iid)

    def policy(self, **types: Any) -> Policy:
        """The sample policy with web's bugs in GitLab issues."""
        return sample_policy(projects={"web": {"bug_tracker": {"kind": "gitlab"}}}, **types)

    secrets = ("glpat-test",)

    def open(self, severity: str, title: str) -> str:
        """A new open issue of the milestone."""
        issue = self.gitlab.add_issue("acme/web", title, labels=[f"severity::{severity}"],
                                      milestone="1.2.0")
        return f"#{issue.iid}"

    def close(self, bug: str) -> None:
        """The fix is in."""
        self.gitlab.close_issue("acme/web", int(bug[1:]))

    def down(self) -> None:
        """GitLab's issue endpoints answer 503."""
        for part in ("milestones", "issues"):
            self.gitlab.fail(times=-1, status=503, path_prefix=f"/projects/2/{part}")

    def refusing(self) -> None:
        """GitLab no longer takes the bot's token."""
        self.gitlab.token = "glpat-rotated"


class ZenTaoBugs:
    """ZenTao product 1's active bugs, severity 1-4."""

    source, where = "ZenTao", "product 1"
    LEVEL: ClassVar[dict[str, int]] = {"A": 1, "B": 2, "C": 3}

    def __init__(self, emus: Emus, zentao: ZenTaoEmulator) -> None:
        self.emus, self.zentao = emus, zentao
        zentao.add_product("Web")
        zentao.add_product("Payments")
        zentao.add_bug(2, "Another product's crash", severity=1)
        zentao.resolve(zentao.add_bug(1, "Fixed already", severity=2).id)
        self.settings = {"zentao_account": zentao.account, "zentao_password": zentao.password}

    def policy(self, **types: Any) -> Policy:
        """The sample policy with web's bugs in ZenTao."""
        tracker = {"kind": "zentao", "url": self.zentao.url, "product": 1}
        return sample_policy(projects={"web": {"bug_tracker": tracker}}, **types)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The password and every token ZenTao issued."""
        return (self.zentao.password, *self.zentao.tokens)

    def open(self, severity: str, title: str) -> str:
        """A new active bug."""
        return f"#{self.zentao.add_bug(1, title, severity=self.LEVEL[severity]).id}"

    def close(self, bug: str) -> None:
        """Resolved."""
        self.zentao.resolve(int(bug[1:]))

    def down(self) -> None:
        """ZenTao answers 503."""
        self.zentao.fail(503, times=-1)

    def refusing(self) -> None:
        """The bot's password was changed in ZenTao."""
        self.zentao.password = "changed-in-zentao"
        self.zentao.expire_tokens()


Bugs = GitLabBugs | ZenTaoBugs


@pytest.fixture(params=["gitlab", "zentao"])
async def bugs(request: pytest.FixtureRequest) -> AsyncIterator[Bugs]:
    """A tracker with a few bugs that are not the release's, and the emulators."""
    async with emulators() as emus:
        if request.param == "gitlab":
            yield GitLabBugs(emus)
            return
        async with ZenTaoEmulator() as zentao:
            yield ZenTaoBugs(emus, zentao)


def tracked(db_url: str, bugs: Bugs, **types: Any) -> Any:
    """The running app with the tracker configured for web."""
    return running_app(db_url, bugs.policy(**types), emus=bugs.emus, **bugs.settings)


async def requested(h: Harness, kind: str = "standard") -> int:
    """web v1.1.0, version 1.2.0 (GitLab's milestone)."""
    ground = f" {EMERGENCY}" if kind == "emergency" else ""
    answer = await h.says(DEV, f"request web v1.1.0 Faster checkout --version 1.2.0 "
                               f"--type {kind}{ground}")
    return int(answer.split("REL-")[1].split(".")[0])


async def reports(h: Harness, rid: int) -> list[TestReport]:
    """The stored test reports of a release."""
    async with h.app[DEPS].sessions() as session:
        rows = await session.exec(select(TestReport).where(TestReport.release_id == rid))
        return list(rows.all())


async def approvals(h: Harness, rid: int) -> list[Approval]:
    """Approvals of the release's current revision."""
    async with h.app[DEPS].sessions() as session:
        return list(await q.approvals_of(session, await q.get_release(session, rid)))


def card(h: Harness, rid: int) -> str:
    """The card as a reader sees it."""
    return readable(h.card(rid))


async def signed_off(h: Harness, rid: int) -> None:
    """A report from the tracker and both sign-offs."""
    await h.says(TESTER, f"report REL-{rid} https://qa/r/{rid}")
    await h.says(DIRECTOR, f"approve REL-{rid}")
    assert await h.says(LEAD, f"approve REL-{rid}") == f"You approved REL-{rid} as test_lead."
    await h.settle()
    assert await state(h, rid) == "approved"


# --- counts read and shown ----------------------------------------------------------------------

async def test_the_report_takes_its_counts_from_the_tracker(db_url: str, bugs: Bugs) -> None:
    """No counts typed: the tracker's are the report's; the card links its list with the time
    it was read; a B bug keeps the release in testing until it is fixed."""
    async with tracked(db_url, bugs) as h:
        rid = await requested(h)
        blocker, minor = bugs.open("B", "Refund twice"), bugs.open("C", "Button misaligned")
        answer = await h.says(TESTER, f"report REL-{rid} https://qa/r/1")
        assert answer == (f"Report attached to REL-{rid} with A 0 · B 1 · C 1 open "
                          f"({bugs.source}, {bugs.where}), but it does not meet the go-live "
                          "standard: 1 open B bug (limit 0).")
        assert await state(h, rid) == "testing"
        bugs.close(blocker)
        answer = await h.says(TESTER, f"report REL-{rid} https://qa/r/2")
        assert answer == (f"Report attached to REL-{rid} with A 0 · B 0 · C 1 open "
                          f"({bugs.source}, {bugs.where}); it meets the go-live standard.")
        await h.settle()
        assert await state(h, rid) == "ready_for_signoff"
        report = (await reports(h, rid))[-1]
        assert (report.bugs_a, report.bugs_b, report.bugs_c, report.passes) == (0, 0, 1, True)
        text = card(h, rid)
        assert "*Open bugs* A 0 · B 0 · C 1 in <" in text
        assert f"|{bugs.source}> ({bugs.where}), read 20" in text
        assert any("A 0 · B 0 · C 1, counted in <" in line and f"|{bugs.source}> "
                   f"({bugs.where}) — meets the go-live standard." in line
                   for line in h.thread(rid))
        assert minor  # C bugs within the limit: listed, counted, not blocking


async def test_a_typed_count_below_the_trackers_is_refused(db_url: str, bugs: Bugs) -> None:
    """Typed counts may be higher than the tracker's (bugs not filed yet), never lower."""
    async with tracked(db_url, bugs) as h:
        rid = await requested(h)
        bugs.open("B", "Refund twice")
        answer = await h.says(TESTER, f"report REL-{rid} https://qa/r/1 A=0 B=0 C=0")
        assert answer == (f"REL-{rid}'s report can't show fewer open bugs than its tracker: you "
                          f"typed B=0, and {bugs.source} ({bugs.where}) shows B=1. Leave the "
                          "counts out to take the tracker's, or give at least those.")
        assert await reports(h, rid) == [] and await state(h, rid) == "requested"
        answer = await h.says(TESTER, f"report REL-{rid} https://qa/r/1 C=3")
        assert "with A 0 · B 1 · C 3 open" in answer
        [report] = await reports(h, rid)
        assert (report.bugs_a, report.bugs_b, report.bugs_c) == (0, 1, 3)


# --- recounts before the gates ------------------------------------------------------------------

async def test_a_bug_opened_after_sign_off_sends_the_release_back(db_url: str,
                                                                  bugs: Bugs) -> None:
    """The production deploy counts again: a new B bug sends the release back to testing with
    its approvals void, nothing deployed, and the thread says why."""
    async with tracked(db_url, bugs) as h:
        rid = await requested(h)
        await signed_off(h, rid)
        bug = bugs.open("B", "Checkout fails on Safari")
        answer = await h.says(OPS, f"deploy REL-{rid}")
        assert answer == (f"REL-{rid} went back to testing: {bugs.source} ({bugs.where}) shows a "
                          f"new open B bug ({bug} Checkout fails on Safari) since its test "
                          "report. Nothing was deployed; it needs a new test report and "
                          "sign-off.")
        await h.settle()
        assert await state(h, rid) == "testing"
        assert h.pipeline_of(rid) is None
        assert await approvals(h, rid) == []
        line = h.thread(rid)[-1]
        assert line.startswith("🐞 New open bugs since the test report, counted in <")
        assert ("found before the production deploy: <" in line and f"|{bug}> (B) Checkout "
                "fails on Safari. Back to *testing*" in line)
        assert ActionId.REPORT in h.buttons(rid)
        assert "*Open bugs* A 0 · B 1 · C 0" in card(h, rid)
        bugs.close(bug)
        await signed_off(h, rid)  # fixed: tested and signed off again, then it deploys
        assert "production pipeline is running" in await h.says(OPS, f"deploy REL-{rid}")


async def test_a_bug_opened_during_sign_off_stops_the_last_approval(db_url: str,
                                                                    bugs: Bugs) -> None:
    """The last sign-off counts first: the approver is told, and no approval counts."""
    async with tracked(db_url, bugs) as h:
        rid = await requested(h)
        await h.says(TESTER, f"report REL-{rid} https://qa/r/1")
        await h.says(DIRECTOR, f"approve REL-{rid}")
        bug = bugs.open("A", "Data loss on refund")
        answer = await h.says(LEAD, f"approve REL-{rid}")
        assert answer.startswith(f"REL-{rid} went back to testing: {bugs.source}")
        assert answer.endswith("Your approval was not recorded, and earlier approvals no "
                               "longer count.")
        assert f"a new open A bug ({bug} Data loss on refund)" in answer
        await h.settle()
        assert await state(h, rid) == "testing" and await approvals(h, rid) == []
        assert "found before sign-off completed" in h.thread(rid)[-1]


async def test_an_executives_acceptance_covers_only_the_bugs_it_named(db_url: str,
                                                                      bugs: Bugs) -> None:
    """An emergency ships with its accepted B bug; a second B bug found later sends it back."""
    async with tracked(db_url, bugs) as h:
        rid = await requested(h, "emergency")
        known = bugs.open("B", "Misleading log line")
        await h.says(TESTER, f"report REL-{rid} https://qa/r/1")
        await h.says(CTO, f"accept REL-{rid} Merchants are not being paid")
        await h.settle()
        assert f"accepted the open bugs {known} (B) as a known risk" in h.thread(rid)[-1]
        await h.says(DIRECTOR, f"approve REL-{rid}")
        await h.says(LEAD, f"approve REL-{rid}")
        assert await h.app[BUGS].poll_once() == 0  # the accepted bug alone changes nothing
        assert await state(h, rid) == "ready_for_signoff"
        new = bugs.open("B", "Payout sent twice")
        answer = await h.says(CTO, f"approve REL-{rid}")
        assert f"went back to testing: {bugs.source} ({bugs.where}) shows a new open B bug " \
               f"({new} Payout sent twice)" in answer
        async with h.app[DEPS].sessions() as session:
            release = await q.get_release(session, rid)
        assert release.state == "testing" and release.risk_accepted_by is None


async def test_the_poll_sends_back_and_backs_off(db_url: str, bugs: Bugs) -> None:
    """Signed-off releases are counted again on the bot's poll; a tracker that fails is left
    alone for a while (nothing changes), then read again."""
    async with tracked(db_url, bugs) as h:
        rid = await requested(h)
        await signed_off(h, rid)
        poller = h.app[BUGS]
        bugs.down()
        assert await poller.poll_once() == 0 and poller.failures["web"] == 1
        assert await poller.poll_once() == 0 and poller.failures["web"] == 1  # backed off
        assert await state(h, rid) == "approved"
        recover(bugs)
        poller.backoff_until.clear()
        bug = bugs.open("C", "Tooltip cut off")  # a C bug within the limit changes nothing
        assert await poller.poll_once() == 0 and "web" not in poller.failures
        bugs.close(bug)
        bugs.open("B", "Refund rounding")
        assert await poller.poll_once() == 1
        await h.settle()
        assert await state(h, rid) == "testing"
        assert "found when the bot counted again" in h.thread(rid)[-1]


def recover(bugs: Bugs) -> None:
    """The tracker answers again."""
    if isinstance(bugs, GitLabBugs):
        bugs.gitlab.faults.clear()
    else:
        bugs.zentao.recover()


# --- faults -------------------------------------------------------------------------------------

async def test_a_tracker_outage_blocks_the_report_with_a_sentence(db_url: str,
                                                                  bugs: Bugs) -> None:
    """Down, or refusing the bot's credentials: the report is refused with the reason, and the
    last sign-off waits too; nothing is written."""
    async with tracked(db_url, bugs) as h:
        rid = await requested(h)
        bugs.down()
        answer = await h.says(TESTER, f"report REL-{rid} https://qa/r/1")
        down = "GitLab unavailable (503)" if isinstance(bugs, GitLabBugs) else (
            "ZenTao is unavailable (503)")
        assert answer == (f"REL-{rid} can't take its test report: its open bugs are counted in "
                          f"{bugs.source}, which can't be read now ({down}). Nothing changed; "
                          "try again once it answers.")
        assert await reports(h, rid) == [] and await state(h, rid) == "requested"
        recover(bugs)
        await h.says(TESTER, f"report REL-{rid} https://qa/r/1")
        await h.says(DIRECTOR, f"approve REL-{rid}")
        bugs.refusing()
        answer = await h.says(LEAD, f"approve REL-{rid}")
        refused = "GitLab refused the token (401)" if isinstance(bugs, GitLabBugs) else (
            "ZenTao refused the bot's account (ZENTAO_ACCOUNT, ZENTAO_PASSWORD): 登录失败，"
            "请检查您的用户名或密码是否填写正确。")
        assert answer == (f"REL-{rid} can't complete its sign-off: its open bugs are counted in "
                          f"{bugs.source}, which can't be read now ({refused}). Nothing "
                          "changed; try again once it answers.")
        assert await state(h, rid) == "ready_for_signoff"
        assert [a.approver for a in await approvals(h, rid)] == [DIRECTOR]


async def test_credentials_appear_in_no_log_or_message(db_url: str, bugs: Bugs,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Through a report, a refusal, a send-back and an outage: the password and tokens are in
    no log line, no Slack call, no audit row and no announcement."""
    caplog.set_level(logging.DEBUG)
    async with tracked(db_url, bugs) as h:
        rid = await requested(h)
        await signed_off(h, rid)
        bugs.open("B", "Checkout fails")
        await h.says(OPS, f"deploy REL-{rid}")
        bugs.down()
        await h.says(TESTER, f"report REL-{rid} https://qa/r/9")
        await h.app[BUGS].poll_once()
        await h.settle()
        async with h.app[DEPS].sessions() as session:
            stored = [str(a.detail) for a in (await session.exec(select(AuditEntry))).all()]
            stored += [str(m.payload) for m in (await session.exec(select(OutboxMessage))).all()]
        said = [str(call) for call in h.slack.calls]
        secrets = bugs.secrets
        assert secrets and all(len(s) > 6 for s in secrets)
        assert "not read" in caplog.text  # the outage was logged, with its reason only
        for secret in secrets:
            assert secret not in caplog.text
            assert not any(secret in text for text in said + stored)
