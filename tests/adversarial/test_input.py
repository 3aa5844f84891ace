"""Hostile input: long, NUL and bidi text is refused with the problem named, or made inert."""

from __future__ import annotations

from typing import Any

import pytest

from emulators.gitlab import GitLabError as EmulatedError
from emulators.sample import CTO, DEV, OPS
from tests.adversarial.common import audit, bot_texts, filed, release, row_counts, signed
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


async def test_invisible_characters_are_stripped_from_free_text(db_url: str,
                                                               policy: Any) -> None:
    """A title with NUL, zero-width and bidi characters is stored without them."""
    async with running_app(db_url, policy) as h:
        rid = await filed(h, "payments v1.1.0 Fix\x00 \u202echeckout\u200b")
        assert (await release(h, rid)).title == "Fix checkout"
        answer = await h.says(CTO, f"reject REL-{rid} no\x00pe \u2066x")
        assert "went wrong" not in answer
        assert (await audit(h, rid))[-1].detail["reason"] == "nope x"


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
