"""The release workflow as data: states, events, and a transition table with guards."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from bot.plan import listed


class State(StrEnum):
    """Where a release is in its life; the value is stored, the label is shown."""

    REQUESTED = "requested"
    TESTING = "testing"
    READY_FOR_SIGNOFF = "ready_for_signoff"
    APPROVED = "approved"
    SCHEDULED = "scheduled"
    DEPLOYING = "deploying"
    DEPLOYED = "deployed"
    ACCEPTANCE_FAILED = "acceptance_failed"  # a tester failed it before production
    VERIFICATION_FAILED = "verification_failed"
    VERIFIED = "verified"
    OBSERVING = "observing"
    CLOSED = "closed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    DEPLOY_FAILED = "deploy_failed"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"

    @property
    def label(self) -> str:
        """The words people see."""
        return _LABELS.get(self, self.value.replace("_", " "))


_LABELS = {State.READY_FOR_SIGNOFF: "ready for sign-off"}

# Named sets of states: every other module uses these rather than writing states out.
TERMINAL = (State.CLOSED, State.CANCELLED, State.ROLLED_BACK)
ACTIVE = tuple(s for s in State if s not in TERMINAL)
BEFORE_DEPLOY = (State.REQUESTED, State.TESTING, State.READY_FOR_SIGNOFF, State.APPROVED,
                 State.SCHEDULED)
SIGNED_OFF = (State.APPROVED, State.SCHEDULED)
LIVE = (State.DEPLOYED, State.VERIFICATION_FAILED, State.VERIFIED, State.OBSERVING)
PREPARING = (*BEFORE_DEPLOY, State.DEPLOY_FAILED)  # the checklist and gate can still change
UNTESTED = (State.REQUESTED, State.TESTING)  # waiting for a test report
# Not deployed yet and open to rework: a rejected release comes back with a new ref or report.
REWORKABLE = (*BEFORE_DEPLOY, State.REJECTED)
WENT_LIVE = (State.VERIFIED, State.OBSERVING, State.CLOSED)  # verified in production
UNVERIFIED = (State.DEPLOYED, State.VERIFICATION_FAILED)  # live, not yet verified


class Event(StrEnum):
    """Something that happens to a release; the value names it in errors and the audit trail."""

    REQUEST = "request"
    START_TESTING = "start testing"
    REPORT = "report"
    ACCEPT_RISK = "accept risk"
    APPROVE = "approve"
    REJECT = "reject"
    CHANGE_REF = "change ref"
    TICK = "tick"
    OVERRIDE_GATE = "override gate"
    HOLD = "hold"
    DEPLOY = "deploy"
    PIPELINE_STARTED = "pipeline started"
    DEPLOY_SUCCEEDED = "deploy succeeded"
    DEPLOY_FAILED = "deploy failed"
    ACCEPTANCE_PASS = "acceptance pass"  # a tester passes it on an environment before production
    ACCEPTANCE_FAIL = "acceptance fail"
    VERIFY_PASS = "verify pass"
    VERIFY_FAIL = "verify fail"
    OBSERVE = "observe"
    CLOSE = "close"
    ROLLBACK = "rollback"
    ROLLBACK_SUCCEEDED = "rollback succeeded"
    ROLLBACK_FAILED = "rollback failed"
    ABANDON = "abandon"
    CANCEL = "cancel"
    PUBLISH_NOTES = "publish notes"
    EDIT_PLAN = "edit plan"
    PLAN_OK = "approve plan"
    PLAN_CHANGES = "ask plan changes"
    ARM = "arm"  # the release manager lets a scheduled or held release deploy on its own
    NEW_BUGS = "new bugs"  # the bug tracker shows open bugs the test report did not
    RETYPE = "retype"  # the plan's reviewer corrects the release type at review
    DECIDE_FIX = "decide fix"  # after a failed online verification: the problems get fixed
    DECIDE_ACCEPT = "accept problems"  # ... or the release stays live with them as known issues


class Who(StrEnum):
    """Who may raise an event; checked before any other guard."""

    TESTER = "tester"
    APPROVER = "approver"
    EXECUTIVE = "executive"
    RELEASE_MANAGER = "release_manager"
    REQUESTER = "requester"
    DEPLOYER = "deployer"
    PLAN_REVIEWER = "plan reviewer"
    ITEM_OWNER = "item owner"  # the release manager, or a role that ticks a checklist item
    SYSTEM = "system"


def _bugs(count: int, severity: str) -> str:
    """'1 open B bug', '2 open A bugs'."""
    return f"{count} open {severity} bug{'' if count == 1 else 's'}"


@dataclass(frozen=True)
class Report:
    """The current test report as the workflow sees it."""

    bugs: Mapping[str, int]
    limits: Mapping[str, int]
    accepted: bool = False

    @property
    def failures(self) -> list[str]:
        """The go-live standard's failures, e.g. ['2 open A bugs (limit 0)']."""
        return [f"{_bugs(self.bugs.get(sev, 0), sev)} (limit {limit})"
                for sev, limit in sorted(self.limits.items()) if self.bugs.get(sev, 0) > limit]

    @property
    def passes(self) -> bool:
        """Whether the report meets the go-live standard."""
        return not self.failures


@dataclass(frozen=True)
class Facts:
    """Everything the guards need to know about one release, read in its transaction."""

    state: State
    requester: str
    required_roles: tuple[str, ...] = ()
    approvals: Mapping[str, str] = field(default_factory=dict)  # role -> user, this revision
    report: Report | None = None
    report_required: bool = True
    allow_known_issues: bool = False
    bypass_allowed: bool = False
    gate_open: bool = True
    gate_reason: str | None = None
    gate_next: str | None = None  # the next allowed deploy time, as people read it
    gate_overridden: bool = False
    checklist_total: int = 0
    checklist_done: frozenset[int] = frozenset()
    environments: tuple[str, ...] = ("production",)
    deployed_envs: frozenset[str] = frozenset()
    started_envs: frozenset[str] = frozenset()  # deploys of this revision begun, however ended
    has_schedule: bool = False
    rollback_ref: str | None = None
    # The version a rollback would put back, when it is recorded only as a ref (rows from before
    # commits were pinned): redeploying the ref now would not bring back what ran.
    rollback_unpinned: str | None = None
    requester_can_deploy: bool = False
    one_person_many_roles: bool = False
    pinned: bool = True  # this revision's commit was pinned at sign-off
    plan_missing: tuple[str, ...] = ()  # labels of required go-live plan fields left empty
    plan_reviewer: str | None = None  # the role that reviews the plan; None: no review
    plan_review: str | None = None  # the plan as it is: "ok", "changes" or not reviewed
    plan_review_note: str = ""
    release_type: str = "standard"
    type_confirmed: bool = False  # the plan's reviewer confirmed the release's current type
    decided: str | None = None  # the executive's decision on this revision's failed verification
    rollback_steps: bool = False  # the plan says how to roll back by hand
    previous_known: bool = True  # the environment's live version before a deploy is known
    # Shipped hotfixes of the project that the pinned commit lacks, e.g. "REL-5 (`hotfix/1.2.1`
    # @ abc1234)"; empty where merge-back is not enforced or the release is itself a hotfix.
    merge_back_missing: tuple[str, ...] = ()
    merge_back_checked: bool = True  # False: GitLab must be asked before this can be decided
    accepted_envs: frozenset[str] = frozenset()  # passed by a tester in this revision
    armed: bool = False  # the release manager armed this revision's scheduled deploy
    rel_id: str = "This release"  # how refusals name the release (REL-n when known)
    known_issue_types: tuple[str, ...] = ()  # release types that may ship accepted open bugs
    checklist_roles: tuple[str, ...] = ()  # the role ticking each item; none: release manager's
    observing_until: str | None = None  # when observation ends, while it still runs

    @property
    def missing_roles(self) -> list[str]:
        """Required roles that nobody has signed for yet."""
        return [r for r in self.required_roles if r not in self.approvals]

    @property
    def production(self) -> str:
        """The last environment is the one people use."""
        return self.environments[-1]

    @property
    def newest_env(self) -> str | None:
        """The latest environment in order this revision reached."""
        return newest_env(self.environments, self.deployed_envs)

    @property
    def awaiting_acceptance(self) -> str | None:
        """The environment before production a tester has yet to pass, if any."""
        return awaiting_acceptance(self.environments, self.deployed_envs, self.accepted_envs)

    def item_role(self, item: int) -> str:
        """The role that ticks checklist item `item` (1-based)."""
        roles = self.checklist_roles
        return roles[item - 1] if 0 < item <= len(roles) else "release_manager"

    @property
    def item_owners(self) -> frozenset[str]:
        """Every role that ticks some checklist item."""
        return frozenset(self.item_role(i) for i in range(1, self.checklist_total + 1))


def newest_env(environments: Sequence[str], reached: Collection[str]) -> str | None:
    """The latest of `environments`, in order, that was reached."""
    return next((e for e in reversed(environments) if e in reached), None)


def awaiting_acceptance(environments: Sequence[str], reached: Collection[str],
                        accepted: Collection[str]) -> str | None:
    """The newest reached environment, when it comes before production and is not accepted.

    Acceptance before promotion, in one place: the deploy guard, the verify command, the card
    and the scheduler all ask this.
    """
    env = newest_env(environments, reached)
    return env if env is not None and env != environments[-1] and env not in accepted else None


@dataclass(frozen=True)
class Actor:
    """Who raises an event, with the roles the policy gives them."""

    user: str
    roles: frozenset[str] = frozenset()

    @property
    def is_system(self) -> bool:
        """The bot itself, acting for the scheduler or GitLab."""
        return self.user == SYSTEM.user


SYSTEM = Actor("releasebot")


@dataclass(frozen=True)
class Pin:
    """The commit a ref named when it was resolved: what sign-off approves and deploys ship."""

    ref: str
    sha: str

    @property
    def short(self) -> str:
        """The short SHA people read."""
        return self.sha[:7]


@dataclass(frozen=True)
class Ctx:
    """The event's own arguments."""

    actor: Actor
    reason: str = ""
    environment: str | None = None
    items: tuple[int, ...] = ()
    report: Report | None = None
    revision: int | None = None  # the revision a button was drawn for; None from commands
    retype: Retype | None = None  # a correction of the release type: the type it would be


@dataclass(frozen=True)
class Retype:
    """The type a reviewer corrects a release to, as that type's policy judges the release."""

    to: str
    problem: str | None = None  # why the release can't be of that type (no ground, no time)
    signable: bool = True  # its test report meets that type's standard, or it needs none


class Refused(Exception):
    """Something a person asked that can't be done; `sentence` is what they are told."""

    def __init__(self, sentence: str) -> None:
        super().__init__(sentence)
        self.sentence = sentence


class TransitionError(Refused):
    """An event the release's state or rules do not allow, naming the event and the state."""

    def __init__(self, event: Event, state: State, sentence: str, *,
                 forbidden: bool = False) -> None:
        super().__init__(sentence)
        self.args = (f"{event.value!r} refused in state {state.value!r}: {sentence}",)
        self.event, self.state = event, state
        self.forbidden = forbidden  # the actor lacks the role: a privileged attempt, traced


Check = Callable[[Facts, Ctx], str | None]  # a guard: None when satisfied, else a sentence
Cond = Callable[[Facts, Ctx], bool]  # a selector choosing between rows of one event


@dataclass(frozen=True)
class Transition:
    """One row: from any of `sources`, `event` leads to `dest` (None: stays) when `when` holds."""

    sources: tuple[State, ...]
    event: Event
    dest: State | None
    who: tuple[Who, ...]
    guards: tuple[Check, ...] = ()
    when: tuple[Cond, ...] = ()


# --- who ------------------------------------------------------------------------------------------

def approver_roles(facts: Facts, actor: Actor) -> list[str]:
    """The release's required roles this actor holds."""
    return [r for r in facts.required_roles if r in actor.roles]


def can_sign(facts: Facts, actor: Actor) -> str | None:
    """Four eyes, in one place: the role this actor's approval would count for now, if any.

    Never the requester's; a person signs once unless `one_person_many_roles`, and then once
    for each required role they hold that nobody has signed yet.
    """
    return None if actor.user == facts.requester else _role_left(facts, actor)


def _role_left(facts: Facts, actor: Actor) -> str | None:
    """The first unsigned required role the actor holds, if they have not signed already."""
    if actor.user in facts.approvals.values() and not facts.one_person_many_roles:
        return None
    return next((r for r in facts.missing_roles if r in actor.roles), None)


def may(who: Who, facts: Facts, actor: Actor) -> bool:
    """Whether the actor fits one `who` entry."""
    if who is Who.SYSTEM:
        return actor.is_system
    if who is Who.REQUESTER:
        return actor.user == facts.requester
    if who is Who.APPROVER:
        return bool(approver_roles(facts, actor))
    if who is Who.PLAN_REVIEWER:
        return facts.plan_reviewer is None or facts.plan_reviewer in actor.roles
    if who is Who.DEPLOYER:
        return "release_manager" in actor.roles or (
            facts.requester_can_deploy and actor.user == facts.requester)
    if who is Who.ITEM_OWNER:
        return bool(actor.roles & (facts.item_owners | {"release_manager"}))
    return who.value in actor.roles


_WHO_WORDS = {
    Who.TESTER: "a tester", Who.APPROVER: "an approver of this release",
    Who.EXECUTIVE: "an executive", Who.RELEASE_MANAGER: "the release manager",
    Who.REQUESTER: "the requester", Who.DEPLOYER: "the release manager",
    Who.PLAN_REVIEWER: "the go-live plan's reviewer", Who.ITEM_OWNER: "the release manager",
    Who.SYSTEM: "the bot",
}


def who_sentence(who: tuple[Who, ...], facts: Facts | None = None) -> str:
    """'Only a tester or the release manager can do that.'"""
    words = [_WHO_WORDS[w] for w in who if w is not Who.SYSTEM] or ["the bot"]
    if Who.ITEM_OWNER in who and facts is not None:
        words += [_a(role) for role in sorted(facts.item_owners - {"release_manager"})]
    if Who.DEPLOYER in who and facts is not None and facts.requester_can_deploy:
        words.append("the requester")  # the policy lets the requester deploy too
    return f"Only {' or '.join(dict.fromkeys(words))} can do that."


def _a(role: str) -> str:
    """'a dba', 'an operations' (role names are the policy's words)."""
    return f"{'an' if role[:1] in 'aeiou' else 'a'} {role}"


# --- guards ---------------------------------------------------------------------------------------

def needs_reason(facts: Facts, ctx: Ctx) -> str | None:
    """A rejection, risk acceptance, override, failed verification or abandon needs words."""
    return reason_sentence(ctx.reason)


REASON_LIMIT = 4000  # the stored reason's column
NO_REASON = "Please give a reason."  # a command's answer adds the command to type (handlers)


def reason_sentence(reason: str) -> str | None:
    """What a missing or too long reason is refused with (forms show it under their field)."""
    if not reason.strip():
        return NO_REASON
    if len(reason) > REASON_LIMIT:
        return f"The reason is too long ({len(reason)} characters; at most {REASON_LIMIT})."
    return None


def may_sign(facts: Facts, ctx: Ctx) -> str | None:
    """The approval counts for a required role nobody has signed (see `can_sign`)."""
    if can_sign(facts, ctx.actor):
        return None
    if _role_left(facts, ctx.actor):
        return "You requested this release, so you can't approve it (four eyes)."
    if ctx.actor.user in facts.approvals.values():
        return "You have already approved this release."
    return "Every role you hold has already signed off this release."


def not_own_release(facts: Facts, ctx: Ctx) -> str | None:
    """Nobody lifts a rule for their own release: risk acceptance and overrides need another."""
    if ctx.actor.user != facts.requester:
        return None
    return "You requested this release, so someone else must decide that (four eyes)."


def handed_over(task: str) -> Check:
    """Separated duties: a requester hands the release to testers and never does `task`."""

    def guard(facts: Facts, ctx: Ctx) -> str | None:
        if ctx.actor.user != facts.requester:
            return None
        return f"You requested this release, so another tester must {task} (separated duties)."

    guard.__doc__ = f"The requester does not {task}."
    return guard


own_test = handed_over("test it")
own_report = handed_over("attach its test report")
own_verification = handed_over("verify it")


def owns_items(facts: Facts, ctx: Ctx) -> str | None:
    """Each checklist item is ticked only by its role (the DBA's items by a DBA)."""
    new = [i for i in ctx.items if i not in facts.checklist_done]
    for role in dict.fromkeys(facts.item_role(i) for i in new):
        if role not in ctx.actor.roles:
            theirs = [str(i) for i in new if facts.item_role(i) == role]
            who = "the release manager" if role == "release_manager" else _a(role)
            many = "s" if len(theirs) > 1 else ""
            return f"Only {who} can tick checklist item{many} {', '.join(theirs)}."
    return None


def observation_over(facts: Facts, ctx: Ctx) -> str | None:
    """Observation runs its course; only an executive ends it early, and not for their own."""
    if facts.observing_until is None or ctx.actor.is_system:
        return None
    if "executive" not in ctx.actor.roles:
        return (f"{facts.rel_id} is under observation until {facts.observing_until}; it closes "
                "on its own then. Only an executive may end observation early, with a reason.")
    return not_own_release(facts, ctx)


def early_close_reason(facts: Facts, ctx: Ctx) -> str | None:
    """Ending observation early needs words, kept in the audit trail."""
    if facts.observing_until is None or ctx.actor.is_system:
        return None
    if not ctx.reason.strip():
        return (f"Ending observation early needs a reason: "
                f"`/release close {facts.rel_id} <reason…>`.")
    return reason_sentence(ctx.reason)  # too long


def report_fails(facts: Facts, ctx: Ctx) -> str | None:
    """Risk acceptance only makes sense for a report that fails the go-live standard."""
    if facts.report is None:
        return "There is no test report to accept yet."
    if facts.report.passes or facts.report.accepted:
        return "The test report already meets the go-live standard."
    return None


def known_issues_allowed(facts: Facts, ctx: Ctx) -> str | None:
    """Only types whose policy says so may ship with known issues."""
    return None if facts.allow_known_issues else "This release type can't ship with open bugs."


def bypass_allowed(facts: Facts, ctx: Ctx) -> str | None:
    """Only types whose policy says so may deploy in a freeze or outside windows."""
    return None if facts.bypass_allowed else "This release type can't bypass a freeze or window."


def signed_off(facts: Facts, ctx: Ctx) -> str | None:
    """Every required role has approved the current revision."""
    missing = facts.missing_roles
    return f"Still waiting for sign-off by {listed(missing)}." if missing else None


def commit_pinned(facts: Facts, ctx: Ctx) -> str | None:
    """What ships is the commit signed off (a release signed off before pins can't ship)."""
    if facts.pinned:
        return None
    return ("This release was signed off before commits were pinned; attach its test report "
            "again (or set its ref again) so the approvers sign off one commit.")


def hotfixes_merged(facts: Facts, ctx: Ctx) -> str | None:
    """Every shipped hotfix of the project is in the commit being signed off (merge-back)."""
    missing = facts.merge_back_missing
    return merge_back_sentence(facts.rel_id, missing) if missing else None


def merge_back_sentence(rel_id: str, missing: Sequence[str]) -> str:
    """'REL-7 does not contain hotfix REL-5 (`hotfix/1.2.1` @ abc1234): merge it back first.'"""
    many = len(missing) > 1
    listed = ", ".join(missing[:-1]) + f" and {missing[-1]}" if many else missing[0]
    return (f"{rel_id} does not contain {'hotfixes' if many else 'hotfix'} {listed}: "
            f"merge {'them' if many else 'it'} back first.")


def checklist_done(facts: Facts, ctx: Ctx) -> str | None:
    """The pre-release checklist is complete; else the open items, who ticks them and how."""
    left = [str(i) for i in range(1, facts.checklist_total + 1) if i not in facts.checklist_done]
    if not left:
        return None
    by_role: dict[str, list[str]] = {}
    for item in left:
        by_role.setdefault(facts.item_role(int(item)), []).append(item)
    many = len(left) > 1
    named = [("the release manager" if role == "release_manager" else _a(role), items)
             for role, items in by_role.items()]
    if len(named) == 1:
        who, typed = f"{named[0][0]} ticks {'them' if many else 'it'}", " ".join(left)
    else:
        parts = [f"{name}{' ticks' if i == 0 else ''} {', '.join(items)}"
                 for i, (name, items) in enumerate(named)]
        who, typed = f"{', '.join(parts[:-1])} and {parts[-1]},", "<n…>"
    return (f"Checklist item{'s' if many else ''} {', '.join(left)} "
            f"{'are' if many else 'is'} still open: {who} with "
            f"`/release check {facts.rel_id} {typed}` or on the card.")


def gate_open(facts: Facts, ctx: Ctx) -> str | None:
    """Inside a window and outside every freeze, unless an executive overrode the gate."""
    if facts.gate_open or facts.gate_overridden:
        return None
    when = f" The next allowed time is {facts.gate_next}." if facts.gate_next else ""
    lift = (f" An executive may let it deploy now, with a reason: "
            f"`/release override {facts.rel_id} <reason…>`." if facts.bypass_allowed else "")
    return (f"Deploys are closed now: {facts.gate_reason or 'outside the release windows'}."
            f"{when}{lift}")


def valid_items(facts: Facts, ctx: Ctx) -> str | None:
    """Checklist item numbers exist."""
    if not ctx.items:
        return "Name the checklist items to tick, e.g. `1 2`."
    bad = [str(i) for i in ctx.items if not 1 <= i <= facts.checklist_total]
    if bad:
        return f"No checklist item {', '.join(bad)}; this release has {facts.checklist_total}."
    return None


def environment_in_order(facts: Facts, ctx: Ctx) -> str | None:
    """A known environment, not yet done, with every earlier one deployed (staging first)."""
    env = ctx.environment
    if env not in facts.environments:
        return f"Unknown environment {env!r}; this project has {', '.join(facts.environments)}."
    if env in facts.deployed_envs:
        return f"This release is already deployed to {env}."
    earlier = facts.environments[: facts.environments.index(env)]
    missing = [e for e in earlier if e not in facts.deployed_envs]
    if missing:
        return (f"{facts.rel_id} goes to {', '.join(missing)} before {env}: deploy "
                f"{missing[0]} first (`/release deploy {facts.rel_id} {missing[0]}`).")
    unaccepted = next((e for e in earlier if e not in facts.accepted_envs), None)
    return unaccepted and not_accepted_sentence(facts, unaccepted)


def not_accepted_sentence(facts: Facts, env: str) -> str:
    """What holds a release on an environment a tester has not passed yet."""
    return (f"{_rel(facts)} is on {env} and not yet accepted there: a tester passes it with "
            f"`/release verify {facts.rel_id or '<ID>'} pass`.")


def _rel(facts: Facts) -> str:
    """The release as a sentence names it."""
    return facts.rel_id or "This release"


def acceptance_due(facts: Facts, ctx: Ctx) -> str | None:
    """A verdict on the newest environment before production, once in each revision."""
    env, newest = ctx.environment, facts.newest_env
    if newest is None:
        return f"{_rel(facts)} is not deployed anywhere yet."
    if env != newest:
        return f"{_rel(facts)} is on {newest} now, not {env}; look at the updated card."
    if env == facts.production:
        return f"{_rel(facts)} is in {env}: what is due there is online verification."
    if env in facts.accepted_envs:
        after = facts.environments[facts.environments.index(env) + 1]
        return f"{_rel(facts)} is already accepted on {env}; {after} is next."
    return None


def armable(facts: Facts, ctx: Ctx) -> str | None:
    """A planned deploy, or one a freeze or window holds, is armed once in each revision,
    until production is reached."""
    if not facts.has_schedule and (facts.gate_open or facts.gate_overridden):
        return (f"{_rel(facts)} has no planned time, so there is nothing to arm; deploy it "
                "from the card when ready.")
    if not facts.has_schedule and facts.gate_next is None:
        return (f"Deploys are closed now ({facts.gate_reason}) and no allowed time is in sight, "
                f"so {_rel(facts)} has nothing to be armed for.")
    if facts.production in facts.deployed_envs:
        return f"{_rel(facts)} is already deployed to {facts.production}."
    if facts.armed:
        return f"{_rel(facts)} is already armed."
    return None


def armed_if_unattended(facts: Facts, ctx: Ctx) -> str | None:
    """The bot deploys a scheduled release on its own only once the release manager armed it."""
    if not ctx.actor.is_system or not facts.has_schedule or facts.armed:
        return None
    return (f"{_rel(facts)} is not armed: it deploys on its own only after the release manager "
            f"arms it (`/release arm {facts.rel_id or '<ID>'}`).")


def nothing_to_roll_back(facts: Facts, ctx: Ctx) -> str | None:
    """After a failed verification a new ref is the way on only when rollback is impossible.

    Otherwise production would keep a version that failed while the new ref is tested, and the
    release could even be cancelled from testing, leaving it there: roll back first.
    """
    if (facts.rollback_ref is None or facts.rollback_unpinned is not None
            or facts.decided == "fix"):
        return None
    if facts.allow_known_issues:
        return (f"{facts.rel_id} failed its online verification and still runs in "
                f"{facts.production}: an executive decides first whether its problems get "
                f"fixed (`/release decide {facts.rel_id} fix|accept <reason…>`), or the "
                f"release manager rolls it back (`/release rollback {facts.rel_id}`).")
    return (f"{facts.rel_id} failed its online verification and still runs in "
            f"{facts.production}: roll it back first (`/release rollback {facts.rel_id}`), "
            "then ship the fix as a new release.")


def production_deployed(facts: Facts, ctx: Ctx) -> str | None:
    """Verification is of production."""
    if facts.production in facts.deployed_envs:
        return None
    return f"This release is not yet deployed to {facts.production}."


def production_not_started(facts: Facts, ctx: Ctx) -> str | None:
    """Cancel frees earlier environments; once production has begun, only rollback undoes it."""
    if facts.production not in facts.started_envs:
        return None
    return too_late_to_cancel(facts)


def too_late_to_cancel(facts: Facts) -> str:
    """Cancel ends before production: after that, the way back is a rollback."""
    head = f"{facts.rel_id}'s {facts.production} deploy has started, so it can't be cancelled"
    if facts.state is State.DEPLOYING:
        return f"{head}: once it ends, roll it back if it must not stay."
    return f"{head}: roll it back instead (`/release rollback {facts.rel_id}`)."


def can_roll_back(facts: Facts, ctx: Ctx) -> str | None:
    """Rollback needs the version that was live before, known as a commit."""
    if facts.rollback_unpinned is not None:
        ref = facts.rollback_unpinned
        by_hand = ("follow the rollback steps in its go-live plan by hand" if facts.rollback_steps
                   else "roll back by hand (its go-live plan has no rollback steps)")
        return (f"{_rel(facts)} can't be rolled back here: the version that ran before is "
                f"recorded only as `{ref}`, not as a commit, and deploying `{ref}` now would "
                f"not bring back what ran; {by_hand}.")
    if facts.rollback_ref:
        return None
    return ("There is no recorded previous version to roll back to; follow the go-live plan's "
            "rollback steps by hand.")


def plan_ready(facts: Facts, ctx: Ctx) -> str | None:
    """Sign-off and deploy wait for a complete go-live plan, reviewed as it is now."""
    if facts.plan_missing:
        return (f"The go-live plan is missing {listed(facts.plan_missing)}: the requester "
                "adds it with Edit plan on the card or `/release plan`.")
    if facts.plan_reviewer is None or facts.plan_review == "ok":
        return None
    if facts.plan_review == "changes":
        return (f"The {facts.plan_reviewer} asked for changes to the go-live plan: "
                f"{facts.plan_review_note or 'see the thread'}. Edit the plan, then it is "
                "reviewed again.")
    return (f"The go-live plan waits for review by the {facts.plan_reviewer}: "
            "Plan OK on the card or `/release review`.")


def type_confirmed(facts: Facts, ctx: Ctx) -> str | None:
    """Where the plan is reviewed, its reviewer confirms the release type before sign-off."""
    if facts.plan_reviewer is None or facts.type_confirmed:
        return None
    rel = facts.rel_id
    return (f"{rel}'s release type ({facts.release_type}) is not confirmed yet: the "
            f"{facts.plan_reviewer} confirms it by approving the go-live plan "
            f"(`/release review {rel} ok`) or corrects it "
            f"(`/release review {rel} changes --type <type> <why…>`).")


def retype_possible(facts: Facts, ctx: Ctx) -> str | None:
    """A correction names another type the release can be (a campaign needs its time …)."""
    if ctx.retype is None:
        return "Name the release type, e.g. `--type standard`."
    if ctx.retype.to == facts.release_type:
        return f"{facts.rel_id} is already {ctx.retype.to}."
    return ctx.retype.problem


def executive_decides(facts: Facts, ctx: Ctx) -> str | None:
    """Only a type that may ship with known issues has the executive decide after verification."""
    if facts.allow_known_issues:
        return None
    return (f"A {facts.release_type} release that fails its online verification is rolled "
            f"back or fixed as a new revision; no executive decision is taken for it.")


def not_decided(facts: Facts, ctx: Ctx) -> str | None:
    """One decision per failed verification; it is in the audit trail and the thread."""
    if facts.decided is None:
        return None
    what = "the problems get fixed" if facts.decided == "fix" else "it stays live as it is"
    return f"The executive already decided for {facts.rel_id}: {what}."


def plan_reviewed_by_policy(facts: Facts, ctx: Ctx) -> str | None:
    """Only a type whose policy names a reviewer has its plan reviewed."""
    return None if facts.plan_reviewer else "This release type's go-live plan needs no review."


def plan_complete(facts: Facts, ctx: Ctx) -> str | None:
    """A plan is approved whole."""
    if not facts.plan_missing:
        return None
    return (f"The go-live plan can't be approved while it is missing "
            f"{listed(facts.plan_missing)}: the requester or the release manager completes "
            f"it with `/release plan {facts.rel_id or '<ID>'}`.")


def plan_not_approved(facts: Facts, ctx: Ctx) -> str | None:
    """Approving the same plan twice records nothing new."""
    return "The go-live plan is already approved." if facts.plan_review == "ok" else None


def way_back(facts: Facts, ctx: Ctx) -> str | None:
    """Production needs a way back: a known earlier version, or rollback steps to follow."""
    if ctx.environment != facts.production or facts.previous_known or facts.rollback_steps:
        return None
    return (f"Nothing is on record as running in {facts.production} before this release, and "
            "its go-live plan has no rollback steps: add them with Edit plan or "
            "`/release plan`, so a failure has a way back.")


# --- selectors ------------------------------------------------------------------------------------

def report_ok(facts: Facts, ctx: Ctx) -> bool:
    """The new report meets the go-live standard."""
    return ctx.report is not None and ctx.report.passes


def completes_signoff(facts: Facts, ctx: Ctx) -> bool:
    """This approval is the last one needed."""
    role = can_sign(facts, ctx.actor)
    return role is not None and facts.missing_roles == [role]


def retype_signable(facts: Facts, ctx: Ctx) -> bool:
    """The corrected type's standard still lets the release be signed off."""
    return ctx.retype is not None and ctx.retype.signable


def scheduled(facts: Facts, ctx: Ctx) -> bool:
    """The release has a planned deploy time."""
    return facts.has_schedule


def no_report_needed(facts: Facts, ctx: Ctx) -> bool:
    """The type's policy skips the test report."""
    return not facts.report_required


def was_requested(facts: Facts, ctx: Ctx) -> bool:
    """Nothing tested yet, so a new ref changes nothing else."""
    return facts.state is State.REQUESTED


def train_goes_on(facts: Facts, ctx: Ctx) -> bool:
    """A train's component deployed, and others still go to that environment after it."""
    return ctx.environment is not None and ctx.environment not in facts.deployed_envs


def more_to_roll_back(facts: Facts, ctx: Ctx) -> bool:
    """A train's component rolled back, and others still wait to be."""
    return facts.rollback_ref is not None


# --- the table ------------------------------------------------------------------------------------

_S, _W = State, Who
_SIGN = (plan_ready, type_confirmed, may_sign, hotfixes_merged)
# Unarmed comes first: the scheduler asks the release manager to arm before it holds a release
# for a freeze, so "it goes as soon as that is resolved" is then true.
_DEPLOY_GUARDS = (armed_if_unattended, signed_off, commit_pinned, plan_ready, type_confirmed,
                  checklist_done, environment_in_order, way_back, gate_open)
_EDITORS = (_W.REQUESTER, _W.RELEASE_MANAGER)
_REWORK = (*REWORKABLE, State.ACCEPTANCE_FAILED)  # a new ref restarts testing
_RETYPE = (plan_reviewed_by_policy, not_own_release, needs_reason, retype_possible)
_DECIDE = (executive_decides, not_own_release, not_decided, needs_reason)
_TO_SIGN = (_S.READY_FOR_SIGNOFF, *SIGNED_OFF)

TABLE: tuple[Transition, ...] = (
    Transition((_S.REQUESTED,), Event.START_TESTING, _S.TESTING, (_W.TESTER,), (own_test,)),
    Transition(REWORKABLE, Event.REPORT, _S.READY_FOR_SIGNOFF, (_W.TESTER,), (own_report,),
               when=(report_ok,)),
    Transition(REWORKABLE, Event.REPORT, _S.TESTING, (_W.TESTER,), (own_report,)),
    Transition((_S.TESTING,), Event.ACCEPT_RISK, _S.READY_FOR_SIGNOFF, (_W.EXECUTIVE,),
               (not_own_release, known_issues_allowed, report_fails, needs_reason)),
    Transition(SIGNED_OFF, Event.EDIT_PLAN, _S.READY_FOR_SIGNOFF, _EDITORS),
    Transition(REWORKABLE, Event.EDIT_PLAN, None, _EDITORS),
    Transition(REWORKABLE, Event.PLAN_OK, None, (_W.PLAN_REVIEWER,),
               (plan_reviewed_by_policy, not_own_release, plan_complete, plan_not_approved)),
    Transition(REWORKABLE, Event.PLAN_CHANGES, None, (_W.PLAN_REVIEWER,),
               (plan_reviewed_by_policy, not_own_release, needs_reason)),
    # The reviewer corrects the type (判定是否紧急): a new revision, signed again for that type's
    # roles; a report that fails that type's standard sends it back to testing.
    Transition((*UNTESTED, _S.REJECTED), Event.RETYPE, None, (_W.PLAN_REVIEWER,), _RETYPE),
    Transition(_TO_SIGN, Event.RETYPE, _S.READY_FOR_SIGNOFF, (_W.PLAN_REVIEWER,), _RETYPE,
               when=(retype_signable,)),
    Transition(_TO_SIGN, Event.RETYPE, _S.TESTING, (_W.PLAN_REVIEWER,), _RETYPE),
    Transition((_S.READY_FOR_SIGNOFF,), Event.APPROVE, _S.SCHEDULED, (_W.APPROVER,), _SIGN,
               when=(completes_signoff, scheduled)),
    Transition((_S.READY_FOR_SIGNOFF,), Event.APPROVE, _S.APPROVED, (_W.APPROVER,), _SIGN,
               when=(completes_signoff,)),
    Transition((_S.READY_FOR_SIGNOFF,), Event.APPROVE, None, (_W.APPROVER,), _SIGN),
    # Rejected goes back for rework (如不通过,返回开发): a new ref or report, or cancel.
    Transition(BEFORE_DEPLOY, Event.REJECT, _S.REJECTED, (_W.APPROVER, _W.EXECUTIVE),
               (needs_reason,)),
    Transition(_REWORK, Event.CHANGE_REF, None, (_W.REQUESTER, _W.RELEASE_MANAGER),
               when=(was_requested,)),
    Transition(_REWORK, Event.CHANGE_REF, _S.READY_FOR_SIGNOFF,
               (_W.REQUESTER, _W.RELEASE_MANAGER), when=(no_report_needed,)),
    Transition(_REWORK, Event.CHANGE_REF, _S.TESTING, (_W.REQUESTER, _W.RELEASE_MANAGER)),
    # A failed verification is fixed by a new revision only where nothing can be rolled back.
    Transition((_S.VERIFICATION_FAILED,), Event.CHANGE_REF, _S.READY_FOR_SIGNOFF,
               (_W.REQUESTER, _W.RELEASE_MANAGER), (nothing_to_roll_back,),
               when=(no_report_needed,)),
    Transition((_S.VERIFICATION_FAILED,), Event.CHANGE_REF, _S.TESTING,
               (_W.REQUESTER, _W.RELEASE_MANAGER), (nothing_to_roll_back,)),
    Transition(PREPARING, Event.TICK, None, (_W.ITEM_OWNER,), (valid_items, owns_items)),
    Transition(PREPARING, Event.OVERRIDE_GATE, None, (_W.EXECUTIVE,),
               (not_own_release, bypass_allowed, needs_reason)),
    Transition(BEFORE_DEPLOY, Event.HOLD, None, (_W.SYSTEM,)),
    Transition((*SIGNED_OFF, _S.DEPLOYED, _S.DEPLOY_FAILED), Event.DEPLOY, _S.DEPLOYING,
               (_W.DEPLOYER, _W.SYSTEM), _DEPLOY_GUARDS),
    # A train deploys one component at a time: it stays deploying until the last one is done.
    Transition((_S.DEPLOYING,), Event.DEPLOY_SUCCEEDED, None, (_W.SYSTEM,),
               when=(train_goes_on,)),
    Transition((_S.DEPLOYING,), Event.DEPLOY_SUCCEEDED, _S.DEPLOYED, (_W.SYSTEM,)),
    Transition((_S.DEPLOYING,), Event.DEPLOY_FAILED, _S.DEPLOY_FAILED, (_W.SYSTEM,)),
    Transition((_S.DEPLOYED,), Event.ACCEPTANCE_PASS, None, (_W.TESTER,),
               (own_verification, acceptance_due)),
    Transition((_S.DEPLOYED,), Event.ACCEPTANCE_FAIL, _S.ACCEPTANCE_FAILED, (_W.TESTER,),
               (own_verification, acceptance_due, needs_reason)),
    # A verdict stays a verdict: a failed verification is never passed later (see refusal).
    Transition((_S.DEPLOYED,), Event.VERIFY_PASS, _S.VERIFIED, (_W.TESTER,),
               (own_verification, production_deployed)),
    Transition((_S.DEPLOYED,), Event.VERIFY_FAIL, _S.VERIFICATION_FAILED, (_W.TESTER,),
               (own_verification, production_deployed, needs_reason)),
    # Emergency (高管人员决定是否修改问题): the executive has the problems fixed in a new
    # revision, or keeps the release live with them as known issues; rollback stays open.
    Transition((_S.VERIFICATION_FAILED,), Event.DECIDE_FIX, None, (_W.EXECUTIVE,), _DECIDE),
    Transition((_S.VERIFICATION_FAILED,), Event.DECIDE_ACCEPT, _S.VERIFIED, (_W.EXECUTIVE,),
               _DECIDE),
    Transition((_S.VERIFIED,), Event.OBSERVE, _S.OBSERVING, (_W.SYSTEM,)),
    Transition((_S.VERIFIED, _S.OBSERVING), Event.CLOSE, _S.CLOSED,
               (_W.RELEASE_MANAGER, _W.EXECUTIVE, _W.SYSTEM),
               (observation_over, early_close_reason)),
    Transition((*LIVE, _S.DEPLOY_FAILED, _S.ACCEPTANCE_FAILED), Event.ROLLBACK, _S.ROLLING_BACK,
               (_W.RELEASE_MANAGER,), (can_roll_back,)),
    Transition((_S.ROLLING_BACK,), Event.ROLLBACK_SUCCEEDED, None, (_W.SYSTEM,),
               when=(more_to_roll_back,)),
    Transition((_S.ROLLING_BACK,), Event.ROLLBACK_SUCCEEDED, _S.ROLLED_BACK, (_W.SYSTEM,)),
    Transition((_S.ROLLING_BACK,), Event.ROLLBACK_FAILED, _S.DEPLOY_FAILED, (_W.SYSTEM,)),
    # A stuck pipeline: the release manager gives up on it; it counts as failed.
    Transition((_S.DEPLOYING, _S.ROLLING_BACK), Event.ABANDON, _S.DEPLOY_FAILED,
               (_W.RELEASE_MANAGER,), (needs_reason,)),
    Transition(REWORKABLE, Event.CANCEL, _S.CANCELLED, (_W.REQUESTER, _W.RELEASE_MANAGER)),
    Transition((_S.DEPLOYED, _S.DEPLOY_FAILED, _S.ACCEPTANCE_FAILED), Event.CANCEL, _S.CANCELLED,
               (_W.REQUESTER, _W.RELEASE_MANAGER), (production_not_started,)),
    Transition(LIVE, Event.PUBLISH_NOTES, None, (_W.RELEASE_MANAGER,)),
    Transition((*SIGNED_OFF, _S.DEPLOYED), Event.ARM, None, (_W.RELEASE_MANAGER,), (armable,)),
    # A recount before a gate closes (or on the bot's poll) finds new open bugs: test again.
    Transition((_S.READY_FOR_SIGNOFF, *SIGNED_OFF, _S.DEPLOYED, _S.DEPLOY_FAILED),
               Event.NEW_BUGS, _S.TESTING, (_W.SYSTEM,), (production_not_started,)),
)


# --- beside the table: what each event reads and says, what entering a state sets off ----------

# The facts kept beyond the release row (and the deploy gate). Each event reads only those its
# guards, selectors or effects need; tests/bot/test_fact_reads.py checks the rest never matter.
Stored = Literal["report", "approvals", "ticks", "deployments", "acceptances", "gate",
                 "merge_back"]
EVERYTHING: frozenset[Stored] = frozenset(("report", "approvals", "ticks", "deployments",
                                           "acceptances", "gate", "merge_back"))


@dataclass(frozen=True)
class EventSpec:
    """One event's metadata: the stored facts it reads; who hears of it."""

    reads: frozenset[Stored] = frozenset()
    broadcast: bool = False  # deploys and their results reach the channel, not just the thread
    notice: str | None = None  # the policy's `notify` moment it is, when it moves the release


def _reads(*kinds: Stored, broadcast: bool = False, notice: str | None = None) -> EventSpec:
    """An EventSpec reading `kinds`."""
    return EventSpec(frozenset(kinds), broadcast, notice)


EVENTS: dict[Event, EventSpec] = {
    Event.REQUEST: _reads(notice="request"),
    Event.START_TESTING: _reads(),
    Event.REPORT: _reads("approvals"),  # how many approvals the new report voids
    Event.ACCEPT_RISK: _reads("report"),
    Event.APPROVE: _reads("approvals", "merge_back", notice="signoff"),  # the last one only
    Event.REJECT: _reads(),
    # How many approvals the new ref voids; after a failed verification, whether to roll back.
    Event.CHANGE_REF: _reads("approvals", "deployments"),
    Event.TICK: _reads("ticks"),  # ticking an item twice adds no second row
    Event.OVERRIDE_GATE: _reads("gate"),  # the closed gate it lifts, for the audit
    Event.HOLD: _reads(),
    Event.DEPLOY: _reads("approvals", "ticks", "deployments", "acceptances", "gate",
                         notice="deploy"),
    Event.PIPELINE_STARTED: _reads(broadcast=True),
    # Whether a train's environment is done; whether more of it waits to be rolled back.
    Event.DEPLOY_SUCCEEDED: _reads("deployments", broadcast=True, notice="deploy"),
    Event.DEPLOY_FAILED: _reads(broadcast=True, notice="deploy"),
    Event.ACCEPTANCE_PASS: _reads("deployments", "acceptances", broadcast=True,
                                  notice="verification"),
    Event.ACCEPTANCE_FAIL: _reads("deployments", "acceptances", broadcast=True,
                                  notice="verification"),
    Event.VERIFY_PASS: _reads("deployments", broadcast=True, notice="verification"),
    Event.VERIFY_FAIL: _reads("deployments", broadcast=True, notice="verification"),
    Event.OBSERVE: _reads(),
    Event.CLOSE: _reads(notice="close"),
    Event.ROLLBACK: _reads("deployments", notice="rollback"),
    Event.ROLLBACK_SUCCEEDED: _reads("deployments", broadcast=True, notice="rollback"),
    Event.ROLLBACK_FAILED: _reads(broadcast=True, notice="rollback"),
    Event.ABANDON: _reads(broadcast=True, notice="deploy"),
    Event.CANCEL: _reads("deployments"),  # whether production has begun
    Event.PUBLISH_NOTES: _reads(),
    Event.EDIT_PLAN: _reads("approvals", "report"),  # voids approvals; keeps the report
    Event.PLAN_OK: _reads(),
    Event.PLAN_CHANGES: _reads(),
    # Nothing to arm once production is reached; unplanned, only what the gate holds.
    Event.ARM: _reads("deployments", "gate"),
    Event.NEW_BUGS: _reads("approvals", "deployments"),  # voids these; not once production began
    Event.RETYPE: _reads("approvals"),  # how many approvals the correction voids
    Event.DECIDE_FIX: _reads(broadcast=True),
    Event.DECIDE_ACCEPT: _reads(broadcast=True),
}


class Effect(StrEnum):
    """What entering a state sets off, in the same transaction as the event."""

    PIN_COMMIT = "pin commit"  # the revision's commit: what the approvers sign and ships
    ASK_APPROVERS = "ask approvers"  # direct asks to the approvers still needed
    START_OBSERVATION = "start observation"  # observe, or close at once without observation


# Fired on entering the state, and again when an event starts a new revision in it (a new
# report or ref during sign-off: the new revision has its own commit and sign-offs).
ON_ENTER: dict[State, tuple[Effect, ...]] = {
    State.READY_FOR_SIGNOFF: (Effect.PIN_COMMIT, Effect.ASK_APPROVERS),
    State.VERIFIED: (Effect.START_OBSERVATION,),
}


REASON_GUARDS = (needs_reason, early_close_reason)  # a form asks for the reason after the rest


def reads_for(event: Event, state: State) -> frozenset[Stored]:
    """The stored facts deciding `event` needs; a refusal by state explains from all of them."""
    return EVENTS[event].reads if rows_for(state, event) else EVERYTHING


def rows_for(state: State, event: Event) -> list[Transition]:
    """The table's rows for one (state, event) pair, in order."""
    return [t for t in TABLE if t.event is event and state in t.sources]


def allowed_events(state: State) -> set[Event]:
    """Events the table has any row for in this state."""
    return {t.event for t in TABLE if state in t.sources}


def decide(facts: Facts, event: Event, ctx: Ctx, *, reason_follows: bool = False,
           unknown: Collection[Check] = ()) -> State:
    """The state after `event`, or TransitionError naming the event, the state and the reason.

    `reason_follows`: a form will ask for the reason next, so only the other rules are checked.
    `unknown`: guards whose facts the caller does not have; they are taken as satisfied.
    """
    rows = rows_for(facts.state, event)
    if not rows:
        raise TransitionError(event, facts.state, refusal(event, facts))
    row = next((r for r in rows if all(c(facts, ctx) for c in r.when)), None)
    if row is None:  # the table ends each event with an unconditional row; this is a table bug
        raise TransitionError(event, facts.state, "That isn't possible right now.")
    if not any(may(w, facts, ctx.actor) for w in row.who):
        raise TransitionError(event, facts.state, who_sentence(row.who, facts), forbidden=True)
    for guard in row.guards:
        if (reason_follows and guard in REASON_GUARDS) or guard in unknown:
            continue
        if sentence := guard(facts, ctx):
            raise TransitionError(event, facts.state, sentence)
    return row.dest or facts.state


def permits(facts: Facts, event: Event, ctx: Ctx, *,
            unknown: Collection[Check] = ()) -> bool:
    """Whether `decide` would let the actor raise `event` now, the reason a form asks for
    aside: the question a view drawn for one reader asks before showing them a button."""
    try:
        decide(facts, event, ctx, reason_follows=True, unknown=unknown)
    except TransitionError:
        return False
    return True


def _no_acceptance(facts: Facts) -> str:
    """Why there is no acceptance verdict to give: a failed one stands, else where it is."""
    if facts.state is State.ACCEPTANCE_FAILED:
        return (f"{facts.rel_id} already failed acceptance: give it a new ref "
                f"(`/release ref {facts.rel_id} <ref>`) to test again, or cancel it.")
    return standing(facts)


def verdict_event(facts: Facts, passed: bool, environment: str | None = None) -> Event:
    """A tester's pass or fail: acceptance on an environment before production, else verification.

    `environment` is the one a button was drawn for; a command means the newest one reached.
    """
    env = environment or facts.newest_env
    if env is None or env == facts.production:
        return Event.VERIFY_PASS if passed else Event.VERIFY_FAIL
    return Event.ACCEPTANCE_PASS if passed else Event.ACCEPTANCE_FAIL


def refusal(event: Event, facts: Facts) -> str:
    """Why the release's state never allows `event`: what holds it and what would free it."""
    state = facts.state
    if event is Event.CANCEL and state is State.DEPLOYING and (
            facts.production not in facts.started_envs):
        return ("A deploy is running: wait for it to end, or have the release manager abandon "
                "it, then cancel.")
    if event is Event.CANCEL and state not in TERMINAL:
        return too_late_to_cancel(facts)
    if event is Event.PUBLISH_NOTES and state not in TERMINAL:
        return "Release notes are published once the release is deployed."
    if event in (Event.EDIT_PLAN, Event.PLAN_OK, Event.PLAN_CHANGES):
        return (f"The go-live plan is settled once deploys start; this release is "
                f"{state.label}.")
    if event is Event.ABANDON:
        return f"Only a running deploy or rollback can be abandoned; this release is {state.label}."
    if event in (Event.ACCEPTANCE_PASS, Event.ACCEPTANCE_FAIL):
        return _no_acceptance(facts)
    if event is Event.ARM:
        return f"A release is armed once it is signed off; this one is {state.label}."
    if event is Event.RETYPE:
        return f"The release type is settled once deploys start; this release is {state.label}."
    if event in (Event.DECIDE_FIX, Event.DECIDE_ACCEPT):
        if facts.decided is not None:  # accepted, it moved on: say what was decided
            what = "the problems get fixed" if facts.decided == "fix" else "it stays live as it is"
            return f"The executive already decided for {facts.rel_id}: {what}; it is {state.label}."
        return (f"The executive decides once an online verification has failed; "
                f"{facts.rel_id} is {state.label}.")
    return standing(facts)


def standing(facts: Facts) -> str:
    """Where the release stands, what holds it there and what would move it on."""
    return _STANDING.get(facts.state, _over)(facts)


def _untested(facts: Facts) -> str:
    """Requested or in testing: the report it lacks, or the bugs its report shows."""
    rel = facts.rel_id
    where = f"{rel} is {'in testing' if facts.state is State.TESTING else 'requested'}"
    report = facts.report
    if report is None or report.passes or report.accepted:
        return (f"{where}: no test report yet. A tester attaches one with "
                f"`/release report {rel} <url> A=n B=n C=n`.")
    return (f"{where}: its report shows {'; '.join(report.failures)}. "
            f"It needs a passing report{_acceptance(facts)}.")


def _acceptance(facts: Facts) -> str:
    """The executive's way past a failing report, where some release type has one."""
    if facts.allow_known_issues:
        return (f", or an executive's acceptance of the open bugs "
                f"(`/release accept {facts.rel_id} <reason…>`)")
    if not facts.known_issue_types:
        return ""
    return f", or an executive's acceptance on {_a(' or '.join(facts.known_issue_types))} release"


def _signing(facts: Facts) -> str:
    """Ready for sign-off: the roles still to approve."""
    rel, missing = facts.rel_id, facts.missing_roles
    if not missing:
        return f"{rel} is ready for sign-off."
    return (f"{rel} is ready for sign-off: waiting for {listed(missing)}. It is approved "
            f"once {'they approve' if len(missing) > 1 else 'that role approves'} "
            f"(`/release approve {rel}`).")


def _signed(facts: Facts) -> str:
    """Approved or scheduled: what still stands between it and the deploy."""
    ctx = Ctx(SYSTEM)
    holds = [s for g in (signed_off, commit_pinned, checklist_done, gate_open)
             if (s := g(facts, ctx))]
    where = f"{facts.rel_id} is {facts.state.label} and not deployed yet."
    if holds:
        those = "that is" if len(holds) == 1 else "these are"
        return f"{where} {' '.join(holds)} It can deploy once {those} cleared."
    if facts.state is State.SCHEDULED:
        return f"{where} It deploys at its planned time."
    return f"{where} The release manager deploys it with `/release deploy {facts.rel_id}`."


def _deploying(facts: Facts) -> str:
    """A pipeline runs: its result decides."""
    return (f"{facts.rel_id} is deploying: its pipeline is still running. Wait for the result "
            "on the card; a pipeline cancelled in GitLab counts as a failed deploy.")


def _deployed(facts: Facts) -> str:
    """Deployed: production comes next, or its online verification."""
    rel, prod = facts.rel_id, facts.production
    done = [e for e in facts.environments if e in facts.deployed_envs]
    if env := facts.awaiting_acceptance:
        return not_accepted_sentence(facts, env)
    if prod not in facts.deployed_envs:
        nxt = next(e for e in facts.environments if e not in facts.deployed_envs)
        where = f"deployed to {', '.join(done)}" if done else "deployed"
        return f"{rel} is {where}; {nxt} comes next (`/release deploy {rel} {nxt}`)."
    return (f"{rel} is deployed to {prod} but not verified yet. A tester verifies it with "
            f"`/release verify {rel} pass|fail`; the release manager may roll it back.")


def _failed_verification(facts: Facts) -> str:
    """A verdict stays a verdict: the way on is rollback, or a new revision."""
    rel = facts.rel_id
    where = f"{rel} failed its online verification, and that verdict stands."
    if facts.decided == "fix":
        return (f"{where} The executive decided its problems get fixed: set the fixed ref with "
                f"`/release ref {rel} <ref>`; it is tested and signed off again.")
    if facts.allow_known_issues:
        back = (f", or the release manager rolls it back (`/release rollback {rel}`)"
                if facts.rollback_ref else "")
        return (f"{where} An executive decides whether its problems get fixed or it stays "
                f"live with them (`/release decide {rel} fix|accept <reason…>`){back}.")
    if facts.rollback_ref:
        return (f"{where} Roll it back with `/release rollback {rel}`, then ship the fix as a "
                "new release.")
    return (f"{where} There is no earlier version to roll back to, so set the fixed ref with "
            f"`/release ref {rel} <ref>`: it is tested and signed off again.")


def _observed(facts: Facts) -> str:
    """Verified: observation runs, then the release closes."""
    rel = facts.rel_id
    if facts.observing_until:
        return (f"{rel} is verified and under observation until {facts.observing_until}; "
                "then it closes and is handed over to operations.")
    return f"{rel} is verified and its observation is over; the release manager closes it."


def _deploy_failed(facts: Facts) -> str:
    """A deploy failed: deploy again or roll back."""
    rel = facts.rel_id
    back = ", or rolls it back" if facts.rollback_ref else ""
    return (f"{rel}'s last deploy failed. The release manager deploys again with "
            f"`/release deploy {rel}`{back}.")


def _rolling_back(facts: Facts) -> str:
    """A rollback pipeline runs."""
    return (f"{facts.rel_id} is rolling back: its rollback pipeline is still running. Wait for "
            "the result on the card.")


def _rejected(facts: Facts) -> str:
    """Rejected: back with its requester for rework."""
    rel = facts.rel_id
    return (f"{rel} was rejected and is back for rework. A new ref (`/release ref {rel} "
            f"<ref>`) or a new test report restarts testing; `/release cancel {rel}` ends it.")


def _over(facts: Facts) -> str:
    """Closed, cancelled or rolled back: it stays so."""
    after = {State.CLOSED: " Later changes go out as a new release.",
             State.ROLLED_BACK: " Ship the fix as a new release."}
    return (f"{facts.rel_id} is {facts.state.label}; nothing more can happen to it."
            f"{after.get(facts.state, '')}")


_STANDING: dict[State, Callable[[Facts], str]] = {
    State.REQUESTED: _untested, State.TESTING: _untested,
    State.READY_FOR_SIGNOFF: _signing, State.APPROVED: _signed, State.SCHEDULED: _signed,
    State.DEPLOYING: _deploying, State.DEPLOYED: _deployed,
    State.VERIFICATION_FAILED: _failed_verification,
    State.VERIFIED: _observed, State.OBSERVING: _observed,
    State.DEPLOY_FAILED: _deploy_failed, State.ROLLING_BACK: _rolling_back,
    State.REJECTED: _rejected,
    State.ACCEPTANCE_FAILED: _no_acceptance,
}
