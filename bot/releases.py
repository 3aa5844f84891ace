"""Changing a release before deploy: request, test, report, sign-off, ref, checklist, cancel."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import bugs, calendar
from bot.gitlab import GitLabError
from bot.plan import clean_plan
from bot.plan import too_long as plan_too_long
from bot.policy import Ground, Policy, PolicyError, ReleaseType
from bot.trackers import BugCount
from bot.trains import deploy_order, is_component, split_component, train_problems
from bot.transition import (
    Apply,
    Deps,
    Outcome,
    ask_approvers,
    checked_release,
    locked,
    notify,
    record,
    run_in_transaction,
    step,
    transition,
    type_limits,
    void_approvals,
)
from bot.workflow import (
    ACTIVE,
    SYSTEM,
    Actor,
    Ctx,
    Event,
    Facts,
    Refused,
    Report,
    State,
    can_sign,
)
from storage import queries as q
from storage.models import Approval, Release, ReleaseComponent, TestReport, WorkItem

_ID = re.compile(r"^(?:rel-?)?(\d{1,9})$", re.IGNORECASE)
MAX_REF = 255


def parse_release_id(text: str) -> int:
    """`REL-42`, `rel42` or `42` → 42."""
    match = _ID.match(text.strip())
    if not match:
        raise Refused(f"{text.strip()[:40]!r} is not a release ID; they look like REL-42.")
    return int(match.group(1))


@dataclass(frozen=True)
class NewRelease:
    """Everything a request carries: the first step of the release process."""

    project: str
    ref: str
    title: str
    type: str = ReleaseType.STANDARD.value
    version_label: str = ""
    scheduled_at: datetime | None = None
    planned_window: str = ""
    work_items: tuple[tuple[str, str], ...] = ()  # (kind, reference)
    plan: Mapping[str, str] = field(default_factory=dict)  # the go-live plan, PlanField → text
    ground: str = ""  # an emergency's ground (bot.policy.Ground), with its reason
    reason: str = ""
    # A train: the other (project, ref) pairs after `project` and `ref`, as typed, and the
    # projects in the order `--order` asks for (it may only tighten `depends_on`).
    more: tuple[tuple[str, str], ...] = ()
    order: tuple[str, ...] = ()

    @property
    def parts(self) -> tuple[tuple[str, str], ...]:
        """Every (project, ref) of the request, as typed."""
        return ((self.project, self.ref), *self.more)


# Free-text fields of a request, as people call them; their limits are the columns'.
_TEXT_FIELDS = {"project": "project", "ref": "ref", "title": "title", "type": "type",
                "version_label": "version", "planned_window": "planned window",
                "ground": "ground", "reason": "reason"}
_COLUMNS = {"ground": "ground", "reason": "ground_reason"}  # where a field is stored, if renamed
# Kept out of stored text: controls (but line breaks and tabs), format and bidi characters,
# surrogates and private use. They hide or reorder what people read.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co"})
# What git check-ref-format forbids anywhere in a ref name, besides controls and spaces.
_REF_FORBIDDEN = frozenset("~^:?*[\\")


def column_limit(model: type[SQLModel], field: str) -> int:
    """The stored length of a text column."""
    return int(model.__table__.c[field].type.length)  # type: ignore[attr-defined]


def clean_text(text: str) -> str:
    """Free text without control, format or bidi characters (line breaks and tabs stay)."""
    return "".join(c for c in text
                   if c in "\n\t" or unicodedata.category(c) not in _INVISIBLE)


def cleaned(new: NewRelease) -> NewRelease:
    """The request with its free text cleaned and trimmed (the ref is checked, not changed)."""
    texts = {f: clean_text(getattr(new, f)).strip() for f in _TEXT_FIELDS if f != "ref"}
    items = tuple((kind, clean_text(ref).strip()) for kind, ref in new.work_items)
    plan = clean_plan({k: clean_text(v) for k, v in new.plan.items()})
    more = tuple((clean_text(p).strip(), r.strip()) for p, r in new.more)
    order = tuple(clean_text(p).strip() for p in new.order)
    return replace(new, **texts, ref=new.ref.strip(), work_items=items, plan=plan, more=more,
                   order=order)


def too_long(label: str, text: str, limit: int) -> str | None:
    """The sentence for text over its limit, naming the limit."""
    if len(text) <= limit:
        return None
    return f"The {label} is too long ({len(text)} characters; at most {limit})."


def request_problems(new: NewRelease, *, policy: Policy, now: datetime) -> dict[str, str]:
    """Every problem with a request, as sentences keyed by the NewRelease field they are about.

    An incomplete go-live plan is no problem yet: the card lists what it lacks, and sign-off
    waits for it.
    """
    new = cleaned(new)
    problems = _length_problems(new)
    if "project" not in problems:
        try:
            policy.project(new.project)
        except PolicyError as exc:
            problems["project"] = str(exc)
    try:
        policy.type_policy(ReleaseType(new.type))
    except (ValueError, PolicyError):
        allowed = ", ".join(t.value for t in ReleaseType if t in policy.policies)
        problems["type"] = f"Unknown release type {new.type[:30]!r}; use one of {allowed}."
    else:
        problems.update(ground_problems(new, policy.grounds_of(new.type)))
    if sentence := ref_problem(new.ref):
        problems["ref"] = sentence
    if sentence := next((f"{project}: {s}" for project, ref in new.more
                         if (s := ref_problem(ref))), None):
        problems["components"] = sentence
    for key, sentence in train_problems(new.parts, new.order, policy).items():
        problems.setdefault(key, sentence)
    if not new.title:
        problems["title"] = "Please give the release a title."
    if new.scheduled_at is not None and new.scheduled_at <= now:
        problems["scheduled_at"] = "The planned time is in the past."
    if new.type == ReleaseType.CAMPAIGN and new.scheduled_at is None:
        problems["scheduled_at"] = (
            'A campaign release needs its launch time: --at "YYYY-MM-DD HH:MM".')
    if long := plan_too_long(new.plan):
        problems[f"plan_{long[0].value}"] = long[1]
    return problems


def ground_problems(new: NewRelease, grounds: list[Ground]) -> dict[str, str]:
    """An emergency names one of its grounds and why; other types take none."""
    if not grounds:
        if new.ground:
            return {"ground": f"Only an emergency release names a ground; this is {new.type}."}
        return {}
    problems = {}
    listed = ", ".join(f"{g.value} ({g.label})" for g in grounds)
    kind = f"{'An' if new.type[:1] in 'aeiou' else 'A'} {new.type} release"
    if not new.ground:
        problems["ground"] = f"{kind} needs its ground: --ground {listed}."
    elif new.ground not in grounds:
        problems["ground"] = f"Unknown ground {new.ground[:30]!r}; use one of {listed}."
    if not new.reason:
        problems["reason"] = f'{kind} needs its reason: --reason "what is broken or urgent".'
    return problems


def _length_problems(new: NewRelease) -> dict[str, str]:
    """Each field longer than its column, with the limit named."""
    problems = {}
    for name, label in _TEXT_FIELDS.items():
        limit = column_limit(Release, _COLUMNS.get(name, name))
        if name != "ref" and (sentence := too_long(label, getattr(new, name), limit)):
            problems[name] = sentence
    limit = column_limit(WorkItem, "reference")
    if long := next((ref for _, ref in new.work_items if len(ref) > limit), None):
        problems["work_items"] = too_long("work item", long, limit) or ""
    return problems


def ref_problem(ref: str) -> str | None:
    """Why `ref` can't name one branch, tag or commit (git check-ref-format), or None."""
    if not ref:
        return "Please name the ref to release: a branch, tag or commit."
    if sentence := too_long("ref", ref, MAX_REF):
        return sentence
    if odd := next((c for c in ref if not "!" <= c <= "~"), None):
        return ("The ref may hold only printable ASCII letters, digits and punctuation, "
                f"without spaces; it has {_codepoint(odd)}.")
    if why := _git_ref_rule(ref):
        return f"{ref!r} is not a valid git ref name: {why}."
    return None


def _codepoint(char: str) -> str:
    """A character named so that invisible ones show, e.g. `U+200B ZERO WIDTH SPACE`."""
    return f"U+{ord(char):04X} {unicodedata.name(char, 'control character')}"


def _git_ref_rule(ref: str) -> str | None:
    """The git check-ref-format rule `ref` breaks (beyond printable ASCII), if any."""
    parts = ref.split("/")
    checks = (
        (ref.startswith("-"), "it can't start with '-'"),
        (ref == "@", "it can't be '@' alone"),
        (bool(_REF_FORBIDDEN & set(ref)), "it can't hold ~ ^ : ? * [ or \\"),
        (".." in ref or "@{" in ref, "it can't hold '..' or '@{'"),
        ("" in parts, "it can't start or end with '/' or hold '//'"),
        (ref.endswith("."), "it can't end with '.'"),
        (any(p.startswith(".") or p.endswith(".lock") for p in parts),
         "no part of it may start with '.' or end with '.lock'"),
    )
    return next((why for broken, why in checks if broken), None)


async def request_release(deps: Deps, *, actor: Actor, new: NewRelease) -> Outcome:
    """File a new release (`REL-n`), announce it, and ask testers or approvers.

    Every ref is looked up in GitLab first: one missing is refused, nothing filed.
    """
    if problems := request_problems(new, policy=deps.policy, now=deps.clock()):
        raise Refused(" ".join(problems.values()))
    new = cleaned(new)
    type_policy = deps.policy.type_policy(ReleaseType(new.type))
    first = State.REQUESTED if type_policy.require_test_report else State.READY_FOR_SIGNOFF
    refs = dict(new.parts)
    parts = [(p, refs[p]) for p in deploy_order(list(refs), new.order,
                                                deps.policy.dependencies)]
    if deps.gitlab is not None:  # a person past their limits gets no GitLab look-ups either
        async with deps.sessions() as session:
            await _within_limits(session, deps.policy, actor.user, deps.clock())
        await _refs_exist(deps, parts)
    lead_project, lead_ref = parts[0]

    async def work(session: AsyncSession) -> Outcome:
        now = deps.clock()
        await _within_limits(session, deps.policy, actor.user, now)
        release = Release(
            project=lead_project, ref=lead_ref, version_label=new.version_label,
            title=new.title, type=new.type, requester=actor.user, state=first.value,
            scheduled_at=new.scheduled_at, planned_window=new.planned_window,
            plan=dict(new.plan), created_at=now, updated_at=now, state_since=now,
            ground=new.ground or None, ground_reason=new.reason or None,
            checklist=_checklist(deps.policy, [p for p, _ in parts]))
        await q.create_release(session, release=release, work_items=new.work_items,
                               components=parts)
        detail: dict[str, Any] = {"project": lead_project, "ref": release.ref,
                                  "type": new.type}
        if len(parts) > 1:
            detail["components"] = [{"project": p, "ref": r} for p, r in parts]
        if new.ground:
            detail.update(ground=new.ground, reason=new.reason)
        if sole := deps.policy.sole_signer_roles(new.type, actor.user):
            detail["sole_signers"] = sole
        return await record(session, deps, release, Event.REQUEST, actor, first, detail,
                            created=True)

    return await run_in_transaction(deps, work)


def _checklist(policy: Policy, projects: list[str]) -> list[str | dict[str, str]]:
    """The projects' checklists as one: each item once, in deploy order."""
    items: list[str | dict[str, str]] = []
    for project in projects:
        items += [s for step in policy.project(project).checklist
                  if (s := step.stored()) not in items]
    return items


async def _refs_exist(deps: Deps, parts: list[tuple[str, str]]) -> None:
    """Refuse, naming it, a ref GitLab doesn't have (skipped when GitLab is not connected)."""
    if deps.gitlab is None:
        return
    for project, ref in parts:
        try:
            await deps.gitlab.resolve(deps.policy.project(project).gitlab, ref)
        except GitLabError as exc:
            if exc.status == 404:
                raise Refused(f"GitLab has no ref `{ref}` in {project}.") from None
            raise Refused(f"GitLab can't look up `{ref}` in {project}: {exc}") from None


async def _within_limits(session: AsyncSession, policy: Policy, requester: str,
                         now: datetime) -> None:
    """Refuse a request past the person's hourly or open-release limit (one flood, one person)."""
    limits = policy.limits
    open_now, hour = await q.requester_load(session, requester=requester, open_states=ACTIVE,
                                            since=now - timedelta(hours=1))
    if open_now >= limits.open_releases_per_requester:
        raise Refused(f"You already have {open_now} open releases (the limit is "
                      f"{limits.open_releases_per_requester}); close or cancel one first.")
    if hour >= limits.requests_per_hour:
        raise Refused(f"You have requested {hour} releases in the last hour (the limit is "
                      f"{limits.requests_per_hour}); please wait a while.")


async def start_testing(deps: Deps, *, release_id: int, actor: Actor,
                        revision: int | None = None) -> Outcome:
    """A tester picks the release up."""
    return await transition(deps, release_id, Event.START_TESTING, Ctx(actor, revision=revision))


@dataclass(frozen=True)
class ReportInput:
    """A test report as typed: its link and open bugs by severity."""

    url: str
    bugs: dict[str, int]


def _check_report(report: ReportInput) -> None:
    """A report needs a web link that fits its column, shows as it is stored, and sane counts."""
    if sentence := too_long("test report link", report.url, column_limit(TestReport, "url")):
        raise Refused(sentence)
    if odd := next((c for c in report.url if unicodedata.category(c) in _INVISIBLE), None):
        raise Refused(f"The test report link may not hold invisible characters; it has "
                      f"{_codepoint(odd)}.")
    if not re.match(r"^https?://\S+$", report.url):
        raise Refused("The test report must be an http(s) link.")
    if any(k not in "ABC" or not 0 <= v < 100_000 for k, v in report.bugs.items()):
        raise Refused("Bug counts look like A=0 B=1 C=3.")


async def attach_report(deps: Deps, *, release_id: int, actor: Actor, report: ReportInput,
                        revision: int | None = None) -> Outcome:
    """File a test report; a new report voids earlier approvals.

    With a bug tracker the counts are the tracker's (typed ones may only be higher); a tracker
    that can't be read refuses the report, so no count is ever missing.
    """
    _check_report(report)
    count = await bugs.count_for_report(deps, release_id=release_id, actor=actor,
                                        revision=revision)
    counts = bugs.report_counts(f"REL-{release_id}", report.bugs, count)

    async def apply(session: AsyncSession, release: Release, facts: Facts) -> dict[str, Any]:
        voided = void_approvals(release, facts)
        rep = Report(bugs=counts, limits=type_limits(deps, release))
        q.add_report(session, release=release, url=report.url, bugs=counts, passes=rep.passes,
                     reporter=actor.user, at=deps.clock())
        detail = {"url": report.url, "bugs": counts, "passes": rep.passes,
                  "failures": rep.failures, "voided_approvals": voided}
        if count is not None:
            bugs.keep(session, release, count, "report")
            detail["tracker"] = count.summary()
        return detail

    async def work(session: AsyncSession) -> Outcome:
        release = await locked(session, release_id)
        ctx = Ctx(actor, report=Report(bugs=counts, limits=type_limits(deps, release)),
                  revision=revision)
        return await step(session, deps, release, Event.REPORT, ctx, apply)

    return await run_in_transaction(deps, work)


async def accept_risk(deps: Deps, *, release_id: int, actor: Actor, reason: str) -> Outcome:
    """An executive ships with known issues; the reason is recorded."""
    reason = clean_text(reason)

    async def apply(session: AsyncSession, release: Release, facts: Facts) -> dict[str, Any]:
        release.risk_accepted_by, release.risk_reason = actor.user, reason.strip()
        detail = {"reason": reason.strip(),
                  "failures": facts.report.failures if facts.report else []}
        if named := await bugs.accepted_bugs(session, release, facts):
            detail["bugs"] = named  # the acceptance covers these, never bugs found later
        return detail

    return await transition(deps, release_id, Event.ACCEPT_RISK, Ctx(actor, reason=reason), apply)


async def approve(deps: Deps, *, release_id: int, actor: Actor, comment: str = "",
                  revision: int | None = None) -> Outcome:
    """Sign off for one role; the last needed approval moves the release on.

    The last one first has a tracked release's bugs counted again: new open bugs send it back
    to testing instead (bugs.SentBack), and a tracker that can't be read refuses it.
    """
    comment = clean_text(comment)
    if sentence := too_long("comment", comment, column_limit(Approval, "comment")):
        raise Refused(sentence)
    ctx = Ctx(actor, reason=comment, revision=revision)
    try:
        return await transition(deps, release_id, Event.APPROVE, ctx,
                                _approval(deps, actor, comment, None))
    except bugs.RecountNeeded:
        count = await bugs.recount(deps, release_id, moment="signoff")
    try:
        return await transition(deps, release_id, Event.APPROVE, ctx,
                                _approval(deps, actor, comment, count))
    except bugs.RecountNeeded:  # tracked since: the count taken is no longer the gate's
        raise Refused(f"REL-{release_id} changed while its bugs were being counted; please "
                      "try again.") from None


def _approval(deps: Deps, actor: Actor, comment: str, count: BugCount | None) -> Apply:
    """Record one sign-off; the last one keeps the tracker's fresh count beside it."""

    async def apply(session: AsyncSession, release: Release, facts: Facts) -> dict[str, Any]:
        role = can_sign(facts, actor)
        missing = [r for r in facts.missing_roles if r != role]
        if not missing:
            bugs.gate(session, deps, release, count, "signoff")
        seat = (role or "") if facts.one_person_many_roles else ""  # else one row per person
        # The unique keys refuse a concurrent duplicate at commit; the retry then decides anew.
        q.add_approval(session, release=release, role=role, approver=actor.user, seat=seat,
                       comment=comment, at=deps.clock())
        signed = replace(facts, approvals={**facts.approvals, str(role): actor.user})
        if missing and can_sign(signed, actor):  # one person, several roles: ask for the next
            await ask_approvers(session, deps, release, deps.clock(), users=[actor.user])
        return {"role": role, "comment": comment, "missing": missing}

    return apply


async def reject(deps: Deps, *, release_id: int, actor: Actor, reason: str,
                 revision: int | None = None) -> Outcome:
    """Send the release back for rework; a reason is required."""
    reason = clean_text(reason)

    async def apply(session: AsyncSession, release: Release, facts: Facts) -> dict[str, Any]:
        release.rejected_by, release.rejection_reason = actor.user, reason.strip()
        return {"reason": reason.strip(), "requester": release.requester}

    ctx = Ctx(actor, reason=reason, revision=revision)
    return await transition(deps, release_id, Event.REJECT, ctx, apply)


async def change_ref(deps: Deps, *, release_id: int, actor: Actor, ref: str,
                     project: str | None = None) -> Outcome:
    """Point the release (a train: its component `project`) at another ref; approvals and the
    report of the old one stop counting, for the whole release."""
    ref = ref.strip()
    if sentence := ref_problem(ref):
        raise Refused(sentence)
    if deps.gitlab is not None:  # nothing is written for a ref GitLab doesn't have
        async with deps.sessions() as session:
            release, _ = await checked_release(session, deps, release_id=release_id,
                                               event=Event.CHANGE_REF, actor=actor)
            comps = await q.components_of(session, release)
        await _refs_exist(deps, [(_component(release, comps, project, ref).project, ref)])

    async def apply(session: AsyncSession, release: Release, facts: Facts) -> dict[str, Any]:
        comps = await q.components_of(session, release)
        comp = _component(release, comps, project, ref)
        old = comp.ref
        voided = void_approvals(release, facts)
        comp.ref = ref
        if comp.position == 0:
            release.ref = ref  # the row names its first component
        detail: dict[str, Any] = {"old_ref": old, "ref": ref, "voided_approvals": voided,
                                  "component": comp.project}
        return detail | ({"train": True} if len(comps) > 1 else {})

    return await transition(deps, release_id, Event.CHANGE_REF, Ctx(actor), apply)


def _component(release: Release, comps: list[ReleaseComponent],
               project: str | None, ref: str = "") -> ReleaseComponent:
    """The component a ref change names (a one-project release's own when none is named)."""
    names = ", ".join(c.project for c in comps)
    if project is None and len(comps) > 1 and is_component(ref):
        project = split_component(ref)[0]  # `other@ref`: a project, just not one of this train
    if project is None:
        if len(comps) > 1:
            raise Refused(f"{release.rel_id} is a train of {names}: name the project, e.g. "
                          f"`/release ref {release.rel_id} {comps[-1].project}@<ref>`.")
        return comps[0]
    found = next((c for c in comps if c.project == project), None)
    if found is None:
        raise Refused(f"{project} is not part of {release.rel_id} ({names}).")
    return found


async def tick(deps: Deps, *, release_id: int, actor: Actor, items: tuple[int, ...]) -> Outcome:
    """Tick pre-release checklist items; ticking one twice changes and announces nothing."""
    ctx = Ctx(actor, items=tuple(items))

    async def apply(session: AsyncSession, release: Release, facts: Facts) -> dict[str, Any]:
        new = sorted(set(items) - facts.checklist_done)
        q.add_ticks(session, release_id=release.id, items=new, by=actor.user, at=deps.clock())
        done = len(facts.checklist_done) + len(new)
        return {"items": new, "done": done, "total": facts.checklist_total}

    def nothing_new(facts: Facts) -> dict[str, Any] | None:
        """Every item already ticked: no audit row, no thread line."""
        if not set(items) <= facts.checklist_done:
            return None
        return {"items": [], "done": len(facts.checklist_done), "total": facts.checklist_total}

    return await transition(deps, release_id, Event.TICK, ctx, apply, unchanged=nothing_new)


async def override_gate(deps: Deps, *, release_id: int, actor: Actor, reason: str) -> Outcome:
    """An executive lets an emergency release deploy in a freeze or outside windows."""
    reason = clean_text(reason)

    async def apply(session: AsyncSession, release: Release, facts: Facts) -> dict[str, Any]:
        release.gate_override_by, release.gate_override_reason = actor.user, reason.strip()
        return {"reason": reason.strip(), "gate": facts.gate_reason}

    ctx = Ctx(actor, reason=reason)
    return await transition(deps, release_id, Event.OVERRIDE_GATE, ctx, apply)


async def hold(deps: Deps, *, release_id: int, reason: str) -> Outcome | None:
    """A due scheduled deploy can't go: say why once, and tell the requester and ops."""

    async def work(session: AsyncSession) -> Outcome | None:
        release = await locked(session, release_id)
        if release.hold_reason == reason:
            return None  # already said; the next tick tries again quietly

        async def apply(_s: AsyncSession, rel: Release, _f: Facts) -> dict[str, Any]:
            rel.hold_reason = reason
            return {"reason": reason}

        out = await step(session, deps, release, Event.HOLD, Ctx(SYSTEM, reason=reason), apply)
        notify(session, deps, release, "held", users=[release.requester],
               roles=["release_manager"], reason=reason)
        return out

    return await run_in_transaction(deps, work)


async def arm(deps: Deps, *, release_id: int, actor: Actor,
              revision: int | None = None) -> Outcome:
    """The release manager lets a scheduled or held release deploy on its own at its time.

    A release with no planned time that a freeze or window holds is planned for the next
    allowed time, the one the deploy refusal names: from then on the scheduler deploys it as
    any armed scheduled release, and a freeze extended meanwhile holds it again.
    Arming is for the current revision: a new ref or report voids it, as it voids approvals,
    and takes back the planned time it chose (bot.transition.void_arming).
    """

    async def apply(session: AsyncSession, release: Release, facts: Facts) -> dict[str, Any]:
        now = deps.clock()
        release.armed_by, release.armed_at = actor.user, now
        release.armed_revision = release.revision
        held, chosen = release.hold_reason, dict[str, Any]()
        if release.scheduled_at is None:  # armable let it through: the gate holds it
            release.scheduled_at = calendar.next_allowed(now, deps.policy)
            held, chosen = facts.gate_reason, {"planned": True}  # a new revision undoes it
        planned = release.scheduled_at
        return {"at": now.isoformat(), "revision": release.revision,
                "scheduled_at": planned and planned.isoformat(),
                "when": planned and calendar.format_local(planned, deps.policy),
                "held": held, **chosen}

    return await transition(deps, release_id, Event.ARM, Ctx(actor, revision=revision), apply)


async def cancel(deps: Deps, *, release_id: int, actor: Actor, reason: str = "") -> Outcome:
    """Withdraw a release before it is deployed."""
    reason = clean_text(reason)

    async def apply(session: AsyncSession, release: Release, facts: Facts) -> dict[str, Any]:
        return {"reason": reason.strip()}

    return await transition(deps, release_id, Event.CANCEL, Ctx(actor, reason=reason), apply)
