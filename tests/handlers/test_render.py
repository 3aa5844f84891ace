"""Thread lines for outbox events: one readable, escaped sentence per event."""

from __future__ import annotations

from typing import Any

import pytest

from handlers.blocks import MAX_TEXT, duration, escape
from handlers.render import RENDERERS, event_text, notice_text, sole_signer_sentence

RAW_MARKUP = ("<!channel>", "<!here>", "<!everyone>", "<@U123>", "<https://evil")
HOSTILE = "<!here> <!channel> <@U123> <https://evil.example|click> & co"

# (event, from, to, detail) as the service records them, and a piece of the line people read.
EVENTS: dict[str, tuple[str | None, str, dict[str, Any], str]] = {
    "request": (None, "requested",
                {"project": "payments", "ref": "v1.1.0", "type": "standard"},
                "📝 <@U0ACTOR> requested a standard release of payments at `v1.1.0`."),
    "start testing": ("requested", "testing", {}, "🧪 <@U0ACTOR> started testing."),
    "report": ("testing", "ready_for_signoff",
               {"url": "https://ci.example/r/1", "bugs": {"A": 0, "B": 1, "C": 3},
                "passes": False, "failures": ["1 open B bugs (limit 0)"],
                "voided_approvals": True},
               "🧪 <@U0ACTOR> attached a <https://ci.example/r/1|test report>: A 0 · B 1 · C 3 — "
               "does *not* meet the go-live standard (1 open B bugs (limit 0)). "
               "Earlier approvals no longer count."),
    "accept risk": ("ready_for_signoff", "ready_for_signoff",
                    {"reason": "cosmetic only", "failures": ["1 open B bugs (limit 0)"]},
                    "⚠️ <@U0ACTOR> accepted the open bugs as a known risk: cosmetic only."),
    "new bugs": ("approved", "testing",
                 {"moment": "deploy", "more": 0, "voided_approvals": 2,
                  "new": [{"id": "#7", "severity": "B", "title": "Refunds <!here> twice",
                           "url": "https://gitlab.example/acme/web/-/issues/7"}],
                  "tracker": {"source": "GitLab issues", "where": "milestone v1.2.0",
                              "url": "https://gitlab.example/acme/web/-/issues?state=opened",
                              "read_at": "2026-11-23T06:00:00+00:00",
                              "counts": {"A": 0, "B": 1, "C": 0}}},
                 "🐞 New open bugs since the test report, counted in "
                 "<https://gitlab.example/acme/web/-/issues?state=opened|GitLab issues> "
                 "(milestone v1.2.0), found before the production deploy: "
                 "<https://gitlab.example/acme/web/-/issues/7|#7> (B) Refunds &lt;!here&gt; "
                 "twice. Back to *testing*: it needs a new test report and sign-off; earlier "
                 "approvals no longer count."),
    "approve": ("ready_for_signoff", "ready_for_signoff",
                {"role": "tech_director", "comment": "lgtm", "missing": ["test_lead"]},
                "✅ <@U0ACTOR> approved as tech_director: lgtm. Still waiting for test_lead."),
    "reject": ("ready_for_signoff", "rejected", {"reason": "build is red", "requester": "U0DEV"},
               "⛔ <@U0ACTOR> rejected the release: build is red. <@U0DEV>, it is back for "
               "rework: a new ref or test report restarts testing, or cancel it."),
    "change ref": ("ready_for_signoff", "testing",
                   {"old_ref": "v1.1.0", "ref": "v1.1.1", "voided_approvals": True},
                   "🔀 <@U0ACTOR> changed the ref from `v1.1.0` to `v1.1.1`. "
                   "Earlier approvals and the test report no longer count."),
    "tick": ("approved", "approved", {"items": [1, 2], "done": 2, "total": 3},
             "☑️ <@U0ACTOR> ticked checklist item 1, 2 (2/3)."),
    "override gate": ("approved", "approved",
                      {"reason": "CEO signed off", "gate": "Year-end freeze"},
                      "🔓 <@U0ACTOR> allowed this release to deploy outside the windows/freeze: "
                      "CEO signed off."),
    "hold": ("scheduled", "scheduled", {"reason": "outside the release windows"},
             "⏸ The scheduled deploy is held: outside the release windows."),
    "deploy": ("approved", "deploying",
               {"environment": "staging", "ref": "v1.1.0", "reason": "", "deployment": 7},
               "🚀 <@U0ACTOR> started the deploy of `v1.1.0` to staging."),
    "pipeline started": ("deploying", "deploying",
                         {"environment": "staging", "pipeline": 991,
                          "url": "https://gitlab.example/p/991", "ref": "v1.1.0",
                          "rollback": False, "deployment": 7},
                         "⏳ Deploy pipeline <https://gitlab.example/p/991|#991> is running for "
                         "staging."),
    "deploy succeeded": ("deploying", "deployed",
                         {"environment": "staging", "ref": "v1.1.0", "pipeline": 991,
                          "url": "https://gitlab.example/p/991", "status": "success",
                          "failed_job": None, "failed_job_url": None, "error": None,
                          "deployment": 7, "seconds": 754},
                         "📦 Deployed `v1.1.0` to staging in 12 min 34 s "
                         "(<https://gitlab.example/p/991|pipeline>)."),
    "deploy failed": ("deploying", "deploy_failed",
                      {"environment": "production", "ref": "v1.1.0", "pipeline": 992,
                       "url": "https://gitlab.example/p/992", "status": "failed",
                       "failed_job": "migrate", "failed_job_url": "https://gitlab.example/j/5",
                       "error": "exit code 1", "deployment": 8, "seconds": 61},
                      "❌ Deploy to production failed at job "
                      "<https://gitlab.example/j/5|migrate>: exit code 1 "
                      "(<https://gitlab.example/p/992|pipeline>). Roll back from the card."),
    "acceptance pass": ("deployed", "deployed",
                        {"environment": "staging", "note": "cases re-run", "passed": True,
                         "next": "production"},
                        "✅ <@U0ACTOR> accepted the release on staging: cases re-run. It may "
                        "now be deployed to production."),
    "acceptance fail": ("deployed", "acceptance_failed",
                        {"environment": "staging", "note": "totals off", "passed": False,
                         "next": "production"},
                        "🚧 <@U0ACTOR> failed the release on staging: totals off. It is held: "
                        "a new ref restarts testing, or it is cancelled."),
    "arm": ("scheduled", "scheduled",
            {"at": "2026-11-23T06:00:00+00:00", "revision": 1,
             "scheduled_at": "2026-11-23T12:00:00+00:00", "when": "2026-11-23 20:00 CST",
             "held": None},
            "🔑 <@U0ACTOR> armed the scheduled deploy: it goes on its own at 2026-11-23 20:00 "
            "CST."),
    "verify pass": ("deployed", "verified", {"note": "checkout works"},
                    "✔️ <@U0ACTOR> verified the release in production: checkout works."),
    "verify fail": ("deployed", "verification_failed", {"note": "500s on /pay"},
                    "⚠️ <@U0ACTOR> found a problem in production: 500s on /pay."),
    "observe": ("verified", "observing", {"until": "2026-11-24T04:00:00+00:00"},
                "👀 Observation period started."),
    "close": ("observing", "closed", {"notes": "*payments v1.1.0*\n• fix"},
              "🏁 The release is closed and handed over to operations.\n*Release notes*\n"
              "*payments v1.1.0*\n• fix"),
    "rollback": ("deployed", "rolling_back",
                 {"environment": "production", "ref": "v1.0.9", "reason": "error rate doubled",
                  "deployment": 9},
                 "⏪ <@U0ACTOR> is rolling back production to `v1.0.9`: error rate doubled."),
    "rollback succeeded": ("rolling_back", "rolled_back",
                           {"environment": "production", "ref": "v1.0.9",
                            "url": "https://gitlab.example/p/993", "seconds": 30},
                           "↩️ Rolled back production to `v1.0.9` "
                           "(<https://gitlab.example/p/993|pipeline>)."),
    "rollback failed": ("rolling_back", "deploy_failed",
                        {"environment": "production", "ref": "v1.0.9",
                         "url": "https://gitlab.example/p/994"},
                        "🔥 Rollback of production failed "
                        "(<https://gitlab.example/p/994|pipeline>). Someone needs to look now; "
                        "once the cause is fixed, roll back again from the card."),
    "abandon": ("deploying", "deploy_failed",
                {"environment": "production", "rollback": False, "pipeline": 995,
                 "url": "https://gitlab.example/p/995", "reason": "nobody can approve the job",
                 "gitlab_status": "manual", "deployment": 10},
                "🛑 <@U0ACTOR> abandoned the deploy to production: nobody can approve the job "
                "(<https://gitlab.example/p/995|pipeline> cancelled in GitLab). It counts as "
                "failed: deploy again or roll back from the card. A cancel leaves manual jobs "
                "alone: GitLab still shows the pipeline waiting on one; don't start it."),
    "cancel": ("testing", "cancelled", {"reason": ""}, "🚫 <@U0ACTOR> cancelled the release."),
    "publish notes": ("verified", "verified",
                      {"tag": "v1.1.0", "url": "https://gitlab.example/r/v1.1.0"},
                      "📰 <@U0ACTOR> published the release notes of `v1.1.0` as a "
                      "<https://gitlab.example/r/v1.1.0|GitLab release>."),
    "edit plan": ("approved", "ready_for_signoff",
                         {"changed": ["rollback steps", "people on duty"],
                          "review_voided": True, "voided_approvals": 2},
                         "🗒 <@U0ACTOR> changed the go-live plan: rollback steps, people on duty. "
                         "Its review and earlier approvals no longer count."),
    "approve plan": ("testing", "testing", {"note": "", "role": "tech_director"},
                            "🗒 <@U0ACTOR> approved the go-live plan as tech_director."),
    "ask plan changes": ("testing", "testing", {"note": "Add the DB rollback <!here>"},
                                "🗒 <@U0ACTOR> asked for changes to the go-live plan: Add the DB "
                                "rollback &lt;!here&gt;."),
    "retype": ("ready_for_signoff", "ready_for_signoff",
               {"old_type": "emergency", "type": "standard", "reason": "Not urgent <!here>",
                "voided_approvals": 1},
               "🏷 <@U0ACTOR> changed the release type from emergency to standard at review: "
               "Not urgent &lt;!here&gt;. 1 sign-off no longer counts; the approvers sign "
               "again."),
    "decide fix": ("verification_failed", "verification_failed",
                   {"reason": "Payouts must work", "found": "500s on /pay",
                    "requester": "U0DEV"},
                   "🛠 <@U0ACTOR> decided the problems found in production get fixed: Payouts "
                   "must work. <@U0DEV>, the fixed ref goes in with `/release ref`; it is tested "
                   "and signed off again."),
    "accept problems": ("verification_failed", "verified",
                        {"reason": "Cosmetic", "found": "Logo blurry", "requester": "U0DEV"},
                        "📌 <@U0ACTOR> accepted the problems found in production (Logo blurry) "
                        "as known issues: Cosmetic. The release stays live and goes on to "
                        "observation."),
}


def payload(event: str, detail: dict[str, Any] | None = None, *, broadcast: bool = False,
            to: str | None = None, actor: str = "U0ACTOR") -> dict[str, Any]:
    """An outbox payload as the service writes it."""
    before, after, default, _ = EVENTS[event]
    return {"event": event, "actor": actor, "from": before, "to": to or after,
            "detail": default if detail is None else detail, "broadcast": broadcast}


def test_the_table_covers_every_renderer() -> None:
    """A new event must get a realistic payload here."""
    assert set(EVENTS) == set(RENDERERS)


@pytest.mark.parametrize("event", list(EVENTS))
def test_every_event_reads_as_one_sentence(event: str) -> None:
    """Each event renders the line people read in the thread."""
    assert event_text(payload(event)) == EVENTS[event][3]


@pytest.mark.parametrize("event", list(EVENTS))
def test_broadcast_does_not_change_the_text(event: str) -> None:
    """Whether it is also sent to the channel is delivery's business, not the text's."""
    assert event_text(payload(event, broadcast=True)) == event_text(payload(event))


@pytest.mark.parametrize("event", list(EVENTS))
def test_an_empty_detail_still_renders(event: str) -> None:
    """Older rows with less detail still make a line."""
    assert event_text(payload(event, {})).strip()


def test_a_report_with_a_tracker_links_its_list() -> None:
    """Counts a tracker gave say where they were counted, linked."""
    tracker = {"source": "ZenTao", "where": "product 3", "url": "https://zentao.example/bugs",
               "counts": {"A": 0, "B": 1, "C": 3}}
    text = event_text(payload("report", EVENTS["report"][2] | {"tracker": tracker}))
    assert "A 0 · B 1 · C 3, counted in <https://zentao.example/bugs|ZenTao> (product 3) — " \
           "does *not* meet" in text


def test_an_acceptance_names_the_bugs_it_covers() -> None:
    """The executive accepts the tracker's bugs by name; later ones are not covered."""
    detail = {"reason": "merchants unpaid", "bugs": ["#5 (B)", "#9 (B)"]}
    assert event_text(payload("accept risk", detail)) == (
        "⚠️ <@U0ACTOR> accepted the open bugs #5 (B), #9 (B) as a known risk: merchants unpaid.")


@pytest.mark.parametrize(("event", "key"), [
    ("reject", "reason"), ("cancel", "reason"), ("accept risk", "reason"), ("hold", "reason"),
    ("override gate", "reason"), ("rollback", "reason"), ("approve", "comment"),
    ("verify pass", "note"), ("verify fail", "note"), ("deploy failed", "error"),
    ("abandon", "reason"),
    ("acceptance pass", "note"), ("acceptance fail", "note"),
])
def test_reasons_are_escaped(event: str, key: str) -> None:
    """A reason saying `<!here>` is shown, not obeyed."""
    text = event_text(payload(event, EVENTS[event][2] | {key: HOSTILE}))
    assert escape(HOSTILE) in text
    assert all(markup not in text for markup in RAW_MARKUP)


@pytest.mark.parametrize("event", list(EVENTS))
def test_names_refs_and_places_are_escaped(event: str) -> None:
    """Refs, environments, roles, projects and job names are escaped too."""
    detail = dict(EVENTS[event][2])
    for key in ("project", "ref", "type", "role", "old_ref", "environment", "failed_job",
                "reason", "note", "comment", "error", "gate"):
        if key in detail:
            detail[key] = HOSTILE
    if "missing" in detail:
        detail["missing"] = [HOSTILE]
    text = event_text(payload(event, detail))
    assert all(markup not in text for markup in RAW_MARKUP), text


@pytest.mark.parametrize("url", ["javascript:alert(1)", "<!channel>", "ftp://x", None, 7])
def test_only_http_links_become_links(url: Any) -> None:
    """A report URL that isn't http(s) is shown as a plain label."""
    text = event_text(payload("report", EVENTS["report"][2] | {"url": url}))
    assert "attached a test report:" in text
    assert "<" not in text.split("attached a ")[1].split(":")[0]


def test_approve_says_who_is_still_missing() -> None:
    """Until the last sign-off, the line names the roles still missing."""
    detail = {"role": "tech_director", "comment": "", "missing": ["test_lead", "executive"]}
    assert event_text(payload("approve", detail)) == (
        "✅ <@U0ACTOR> approved as tech_director. Still waiting for test_lead and executive.")


@pytest.mark.parametrize("to", ["approved", "scheduled"])
def test_approve_says_when_all_sign_offs_are_in(to: str) -> None:
    """The last sign-off says so, and where the release went."""
    detail = {"role": "test_lead", "comment": "", "missing": []}
    assert event_text(payload("approve", detail, to=to)) == (
        f"✅ <@U0ACTOR> approved as test_lead. All sign-offs are in: *{to}*.")


def test_approve_without_missing_roles_adds_nothing() -> None:
    """A repeat approval in the same state says only who approved."""
    detail = {"role": "test_lead", "comment": "", "missing": []}
    assert event_text(payload("approve", detail)) == "✅ <@U0ACTOR> approved as test_lead."


def test_a_passing_report_says_it_meets_the_standard() -> None:
    """No failures: the line says the report is good enough."""
    detail = {"url": "https://ci.example/r/2", "bugs": {"A": 0, "B": 0, "C": 1}, "passes": True,
              "failures": [], "voided_approvals": False}
    assert event_text(payload("report", detail)).endswith(
        "A 0 · B 0 · C 1 — meets the go-live standard.")


def test_a_rollback_pipeline_says_so() -> None:
    """The pipeline line tells a deploy from a rollback."""
    detail = EVENTS["pipeline started"][2] | {"rollback": True}
    assert event_text(payload("pipeline started", detail)).startswith("⏳ Rollback pipeline")


def test_a_change_of_ref_that_voids_nothing_says_nothing_about_it() -> None:
    """Before a report, changing the ref voids nothing."""
    detail = {"old_ref": "v1", "ref": "v2", "voided_approvals": False}
    assert event_text(payload("change ref", detail, to="requested")) == (
        "🔀 <@U0ACTOR> changed the ref from `v1` to `v2`.")


def test_the_bot_itself_is_named_not_mentioned() -> None:
    """Events the scheduler raises are not pings."""
    text = event_text(payload("hold", actor="releasebot"))
    assert "<@" not in text


def test_an_unknown_event_still_renders_escaped() -> None:
    """An event from a newer version shows its name and actor, escaped."""
    text = event_text({"event": "<!channel> teleport", "actor": "U0OPS", "detail": {}})
    assert text == "&lt;!channel&gt; teleport by <@U0OPS>"


def test_a_huge_reason_is_clipped() -> None:
    """Every line fits one Slack text object."""
    text = event_text(payload("reject", {"reason": "<&>" * 4000}))
    assert len(text) <= MAX_TEXT
    assert text.startswith("⛔ <@U0ACTOR> rejected the release: &lt;&amp;&gt;")


STUCK = {"environment": "production", "rollback": False, "pipeline": 12,
         "url": "https://gitlab.example/p/12", "status": "manual", "minutes": 3}


@pytest.mark.parametrize(("detail", "reason"), [
    ({"kind": "manual", "job": "deploy:production", "stage": "deploy"},
     "waiting on the manual job `deploy:production` in stage deploy"),
    ({"kind": "manual"}, "waiting on a manual job"),
    ({"kind": "scheduled", "status": "scheduled", "job": "deploy", "stage": "deploy"},
     "scheduled: the delayed job `deploy` in stage deploy has not started"),
    ({"kind": "timeout", "status": "running", "minutes": 61}, "running for 61 minutes"),
    ({"kind": "timeout", "status": "waiting_for_resource", "minutes": 75},
     "waiting for resource for 75 minutes"),
    ({"kind": "timeout", "status": None, "minutes": 61}, "not finished after 61 minutes"),
])
def test_a_stuck_deploy_names_the_reason_gitlab_gives(detail: dict[str, Any],
                                                      reason: str) -> None:
    """The job it waits on, or its status and for how long, and the way out."""
    text = notice_text("stuck", "REL-7", {**STUCK, **detail})
    assert text.startswith(f"⏳ The production deploy of REL-7 is stuck: {reason} "
                           "(<https://gitlab.example/p/12|pipeline #12>).")
    assert "`/release abandon REL-7 &lt;reason&gt;`" in text


def test_a_stuck_job_name_is_escaped() -> None:
    """A job named `<!channel>` is shown, not obeyed."""
    text = notice_text("stuck", "REL-7", {**STUCK, "kind": "manual", "job": "<!channel>",
                                          "stage": "<!here>"})
    assert not any(raw in text for raw in RAW_MARKUP)


def test_testers_are_asked_to_accept_and_the_release_manager_to_arm() -> None:
    """The direct messages that prompt an acceptance verdict and an arming say what to type."""
    assert notice_text("accept", "REL-5", {"environment": "staging"}) == (
        "🧪 REL-5 is deployed to staging: please run the acceptance cases there, then pass or "
        "fail it from the card or with `/release verify REL-5 pass|fail [note]`. It goes no "
        "further until you do.")
    assert notice_text("arm", "REL-5", {"when": "2026-11-23 20:00 CST"}) == (
        "🔑 REL-5 was due to deploy at 2026-11-23 20:00 CST but is not armed: it deploys on its "
        "own only after the release manager arms it. Arm it from the card or with "
        "`/release arm REL-5`.")
    assert "<!here>" not in notice_text("accept", "REL-5", {"environment": HOSTILE})


@pytest.mark.parametrize(("seconds", "said"), [
    (0, "under a second"), (0.4, "under a second"), (12, "12 s"), (60, "1 min"),
    (754, "12 min 34 s"), (3600, "1 h"), (7260, "2 h 1 min")])
def test_durations_read_as_people_say_them(seconds: float, said: str) -> None:
    """One formatter for how long a pipeline took: never `0 min 0 s`."""
    assert duration(seconds) == said
    line = event_text({"event": "deploy succeeded", "actor": "releasebot", "to": "deployed",
                       "detail": {"environment": "staging", "ref": "v1", "seconds": seconds}})
    assert f" in {said} " in line and "0 min 0 s" not in line


def test_role_lists_read_a_b_and_c() -> None:
    """Sign-offs still missing are joined as `a, b and c`, never `a and b and c`."""
    line = event_text({"event": "approve", "actor": "U0ACTOR", "to": "ready_for_signoff",
                       "detail": {"role": "qa", "missing": ["executive", "tech_director",
                                                            "test_lead"]}})
    assert line.endswith("Still waiting for executive, tech_director and test_lead.")
    assert sole_signer_sentence(["a", "b", "c"]).startswith("⚠️ Only the requester holds a, b "
                                                            "and c,")
