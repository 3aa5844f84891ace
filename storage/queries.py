"""Flat data functions over the tables; the only place that writes SQL."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import bindparam, case, delete, func, insert, or_, text, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import (
    Acceptance,
    Approval,
    AskMessage,
    AuditEntry,
    ChecklistTick,
    DeployLock,
    Deployment,
    GitLabProject,
    Lease,
    OutboxMessage,
    Release,
    ReleaseComponent,
    Reminder,
    ReminderDigest,
    SeenDelivery,
    TestReport,
    TrackerCount,
    WorkItem,
    audit_chain,
)

_PerRevision = TypeVar("_PerRevision", Approval, Acceptance)  # tables keyed by revision


async def ping(session: AsyncSession) -> None:
    """One round trip: raises when the database does not answer."""
    await session.exec(text("SELECT 1"))  # type: ignore[call-overload]


def _values(states: Sequence[str]) -> list[str]:
    """States as the plain strings stored in the column."""
    return [str(s) for s in states]


async def lock_release(session: AsyncSession, release_id: int) -> Release | None:
    """Read a release for change; on PostgreSQL the row stays locked until commit."""
    stmt = select(Release).where(Release.id == release_id).with_for_update()
    return (await session.exec(stmt)).first()


async def get_release(session: AsyncSession, release_id: int) -> Release | None:
    """Read a release without locking it."""
    return await session.get(Release, release_id)


async def components_of(session: AsyncSession, release: Release) -> list[ReleaseComponent]:
    """A release's components in deploy order.

    A release row written without any (by hand, or by a tool) is a train of its own project.
    """
    stmt = (select(ReleaseComponent).where(ReleaseComponent.release_id == release.id)
            .order_by(col(ReleaseComponent.position)))
    found = list((await session.exec(stmt)).all())
    return found or [own_component(release)]


def own_component(release: Release) -> ReleaseComponent:
    """The one component a release row names itself (not stored)."""
    return ReleaseComponent(release_id=release.id, position=0, project=release.project,
                            ref=release.ref, pinned_sha=release.pinned_sha,
                            newer_commits=release.newer_commits)


async def components_for(session: AsyncSession,
                         releases: Sequence[Any]) -> dict[int, list[ReleaseComponent]]:
    """The stored components of several releases in one query, by release id (a release
    stored without any is missing: it is its own project alone)."""
    ids = [r.id for r in releases]
    stmt = (select(ReleaseComponent).where(col(ReleaseComponent.release_id).in_(ids))
            .order_by(col(ReleaseComponent.release_id), col(ReleaseComponent.position)))
    found: dict[int, list[ReleaseComponent]] = {}
    for comp in (await session.exec(stmt)).all():
        found.setdefault(comp.release_id, []).append(comp)
    return found


async def approvals_of(session: AsyncSession, release: Release,
                       current_only: bool = True) -> Sequence[Approval]:
    """Approvals of the release's current revision (or all, oldest first)."""
    return await _of_revision(session, Approval, release, current_only)


async def _of_revision(session: AsyncSession, model: type[_PerRevision], release: Release,
                       current_only: bool) -> Sequence[_PerRevision]:
    """A release's rows of a per-revision table, of its current revision or all, oldest first."""
    stmt = select(model).where(model.release_id == release.id)
    if current_only:
        stmt = stmt.where(model.revision == release.revision)
    return (await session.exec(stmt.order_by(col(model.id)))).all()


async def latest_report(session: AsyncSession, release: Release) -> TestReport | None:
    """The newest test report filed for the release's current revision."""
    stmt = (select(TestReport)
            .where(TestReport.release_id == release.id, TestReport.revision == release.revision)
            .order_by(col(TestReport.id).desc()).limit(1))
    return (await session.exec(stmt)).first()


async def ticks_of(session: AsyncSession, release_id: int) -> Sequence[ChecklistTick]:
    """Ticked checklist items."""
    stmt = select(ChecklistTick).where(ChecklistTick.release_id == release_id)
    return (await session.exec(stmt.order_by(col(ChecklistTick.item)))).all()


async def deployments_of(session: AsyncSession, release_id: int) -> Sequence[Deployment]:
    """Every deploy and rollback of a release, oldest first."""
    stmt = select(Deployment).where(Deployment.release_id == release_id)
    return (await session.exec(stmt.order_by(col(Deployment.id)))).all()


async def acceptances_of(session: AsyncSession, release: Release,
                         current_only: bool = True) -> Sequence[Acceptance]:
    """Testers' verdicts before production, of the current revision (or all, oldest first)."""
    return await _of_revision(session, Acceptance, release, current_only)


async def work_items_of(session: AsyncSession, release_id: int) -> Sequence[WorkItem]:
    """The work items a release groups."""
    stmt = select(WorkItem).where(WorkItem.release_id == release_id)
    return (await session.exec(stmt.order_by(col(WorkItem.id)))).all()


async def audit_of(session: AsyncSession, release_id: int,
                   last: int | None = None) -> Sequence[AuditEntry]:
    """A release's audit trail in order (only the `last` rows when given)."""
    stmt = select(AuditEntry).where(AuditEntry.release_id == release_id)
    if last is None:
        return (await session.exec(stmt.order_by(col(AuditEntry.id)))).all()
    newest = (await session.exec(stmt.order_by(col(AuditEntry.id).desc()).limit(last))).all()
    return list(reversed(newest))


async def last_audit(session: AsyncSession, release_id: int, action: str) -> AuditEntry | None:
    """A release's newest audit row of one action."""
    stmt = (select(AuditEntry).where(AuditEntry.release_id == release_id,
                                     AuditEntry.action == action)
            .order_by(col(AuditEntry.id).desc()).limit(1))
    return (await session.exec(stmt)).first()


async def newest_actors(session: AsyncSession, release_id: int,
                        actions: Sequence[str]) -> dict[str, str]:
    """Who last did each of these actions to a release (actions never done are left out)."""
    stmt = (select(AuditEntry.action, AuditEntry.actor)
            .where(AuditEntry.release_id == release_id, col(AuditEntry.action).in_(actions))
            .order_by(col(AuditEntry.id)))
    return dict((await session.exec(stmt)).all())


async def release_projects(session: AsyncSession, ids: set[int]) -> dict[int, str]:
    """The (first) project of each release, by id."""
    if not ids:
        return {}
    stmt = select(Release.id, Release.project).where(col(Release.id).in_(ids))
    return {rid: project for rid, project in (await session.exec(stmt)).all()}


async def audit_page(session: AsyncSession, *, after_id: int, since: datetime | None,
                     limit: int) -> Sequence[AuditEntry]:
    """The next page of the whole audit trail in id order (keyset paging: no OFFSET rescans)."""
    stmt = select(AuditEntry).where(col(AuditEntry.id) > after_id)
    if since is not None:
        stmt = stmt.where(col(AuditEntry.at) >= since)
    return (await session.exec(stmt.order_by(col(AuditEntry.id)).limit(limit))).all()


async def live_deployment(session: AsyncSession, project: str,
                          environment: str) -> Deployment | None:
    """The last successful deploy or rollback the bot made to this environment: what runs there."""
    stmt = (select(Deployment)
            .where(Deployment.project == project, Deployment.environment == environment,
                   Deployment.status == "success")
            .order_by(col(Deployment.finished_at).desc(), col(Deployment.id).desc()).limit(1))
    return (await session.exec(stmt)).first()


async def latest_deployment(session: AsyncSession, project: str,
                            environment: str) -> Deployment | None:
    """The newest deploy or rollback the bot started in this environment, whatever its end."""
    stmt = (select(Deployment)
            .where(Deployment.project == project, Deployment.environment == environment)
            .order_by(col(Deployment.id).desc()).limit(1))
    return (await session.exec(stmt)).first()


async def deployed_releases(session: AsyncSession, project: str, environment: str, *,
                            states: Sequence[str]) -> Sequence[Release]:
    """Releases in these states that deployed successfully to this environment."""
    deployed = (select(Deployment.release_id)
                .where(Deployment.project == project, Deployment.environment == environment,
                       Deployment.status == "success", col(Deployment.rollback).is_(False),
                       col(Deployment.revision) == col(Release.revision)))
    stmt = select(Release).where(col(Release.state).in_(_values(states)),
                                 col(Release.id).in_(deployed))
    return (await session.exec(stmt)).all()


async def deployment_by_pipeline(session: AsyncSession, project: str,
                                 pipeline_id: int) -> Deployment | None:
    """The deployment a GitLab pipeline belongs to."""
    stmt = select(Deployment).where(Deployment.project == project,
                                    Deployment.pipeline_id == pipeline_id)
    return (await session.exec(stmt)).first()


async def active_deployments(session: AsyncSession) -> Sequence[Deployment]:
    """Deploys and rollbacks whose pipeline has not finished."""
    stmt = select(Deployment).where(col(Deployment.status).in_(("pending", "running")))
    return (await session.exec(stmt.order_by(col(Deployment.id)))).all()


async def running_deployment(session: AsyncSession, release_id: int) -> Deployment | None:
    """The release's deploy or rollback whose pipeline has not finished, if any."""
    stmt = (select(Deployment)
            .where(Deployment.release_id == release_id,
                   col(Deployment.status).in_(("pending", "running")))
            .order_by(col(Deployment.id).desc()).limit(1))
    return (await session.exec(stmt)).first()


async def take_deploy_lock(session: AsyncSession, *, project: str, environment: str,
                           release_id: int, holder: str) -> DeployLock:
    """Hold the project's environment, or return whoever already holds it."""
    held = await session.get(DeployLock, (project, environment))
    if held is not None:
        return held
    lock = DeployLock(project=project, environment=environment, release_id=release_id,
                      holder=holder)
    session.add(lock)
    await session.flush()  # a concurrent taker fails here on the primary key
    return lock


async def deploy_lock_holder(session: AsyncSession, *, project: str,
                             environment: str) -> int | None:
    """The release whose pipeline holds this project's environment now, if any."""
    held = await session.get(DeployLock, (project, environment))
    return held.release_id if held is not None else None


async def release_deploy_lock(session: AsyncSession, *, project: str, environment: str,
                              release_id: int) -> None:
    """Let the next deploy of this project's environment go."""
    await session.exec(delete(DeployLock).where(  # type: ignore[call-overload]
        col(DeployLock.project) == project, col(DeployLock.environment) == environment,
        col(DeployLock.release_id) == release_id))


AUDIT_CHAIN_LOCK = 7_246_351_002  # an arbitrary constant naming "ReleaseBot audit chain"


_QUEUED_AUDIT = "releasebot_audit"  # session.info key: audit rows waiting for the commit


async def add_audit(session: AsyncSession, *, release_id: int, actor: str, action: str,
                    from_state: str | None, to_state: str, detail: dict[str, Any], at: datetime
                    ) -> None:
    """Queue one audit row of this transaction; `append_audit` chains and writes it at commit.

    Chaining takes a lock every writer queues on (PostgreSQL), held until commit: appending
    the rows as the transaction's last statements keeps that hold short.
    """
    session.info.setdefault(_QUEUED_AUDIT, []).append(
        {"release_id": release_id, "at": at, "actor": actor, "action": action,
         "from_state": from_state, "to_state": to_state, "detail": detail})


async def append_audit(session: AsyncSession) -> None:
    """Chain the queued audit rows to the newest row before them and write them, in order.

    Everything else the session holds is flushed first, so a lost race shows before the lock
    is taken; then the lock, one read, one INSERT, and the commit follows at once.
    """
    rows = session.info.pop(_QUEUED_AUDIT, None)
    if not rows:
        return
    await session.flush()
    if session.bind.dialect.name == "postgresql":
        # Held until commit: concurrent writers chain one after another, never off the same row.
        await session.exec(text("SELECT pg_advisory_xact_lock(:key)"),  # type: ignore[call-overload]
                           params={"key": AUDIT_CHAIN_LOCK})
    chain = await last_audit_chain(session)
    for row in rows:
        chain = row["chain"] = audit_chain(chain, **row)
    conn = await session.connection()
    await conn.execute(insert(AuditEntry.__table__), rows)  # type: ignore[attr-defined]


async def last_audit_chain(session: AsyncSession) -> str:
    """The chain value of the newest audit row ("" before the first)."""
    stmt = select(AuditEntry.chain).order_by(col(AuditEntry.id).desc()).limit(1)
    return (await session.exec(stmt)).first() or ""


# The releases (None: a person) a request queued announcements for, while it notes them.
_QUEUED: ContextVar[set[int | None] | None] = ContextVar("queued_outbox", default=None)


@contextmanager
def noting_outbox() -> Iterator[set[int | None]]:
    """Note the releases announcements are queued for inside the block (to deliver those)."""
    queued: set[int | None] = set()
    token = _QUEUED.set(queued)
    try:
        yield queued
    finally:
        _QUEUED.reset(token)


def add_outbox(session: AsyncSession, *, release_id: int | None, kind: str,
               payload: dict[str, Any], at: datetime) -> OutboxMessage:
    """Queue one announcement, delivered after commit."""
    msg = OutboxMessage(release_id=release_id, kind=kind, payload=payload, created_at=at)
    session.add(msg)
    if (queued := _QUEUED.get()) is not None:
        queued.add(release_id)
    return msg


async def create_release(session: AsyncSession, *, release: Release,
                         work_items: Sequence[tuple[str, str]] = (),
                         components: Sequence[tuple[str, str]] = ()) -> Release:
    """Insert a new release (its id assigned) with the work items it groups and its
    components, (project, ref) in deploy order (none: the release's own project and ref)."""
    session.add(release)
    await session.flush()
    for kind, reference in work_items:
        session.add(WorkItem(release_id=release.id, kind=kind, reference=reference))
    for position, (project, ref) in enumerate(components or [(release.project, release.ref)]):
        session.add(ReleaseComponent(release_id=release.id, position=position, project=project,
                                     ref=ref))
    return release


def add_report(session: AsyncSession, *, release: Release, url: str, bugs: dict[str, int],
               passes: bool, reporter: str, at: datetime) -> TestReport:
    """File a test report for the release's current revision."""
    report = TestReport(release_id=release.id, revision=release.revision, url=url,
                        bugs_a=bugs["A"], bugs_b=bugs["B"], bugs_c=bugs["C"], passes=passes,
                        reporter=reporter, created_at=at)
    session.add(report)
    return report


def add_bug_count(session: AsyncSession, *, release: Release, moment: str, source: str,
                  scope: str, url: str, ids: dict[str, list[str]],
                  read_at: datetime) -> TrackerCount:
    """Keep what the tracker said of the release's current revision at one of its gates."""
    row = TrackerCount(release_id=release.id, revision=release.revision, moment=moment,
                   source=source[:40], scope=scope[:300], url=url[:2000],
                   bugs_a=len(ids.get("A", [])), bugs_b=len(ids.get("B", [])),
                   bugs_c=len(ids.get("C", [])), ids=ids, read_at=read_at)
    session.add(row)
    return row


async def latest_bug_count(session: AsyncSession, release_id: int,
                           moment: str | None = None) -> TrackerCount | None:
    """The newest tracker count kept for a release (of one moment, when given)."""
    stmt = select(TrackerCount).where(TrackerCount.release_id == release_id)
    if moment is not None:
        stmt = stmt.where(TrackerCount.moment == moment)
    stmt = stmt.order_by(col(TrackerCount.id).desc()).limit(1)
    return (await session.exec(stmt)).first()


def add_approval(session: AsyncSession, *, release: Release, role: str | None, approver: str,
                 seat: str, comment: str, at: datetime) -> Approval:
    """Sign off the current revision; the unique keys refuse a concurrent duplicate at commit."""
    approval = Approval(release_id=release.id, revision=release.revision, role=role,
                        approver=approver, seat=seat, comment=comment, created_at=at)
    session.add(approval)
    return approval


def add_acceptance(session: AsyncSession, *, release: Release, environment: str, passed: bool,
                   tester: str, note: str, at: datetime) -> Acceptance:
    """Record a verdict on an environment; the unique key refuses a second one at commit."""
    acceptance = Acceptance(release_id=release.id, revision=release.revision,
                            environment=environment, passed=passed, tester=tester, note=note,
                            created_at=at)
    session.add(acceptance)
    return acceptance


def add_ticks(session: AsyncSession, *, release_id: int, items: Sequence[int], by: str,
              at: datetime) -> None:
    """Tick checklist items."""
    for item in items:
        session.add(ChecklistTick(release_id=release_id, item=item, ticked_by=by, created_at=at))


async def add_deployment(session: AsyncSession, *, release: Release, project: str,
                         environment: str, rollback: bool, started_by: str, at: datetime,
                         **shipped: str | int | None) -> Deployment:
    """Record a deploy or rollback of one component the bot has committed to (its id assigned).

    `shipped`: ref, sha, runs_release_id, and the previous_ref, previous_sha and
    previous_release_id of what ran there before.
    """
    dep = Deployment(release_id=release.id, revision=release.revision, project=project,
                     environment=environment, rollback=rollback, started_by=started_by,
                     started_at=at, **shipped)
    session.add(dep)
    await session.flush()
    return dep


async def get_deployment(session: AsyncSession, *, deployment_id: int, lock: bool = False,
                         fresh: bool = False) -> Deployment | None:
    """One deployment; `lock` holds its row, `fresh` rereads what others committed since."""
    return await session.get(Deployment, deployment_id, with_for_update=lock or None,
                             populate_existing=fresh)


async def list_releases(session: AsyncSession, *, states: Sequence[str] | None = None,
                        user: str | None = None, limit: int = 20) -> Sequence[Release]:
    """Releases newest first, optionally only some states or one person's."""
    stmt = select(Release)
    if states is not None:
        stmt = stmt.where(col(Release.state).in_(_values(states)))
    if user is not None:
        stmt = stmt.where(Release.requester == user)
    return (await session.exec(stmt.order_by(col(Release.id).desc()).limit(limit))).all()


_LINE_COLUMNS = (Release.id, Release.state, Release.project, Release.ref, Release.title,
                 Release.requester,
                 # How many projects it ships: only a train's need reading beyond this row.
                 select(func.count()).where(col(ReleaseComponent.release_id) == Release.id)
                 .correlate(Release).scalar_subquery().label("parts"))


@cache
def _lines_statement(by_state: bool, by_user: bool) -> Any:
    """The list query of one shape, built once (its parameters bound per call)."""
    stmt = select(*_LINE_COLUMNS)
    if by_state:
        stmt = stmt.where(col(Release.state).in_(bindparam("states", expanding=True)))
    if by_user:
        stmt = stmt.where(Release.requester == bindparam("user"))
    return stmt.order_by(col(Release.id).desc()).limit(bindparam("limit"))


async def release_lines(session: AsyncSession, *, states: Sequence[str] | None = None,
                        user: str | None = None, limit: int = 30) -> Sequence[Any]:
    """What a list shows of each release (id, state, project, ref, title, requester, and how
    many projects it ships), newest first: plain rows from a statement built once, without an
    ORM object per row."""
    stmt = _lines_statement(states is not None, user is not None)
    params = {"states": _values(states or ()), "user": user, "limit": limit}
    conn = await session.connection()
    return (await conn.execute(stmt, params)).all()


async def requester_load(session: AsyncSession, *, requester: str, open_states: Sequence[str],
                         since: datetime) -> tuple[int, int]:
    """(releases open, releases requested since `since`) of one person, in one query."""
    stmt = select(func.count(case((col(Release.state).in_(_values(open_states)), 1))),
                  func.count(case((col(Release.created_at) >= since, 1)))
                  ).where(Release.requester == requester)
    open_now, recent = (await session.exec(stmt)).one()
    return int(open_now), int(recent)


async def claim_slot(session: AsyncSession, name: str, *, owner: str, until: datetime,
                     forget_before: datetime) -> bool:
    """Claim a named time slot once; the primary key refuses a second claimer."""
    if await session.get(Lease, name) is not None:
        return False
    await session.exec(delete(Lease).where(  # type: ignore[call-overload]
        col(Lease.until) < forget_before))
    session.add(Lease(name=name, owner=owner, until=until))
    await session.flush()  # two claimers at once: one IntegrityError, raised to the caller
    return True


async def due_reminder(session: AsyncSession, release_id: int, kind: str, *, now: datetime,
                       every: timedelta) -> bool:
    """Record a reminder unless one of this kind went out less than `every` ago."""
    stmt = (update(Reminder)
            .where(col(Reminder.release_id) == release_id, col(Reminder.kind) == kind,
                   col(Reminder.last_sent) <= now - every)
            .values(last_sent=now, count=Reminder.count + 1))
    if (await session.exec(stmt)).rowcount:  # type: ignore[call-overload]
        return True
    if await session.get(Reminder, (release_id, kind)) is not None:
        return False
    session.add(Reminder(release_id=release_id, kind=kind, last_sent=now))
    await session.flush()
    return True


async def due_digest(session: AsyncSession, *, user: str, now: datetime,
                     every: timedelta) -> bool:
    """Record a digest to `user` unless one went out less than `every` ago.

    The conditional UPDATE (or the primary key, for a first digest) lets one of two concurrent
    callers through: the other sees the new `last_sent`, or fails its insert and gets False.
    """
    stmt = (update(ReminderDigest)
            .where(col(ReminderDigest.user) == user, col(ReminderDigest.last_sent) <= now - every)
            .values(last_sent=now, count=ReminderDigest.count + 1))
    if (await session.exec(stmt)).rowcount:  # type: ignore[call-overload]
        return True
    if await session.get(ReminderDigest, user) is not None:
        return False
    try:
        async with session.begin_nested():
            session.add(ReminderDigest(user=user, last_sent=now))
    except IntegrityError:  # a concurrent first digest committed first
        return False
    return True


async def reminder_of(session: AsyncSession, release_id: int, kind: str) -> Reminder | None:
    """The last reminder of one kind about a release."""
    return await session.get(Reminder, (release_id, kind))


async def releases_in(session: AsyncSession, states: Sequence[str]) -> Sequence[Release]:
    """Every release in these states, oldest first."""
    stmt = select(Release).where(col(Release.state).in_(_values(states)))
    return (await session.exec(stmt.order_by(col(Release.id)))).all()


async def due_scheduled(session: AsyncSession, now: datetime,
                        states: Sequence[str]) -> Sequence[Release]:
    """Releases whose planned deploy time has come, in these states."""
    stmt = select(Release).where(col(Release.scheduled_at) <= now,
                                 col(Release.state).in_(_values(states)))
    return (await session.exec(stmt.order_by(col(Release.scheduled_at)))).all()


async def mark_seen(session: AsyncSession, key: str, at: datetime) -> bool:
    """Record a delivery key; False when it was seen before (the caller then does nothing)."""
    if await session.get(SeenDelivery, key) is not None:
        return False
    try:
        async with session.begin_nested():  # a concurrent duplicate fails on the primary key
            session.add(SeenDelivery(key=key, seen_at=at))
    except IntegrityError:  # it committed first: this delivery is the duplicate
        return False
    return True


async def pending_outbox(session: AsyncSession, *, now: datetime, limit: int = 50
                         ) -> Sequence[OutboxMessage]:
    """Undelivered announcements whose lease is free, oldest first."""
    stmt = (select(OutboxMessage)
            .where(col(OutboxMessage.sent_at).is_(None),
                   or_(col(OutboxMessage.lease_until).is_(None),
                       col(OutboxMessage.lease_until) < now))
            .order_by(col(OutboxMessage.id)).limit(limit))
    return (await session.exec(stmt)).all()


async def releases_with_outbox(session: AsyncSession, *, now: datetime, limit: int = 20
                               ) -> Sequence[int | None]:
    """Releases with undelivered announcements that nobody is delivering, oldest first.

    None comes first when messages to people (reminder digests) wait too: one query finds both.
    """
    stmt = (select(OutboxMessage.release_id)
            .where(col(OutboxMessage.sent_at).is_(None),
                   or_(col(OutboxMessage.lease_until).is_(None),
                       col(OutboxMessage.lease_until) < now))
            .group_by(OutboxMessage.release_id)
            .order_by(col(OutboxMessage.release_id).is_not(None), func.min(OutboxMessage.id))
            .limit(limit))
    return list((await session.exec(stmt)).all())


# The outbox's bookkeeping updates: no loaded objects to bring in step (the ORM's default
# evaluates every WHERE clause against the session's objects).
_NO_SYNC: dict[str, Any] = {"synchronize_session": False}
OUTBOX_LOCK = 7301  # advisory-lock namespace for a release's announcements


async def _serialize_outbox(session: AsyncSession, release_id: int) -> None:
    """On PostgreSQL, one lease attempt per release at a time until commit.

    Under READ COMMITTED the busy check and the claim below are two statements; without
    this, two replicas could both pass the check and claim different rows of one release,
    and both post its card. SQLite writers are already serialised by BEGIN IMMEDIATE.
    """
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        lock = text("SELECT pg_advisory_xact_lock(:ns, :rid)").bindparams(
            ns=OUTBOX_LOCK, rid=release_id)
        await session.exec(lock)  # type: ignore[call-overload]


async def lease_release_outbox(session: AsyncSession, release_id: int, *, owner: str,
                               now: datetime, until: datetime) -> Sequence[OutboxMessage] | None:
    """Claim a release's pending announcements for one pass; None when another has them.

    `owner` must be new for each claim: the rows returned are those this call claimed. The
    claim and the check that nobody else is mid-delivery are one statement; only when nothing
    was claimed does a second one tell "busy" from "nothing to do".
    """
    await _serialize_outbox(session, release_id)
    busy = (select(OutboxMessage.id)
            .where(OutboxMessage.release_id == release_id, col(OutboxMessage.sent_at).is_(None),
                   col(OutboxMessage.lease_until) >= now, OutboxMessage.lease_owner != owner)
            .limit(1))
    stmt = (update(OutboxMessage)
            .where(col(OutboxMessage.release_id) == release_id,
                   col(OutboxMessage.sent_at).is_(None),
                   or_(col(OutboxMessage.lease_until).is_(None),
                       col(OutboxMessage.lease_until) < now),
                   ~busy.exists())  # another worker is mid-delivery: keep the thread in order
            .values(lease_until=until, lease_owner=owner, attempts=OutboxMessage.attempts + 1)
            .returning(OutboxMessage).execution_options(**_NO_SYNC))
    claimed = (await session.exec(stmt)).scalars().all()
    if claimed:
        return sorted(claimed, key=lambda m: m.id or 0)  # RETURNING promises no order
    return None if (await session.exec(busy)).first() is not None else []


async def lease_digest(session: AsyncSession, *, owner: str, now: datetime,
                       until: datetime) -> OutboxMessage | None:
    """Claim the oldest undelivered message to a person (no release) that nobody is posting.

    One at a time, so a lease covers one direct message. On PostgreSQL a concurrent claimer
    waits on the row and then re-checks the lease, so it moves on to the next row.
    """
    free = or_(col(OutboxMessage.lease_until).is_(None), col(OutboxMessage.lease_until) < now)
    oldest = (select(OutboxMessage.id)
              .where(col(OutboxMessage.release_id).is_(None),
                     col(OutboxMessage.sent_at).is_(None), free)
              .order_by(col(OutboxMessage.id)).limit(1).scalar_subquery())
    stmt = (update(OutboxMessage)
            .where(col(OutboxMessage.id) == oldest, col(OutboxMessage.sent_at).is_(None), free)
            .values(lease_until=until, lease_owner=owner, attempts=OutboxMessage.attempts + 1)
            .returning(OutboxMessage))
    return (await session.exec(stmt)).scalars().first()


async def renew_digest_lease(session: AsyncSession, msg_id: int, *, owner: str, now: datetime,
                             until: datetime) -> bool:
    """Extend our lease on one message to a person; False if it is no longer ours."""
    stmt = (update(OutboxMessage)
            .where(col(OutboxMessage.id) == msg_id, col(OutboxMessage.sent_at).is_(None),
                   OutboxMessage.lease_owner == owner, col(OutboxMessage.lease_until) >= now)
            .values(lease_until=until).execution_options(**_NO_SYNC))
    return bool((await session.exec(stmt)).rowcount)  # type: ignore[call-overload]


async def renew_outbox_lease(session: AsyncSession, release_id: int, *, owner: str,
                             now: datetime, until: datetime) -> bool:
    """Extend our lease on a release's announcements; False if it is no longer ours."""
    stmt = (update(OutboxMessage)
            .where(col(OutboxMessage.release_id) == release_id,
                   col(OutboxMessage.sent_at).is_(None), OutboxMessage.lease_owner == owner,
                   col(OutboxMessage.lease_until) >= now)
            .values(lease_until=until).execution_options(**_NO_SYNC))
    return bool((await session.exec(stmt)).rowcount)  # type: ignore[call-overload]


async def mark_sent(session: AsyncSession, msg_id: int, at: datetime) -> None:
    """An announcement is delivered."""
    stmt = update(OutboxMessage).where(col(OutboxMessage.id) == msg_id).values(
        sent_at=at, lease_until=None, last_error=None).execution_options(**_NO_SYNC)
    await session.exec(stmt)  # type: ignore[call-overload]


async def mark_sent_many(session: AsyncSession, msg_ids: Sequence[int], at: datetime) -> None:
    """Announcements delivered (none: nothing to do)."""
    if msg_ids:
        stmt = update(OutboxMessage).where(col(OutboxMessage.id).in_(msg_ids)).values(
            sent_at=at, lease_until=None, last_error=None).execution_options(**_NO_SYNC)
        await session.exec(stmt)  # type: ignore[call-overload]


async def release_version(session: AsyncSession, release_id: int) -> int | None:
    """The release's row version: it moves with every change people see."""
    stmt = select(Release.version).where(Release.id == release_id)
    return (await session.exec(stmt)).first()


async def release_outbox_lease(session: AsyncSession, release_id: int, *, owner: str,
                               retry_at: datetime, error: str) -> None:
    """Give undelivered announcements back, to be retried at `retry_at`."""
    stmt = (update(OutboxMessage)
            .where(col(OutboxMessage.release_id) == release_id,
                   col(OutboxMessage.sent_at).is_(None), OutboxMessage.lease_owner == owner)
            .values(lease_until=retry_at, last_error=error[:500]).execution_options(**_NO_SYNC))
    await session.exec(stmt)  # type: ignore[call-overload]


async def save_card(session: AsyncSession, release_id: int, *, channel: str | None = None,
                    ts: str | None = None, card_hash: str | None = None) -> None:
    """Remember where the card is and what it shows, without touching the release's version."""
    values: dict[str, Any] = {"card_hash": card_hash}
    if ts is not None:
        values |= {"card_channel": channel, "card_ts": ts}
    stmt = update(Release).where(col(Release.id) == release_id).values(**values)
    await session.exec(stmt.execution_options(synchronize_session=False))  # type: ignore[call-overload]


async def save_card_hash(session: AsyncSession, release_id: int, card_hash: str) -> int | None:
    """Remember what the card shows now; the release's version, read in the same statement."""
    stmt = (update(Release).where(col(Release.id) == release_id).values(card_hash=card_hash)
            .returning(Release.version))
    result = await session.exec(stmt.execution_options(synchronize_session=False))  # type: ignore[call-overload]
    return result.scalar()


async def save_merge_back(session: AsyncSession, release_id: int, *, sha: str,
                          value: dict[str, Any]) -> None:
    """Keep a merge-back check of the pinned commit `sha` (if it is still the one pinned).

    Like the card, a derived answer: the release's version stays, so nobody's change is lost.
    """
    stmt = (update(Release)
            .where(col(Release.id) == release_id, col(Release.pinned_sha) == sha)
            .values(merge_back=value))
    await session.exec(stmt.execution_options(synchronize_session=False))  # type: ignore[call-overload]


async def outbox_backlog(session: AsyncSession) -> int:
    """How many announcements wait to be delivered."""
    stmt = select(func.count()).select_from(OutboxMessage).where(
        col(OutboxMessage.sent_at).is_(None))
    return (await session.exec(stmt)).one()


def add_ask_message(session: AsyncSession, *, release_id: int, revision: int,
                    outbox_id: int | None, user: str, channel: str, ts: str,
                    at: datetime, kind: str = "signoff", environment: str | None = None) -> None:
    """Remember a DM with buttons (a sign-off ask or a prompt), to settle it once it is over."""
    session.add(AskMessage(release_id=release_id, revision=revision, outbox_id=outbox_id,
                           user=user, channel=channel, ts=ts, asked_at=at, kind=kind,
                           environment=environment))


async def asked_users(session: AsyncSession, outbox_id: int) -> set[str]:
    """Who already got a DM for this ask announcement (a retried one skips them)."""
    stmt = select(AskMessage.user).where(AskMessage.outbox_id == outbox_id)
    return set((await session.exec(stmt)).all())


async def open_asks(session: AsyncSession, release_id: int) -> Sequence[AskMessage]:
    """A release's ask DMs not yet settled, oldest first."""
    stmt = (select(AskMessage)
            .where(AskMessage.release_id == release_id, col(AskMessage.settled_at).is_(None))
            .order_by(col(AskMessage.id)))
    return (await session.exec(stmt)).all()


async def claim_asks(session: AsyncSession, ask_ids: Sequence[int],
                     at: datetime) -> list[int]:
    """Mark these ask DMs settled; those this call marked (another replica may have)."""
    if not ask_ids:
        return []
    stmt = (update(AskMessage)
            .where(col(AskMessage.id).in_(ask_ids), col(AskMessage.settled_at).is_(None))
            .values(settled_at=at).returning(AskMessage.id).execution_options(**_NO_SYNC))
    return list((await session.exec(stmt)).scalars().all())  # type: ignore[call-overload]


async def claim_ask_message(session: AsyncSession, *, channel: str, ts: str,
                            at: datetime) -> int | None:
    """Mark the ask DM posted as `ts` in `channel` settled; its id, if this call marked it."""
    stmt = (update(AskMessage)
            .where(AskMessage.channel == channel, AskMessage.ts == ts,
                   col(AskMessage.settled_at).is_(None))
            .values(settled_at=at).returning(AskMessage.id).execution_options(**_NO_SYNC))
    return (await session.exec(stmt)).scalars().first()  # type: ignore[call-overload]


async def reopen_ask(session: AsyncSession, ask_id: int) -> None:
    """Give a claimed ask DM back, to be settled later."""
    stmt = (update(AskMessage).where(col(AskMessage.id) == ask_id).values(settled_at=None)
            .execution_options(**_NO_SYNC))
    await session.exec(stmt)  # type: ignore[call-overload]


async def note_ask_error(session: AsyncSession, ask_id: int, error: str, *,
                         reopen: bool = False) -> None:
    """Count a failed update of a claimed ask DM and keep why; `reopen`: try it again later."""
    values: dict[str, Any] = {"attempts": AskMessage.attempts + 1, "last_error": error[:100]}
    if reopen:
        values["settled_at"] = None
    stmt = (update(AskMessage).where(col(AskMessage.id) == ask_id).values(**values)
            .execution_options(**_NO_SYNC))
    await session.exec(stmt)  # type: ignore[call-overload]


async def gitlab_project_ids(session: AsyncSession) -> dict[str, int]:
    """Every learned GitLab project ID by the (lower-case) path it was learned from."""
    rows = (await session.exec(select(GitLabProject))).all()
    return {row.path: row.gitlab_id for row in rows}


async def keep_gitlab_project_id(session: AsyncSession, *, path: str, gitlab_id: int,
                                 at: datetime) -> int:
    """Keep path's ID unless one is kept already (the first learned wins); the ID kept."""
    kept = await session.get(GitLabProject, path)
    if kept is not None:
        return kept.gitlab_id
    try:
        async with session.begin_nested():  # another replica learning it at once: theirs stays
            session.add(GitLabProject(path=path, gitlab_id=gitlab_id, learned_at=at))
    except IntegrityError:
        kept = await session.get(GitLabProject, path)
        return kept.gitlab_id if kept is not None else gitlab_id
    return gitlab_id
