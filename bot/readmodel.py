"""What people see of a release: one read of everything a card, `status` or App Home shows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from sqlmodel.ext.asyncio.session import AsyncSession

from bot import calendar
from bot.plan import PlanField
from bot.plan import missing as plan_missing
from bot.policy import ChecklistItem, Policy, ReleaseType, TypePolicy, checklist_of
from bot.trains import Train, previous_version, rollback_targets, train_of, unpinned
from bot.transition import is_armed
from bot.workflow import (
    BEFORE_DEPLOY,
    Actor,
    Check,
    Ctx,
    Event,
    Facts,
    Pin,
    State,
    allowed_events,
    armable,
    awaiting_acceptance,
    bypass_allowed,
    can_sign,
    gate_open,
    hotfixes_merged,
    newest_env,
    observation_over,
    owns_items,
    permits,
    report_fails,
    retype_possible,
    valid_items,
    way_back,
)
from storage import queries as q
from storage.models import (
    Acceptance,
    Approval,
    AuditEntry,
    ChecklistTick,
    Deployment,
    Release,
    ReleaseComponent,
    TestReport,
    TrackerCount,
    WorkItem,
)
from storage.view_rows import ViewRows, release_view_rows, view_rows_of


@dataclass(frozen=True)
class ReleaseView:
    """A release with its approvals, report, ticks, deploys and (optionally) its trail."""

    release: Release
    required_roles: tuple[str, ...]
    approvals: Sequence[Approval]
    report: TestReport | None
    ticks: Sequence[ChecklistTick]
    deployments: Sequence[Deployment]
    environments: tuple[str, ...]
    work_items: Sequence[WorkItem] = ()
    audit: Sequence[AuditEntry] = ()
    one_person_many_roles: bool = False
    plan_required: tuple[str, ...] = ()  # go-live plan fields the type requires
    plan_reviewer: str | None = None  # the role that reviews the plan; None: no review
    executive_decides: bool = False  # the type may ship with known issues (executive's call)
    sole_signers: tuple[str, ...] = ()  # required roles only the requester holds
    components: Sequence[ReleaseComponent] = ()  # in deploy order; one unless a train
    component_envs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    planned_hold: str | None = None  # what holds the deploy at its planned time, if anything
    requester_can_deploy: bool = False  # the type lets the requester deploy too

    @property
    def plan_missing(self) -> tuple[str, ...]:
        """Labels of required plan fields left empty."""
        return plan_missing(self.release.plan, self.plan_required)

    @property
    def type_confirmed(self) -> bool:
        """The plan's reviewer confirmed the type the release has now."""
        return self.release.type_confirmed_as == self.release.type

    @property
    def decision_due(self) -> bool:
        """Online verification failed and an executive's decision on it is awaited."""
        rel = self.release
        return (self.state is State.VERIFICATION_FAILED and self.executive_decides
                and not (rel.decision and rel.decided_revision == rel.revision))

    @property
    def plan_waits_for_review(self) -> bool:
        """A reviewer is configured and has not approved the plan as it is."""
        return self.plan_reviewer is not None and self.release.plan_review != "ok"
    acceptances: Sequence[Acceptance] = ()  # testers' verdicts before production, this revision
    bug_count: TrackerCount | None = None  # what the bug tracker said last, if it counts them
    live: Mapping[str, Deployment | None] = field(default_factory=dict)  # env → what runs there

    @property
    def state(self) -> State:
        """The release's state."""
        return State(self.release.state)

    @property
    def approved_by(self) -> dict[str, str]:
        """Role → approver for the current revision."""
        return {a.role: a.approver for a in self.approvals}

    @property
    def missing_roles(self) -> list[str]:
        """Roles still to sign."""
        return [r for r in self.required_roles if r not in self.approved_by]

    @property
    def pin(self) -> Pin | None:
        """The commit this revision was pinned to at sign-off, if it has reached it."""
        rel = self.release
        if rel.pinned_sha and rel.pinned_revision == rel.revision:
            return Pin(rel.ref, rel.pinned_sha)
        return None

    def may_sign(self, actor: Actor) -> str | None:
        """The role this person's approval would count for now (four eyes: `can_sign`)."""
        if self.state is not State.READY_FOR_SIGNOFF:
            return None
        facts = Facts(state=self.state, requester=self.release.requester,
                      required_roles=self.required_roles, approvals=self.approved_by,
                      one_person_many_roles=self.one_person_many_roles)
        return can_sign(facts, actor)

    @cached_property
    def facts(self) -> Facts:
        """The workflow's facts as far as the view knows them (see `UNKNOWN` for the rest)."""
        rel = self.release
        undo = rollback_targets(self.deployments, self.train.projects)
        return Facts(
            state=self.state, requester=rel.requester, required_roles=self.required_roles,
            approvals=self.approved_by, allow_known_issues=self.executive_decides,
            gate_overridden=rel.gate_override_by is not None,
            checklist_total=len(rel.checklist), checklist_done=frozenset(self.ticked),
            checklist_roles=tuple(step.owner for step in self.checklist),
            environments=self.environments,
            deployed_envs=frozenset(self.train.reached(self.deployments, rel.revision)),
            started_envs=frozenset(d.environment for d in self.deployments
                                   if not d.rollback and d.revision == rel.revision),
            accepted_envs=frozenset(e for e, a in self.accepted.items() if a.passed),
            has_schedule=rel.scheduled_at is not None, armed=self.armed,
            rollback_ref=previous_version(undo), rollback_unpinned=unpinned(undo),
            requester_can_deploy=self.requester_can_deploy,
            one_person_many_roles=self.one_person_many_roles, pinned=self.pin is not None,
            plan_missing=self.plan_missing, plan_reviewer=self.plan_reviewer,
            plan_review=rel.plan_review, plan_review_note=rel.plan_review_note or "",
            rollback_steps=bool(rel.plan.get(PlanField.ROLLBACK)), release_type=rel.type,
            type_confirmed=self.type_confirmed, rel_id=rel.rel_id,
            decided=rel.decision if rel.decided_revision == rel.revision else None)

    def may(self, actor: Actor, event: Event, environment: str | None = None) -> bool:
        """Whether this person may raise `event` on the release now, as the table decides from
        what the view knows; a guard needing more (the deploy gate, GitLab) counts as met."""
        ctx = Ctx(actor, environment=environment, revision=self.release.revision)
        return permits(self.facts, event, ctx, unknown=UNKNOWN)

    def may_review_plan(self, actor: Actor) -> bool:
        """The plan waits for its review, and this person is its reviewer (not the requester)."""
        rel = self.release
        return (self.plan_reviewer is not None and self.plan_reviewer in actor.roles
                and actor.user != rel.requester and rel.plan_review is None
                and not self.plan_missing and Event.PLAN_OK in allowed_events(self.state))

    def may_decide(self, actor: Actor) -> bool:
        """The executive's decision after a failed online verification is due, and this person
        is an executive who may take it (not the requester)."""
        return (self.decision_due and "executive" in actor.roles
                and actor.user != self.release.requester)

    @property
    def is_train(self) -> bool:
        """A release of several projects."""
        return len(self.components) > 1

    @property
    def train(self) -> Train:
        """The components and the environments each deploys to."""
        projects = tuple(c.project for c in self.components) or (self.release.project,)
        return Train(projects, {p: tuple(self.component_envs.get(p, self.environments))
                                for p in projects})

    @property
    def rollback_order(self) -> list[str]:
        """The components a rollback would undo now, in the order it undoes them."""
        return [d.project for d in rollback_targets(self.deployments, self.train.projects)]

    @property
    def rollback_unpinned(self) -> str | None:
        """The ref a rollback would put back when no commit is recorded for it."""
        return unpinned(rollback_targets(self.deployments, self.train.projects))

    def cell(self, project: str, env: str) -> str | None:
        """Where one component stands in one environment in this revision: None (not going
        there), "waiting", "deploying", "deployed", "failed", "rolling back", "rolled back" or
        "rollback failed"."""
        if env not in self.train.envs.get(project, ()):
            return None
        mine = [d for d in self.deployments if d.project == project and d.environment == env
                and d.revision == self.release.revision]
        if not mine:
            return "waiting"
        last = mine[-1]
        if last.status in ("pending", "running"):
            return "rolling back" if last.rollback else "deploying"
        if last.status == "success":
            return "rolled back" if last.rollback else "deployed"
        return "rollback failed" if last.rollback else "failed"

    @property
    def done_envs(self) -> list[str]:
        """Environments this revision reached with every component, in order."""
        ok = self.train.reached(self.deployments, self.release.revision)
        return [e for e in self.environments if e in ok]

    @property
    def next_env(self) -> str | None:
        """The environment a Deploy button would go to."""
        return next((e for e in self.environments if e not in self.done_envs), None)

    @property
    def newest_env(self) -> str | None:
        """The latest environment this revision reached."""
        return newest_env(self.environments, self.done_envs)

    @property
    def accepted(self) -> dict[str, Acceptance]:
        """Environment → the tester's verdict there, this revision."""
        return {a.environment: a for a in self.acceptances}

    @property
    def awaiting_acceptance(self) -> str | None:
        """The environment before production where a tester's pass is due now, if any."""
        if self.state is not State.DEPLOYED:
            return None
        passed = [env for env, a in self.accepted.items() if a.passed]
        return awaiting_acceptance(self.environments, self.done_envs, passed)

    @property
    def armed(self) -> bool:
        """The release manager armed this revision's scheduled deploy."""
        return is_armed(self.release)

    @property
    def unarmed(self) -> bool:
        """A planned deploy still to go that the release manager could arm and has not."""
        rel = self.release
        return (rel.scheduled_at is not None and not self.armed and self.next_env is not None
                and Event.ARM in allowed_events(self.state))

    @property
    def active_deployment(self) -> Deployment | None:
        """The pipeline running now, if any."""
        return next((d for d in reversed(self.deployments)
                     if d.status in ("pending", "running")), None)

    @property
    def checklist(self) -> list[ChecklistItem]:
        """The release's checklist items, each with the role that ticks it."""
        return checklist_of(self.release.checklist)

    @property
    def ticked(self) -> set[int]:
        """Ticked checklist item numbers."""
        return {t.item for t in self.ticks}


# Guards on facts a view does not hold: the deploy gate and clock, GitLab's merge-back check,
# the live version before a deploy, the type's bug limits, and what a command or form adds.
UNKNOWN: frozenset[Check] = frozenset((
    gate_open, armable, bypass_allowed, observation_over, hotfixes_merged, way_back,
    report_fails, valid_items, owns_items, retype_possible))

TIMELINE_ROWS = 25  # what a status or a closing summary shows of the trail


async def load_view(session: AsyncSession, policy: Policy, release: Release, *,
                    full: bool = False) -> ReleaseView:
    """Everything shown about a release already read (`full` adds work items and the trail)."""
    return view_of(policy, await view_rows_of(session, release, full=full, trail=TIMELINE_ROWS))


async def read_view(session: AsyncSession, policy: Policy, release_id: int, *,
                    full: bool = False, live: bool = False) -> ReleaseView | None:
    """A release and everything shown about it, in one statement (`live`: what runs where)."""
    rows = await release_view_rows(session, release_id, full=full, trail=TIMELINE_ROWS,
                                   live_in=policy.environment_names if live else ())
    return None if rows is None else view_of(policy, rows)


def view_of(policy: Policy, rows: ViewRows) -> ReleaseView:
    """The view of stored rows under the policy's rules for the release's type and project."""
    release = rows.release
    try:
        rules: TypePolicy | None = policy.type_policy(ReleaseType(release.type))
    except Exception:  # a type dropped from the policy since: show the release anyway
        rules = None
    components = rows.components or [q.own_component(release)]
    train = train_of([c.project for c in components], policy)
    envs = train.environments
    project = policy.projects.get(release.project)  # the first component's: its bug tracker
    return ReleaseView(
        release=release, required_roles=tuple(rules.approvers) if rules else (),
        approvals=rows.approvals, report=rows.report, ticks=rows.ticks,
        deployments=rows.deployments, environments=envs, work_items=rows.work_items,
        components=components, component_envs=train.envs,
        audit=rows.audit, one_person_many_roles=policy.one_person_many_roles,
        plan_required=tuple(rules.plan.required) if rules else (),
        plan_reviewer=rules.plan.reviewer if rules else None,
        executive_decides=rules.allow_known_issues if rules else False,
        sole_signers=tuple(policy.sole_signer_roles(release.type, release.requester))
        if rules else (),
        acceptances=rows.acceptances,
        requester_can_deploy=rules.requester_can_deploy if rules else False,
        bug_count=rows.bug_count if project and project.bug_tracker else None,
        live={env: rows.live.get(env) for env in envs} if rows.live else {},
        planned_hold=calendar.planned_hold(release.scheduled_at, policy, release.type)
        if release.scheduled_at and State(release.state) in BEFORE_DEPLOY else None)
