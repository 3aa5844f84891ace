"""Release trains, pure: the deploy order, bad input, the environments, what goes next and back."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.graph import find_cycle
from bot.policy import PolicyError
from bot.releases import NewRelease, request_problems
from bot.trains import (
    Train,
    deploy_order,
    order_problem,
    rollback_targets,
    train_environments,
    train_of,
)
from bot.workflow import SYSTEM, Ctx, Event, Facts, State, decide
from emulators.sample import sample_policy
from storage.models import Deployment
from tests.fixtures import THREE_PROJECTS, FakeClock

POLICY = sample_policy(projects=THREE_PROJECTS)  # payments ← ledger ← web
NOW = FakeClock().now


def problems(*parts: tuple[str, str], order: tuple[str, ...] = ()) -> dict[str, str]:
    """What a request of these (project, ref) parts is refused for."""
    first, *more = parts
    new = NewRelease(project=first[0], ref=first[1], title="Train", more=tuple(more),
                     order=order)
    return request_problems(new, policy=POLICY, now=NOW)


def test_the_order_follows_depends_on_then_as_typed() -> None:
    """web depends on ledger, ledger on payments; unrelated projects keep the typed order."""
    assert deploy_order(["web", "payments", "ledger"], (), POLICY.dependencies) == [
        "payments", "ledger", "web"]
    assert deploy_order(["b", "a"], (), {}) == ["b", "a"]
    assert deploy_order(["b", "a", "c"], ("a", "b"), {"c": ["b"]}) == ["a", "b", "c"]


def test_depends_on_counts_through_projects_outside_the_train() -> None:
    """web needs payments first through ledger, even when ledger is not in the train."""
    assert deploy_order(["web", "payments"], (), POLICY.dependencies) == ["payments", "web"]
    assert order_problem(["web", "payments"], ("web", "payments"), POLICY.dependencies) == (
        "--order web,payments contradicts depends_on: web depends on payments, so payments "
        "deploys first.")


def test_order_may_tighten_but_never_contradict() -> None:
    """An order depends_on leaves open is taken; one against it is refused, naming both."""
    assert order_problem(["payments", "ledger"], ("payments", "ledger"),
                         POLICY.dependencies) is None
    assert problems(("web", "v2"), ("ledger", "v2"), order=("web", "ledger")) == {
        "order": "--order web,ledger contradicts depends_on: web depends on ledger, so ledger "
                 "deploys first."}


def test_a_cycle_is_named() -> None:
    """A circle in the combined order is refused with its projects in order."""
    with pytest.raises(ValueError, match=r"goes round in a circle: (a → b → a|b → a → b)\."):
        deploy_order(["a", "b"], (), {"a": ["b"], "b": ["a"]})
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b"], "b": []}) is None


def test_a_policy_whose_projects_depend_in_a_circle_is_refused() -> None:
    """The file names the circle, at the line of the project it starts from."""
    with pytest.raises(PolicyError, match="depend on each other in a circle: "
                                          "payments → ledger → payments"):
        sample_policy(projects={**THREE_PROJECTS, "payments": {"depends_on": ["ledger"]}})
    with pytest.raises(PolicyError, match=r"depends_on\.0: unknown project 'billing'"):
        sample_policy(projects={"web": {"depends_on": ["billing"]}})
    with pytest.raises(PolicyError, match=r"depends_on\.0: a project can't depend on itself"):
        sample_policy(projects={"web": {"depends_on": ["web"]}})


@pytest.mark.parametrize(("parts", "order", "expected"), [
    ((("payments", "v2"), ("billing", "v2")), (),
     {"components": "There is no project 'billing'; known projects: ledger, payments, web."}),
    ((("payments", "v2"), ("web", "v2"), ("payments", "v3")), (),
     {"components": "payments is named twice; a release lists each project once."}),
    ((("payments", "v2"), ("web", "v2..x")), (),
     {"components": "web: 'v2..x' is not a valid git ref name: it can't hold '..' or '@{'."}),
    ((("payments", "v2"), ("web", "v2")), ("web", "billing"),
     {"order": "--order names billing, which is not part of this release (payments, web)."}),
    ((("payments", "v2"), ("web", "v2")), ("web", "web"),
     {"order": "--order names web twice."}),
    ((("payments", "v1"), *((f"p{i}", "v1") for i in range(10))), (),
     {"components": "A release has at most 10 projects; this one names 11."}),
])
def test_bad_trains_are_refused_with_one_sentence(parts: tuple[tuple[str, str], ...],
                                                  order: tuple[str, ...],
                                                  expected: dict[str, str]) -> None:
    """Each problem is one sentence naming what is wrong."""
    assert problems(*parts, order=order) == expected


def test_a_one_project_request_is_unchanged() -> None:
    """No train problems, whatever the policy's depends_on says."""
    assert problems(("web", "v2")) == {}


def test_projects_must_agree_on_their_environments() -> None:
    """The train's environments merge in order; production must be the same last one."""
    assert train_environments(["web", "payments"], POLICY) == ("staging", "production")
    odd = sample_policy(projects={"web": {"environments": ["live"]}})
    with pytest.raises(ValueError, match="must end in the same production environment; these "
                                         "end payments in production, web in live"):
        train_environments(["payments", "web"], odd)
    crossed = sample_policy(projects={
        "payments": {"environments": ["qa", "staging", "production"]},
        "web": {"environments": ["staging", "qa", "production"]}})
    with pytest.raises(ValueError, match="list their environments in different orders"):
        train_environments(["payments", "web"], crossed)


def dep(project: str, env: str, status: str = "success", *, id: int, rollback: bool = False,
        previous: str | None = "v1.0.0", revision: int = 1) -> Deployment:
    """One deployment of release 1."""
    return Deployment(id=id, release_id=1, revision=revision, project=project,
                      environment=env, ref="release/REL-1", status=status, rollback=rollback,
                      previous_ref=previous, started_by="U0OPS")


TRAIN: Train = train_of(["payments", "ledger", "web"], POLICY)


def test_an_environment_is_reached_when_every_component_going_there_is() -> None:
    """web has no staging: staging is done with payments and ledger."""
    deployments = [dep("payments", "staging", id=1)]
    assert TRAIN.environments == ("staging", "production")
    assert TRAIN.waiting(deployments, 1, "staging") == ("ledger",)
    assert TRAIN.reached(deployments, 1) == frozenset()
    deployments.append(dep("ledger", "staging", id=2))
    assert TRAIN.reached(deployments, 1) == frozenset({"staging"})
    assert TRAIN.waiting(deployments, 1, "production") == ("payments", "ledger", "web")
    assert TRAIN.reached(deployments, 2) == frozenset()  # a new revision starts over


def test_rollback_undoes_the_last_environment_in_reverse_order() -> None:
    """ledger failed after payments in production: ledger first, then payments; once one is
    rolled back it is not undone again."""
    deployments = [dep("payments", "staging", id=1), dep("ledger", "staging", id=2),
                   dep("payments", "production", id=3), dep("ledger", "production", "failed",
                                                            id=4)]
    order = ["payments", "ledger", "web"]
    assert [d.id for d in rollback_targets(deployments, order)] == [4, 3]
    deployments.append(dep("ledger", "production", id=5, rollback=True))
    assert [d.id for d in rollback_targets(deployments, order)] == [3]
    deployments.append(dep("payments", "production", id=6, rollback=True))
    assert rollback_targets(deployments, order) == []


def test_a_component_with_no_earlier_version_is_left_out() -> None:
    """Nothing is known to have run before web: a rollback can't redeploy it."""
    deployments = [dep("payments", "production", id=1), dep("web", "production", id=2,
                                                            previous=None)]
    assert [d.project for d in rollback_targets(deployments, ["payments", "web"])] == [
        "payments"]


def test_the_table_keeps_a_train_deploying_until_its_environment_is_done() -> None:
    """A component's success moves the release on only when it was the last to go there;
    a rollback's only when nothing else waits to be undone."""
    facts = Facts(state=State.DEPLOYING, requester="U0DEV",
                  environments=("staging", "production"))
    ctx = Ctx(SYSTEM, environment="staging")
    assert decide(facts, Event.DEPLOY_SUCCEEDED, ctx) is State.DEPLOYING
    done = replace(facts, deployed_envs=frozenset({"staging"}))
    assert decide(done, Event.DEPLOY_SUCCEEDED, ctx) is State.DEPLOYED
    back = replace(facts, state=State.ROLLING_BACK, rollback_ref="v1.0.0")
    assert decide(back, Event.ROLLBACK_SUCCEEDED, ctx) is State.ROLLING_BACK
    assert decide(replace(back, rollback_ref=None), Event.ROLLBACK_SUCCEEDED,
                  ctx) is State.ROLLED_BACK
