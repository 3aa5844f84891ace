"""A train's card: the matrix of components and environments, within Slack's limits."""

from __future__ import annotations

from typing import Any

import pytest

from bot.readmodel import ReleaseView
from bot.workflow import State
from emulators.slack import block_errors
from handlers.cards import build_release_card, matrix_text
from handlers.home import build_home
from handlers.status import deploys_text, live_text, what_text
from storage.models import Deployment, ReleaseComponent
from tests.handlers.test_cards import (
    HOSTILE,
    RAW_MARKUP,
    TZ,
    assert_no_raw_markup,
    assert_within_limits,
    make_release,
    mrkdwn_texts,
)

ENVS = ("staging", "production")


def component(i: int, project: str, ref: str = "v2.0.0") -> ReleaseComponent:
    """Component i of release 42, pinned."""
    return ReleaseComponent(release_id=42, position=i, project=project, ref=ref,
                            pinned_sha=f"{i:x}{'abcdef0123' * 4}"[:40])


def deployment(project: str, env: str, status: str = "success", *, id: int,
               rollback: bool = False) -> Deployment:
    """One pipeline of release 42, revision 1."""
    return Deployment(id=id, release_id=42, revision=1, project=project, environment=env,
                      ref="release/REL-42", status=status, rollback=rollback,
                      previous_ref="v1.0.0", previous_sha="0a1b2c3d4e" * 4, started_by="U0OPS")


def train_view(state: State, comps: list[ReleaseComponent],
               deployments: list[Deployment] = (), envs: tuple[str, ...] = ENVS,
               **fields: Any) -> ReleaseView:
    """A train's view, as load_view would build it."""
    release = make_release(state, project=comps[0].project, ref=comps[0].ref, pinned_revision=1,
                           pinned_sha=comps[0].pinned_sha, **fields)
    return ReleaseView(release=release, required_roles=("tech_director", "test_lead"),
                       approvals=[], report=None, ticks=[], deployments=list(deployments),
                       environments=envs, components=comps,
                       component_envs={c.project: envs for c in comps})


def test_the_matrix_shows_each_cell_and_each_pinned_commit() -> None:
    """Rows are components in deploy order, columns environments; a failure stops the train."""
    comps = [component(0, "payments"), component(1, "ledger"), component(2, "web")]
    view = train_view(State.DEPLOY_FAILED, comps, [
        deployment("payments", "staging", id=1), deployment("ledger", "staging", id=2),
        deployment("web", "staging", id=3), deployment("payments", "production", id=4),
        deployment("ledger", "production", "failed", id=5)])
    rows = matrix_text(view).splitlines()
    assert rows[1] == (f"payments `v2.0.0` @ `{comps[0].pinned_sha[:7]}`   ✅ staging  "
                       "✅ production")
    assert rows[2].endswith("✅ staging  ❌ production")
    assert rows[3].endswith("✅ staging  ▫️ production")
    assert view.rollback_order == ["ledger", "payments"]
    _, blocks = build_release_card(view, TZ)
    confirm = next(e["confirm"]["text"]["text"] for b in blocks if b["type"] == "actions"
                   for e in b["elements"] if e.get("action_id") == "release_rollback")
    assert confirm == ("Redeploy what ran before REL-42, one pipeline at a time: ledger, then "
                       "payments?")
    assert "*Train* 3 projects, deployed in this order: payments → ledger → web" in str(blocks)


@pytest.mark.parametrize("state", [State.READY_FOR_SIGNOFF, State.DEPLOYING, State.DEPLOYED,
                                   State.DEPLOY_FAILED, State.ROLLING_BACK])
def test_ten_components_fit_slacks_limits(state: State) -> None:
    """Ten components with the longest names and refs, three long environments, every cell
    state: the card, its status texts and App Home stay within Block Kit's limits."""
    envs = ("s" * 64, "qa-" + "q" * 61, "p" * 64)
    comps = [component(i, f"{chr(97 + i)}{'x' * 99}", "r" * 255) for i in range(10)]
    statuses = ["success", "running", "failed", "canceled", "pending"]
    deployments = [deployment(c.project, env, statuses[(i + j) % 5], id=10 * i + j,
                              rollback=(i + j) % 3 == 0)
                   for i, c in enumerate(comps) for j, env in enumerate(envs)]
    view = train_view(state, comps, deployments, envs, title=HOSTILE * 20)
    text, blocks = build_release_card(view, TZ)
    assert_within_limits(text, blocks)
    assert block_errors(blocks) == []
    matrix = matrix_text(view)
    assert len(matrix) <= 3000 and matrix.count("\n") == 11
    assert all(f"`{c.pinned_sha[:7]}`" in matrix for c in comps)
    home = build_home([view], [view], [view], TZ)
    assert len(home["blocks"]) <= 100 and block_errors(home["blocks"], 100) == []
    assert len(deploys_text(view, TZ)) <= 3000
    live = {(c.project, env): None for c in comps for env in envs}
    assert len(live_text(view, live)) <= 3000


def test_a_train_escapes_what_people_typed() -> None:
    """Projects come from the policy, refs from people: both reach Slack escaped."""
    comps = [component(0, "payments", HOSTILE), component(1, "web", HOSTILE)]
    view = train_view(State.DEPLOYED, comps, [deployment("payments", "staging", id=1)])
    _, blocks = build_release_card(view, TZ)
    assert_no_raw_markup(mrkdwn_texts(blocks))
    assert all(m not in what_text(view.release, comps) for m in RAW_MARKUP)


def test_a_train_is_one_line_in_lists() -> None:
    """A few components and how many more, in deploy order."""
    comps = [component(i, name) for i, name in enumerate(("payments", "ledger", "web", "api"))]
    assert what_text(make_release(), comps) == (
        "🚆 payments `v2.0.0` → ledger `v2.0.0` → web `v2.0.0` → +1 more")
    assert what_text(make_release(), comps[:1]) == "payments `v1.1.0`"
