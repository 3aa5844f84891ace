"""Hostile input: long, NUL and bidi text is refused with the problem named, or made inert."""

from __future__ import annotations

from typing import Any

import pytest

from emulators.gitlab import GitLabError as EmulatedError
from emulators.sample import CTO, DEV, DIRECTOR, OPS, TESTER
from tests.adversarial.common import (
    audit,
    bot_texts,
    filed,
    ready,
    release,
    row_counts,
    signed,
)
from tests.scenario.harness import running_app

REFUSED_REQUESTS = [
    ("payments v1.1.0 Title --version " + "9" * 150,
     "The version is too long (150 characters; at most 100)."),
    ("payments v1.1.0\x00 Title", "it has U+0000 control character"),
    ("payments v1.1.0\u200b Title", "it has U+200B ZERO WIDTH SPACE"),
    ("payments v1.1.0\u202e Title", "it has U+202E RIGHT-TO-LEFT OVERRIDE"),
    ("payments " + "v" * 300 + " Title", "The ref is too long (300 characters; at most 255)."),
    ("payments v1..2 Title", "'v1..2' is not a valid git ref name: it can't hold '..'"),
]


@pytest.mark.parametrize(("text", "sentence"), REFUSED_REQUESTS)
async def test_bad_requests_are_refused_naming_the_problem(db_url: str, policy: Any,
                                                          text: str, sentence: str) -> None:
    """On SQLite and PostgreSQL alike: one sentence naming the problem, and no row written."""
    async with running_app(db_url, policy) as h:
        before = await row_counts(h)
        answer = await h.says(DEV, f"request {text}")
        assert sentence in answer, answer
        assert "went wrong" not in answer
        assert await row_counts(h) == before


REFUSED_REPORTS = [
    ("https://ci.example/r/1\x00x", "it has U+0000 control character"),
    ("https://ci.example/r/1\u200b", "it has U+200B ZERO WIDTH SPACE"),
    ("https://ci.example/" + "r" * 2500,
     "The test report link is too long (2519 characters; at most 2000)."),
]


@pytest.mark.parametrize(("url", "sentence"), REFUSED_REPORTS)
async def test_bad_report_links_are_refused_naming_the_problem(db_url: str, policy: Any,
                                                               url: str, sentence: str) -> None:
    """A report link with a NUL (which PostgreSQL can't store), an invisible character or past
    its column: one sentence naming it, and nothing written."""
    async with running_app(db_url, policy) as h:
        rid = await filed(h, "payments v1.1.0 Checkout")
        before = await row_counts(h)
        answer = await h.says(TESTER, f"report REL-{rid} {url} A=0 B=0 C=0")
        assert sentence in answer, answer
        assert await row_counts(h) == before


async def test_a_comment_past_its_column_is_refused(db_url: str, policy: Any) -> None:
    """An approval's comment longer than it is stored: the limit named, no approval written."""
    async with running_app(db_url, policy) as h:
        rid = await ready(h)
        before = await row_counts(h)
        answer = await h.says(DIRECTOR, f"approve REL-{rid} " + "c" * 3500)
        assert "The comment is too long (3500 characters; at most 3000)." in answer, answer
        assert await row_counts(h) == before


async def test_invisible_characters_are_stripped_from_free_text(db_url: str,
                                                               policy: Any) -> None:
    """A title with NUL, zero-width and bidi characters is stored without them."""
    async with running_app(db_url, policy) as h:
        rid = await filed(h, "payments v1.1.0 Fix\x00 \u202echeckout\u200b")
        assert (await release(h, rid)).title == "Fix checkout"
        answer = await h.says(CTO, f"reject REL-{rid} no\x00pe \u2066x")
        assert "went wrong" not in answer
        assert (await audit(h, rid))[-1].detail["reason"] == "nope x"


async def test_abandon_and_rollback_reasons_are_stored_and_shown_without_them(
        db_url: str, policy: Any) -> None:
    """The reasons of a release manager's abandon and rollback lose NUL, bidi and zero-width
    characters before they reach the audit trail or the thread."""
    async with running_app(db_url, policy) as h:
        rid = await signed(h, "web v1.1.0 Copy fix")
        await h.says(OPS, f"deploy REL-{rid}")
        assert "Abandoned" in await h.says(OPS, f"abandon REL-{rid} st\x00uck\u202e\u200b")
        assert "Rolling" in await h.says(OPS, f"rollback REL-{rid} bro\u2066ken\x00")
        await h.settle()
        reasons = {e.action: e.detail.get("reason") for e in await audit(h, rid)}
        assert (reasons["abandon"], reasons["rollback"]) == ("stuck", "broken")
        shown = " ".join(h.thread(rid))
        assert "stuck" in shown and "broken" in shown
        assert not [c for c in shown if c in "\x00\u202e\u200b\u2066"]


async def test_a_ref_holding_markup_is_shown_inert(db_url: str, policy: Any) -> None:
    """`<` `!` `>` are allowed in git ref names: a ref `<!channel>` is filed, changed to
    `<!here>` and looked at, and no answer, card or thread line pings anyone."""
    async with running_app(db_url, policy) as h:
        web = h.gitlab.project("acme/web")
        for ref in ("<!channel>", "<!here>"):
            h.gitlab.add_tag(web, ref, "main")
        rid = await filed(h, "web <!channel> Ping")
        assert "now points at `&lt;!here&gt;`" in await h.says(DEV, f"ref REL-{rid} <!here>")
        await h.says(DEV, f"status REL-{rid}")
        await h.says(DEV, "list")
        await h.settle()
        assert not [t for t in bot_texts(h) if "<!channel>" in t or "<!here>" in t]


async def test_gitlab_error_text_is_escaped_in_the_thread(db_url: str, policy: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """GitLab's refusal quoting `<!channel>` reaches the thread inert, never as a ping."""
    async with running_app(db_url, policy) as h:
        rid = await signed(h, "web v1.1.0 Copy fix")

        def refuse(*_a: Any, **_kw: Any) -> Any:
            raise EmulatedError(400, {"base": ["<!channel> <@U0CTO> Reference not found"]})

        monkeypatch.setattr(h.gitlab, "create_pipeline", refuse)
        await h.says(OPS, f"deploy REL-{rid}")
        await h.settle()
        assert any("&lt;!channel&gt; &lt;@U0CTO&gt; Reference not found" in t
                   for t in h.thread(rid)), h.thread(rid)
        assert not [t for t in bot_texts(h) if "<!channel>" in t]


async def test_gitlab_error_text_is_escaped_in_release_notes(db_url: str, policy: Any,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """Release notes GitLab can't give: its error quoted inert in the answer."""
    async with running_app(db_url, policy) as h:
        rid = await filed(h, "payments v1.1.0 Checkout")

        answer_api = h.gitlab._answer

        async def refuse(request: Any, route: Any, params: Any, path: str, *rest: Any) -> Any:
            if "/repository/" in path:
                raise EmulatedError(400, "<!channel> no such ref")
            return await answer_api(request, route, params, path, *rest)

        monkeypatch.setattr(h.gitlab, "_answer", refuse)
        answer = await h.says(DEV, f"notes REL-{rid}")
        assert "not available" in answer and "&lt;!channel&gt;" in answer, answer
        assert not [t for t in bot_texts(h) if "<!channel>" in t]
