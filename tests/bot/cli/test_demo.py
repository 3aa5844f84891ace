"""`releasebot demo` and `releasebot say` as a person runs them on a fresh machine."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.cli import parser
from bot.cli.demo import SCRIPT, plain, staged, standard_release, verify

TRANSCRIPT = "═══ #releases, as people read it ═══"
ROOT = Path(__file__).resolve().parents[3]


def clean_env(home: Path) -> dict[str, str]:
    """No settings at all: only PATH and HOME."""
    return {"PATH": os.environ["PATH"], "HOME": str(home)}


def in_order(text: str, *parts: str) -> bool:
    """Whether every part occurs in text, each after the one before."""
    at = 0
    for part in parts:
        found = text.find(part, at)
        if found < 0:
            return False
        at = found + len(part)
    return True


def test_demo_runs_its_releases_and_prints_the_channel(tmp_path: Path) -> None:
    """Exit 0; four cards in their final states; each thread in order; names, never IDs."""
    result = subprocess.run([sys.executable, "-m", "bot", "demo"], capture_output=True,
                            text=True, env=clean_env(tmp_path), cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and not result.stderr.strip()
    out = result.stdout
    channel = out[out.index(TRANSCRIPT):]
    first = channel[:channel.index("┌ REL-2")]
    second = channel[channel.index("┌ REL-2"):channel.index("┌ REL-3")]
    third = channel[channel.index("┌ REL-3"):channel.index("┌ REL-4")]
    fourth = channel[channel.index("┌ REL-4"):channel.index("═══ Direct messages")]
    assert "┌ REL-1 · payments — Refunds API and currency rounding fix" in first
    assert "🏁 Closed" in first and "requested by Dana (developer)" in first
    assert in_order(first, "requested a standard release of payments at `v1.1.0`",
                    "Tariq (tester) started testing", "attached a test report",
                    "Diego (tech director) approved as tech_director",
                    "Lena (test lead) approved as test_lead", "ticked checklist item 1, 2",
                    "started the deploy of `v1.1.0` @ `",
                    "Deployed `v1.1.0` @ `", "to staging",
                    "Tariq (tester) accepted the release on staging",
                    "Deployed `v1.1.0` @ `", "to production",
                    "verified the release in production", "REL-1 is closed")
    assert "✅ staging (accepted by Tariq (tester))  →  ✅ production" in first
    assert in_order(out, "/release deploy REL-1 production", "REL-1 is on staging and not yet "
                    "accepted there", "clicks [Staging OK] on REL-1")
    assert "↩️ Rolled back" in second and "emergency release" in second
    assert in_order(second, "`hotfix/payout-timeout`", "does not meet the go-live standard",
                    "Chen (CTO) accepted the open bugs", "Chen (CTO) approved as executive",
                    "Deployed `hotfix/payout-timeout` @ `", "to staging",
                    "accepted the release on staging", "Deploy to production failed",
                    "Olga (release manager) is rolling back production to `release/REL-1` @ `",
                    "Rolled back production to `release/REL-1` @ `")
    assert "[also sent to #releases]" in second
    # The cards show each pinned commit; the rollback puts back exactly the one REL-1 shipped.
    first_pin = first.split("Ref `v1.1.0` @ `")[1][:7]
    second_pin = second.split("Ref `hotfix/payout-timeout` @ `")[1][:7]
    assert len({first_pin, second_pin}) == 2 and all(len(p) == 7 for p in (first_pin, second_pin))
    assert in_order(second,
                    f"started the deploy of `hotfix/payout-timeout` @ `{second_pin}` to production",
                    f"is rolling back production to `release/REL-1` @ `{first_pin}`",
                    f"Rolled back production to `release/REL-1` @ `{first_pin}`")
    assert "👀 Observing" in third and "campaign release" in third
    assert "armed by Olga (release manager) at" in third
    assert in_order(third, "Open bugs A 0 · B 0 · C 1 in GitLab issues (milestone v1.1.0), read",
                    "A 0 · B 1 · C 1, counted in GitLab issues (milestone v1.1.0) — does not "
                    "meet the go-live standard", "A 0 · B 0 · C 1, counted in GitLab issues "
                    "(milestone v1.1.0) — meets the go-live standard")
    assert in_order(third, "All sign-offs are in: scheduled",
                    "Olga (release manager) armed the scheduled deploy: it goes on its own at",
                    "ReleaseBot started the deploy", "Deployed `v1.1.0`")
    assert "┌ REL-4 · payments + web — Loyalty points at checkout" in fourth
    assert "👀 Observing" in fourth
    assert "Train 2 projects, deployed in this order: payments → web" in fourth
    assert in_order(fourth, "payments `main` @ `", "✅ staging  ✅ production",
                    "web `main` @ `", "— staging  ✅ production")
    assert in_order(fourth, "requested a standard release train of 2 projects, deployed in this "
                    "order: payments `main` → web `main`",
                    "started the deploy of payments `main` @ `", "to staging",
                    "Deployed payments `main` @ `", "accepted the release on staging",
                    "started the deploy to production, one pipeline at a time: payments, then "
                    "web", "Deployed payments `main`", "Next: web.", "pipeline #",
                    "of web is running for production", "Deployed web `main` @ `",
                    "verified the release in production")
    # Each DM as it shows at the end: the prompts with buttons are settled, saying who did it.
    assert in_order(out, "═══ Direct messages", "to Tariq (tester): REL-1 no longer needs your "
                    "acceptance on staging: you accepted it on staging.",
                    "to Olga (release manager): REL-3 no longer needs arming: you armed it.")
    assert "<@" not in out and "U0" not in out and "&lt;" not in out
    assert in_order(out, "═══ Who did what", "REL-1", "Olga (release manager)", "close",
                    "REL-2", "rollback succeeded", "rolling back → rolled back")
    assert "Demo complete: REL-1 accepted on staging and closed, REL-2 rolled back" in out
    assert "the train REL-4 deployed payments before web" in out


async def test_an_unfinished_flow_is_reported_not_passed() -> None:
    """Verification reads the database and the channel: a missing release is named."""
    async with staged(io.StringIO()) as demo:
        rid = await standard_release(demo)
        problems = await verify(demo, rid, rid)
    assert f"REL-{rid} is closed, not rolled back" in problems
    assert "#releases has 1 top-level messages, not one per release" in problems
    assert any("was not rolled back" in p for p in problems)


def test_keep_serves_until_ctrl_c_and_say_talks_to_it(tmp_path: Path) -> None:
    """`demo --keep` + `say "/release list all" --as U0DEV` prints Dana's private answer."""
    state = tmp_path / ".releasebot-demo.json"
    log = (tmp_path / "demo.log").open("w")
    demo = subprocess.Popen([sys.executable, "-m", "bot", "demo", "--keep"], stdout=log,
                            stderr=subprocess.STDOUT, env=clean_env(tmp_path), cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not state.exists():
            assert demo.poll() is None and time.monotonic() < deadline, (
                tmp_path / "demo.log").read_text()
            time.sleep(0.2)
        said = subprocess.run([sys.executable, "-m", "bot", "say", "/release list all", "--as",
                               "U0DEV"], capture_output=True, text=True,
                              env=clean_env(tmp_path), cwd=tmp_path, timeout=60)
        assert said.returncode == 0, said.stderr
        assert "All releases" in said.stdout and "REL-2" in said.stdout
        assert "Dana (developer)" in said.stdout and "<@" not in said.stdout
        assert json.loads(state.read_text())["pid"] == demo.pid
    finally:
        demo.send_signal(signal.SIGINT)
        code = demo.wait(30)
        log.close()
    assert code == 0 and not state.exists()
    assert "Still serving" in (tmp_path / "demo.log").read_text()


def test_say_without_a_running_demo_is_one_line(tmp_path: Path) -> None:
    """No state file and no flags: one line saying how to start one, exit 1."""
    result = subprocess.run([sys.executable, "-m", "bot", "say", "/release help", "--as",
                             "U0DEV"], capture_output=True, text=True,
                            env=clean_env(tmp_path), cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("releasebot: no running demo found")
    assert len(result.stderr.strip().splitlines()) == 1


def test_plain_reads_like_slack() -> None:
    """Mentions become names, links their labels, markup disappears; identifiers stay."""
    text = ("*Sign-off* ✅ tech_director <@U0DIRECTOR> · _approved_ <https://ci/r/1|report> "
            "&lt;x&gt;")
    assert plain(text) == "Sign-off ✅ tech_director Diego (tech director) · approved report <x>"


def test_help_and_docs_give_the_number_of_releases_the_demo_plays(
        capsys: pytest.CaptureFixture[str]) -> None:
    """One number everywhere a new user reads about the demo: the length of its script."""
    count = {3: "three", 4: "four", 5: "five"}[len(SCRIPT)]
    for argv in (["--help"], ["demo", "--help"]):
        with pytest.raises(SystemExit):
            parser().parse_args(argv)
        assert f"run {count} releases" in " ".join(capsys.readouterr().out.split())
    readme = " ".join((ROOT / "README.md").read_text().split())
    operations = " ".join((ROOT / "docs" / "operations.md").read_text().split())
    assert f"plays {count} whole releases" in readme
    assert f"plays {count} releases" in operations
    assert f"| {count} releases end to end" in operations
