"""The tables: releases and everything that happens to them."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, Integer, UniqueConstraint
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Aware UTC now; every stored time is UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every database (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Store UTC; refuse naive values, which would be ambiguous."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime stored; use aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Read back as aware UTC."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ts(**kw: Any) -> Any:
    """A timestamp field stored as aware UTC."""
    return Field(sa_type=UTCDateTime, **kw)


_release_version = Column("version", Integer, nullable=False, default=1)


class Release(SQLModel, table=True):
    """One release request (`REL-<id>`) and its current state."""

    __tablename__ = "releases"
    __mapper_args__ = {"version_id_col": _release_version}

    id: int | None = Field(default=None, primary_key=True)
    # The first component's project and ref (a one-project release's only one); a train's
    # every component, in deploy order, is a ReleaseComponent row.
    project: str = Field(index=True, max_length=100)
    ref: str = Field(max_length=255)
    version_label: str = Field(default="", max_length=100)
    title: str = Field(max_length=4000)
    type: str = Field(max_length=20)
    requester: str = Field(index=True, max_length=32)
    state: str = Field(index=True, max_length=32)
    revision: int = 1  # bumped by a new ref or report; approvals of older revisions don't count
    # The commit the ref named when this revision reached sign-off: what is approved and shipped.
    pinned_sha: str | None = Field(default=None, max_length=40)
    pinned_revision: int | None = None  # the revision pinned_sha belongs to
    newer_commits: int = 0  # commits the ref had beyond the pin at the last deploy
    # Shipped hotfixes the pinned commit was checked against, and those it lacks:
    # {"sha": pinned sha, "checked": [release ids], "missing": [{"id", "ref", "sha"}]}.
    merge_back: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    scheduled_at: datetime | None = _ts(default=None, index=True)
    planned_window: str = Field(default="", max_length=200)
    # The go-live plan, field → text (bot.plan.PlanField); its review is of the plan as it is.
    plan: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    plan_review: str | None = Field(default=None, max_length=10)  # "ok" or "changes"
    plan_reviewed_by: str | None = Field(default=None, max_length=32)
    plan_review_note: str | None = Field(default=None, max_length=4000)
    # The reviewer who confirmed the release type at plan review, and the type they confirmed:
    # a confirmation counts only for the type the release still has.
    type_confirmed_by: str | None = Field(default=None, max_length=32)
    type_confirmed_as: str | None = Field(default=None, max_length=20)
    # Copied from the policy at request: an item's text, or {item, role} when a role ticks it.
    checklist: list[str | dict[str, str]] = Field(default_factory=list,
                                                 sa_column=Column(JSON, nullable=False))
    # An emergency's ground (bot.policy.Ground) and why, given at request.
    ground: str | None = Field(default=None, max_length=32)
    ground_reason: str | None = Field(default=None, max_length=4000)
    # The last rejection, shown while the release waits for rework.
    rejected_by: str | None = Field(default=None, max_length=32)
    rejection_reason: str | None = Field(default=None, max_length=4000)
    risk_accepted_by: str | None = Field(default=None, max_length=32)
    risk_reason: str | None = Field(default=None, max_length=4000)
    gate_override_by: str | None = Field(default=None, max_length=32)
    gate_override_reason: str | None = Field(default=None, max_length=4000)
    hold_reason: str | None = Field(default=None, max_length=4000)
    verification_note: str | None = Field(default=None, max_length=4000)
    # The executive's decision after a failed online verification: "fix" or "accept", for
    # the revision that failed (a fixed revision that fails again is decided again).
    decision: str | None = Field(default=None, max_length=10)
    decided_by: str | None = Field(default=None, max_length=32)
    decision_reason: str | None = Field(default=None, max_length=4000)
    decided_revision: int | None = None
    # Who let the scheduled deploy of which revision go on its own, and when.
    armed_by: str | None = Field(default=None, max_length=32)
    armed_at: datetime | None = _ts(default=None)
    armed_revision: int | None = None
    card_channel: str | None = Field(default=None, max_length=32)
    card_ts: str | None = Field(default=None, max_length=32)
    card_hash: str | None = Field(default=None, max_length=64)  # skip chat.update of no change
    created_at: datetime = _ts(default_factory=utcnow, index=True)
    updated_at: datetime = _ts(default_factory=utcnow)
    state_since: datetime = _ts(default_factory=utcnow)
    observe_until: datetime | None = _ts(default=None)
    closed_at: datetime | None = _ts(default=None)
    version: int = Field(default=1, sa_column=_release_version)

    @property
    def rel_id(self) -> str:
        """The ID people type and see."""
        return f"REL-{self.id}"


class ReleaseComponent(SQLModel, table=True):
    """One project of a release with its ref and pinned commit; position 0 deploys first."""

    __tablename__ = "release_components"
    __table_args__ = (
        UniqueConstraint("release_id", "project", name="uq_component_project"),
        UniqueConstraint("release_id", "position", name="uq_component_position"),
    )

    id: int | None = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="releases.id", index=True)
    position: int
    project: str = Field(max_length=100)
    ref: str = Field(max_length=255)
    pinned_sha: str | None = Field(default=None, max_length=40)  # of the release's pinned_revision
    newer_commits: int = 0  # commits the ref had beyond the pin at its last deploy


class WorkItem(SQLModel, table=True):
    """A merge request, issue or incident grouped under a release."""

    __tablename__ = "work_items"

    id: int | None = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="releases.id", index=True)
    kind: str = Field(max_length=20)  # mr, issue, incident, link
    reference: str = Field(max_length=500)
    title: str = Field(default="", max_length=500)


class TestReport(SQLModel, table=True):
    """A test report link with open-bug counts; the newest one counts."""

    __tablename__ = "test_reports"
    __test__ = False  # not a pytest class

    id: int | None = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="releases.id", index=True)
    revision: int
    url: str = Field(max_length=2000)
    bugs_a: int = 0
    bugs_b: int = 0
    bugs_c: int = 0
    passes: bool
    reporter: str = Field(max_length=32)
    created_at: datetime = _ts(default_factory=utcnow)


class TrackerCount(SQLModel, table=True):
    """What the project's bug tracker said of a release's open bugs, and when it was read."""

    __tablename__ = "bug_counts"

    id: int | None = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="releases.id", index=True)
    revision: int
    moment: str = Field(max_length=20)  # report, signoff, deploy or recount (new bugs found)
    source: str = Field(max_length=40)  # GitLab issues, ZenTao
    scope: str = Field(max_length=300)  # milestone v1.2.0, label REL-4, product 3
    url: str = Field(max_length=2000)  # the tracker's list of them
    bugs_a: int = 0
    bugs_b: int = 0
    bugs_c: int = 0
    # The open bugs' tracker IDs by severity: {"A": ["#12"], "B": [], "C": ["#3", "#9"]}.
    ids: dict[str, list[str]] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    read_at: datetime = _ts(default_factory=utcnow)


class Approval(SQLModel, table=True):
    """One person's sign-off for one role of one revision; the database keeps it unique."""

    __tablename__ = "approvals"
    __table_args__ = (
        UniqueConstraint("release_id", "revision", "approver", "seat", name="uq_approval_person"),
        UniqueConstraint("release_id", "revision", "role", name="uq_approval_role"),
    )

    id: int | None = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="releases.id", index=True)
    revision: int
    role: str = Field(max_length=64)
    approver: str = Field(max_length=32)
    # "": the person's one sign-off. The role, when the policy lets one person sign for several.
    seat: str = Field(default="", max_length=64)
    comment: str = Field(default="", max_length=3000)
    created_at: datetime = _ts(default_factory=utcnow)


class ChecklistTick(SQLModel, table=True):
    """A ticked pre-release checklist item (1-based)."""

    __tablename__ = "checklist_ticks"
    __table_args__ = (UniqueConstraint("release_id", "item", name="uq_tick"),)

    id: int | None = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="releases.id", index=True)
    item: int
    ticked_by: str = Field(max_length=32)
    created_at: datetime = _ts(default_factory=utcnow)


class Deployment(SQLModel, table=True):
    """One deploy or rollback pipeline of a release to one environment."""

    __tablename__ = "deployments"
    # What runs in an environment now: its last success, found by one index probe.
    __table_args__ = (Index("ix_deployments_live", "project", "environment", "status",
                            "finished_at", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="releases.id", index=True)
    revision: int
    project: str = Field(index=True, max_length=100)
    environment: str = Field(max_length=64)
    ref: str = Field(max_length=255)  # what the pipeline ran on: the release's tag
    sha: str | None = Field(default=None, max_length=40)  # the commit it shipped
    previous_ref: str | None = Field(default=None, max_length=255)
    previous_sha: str | None = Field(default=None, max_length=40)  # what ran there before
    previous_release_id: int | None = None  # the release that ran there before, if the bot's
    runs_release_id: int | None = None  # the release whose version this puts in place, if any
    rollback: bool = False
    status: str = Field(default="pending", index=True, max_length=20)  # pending/running/success/...
    pipeline_id: int | None = Field(default=None, index=True)
    pipeline_url: str | None = Field(default=None, max_length=2000)
    failed_job: str | None = Field(default=None, max_length=500)
    failed_job_url: str | None = Field(default=None, max_length=2000)
    started_by: str = Field(max_length=32)
    started_at: datetime = _ts(default_factory=utcnow)
    finished_at: datetime | None = _ts(default=None)


class Acceptance(SQLModel, table=True):
    """A tester's pass or fail of one revision on an environment before production."""

    __tablename__ = "acceptances"
    __table_args__ = (UniqueConstraint("release_id", "revision", "environment",
                                       name="uq_acceptance"),)

    id: int | None = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="releases.id", index=True)
    revision: int
    environment: str = Field(max_length=64)
    passed: bool
    tester: str = Field(max_length=32)
    note: str = Field(default="", max_length=4000)
    created_at: datetime = _ts(default_factory=utcnow)


class DeployLock(SQLModel, table=True):
    """One deploy per project and environment at a time; the row says who holds it."""

    __tablename__ = "deploy_locks"

    project: str = Field(primary_key=True, max_length=100)
    environment: str = Field(primary_key=True, max_length=64)
    release_id: int = Field(foreign_key="releases.id")
    holder: str = Field(max_length=32)
    acquired_at: datetime = _ts(default_factory=utcnow)


class AuditEntry(SQLModel, table=True):
    """Append-only trail: who did what, when, and the state before and after."""

    __tablename__ = "audit_trail"

    id: int | None = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="releases.id", index=True)
    at: datetime = _ts(default_factory=utcnow, index=True)
    actor: str = Field(max_length=32)
    action: str = Field(max_length=32)
    from_state: str | None = Field(default=None, max_length=32)
    to_state: str = Field(max_length=32)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # sha256 over the previous row's chain and this row's content: an edit or removal shows.
    chain: str = Field(default="", max_length=64)

    def chain_from(self, previous: str) -> str:
        """This row's chain value following a row whose chain is `previous`."""
        return audit_chain(previous, release_id=self.release_id, at=self.at, actor=self.actor,
                           action=self.action, from_state=self.from_state,
                           to_state=self.to_state, detail=self.detail)


def audit_chain(previous: str, *, release_id: int, at: datetime, actor: str, action: str,
                from_state: str | None, to_state: str, detail: dict[str, Any]) -> str:
    """sha256 of the previous chain value and one row's canonical content (a fixed format)."""
    content = json.dumps({
        "release_id": release_id, "at": at.astimezone(UTC).isoformat(), "actor": actor,
        "action": action, "from_state": from_state, "to_state": to_state, "detail": detail,
    }, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(f"{previous}\n{content}".encode()).hexdigest()


class OutboxMessage(SQLModel, table=True):
    """An announcement to deliver to Slack, written in the same transaction as the change."""

    __tablename__ = "outbox"

    id: int | None = Field(default=None, primary_key=True)
    # None for a message to one person about several releases (a reminder digest).
    release_id: int | None = Field(default=None, foreign_key="releases.id", index=True)
    kind: str = Field(max_length=20)  # event, ask, notify; digest
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _ts(default_factory=utcnow)
    sent_at: datetime | None = _ts(default=None, index=True)
    attempts: int = 0
    lease_until: datetime | None = _ts(default=None)
    lease_owner: str | None = Field(default=None, max_length=64)
    last_error: str | None = Field(default=None, max_length=500)


class Reminder(SQLModel, table=True):
    """The last time the bot nudged about one thing of one release, so it never nags."""

    __tablename__ = "reminders"

    release_id: int = Field(foreign_key="releases.id", primary_key=True)
    kind: str = Field(primary_key=True, max_length=40)  # approval, escalation, report, …
    last_sent: datetime = _ts()
    count: int = 1


class ReminderDigest(SQLModel, table=True):
    """The last time one person got a reminder digest: at most one per interval."""

    __tablename__ = "reminder_digests"

    user: str = Field(primary_key=True, max_length=32)
    last_sent: datetime = _ts()
    count: int = 1


class Lease(SQLModel, table=True):
    """Who runs a periodic job until when: one replica per tick, taken over if it dies."""

    __tablename__ = "leases"

    name: str = Field(primary_key=True, max_length=100)
    owner: str = Field(max_length=64)
    until: datetime = _ts()


class SeenDelivery(SQLModel, table=True):
    """A delivery already handled (Slack event_id, GitLab Idempotency-Key): retries do nothing."""

    __tablename__ = "seen_deliveries"

    key: str = Field(primary_key=True, max_length=200)
    seen_at: datetime = _ts(default_factory=utcnow)


class GitLabProject(SQLModel, table=True):
    """The numeric ID of a project the policy names by path: calls and hooks follow renames."""

    __tablename__ = "gitlab_projects"

    path: str = Field(primary_key=True, max_length=255)  # as the policy names it, lower case
    gitlab_id: int
    learned_at: datetime = _ts(default_factory=utcnow)


class AskMessage(SQLModel, table=True):
    """A DM with buttons (a sign-off ask, or a notice's prompt), until it is settled: its
    buttons replaced by what happened."""

    __tablename__ = "ask_messages"
    __table_args__ = (UniqueConstraint("channel", "ts", name="uq_ask_message"),
                      Index("ix_ask_messages_open", "release_id", "settled_at"))

    id: int | None = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="releases.id")
    revision: int  # the revision it asked to sign, or the prompt was sent about
    outbox_id: int | None = Field(default=None, index=True)  # the ask announcement it came from
    # "signoff", or the notice whose prompt it is (handlers.asks.PROMPTS).
    kind: str = Field(default="signoff", max_length=20, sa_column_kwargs={
        "server_default": "signoff"})
    environment: str | None = Field(default=None, max_length=64)  # where a prompt is about
    user: str = Field(max_length=32)
    # The IM's id as chat.postMessage answered it: chat.update takes no user id.
    channel: str = Field(max_length=32)
    ts: str = Field(max_length=32)
    asked_at: datetime = _ts(default_factory=utcnow)
    settled_at: datetime | None = _ts(default=None)  # buttons gone, or claimed to remove them
    attempts: int = 0  # chat.update tries that failed and were given back
    last_error: str | None = Field(default=None, max_length=100)
