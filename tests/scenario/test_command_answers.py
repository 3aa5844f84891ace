"""Commands and forms answer what is wrong, in one sentence, and write nothing when refused."""

from __future__ import annotations

from bot.app import DEPS
from bot.policy import Policy
from emulators.sample import CHANNEL, DEV, OPS, TESTER, sample_policy
from handlers.blocks import ActionId
from storage import queries as q
from tests.adversarial.common import signed
from tests.fixtures import THREE_PROJECTS
from tests.scenario.harness import Harness, running_app
from tests.scenario.test_slack_flow import select, submit_modal, text_values


async def released(h: Harness) -> int:
    """How many releases are on file."""
    async with h.app[DEPS].sessions() as session:
        return len(await q.list_releases(session, limit=100))


async def refs(h: Harness, rid: int) -> list[tuple[str, str]]:
    """Each component's (project, ref)."""
    async with h.app[DEPS].sessions() as session:
        release = await q.get_release(session, rid)
        assert release is not None
        return [(c.project, c.ref) for c in await q.components_of(session, release)]


async def test_a_ref_gitlab_lacks_is_refused_for_one_project_too(db_url: str,
                                                                 policy: Policy) -> None:
    """A release of one project is a train of one: its ref is looked up before filing."""
    async with running_app(db_url, policy) as h:
        missing = "GitLab has no ref `v9.9.9` in payments."
        assert await h.says(DEV, "request payments v9.9.9 X") == missing
        assert await h.says(DEV, "request payments@v9.9.9 X") == missing
        await h.command(DEV, "request")
        await h.settle()
        values = {"project": select("payments"), "type": select("standard"),
                  **text_values(ref="v9.9.9", title="Missing ref")}
        reply = await submit_modal(h, DEV, values)
        assert missing in str(reply.json) + " ".join(e.text for e in h.slack.ephemerals(DEV))
        assert await released(h) == 0 and h.slack.messages(CHANNEL) == []
        assert (await h.says(DEV, "request payments v1.1.0 Real")).startswith("Filed REL-1")
        assert await h.says(DEV, "ref 1 v9.9.9") == missing
        assert await refs(h, 1) == [("payments", "v1.1.0")]
        assert "now points at `v2.0.0`" in await h.says(DEV, "ref 1 v2.0.0")


async def test_a_train_ref_change_is_looked_up_and_names_the_project(db_url: str,
                                                                     policy: Policy) -> None:
    """`web@v9.9.9` is refused as missing; `ledger@…` is not part of a payments+web train."""
    async with running_app(db_url, policy) as h:
        assert "Filed REL-1" in await h.says(DEV, "request payments@v1.1.0 web@v1.1.0 Train")
        assert await h.says(DEV, "ref 1 web@v9.9.9") == "GitLab has no ref `v9.9.9` in web."
        assert await h.says(DEV, "ref 1 ledger@v1.0.0") == (
            "ledger is not part of REL-1 (payments, web).")
        assert await refs(h, 1) == [("payments", "v1.1.0"), ("web", "v1.1.0")]
        assert "web in REL-1 now points at `v2.0.0`" in await h.says(DEV, "ref 1 web@v2.0.0")
    async with running_app(db_url, sample_policy(projects=THREE_PROJECTS)) as h:
        assert await h.says(DEV, "ref 1 ledger@v1.0.0") == (  # ledger is a project here
            "ledger is not part of REL-1 (payments, web).")


async def test_ampersand_and_angle_brackets_in_a_command_are_text(db_url: str,
                                                                 policy: Policy) -> None:
    """Slack sends `R&D <team>` as `R&amp;D &lt;team&gt;`: stored as typed, shown escaped once."""
    async with running_app(db_url, policy) as h:
        assert "Filed REL-1" in await h.says(DEV, "request payments v1.1.0 R&D <team> fix")
        async with h.app[DEPS].sessions() as session:
            release = await q.get_release(session, 1)
        assert release is not None and release.title == "R&D <team> fix"
        await h.settle()
        card = str(h.card(1))
        assert "R&amp;D &lt;team&gt; fix" in card and "&amp;amp;" not in card
        listed = await h.command(DEV, "list")
        await h.settle()
        shown = " ".join(e.text + str(e.blocks) for e in h.slack.ephemerals(DEV))
        assert "R&amp;D &lt;team&gt; fix" in shown and "&amp;amp;" not in shown, listed


async def test_cancel_during_a_staging_deploy_names_the_running_deploy(db_url: str,
                                                                      policy: Policy) -> None:
    """While staging deploys, cancelling is held by that deploy, not by production."""
    async with running_app(db_url, policy) as h:
        rid = await signed(h, "payments v1.1.0 Faster checkout")
        assert "staging" in await h.says(OPS, f"deploy REL-{rid}")
        assert await h.says(DEV, f"cancel REL-{rid}") == (
            "A deploy is running: wait for it to end, or have the release manager abandon it, "
            "then cancel.")


async def test_a_huge_bug_count_in_the_report_form_stays_in_the_form(db_url: str,
                                                                    policy: Policy) -> None:
    """C=99999999999999999999 is an error under C; the form stays open, no DM."""
    async with running_app(db_url, policy) as h:
        assert "Filed REL-1" in await h.says(DEV, "request payments v1.1.0 Faster checkout")
        await h.settle()
        await h.click(TESTER, ActionId.REPORT)
        await h.settle()
        reply = await submit_modal(h, TESTER, text_values(
            url="https://ci.example/report/7", A="0", B="0", C="99999999999999999999"))
        assert reply.json == {"response_action": "errors", "errors": {"C": "At most 99999."}}
        assert not h.slack.ephemerals(TESTER)


async def test_anything_unknown_shows_the_usage_and_a_missing_reason_is_named(
        db_url: str, policy: Policy) -> None:
    """`/release foo` answers with every usage line; `reject 1` asks for the reason."""
    async with running_app(db_url, policy) as h:
        unknown = await h.says(DEV, "foo")
        assert unknown.startswith("Unknown subcommand 'foo'.")
        assert "`/release notes &lt;ID&gt; [publish]`" in unknown
        assert "`/release notes &lt;ID&gt; [publish]`" in await h.says(DEV, "help")
        assert await h.says(DEV, "reject 1") == (
            "Please give a reason: `/release reject REL-1 &lt;reason…&gt;`")


async def test_a_train_component_without_its_ref_is_named(db_url: str, policy: Policy) -> None:
    """`web@` is a project whose ref is missing, not an unknown project `web@`."""
    async with running_app(db_url, policy) as h:
        assert (await h.says(DEV, "request web@ payments@v1.1.0 X")).startswith(
            "The ref after `web@` is missing.")
        assert await released(h) == 0


async def test_extra_or_repeated_words_are_refused(db_url: str, policy: Policy) -> None:
    """`A=0 A=3`, `status 1 extra` and `notes 1 bogus` are refused with the usage line."""
    async with running_app(db_url, policy) as h:
        assert "Filed REL-1" in await h.says(DEV, "request payments v1.1.0 Faster checkout")
        assert (await h.says(TESTER, "report 1 https://qa/r A=0 A=3")).startswith(
            "A is given twice. Usage: `/release report")
        assert (await h.says(DEV, "status 1 extra")) == (
            "'extra' is not part of it. Usage: `/release status &lt;ID&gt;`")
        assert (await h.says(DEV, "notes 1 bogus")) == (
            "'bogus' is not part of it; only `publish` may follow. "
            "Usage: `/release notes &lt;ID&gt; [publish]`")


async def test_ticking_a_ticked_item_again_writes_nothing(db_url: str, policy: Policy) -> None:
    """`check 1 1` on a ticked item: no thread line, no audit row; the answer says ticks stay."""
    async with running_app(db_url, policy) as h:
        rid = await signed(h, "payments v1.1.0 Faster checkout")  # items 1-3 ticked
        await h.settle()
        lines = len(h.thread(rid))
        async with h.app[DEPS].sessions() as session:
            audited = len(await q.audit_of(session, rid))
        assert await h.says(OPS, f"check REL-{rid} 1") == (
            "Nothing new was ticked; ticks can't be undone (who ticked what is audited). "
            f"Checklist of REL-{rid}: 3/3 ticked.")
        await h.settle()
        assert len(h.thread(rid)) == lines
        assert not [t for t in h.thread(rid) if "(none new)" in t]
        async with h.app[DEPS].sessions() as session:
            assert len(await q.audit_of(session, rid)) == audited
