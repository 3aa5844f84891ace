"""The policy file (`releasebot.yml`): roles, projects, per-type rules, windows and freezes."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import date, datetime, time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from bot.graph import find_cycle
from bot.plan import PlanField

CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{2,}$")
MEMBER_ID = re.compile(r"^(?:[UW][A-Z0-9]{2,}|S[A-Z0-9]{2,})$")
PROJECT_KEY = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
VARIABLE_NAME = re.compile(r"^[A-Za-z0-9_]+$")
GITLAB_PATH = re.compile(r"^[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)+$")
CLOCK_TIME = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
RESERVED_VARIABLES = ("RELEASE_ID", "DEPLOY_ENV", "ROLLBACK")
HOTFIX_MERGE_BACK_DAYS = 7
_TAG_PREFIX = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/-]{0,40}")


class PolicyError(Exception):
    """An unusable policy file, or a question the policy cannot answer, as one plain line."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems) or [message]


class ReleaseType(StrEnum):
    """The kinds of release the process knows."""

    STANDARD = "standard"
    EMERGENCY = "emergency"
    HOTFIX = "hotfix"
    CAMPAIGN = "campaign"


class Ground(StrEnum):
    """The seeds' grounds for an emergency release (紧急上线资格)."""

    LIVE_BUG = "live_bug"
    URGENT_REVISION = "urgent_revision"
    STRATEGIC = "strategic"

    @property
    def label(self) -> str:
        """The words people see."""
        return _GROUND_LABELS[self]


_GROUND_LABELS = {Ground.LIVE_BUG: "a serious bug is live",
                  Ground.URGENT_REVISION: "an urgent revision",
                  Ground.STRATEGIC: "an urgent strategic deployment"}


class Weekday(StrEnum):
    """A day of the week as written in `windows`."""

    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"

    @property
    def number(self) -> int:
        """Monday is 0, as in datetime.weekday()."""
        return list(Weekday).index(self)


def _invalid(reason: str, at: tuple[str | int, ...] = ()) -> PydanticCustomError:
    """A validation error with our wording; `at` points below the validated value."""
    return PydanticCustomError("policy", "{reason}", {"reason": reason, "at": at})


def _shown(value: Any) -> str:
    """A short rendering of a bad value for an error line."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- value checks used as validators ------------------------------------------------------------

def _release_type(value: Any) -> ReleaseType:
    """A release type key, with the allowed ones named when it is not."""
    if isinstance(value, str) and value in {t.value for t in ReleaseType}:
        return ReleaseType(value)
    allowed = ", ".join(ReleaseType)
    raise _invalid(f"unknown release type {_shown(value)}; release types: {allowed}")


def _weekday(value: Any) -> Weekday:
    """`tue`, `Tue` or `Tuesday`."""
    text = value.strip().lower() if isinstance(value, str) else ""
    for day in Weekday:
        if text and (text == day.value or text == _DAY_NAMES[day]):
            return day
    raise _invalid(f"{_shown(value)} is not a weekday; use {', '.join(Weekday)}")


_DAY_NAMES = dict(zip(Weekday, ("monday", "tuesday", "wednesday", "thursday", "friday",
                                "saturday", "sunday"), strict=True))


def _clock_time(value: Any) -> time:
    """A 24-hour "HH:MM" (our YAML loader keeps 20:00 a string, not the base-60 number 1200)."""
    if isinstance(value, time):
        return value
    match = CLOCK_TIME.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise _invalid(f'must be a time like "20:00" (24-hour HH:MM) (got {_shown(value)})')
    return time(int(match.group(1)), int(match.group(2)))


def _calendar_date(value: Any) -> date:
    """A date like 2026-12-24; a number or a date with a time is a mistake, not a timestamp."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and ISO_DATE.match(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            raise _invalid(f"{value.strip()} is not a real date") from None
    raise _invalid(f"must be a date like 2026-12-24 (got {_shown(value)})")


def _member_id(value: Any) -> str:
    """A Slack user (U…/W…) or user group (S…) ID."""
    if isinstance(value, str) and MEMBER_ID.match(value):
        return value
    raise _invalid(f"{_shown(value)} is not a Slack user ID (U…, W…) or user group ID (S…)")


def _role_name(value: Any) -> str:
    """A role's name, as approvers refer to it."""
    if isinstance(value, str) and value.strip():
        return value
    raise _invalid(f"{_shown(value)} is not a role name")


def _project_key(value: Any) -> str:
    """What people type in `/release request <project>`."""
    if isinstance(value, str) and PROJECT_KEY.match(value):
        return value
    raise _invalid(
        f"project key {_shown(value)} must be lower-case letters and digits, "
        f"optionally with '.', '_' or '-'"
    )


def _variable_name(value: Any) -> str:
    """A GitLab CI variable name that the bot does not set itself."""
    if not isinstance(value, str) or not VARIABLE_NAME.match(value):
        raise _invalid(f"{_shown(value)} is not a CI variable name (letters, digits and _)")
    if value in RESERVED_VARIABLES:
        raise _invalid(f"{value} is set by the bot on every deploy; choose another name")
    return value


def _variable_value(value: Any) -> str:
    """CI variables are strings: true stays `true`, 3 becomes `3`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise _invalid(f"must be a single value (text, number or true/false) (got {_shown(value)})")


# --- the models ---------------------------------------------------------------------------------

class _Model(BaseModel):
    """Frozen, and strict about keys: a typo must never silently change the process."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        """Name an unknown key and the allowed ones; an empty value means the default."""
        if not isinstance(data, dict):
            return data
        shown = {(info.alias or name): info for name, info in cls.model_fields.items()}
        accepted = shown | dict(cls.model_fields)
        for key in data:
            if key not in accepted:
                allowed = ", ".join(sorted(shown))
                raise _invalid(f"unknown key {_shown(key)}; allowed keys: {allowed}", at=(key,))
        # `windows:` with nothing after it reads as null; treat it like leaving the key out.
        return {k: v for k, v in data.items() if v is not None or accepted[k].is_required()}


class BugLimits(_Model):
    """The go-live standard: the most open bugs of each severity a release may ship with."""

    A: int = Field(0, ge=0)
    B: int = Field(0, ge=0)
    C: int = Field(5, ge=0)


class PlanPolicy(_Model):
    """What a release type's go-live plan must hold, and which role reviews it."""

    required: list[PlanField] = []
    reviewer: str | None = None


class TypePolicy(_Model):
    """The rules for one release type."""

    approvers: list[str] = []
    max_open_bugs: BugLimits = BugLimits()
    allow_known_issues: bool = False
    bypass_freeze: bool = False
    requester_can_deploy: bool = False
    require_test_report: bool = True
    merge_back_days: int | None = Field(None, ge=1)
    plan: PlanPolicy = PlanPolicy()
    # The grounds a request of this type must name, with a reason; None: the type's default
    # (an emergency needs one of the seeds' three, other types none).
    grounds: list[Ground] | None = None

    @field_validator("approvers")
    @classmethod
    def _approvers_unique(cls, roles: list[str]) -> list[str]:
        """One role signs once."""
        for i, role in enumerate(roles):
            if role in roles[:i]:
                raise _invalid(f"lists the role {role!r} twice", at=(i,))
        return roles


class ChecklistItem(_Model):
    """A pre-release checklist step and the role that ticks it (the release manager's if none)."""

    item: str
    role: str | None = None

    @property
    def owner(self) -> str:
        """The role whose holders tick this item."""
        return self.role or "release_manager"

    def stored(self) -> str | dict[str, str]:
        """As a release keeps it: plain text, or the item with its role."""
        return self.item if self.role is None else {"item": self.item, "role": self.role}

    @field_validator("item")
    @classmethod
    def _says_something(cls, item: str) -> str:
        """An empty step can't be ticked meaningfully."""
        if not item.strip():
            raise _invalid("is an empty checklist item")
        return item


def _checklist_item(value: Any) -> Any:
    """An item written as plain text is ticked by the release manager."""
    return {"item": value} if isinstance(value, str) else value


def checklist_of(stored: Sequence[Any]) -> list[ChecklistItem]:
    """A release's checklist as it was copied from the policy when it was requested.

    Stored rows were validated when the policy was read; they are shown, never refused now.
    """
    items = (_checklist_item(entry) for entry in stored)
    return [ChecklistItem.model_construct(item=str(e.get("item", "")), role=e.get("role"))
            for e in items if isinstance(e, dict)]


class Severity(StrEnum):
    """The go-live standard's bug severities."""

    A = "A"
    B = "B"
    C = "C"


class TrackerKind(StrEnum):
    """Where a project's bugs are tracked."""

    GITLAB = "gitlab"  # the project's GitLab issues, by severity label
    ZENTAO = "zentao"  # a ZenTao product's bugs, by severity number


class TrackerScope(StrEnum):
    """Which GitLab issues belong to a release."""

    MILESTONE = "milestone"  # the milestone named as the release's version (else its ref)
    LABEL = "label"  # labelled with the release ID, e.g. REL-42


DEFAULT_LABELS = {Severity.A: "severity::A", Severity.B: "severity::B", Severity.C: "severity::C"}
DEFAULT_SEVERITY_MAP = {1: Severity.A, 2: Severity.B, 3: Severity.C, 4: Severity.C}
_GITLAB_KEYS = ("labels", "scope")
_ZENTAO_KEYS = ("url", "product", "build", "project", "severity_map")


def _tracker_kind(value: Any) -> TrackerKind:
    """`gitlab` or `zentao`."""
    if isinstance(value, str) and value in {k.value for k in TrackerKind}:
        return TrackerKind(value)
    raise _invalid(f"unknown bug tracker kind {_shown(value)}; kinds: {', '.join(TrackerKind)}")


def _tracker_url(value: Any) -> str:
    """ZenTao's address (what comes before /api.php), without credentials in it."""
    text = value.strip().rstrip("/") if isinstance(value, str) else ""
    text = text.removesuffix("/api.php/v1").removesuffix("/api.php")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _invalid(f"must be an http(s) URL like https://zentao.example.com "
                       f"(got {_shown(value)})")
    if parts.username or parts.password:
        raise _invalid("must not hold an account or password: set ZENTAO_ACCOUNT and "
                       "ZENTAO_PASSWORD instead")
    return text


class BugTracker(_Model):
    """Where a project's open bugs are counted: GitLab issues or a ZenTao product."""

    kind: Annotated[TrackerKind, BeforeValidator(_tracker_kind)]
    labels: dict[Severity, str] | None = None  # gitlab: severity -> label
    scope: TrackerScope | None = None  # gitlab: milestone (default) or label
    url: Annotated[str, BeforeValidator(_tracker_url)] | None = None  # zentao
    product: int | None = Field(None, gt=0)  # zentao: the product's ID
    build: str | None = None  # zentao: only bugs found in this build (ID)
    project: int | None = Field(None, gt=0)  # zentao: only bugs of this project (ID)
    severity_map: dict[Annotated[int, Field(gt=0)], Severity] | None = None  # zentao

    @model_validator(mode="after")
    def _fits_kind(self) -> BugTracker:
        """Each kind has its own keys; ZenTao needs its address and product."""
        other = _ZENTAO_KEYS if self.kind is TrackerKind.GITLAB else _GITLAB_KEYS
        for key in other:
            if getattr(self, key) is not None:
                raise _invalid(f"is not a key of a {self.kind} tracker", at=(key,))
        if self.kind is TrackerKind.ZENTAO:
            for key in ("url", "product"):
                if getattr(self, key) is None:
                    raise _invalid(f"a zentao tracker needs `{key}`", at=(key,))
        if self.labels is not None:
            _check_labels(self.labels)
        return self

    @field_validator("build", mode="before")
    @classmethod
    def _build_id(cls, value: Any) -> Any:
        """A build ID as ZenTao lists it in a bug's openedBuild (`trunk` or a number)."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @property
    def severity_labels(self) -> dict[Severity, str]:
        """GitLab: the label that marks each severity."""
        return dict(self.labels) if self.labels is not None else dict(DEFAULT_LABELS)

    @property
    def severities(self) -> dict[int, Severity]:
        """ZenTao: the go-live severity of each ZenTao severity number."""
        return dict(self.severity_map) if self.severity_map is not None else dict(
            DEFAULT_SEVERITY_MAP)

    @property
    def issue_scope(self) -> TrackerScope:
        """GitLab: which issues are the release's."""
        return self.scope or TrackerScope.MILESTONE


def _check_labels(labels: dict[Severity, str]) -> None:
    """A label for every severity, each a different one: an unlabelled severity counts nothing."""
    missing = [s.value for s in Severity if s not in labels]
    if missing:
        raise _invalid(f"needs a label for {', '.join(missing)} too (every severity counts)",
                       at=("labels",))
    for sev, label in labels.items():
        if not label.strip() or "," in label:
            raise _invalid(f"{_shown(label)} is not a GitLab label name", at=("labels", sev))
    if len(set(labels.values())) < len(labels):
        raise _invalid("gives two severities the same label", at=("labels",))


class Project(_Model):
    """A GitLab project people can release."""

    gitlab: str | int
    environments: list[str] = ["production"]
    deploy_variables: dict[
        Annotated[str, BeforeValidator(_variable_name)],
        Annotated[str, BeforeValidator(_variable_value)],
    ] = {}
    checklist: list[Annotated[ChecklistItem, BeforeValidator(_checklist_item)]] = []
    default_branch: str | None = None
    bug_tracker: BugTracker | None = None  # where its open bugs are counted
    # Projects a release train deploys before this one, in each environment.
    depends_on: list[Annotated[str, BeforeValidator(_project_key)]] = []

    @property
    def production(self) -> str:
        """The last environment is the live one."""
        return self.environments[-1]

    @field_validator("gitlab", mode="before")
    @classmethod
    def _gitlab_project(cls, value: Any) -> str | int:
        """A project path (`acme/payments`) or a numeric ID."""
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        if isinstance(value, str) and value.strip().isdigit():
            return int(value.strip())
        if isinstance(value, str) and GITLAB_PATH.match(value.strip()):
            return value.strip()
        raise _invalid(
            f"must be a GitLab project path like acme/payments or a numeric project ID "
            f"(got {_shown(value)})"
        )

    @field_validator("environments")
    @classmethod
    def _environments(cls, names: list[str]) -> list[str]:
        """Non-empty, unique, and typeable as one word in `/release deploy`."""
        if not names:
            raise _invalid("must list at least one environment (the last one is production)")
        for i, name in enumerate(names):
            if not name or any(c.isspace() for c in name):
                raise _invalid(f"{name!r} is not an environment name (one word)", at=(i,))
            if name in names[:i]:
                raise _invalid(f"lists {name!r} twice", at=(i,))
        return names


class Window(_Model):
    """When deploys may start; `end` before `start` crosses midnight."""

    days: list[Annotated[Weekday, BeforeValidator(_weekday)]]
    start: Annotated[time, BeforeValidator(_clock_time)]
    end: Annotated[time, BeforeValidator(_clock_time)]

    @property
    def crosses_midnight(self) -> bool:
        """The window ends on the day after the one it starts."""
        return self.end < self.start

    @field_validator("days")
    @classmethod
    def _some_days(cls, days: list[Weekday]) -> list[Weekday]:
        """A window without days would never open."""
        if not days:
            raise _invalid(f"must list at least one day ({', '.join(Weekday)})")
        return days

    @field_validator("end")
    @classmethod
    def _has_length(cls, end: time, info: ValidationInfo) -> time:
        """start == end is ambiguous (empty or all day), so refuse it."""
        if info.data.get("start") == end:
            raise _invalid(f"must differ from start ({end:%H:%M}); a window needs a length")
        return end


class Freeze(_Model):
    """Days (inclusive, policy time zone) when standard releases may not deploy."""

    start: Annotated[date, BeforeValidator(_calendar_date)] = Field(alias="from")
    to: Annotated[date, BeforeValidator(_calendar_date)]
    reason: str

    @field_validator("to")
    @classmethod
    def _not_before_start(cls, to: date, info: ValidationInfo) -> date:
        """A freeze must not end before it begins."""
        start = info.data.get("start")
        if start is not None and to < start:
            raise _invalid(f"{to} is before from ({start})")
        return to

    @field_validator("reason", mode="before")
    @classmethod
    def _reason(cls, value: Any) -> Any:
        """The reason is what a refused deploy shows, so it must say something."""
        if value is None or (isinstance(value, str) and not value.strip()):
            raise _invalid("must say why deploys are frozen (it is shown when a deploy is refused)")
        return value.strip() if isinstance(value, str) else value


class Reminders(_Model):
    """How long things may wait before the bot nudges, and how often it repeats itself."""

    approval_hours: float = Field(4.0, gt=0)
    escalation_hours: float = Field(24.0, gt=0)
    report_hours: float = Field(24.0, gt=0)
    verify_minutes: float = Field(60.0, gt=0)
    verify_deadline_minutes: float = Field(240.0, gt=0)
    merge_back_hours: float = Field(24.0, gt=0)
    interval_hours: float = Field(4.0, gt=0)


def _team_id(value: Any) -> str:
    """A Slack workspace ID (T…)."""
    if isinstance(value, str) and re.fullmatch(r"T[A-Z0-9]{2,30}", value):
        return value
    raise _invalid(f"{_shown(value)} is not a Slack workspace ID (T…)")


def _enterprise_id(value: Any) -> str:
    """A Slack Enterprise Grid organization ID (E…)."""
    if isinstance(value, str) and re.fullmatch(r"E[A-Z0-9]{2,30}", value):
        return value
    raise _invalid(f"{_shown(value)} is not an Enterprise Grid organization ID (E…)")


class SlackAccess(_Model):
    """Who may talk to the bot; unset IDs mean the workspace the bot token belongs to."""

    team_ids: list[Annotated[str, BeforeValidator(_team_id)]] = []
    enterprise_id: Annotated[str, BeforeValidator(_enterprise_id)] | None = None
    allow_external_users: bool = False
    allow_guests: bool = False


class MergeBack(StrEnum):
    """What a shipped hotfix that is not merged back does to later releases of its project."""

    ENFORCE = "enforce"  # no sign-off of a later release until its commit contains the hotfix
    REMIND = "remind"  # only the reminders


class Notice(StrEnum):
    """The moments `notify` can tell people of."""

    REQUEST = "request"  # a release is filed
    SIGNOFF = "signoff"  # its last sign-off is in
    DEPLOY = "deploy"  # a deploy started, succeeded or failed
    VERIFICATION = "verification"  # online verification passed or failed
    ROLLBACK = "rollback"  # a rollback started, succeeded or failed
    CLOSE = "close"  # the release is over


def _notice(value: Any) -> Notice:
    """A `notify` key, with the allowed ones named when it is not."""
    if isinstance(value, str) and value in {n.value for n in Notice}:
        return Notice(value)
    raise _invalid(f"unknown notify moment {_shown(value)}; moments: {', '.join(Notice)}")


def _notify_target(value: Any) -> str:
    """A channel (C…/G…), user (U…/W…) or user group (S…) ID."""
    if isinstance(value, str) and (CHANNEL_ID.match(value) or MEMBER_ID.match(value)):
        return value
    raise _invalid(f"{_shown(value)} is not a Slack channel ID (C…, G…), user ID (U…, W…) "
                   "or user group ID (S…)")


class Limits(_Model):
    """What one person may ask for, so a single member cannot flood the process."""

    requests_per_hour: int = Field(20, ge=1)
    open_releases_per_requester: int = Field(10, ge=1)


class Policy(_Model):
    """The whole policy file."""

    release_channel: str
    timezone: str
    roles: dict[
        Annotated[str, BeforeValidator(_role_name)],
        list[Annotated[str, BeforeValidator(_member_id)]],
    ]
    projects: dict[Annotated[str, BeforeValidator(_project_key)], Project]
    policies: dict[Annotated[ReleaseType, BeforeValidator(_release_type)], TypePolicy]
    observation_hours: float = Field(24.0, ge=0)
    windows: list[Window] = []
    freezes: list[Freeze] = []
    one_person_many_roles: bool = False
    reminders: Reminders = Reminders()
    slack: SlackAccess = SlackAccess()
    limits: Limits = Limits()
    tag_prefix: str = "release/"  # each release's deploys run on the tag <prefix>REL-n
    merge_back: MergeBack = MergeBack.ENFORCE
    # Who hears of each moment: channels get a line linking the card, people a direct message.
    notify: dict[Annotated[Notice, BeforeValidator(_notice)],
                 list[Annotated[str, BeforeValidator(_notify_target)]]] = {}
    # A deploy or rollback not final after this long is reported as stuck, once.
    deploy_timeout_minutes: float = Field(60.0, gt=0)

    @field_validator("tag_prefix")
    @classmethod
    def _tag_prefix(cls, value: str) -> str:
        """A prefix git accepts in a tag name."""
        if not _TAG_PREFIX.fullmatch(value) or ".." in value or "//" in value:
            raise ValueError("must be letters, digits, '.', '_', '-' or '/', e.g. release/")
        return value

    @property
    def tz(self) -> ZoneInfo:
        """The zone for windows, freezes and every time shown to people."""
        return ZoneInfo(self.timezone)

    @property
    def environment_names(self) -> tuple[str, ...]:
        """Every environment any project has, each once."""
        return tuple(dict.fromkeys(e for p in self.projects.values() for e in p.environments))

    @field_validator("release_channel")
    @classmethod
    def _channel_id(cls, value: str) -> str:
        """Slack's API wants the ID; names change and are ambiguous."""
        if not CHANNEL_ID.match(value):
            raise _invalid(f"must be a Slack channel ID like C0123ABCD, not a name (got {value!r})")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        """An IANA zone name that this machine's tz database knows."""
        try:
            ZoneInfo(value)
        except (KeyError, ValueError, OSError):
            raise _invalid(
                f"unknown time zone {value!r}; use an IANA name like Asia/Shanghai or Europe/Berlin"
            ) from None
        return value

    @field_validator("projects")
    @classmethod
    def _some_projects(cls, projects: dict[str, Project]) -> dict[str, Project]:
        """Nothing can be released without a project."""
        if not projects:
            raise _invalid("must list at least one project")
        return projects

    @field_validator("policies")
    @classmethod
    def _standard_defined(
        cls, policies: dict[ReleaseType, TypePolicy]
    ) -> dict[ReleaseType, TypePolicy]:
        """Every request falls back to standard, so it must exist."""
        if ReleaseType.STANDARD not in policies:
            raise _invalid("must include standard (the rules for a planned release)")
        return policies

    @model_validator(mode="after")
    def _roles_defined(self) -> Policy:
        """Every role the rules rely on must be in `roles`."""
        for at, reason in _role_problems(self):
            raise _invalid(reason, at=at)
        return self

    @model_validator(mode="after")
    def _dependencies_known(self) -> Policy:
        """`depends_on` names other projects of the file, and never goes round in a circle."""
        for at, reason in _dependency_problems(self):
            raise _invalid(reason, at=at)
        return self

    @property
    def dependencies(self) -> dict[str, list[str]]:
        """Project key → the projects deployed before it (`depends_on`)."""
        return {key: list(project.depends_on) for key, project in self.projects.items()}

    def type_policy(self, release_type: ReleaseType | str) -> TypePolicy:
        """The rules for a release type; PolicyError when the file has none."""
        try:
            key = ReleaseType(release_type)
        except ValueError:
            allowed = ", ".join(ReleaseType)
            raise PolicyError(
                f"{release_type!r} is not a release type; use one of {allowed}."
            ) from None
        if key not in self.policies:
            raise PolicyError(
                f"{key} releases are not enabled: the policy file has no policies.{key}."
            )
        return self.policies[key]

    def project(self, key: str) -> Project:
        """A project by the key people type; PolicyError naming the known ones."""
        if key in self.projects:
            return self.projects[key]
        known = ", ".join(sorted(self.projects))
        raise PolicyError(f"There is no project {key[:40]!r}; known projects: {known}.")

    def grounds_of(self, release_type: ReleaseType | str) -> list[Ground]:
        """The grounds a request of this type must name one of ([]: none needed)."""
        rules = self.type_policy(release_type)
        if rules.grounds is not None:
            return list(rules.grounds)
        return list(Ground) if release_type == ReleaseType.EMERGENCY else []

    def sole_signer_roles(self, release_type: ReleaseType | str, requester: str) -> list[str]:
        """Required roles only the requester holds: nobody can sign them (four eyes).

        A role with a user group in it may have other members, so it is never named here.
        """
        return [role for role in self.type_policy(release_type).approvers
                if (members := self.roles.get(role, [])) and set(members) == {requester}]

    def users_in_role(self, role: str) -> list[str]:
        """The raw IDs in a role (users and S… user groups); [] for an unknown role."""
        return list(self.roles.get(role, []))

    def roles_of(self, member_id: str) -> list[str]:
        """The roles that list this ID directly (group membership needs Slack)."""
        return [role for role, members in self.roles.items() if member_id in members]

    def notify_targets(self, notice: Notice | None) -> list[str]:
        """The channels, users and user groups told of this moment."""
        return list(self.notify.get(notice, [])) if notice else []

    def merge_back_days(self, release_type: ReleaseType | str) -> int | None:
        """Days within which the ref must reach the default branch; hotfix defaults to 7."""
        days = self.type_policy(release_type).merge_back_days
        if days is None and ReleaseType(release_type) is ReleaseType.HOTFIX:
            return HOTFIX_MERGE_BACK_DAYS
        return days


def _dependency_problems(policy: Policy) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Where `depends_on` names an unknown project or itself, or projects depend in a circle."""
    known = ", ".join(sorted(policy.projects))
    for key, project in policy.projects.items():
        for i, other in enumerate(project.depends_on):
            at = ("projects", key, "depends_on", i)
            if other == key:
                yield at, "a project can't depend on itself"
            elif other not in policy.projects:
                yield at, f"unknown project {other!r}; projects defined: {known}"
    if cycle := find_cycle(policy.dependencies):
        yield ("projects", cycle[0], "depends_on"), (
            f"the projects depend on each other in a circle: {' → '.join(cycle)}")


def _role_problems(policy: Policy) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Where a rule names a role that `roles` does not define."""
    defined = ", ".join(sorted(policy.roles)) or "none"
    if "release_manager" not in policy.roles:
        yield ("roles",), "must define release_manager (who deploys, rolls back and closes)"
    for key, project in policy.projects.items():
        for i, step in enumerate(project.checklist):
            if step.role is not None and step.role not in policy.roles:
                at = ("projects", key, "checklist", i, "role")
                yield at, f"unknown role {step.role!r}; roles defined: {defined}"
    for release_type, rules in policy.policies.items():
        for i, role in enumerate(rules.approvers):
            if role not in policy.roles:
                at = ("policies", release_type.value, "approvers", i)
                yield at, f"unknown role {role!r}; roles defined: {defined}"
        reviewer = rules.plan.reviewer
        if reviewer is not None and reviewer not in policy.roles:
            at = ("policies", release_type.value, "plan", "reviewer")
            yield at, f"unknown role {reviewer!r}; roles defined: {defined}"
        for flag in ("allow_known_issues", "bypass_freeze"):
            if getattr(rules, flag) and "executive" not in policy.roles:
                at = ("policies", release_type.value, flag)
                yield at, "needs an executive role to decide, but roles defines no executive"


# --- reading the file ---------------------------------------------------------------------------

class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 scalars: `on`/`no` stay words and 20:00 stays a string."""


# Dates stay strings too, so that 2027-02-30 gets our error rather than a ValueError.
_BOOL, _INT, _FLOAT, _TIMESTAMP = (
    f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float", "timestamp")
)
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _INT, _FLOAT, _TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))
# No leading zeros: PyYAML would read 010 as octal 8.
_Loader.add_implicit_resolver(_INT, re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789"))
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+(?=[eE]))(?:[eE][-+]?[0-9]+)?$"
               r"|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+.0123456789"),
)

_REASONS = {
    "missing": "is required",
    "string_type": "must be text",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list, like [a, b]",
    "dict_type": "must be a mapping of keys to values",
    "model_type": "must be a mapping of keys to values",
    "model_attributes_type": "must be a mapping of keys to values",
    "greater_than_equal": "must be at least {ge:g}",
    "greater_than": "must be more than {gt:g}",
    "extra_forbidden": "is not an allowed key",
    "literal_error": "must be {expected}",
    "enum": "must be {expected}",
}


_PYDANTIC_PREFIX = re.compile(r"^(?:Value error|Assertion failed), ")
# `release_channel: #releases` reads as nothing: the # starts a comment.
_COMMENT_HINT = ("; a # starts a YAML comment, so quote a value that begins with one; a "
                 "channel is given by its ID (like C0123ABCD), not its #name")


def _reason(error: Any) -> str:
    """Plain wording for one pydantic error."""
    ctx = error.get("ctx") or {}
    if error["type"] == "policy":
        return ctx["reason"]
    template = _REASONS.get(error["type"])
    if template is None:
        msg = _PYDANTIC_PREFIX.sub("", error["msg"])  # "Value error, …" says nothing to people
        return msg[:1].lower() + msg[1:]
    if error["type"] in ("missing", "extra_forbidden"):
        return template
    return f"{template.format(**ctx)} (got {_shown(error['input'])})"


def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    """(key node or item, value node) for one step of an error location."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return key, value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part], node.value[part]
    return None


def _line_of(root: yaml.Node, loc: Sequence[str | int]) -> int:
    """1-based line of the deepest node on `loc` that exists (a missing key: its parent's)."""
    node, line = root, root.start_mark.line + 1
    for part in loc:
        step = None if part == "[key]" else _child(node, part)
        if step is None:
            break
        line, node = step[0].start_mark.line + 1, step[1]
    return line


def _problems(exc: ValidationError, root: yaml.Node, filename: str,
              text: str) -> list[tuple[int, str]]:
    """Each validation error as (line, `file:line: path: reason`)."""
    problems = []
    source = text.splitlines()
    for error in exc.errors():
        loc = (*error["loc"], *(error.get("ctx") or {}).get("at", ()))
        path = ".".join(str(p) for p in loc if p != "[key]")
        line = _line_of(root, loc)
        where = f"{filename}:{line}: {path}: " if path else f"{filename}:{line}: "
        reason = _reason(error)
        if error["input"] is None and _value_is_a_comment(source, line):
            reason += _COMMENT_HINT
        problems.append((line, where + reason))
    return problems


def _value_is_a_comment(source: list[str], line: int) -> bool:
    """Whether the value on this line (after `key:` or `- `) begins with #."""
    text = source[line - 1] if 0 < line <= len(source) else ""
    after = re.match(r"^\s*(?:-\s+)?(?:[^#:]+:)?\s*(#.*)$", text)
    return after is not None


def _find_duplicate(node: yaml.Node, path: tuple[str, ...], seen: set[int]) -> str | None:
    """`line: path: duplicate key (…)` for the first repeated key; YAML would keep the last."""
    if id(node) in seen:  # anchors can make the tree a graph
        return None
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        pairs = [(str(i), None, item) for i, item in enumerate(node.value)]
    elif isinstance(node, yaml.MappingNode):
        pairs = [(str(key.value), key, value) for key, value in node.value]
    else:
        return None
    first: dict[str, int] = {}
    for name, key, value in pairs:
        if key is not None and isinstance(key, yaml.ScalarNode) and name != "<<":
            line = key.start_mark.line + 1
            if name in first:
                where = ".".join((*path, name))
                return f"{line}: {where}: duplicate key (first at line {first[name]})"
            first[name] = line
        found = _find_duplicate(value, (*path, name), seen)
        if found:
            return found
    return None


def _pairs(node: yaml.Node | None) -> list[tuple[yaml.Node, yaml.Node]]:
    """The (key, value) nodes of a mapping; [] for anything else."""
    return list(node.value) if isinstance(node, yaml.MappingNode) else []


def _keep_variables_verbatim(root: yaml.Node, data: dict[Any, Any]) -> None:
    """CI variables are strings: keep `VERSION: 1.10` as typed rather than the float 1.1."""
    projects = data.get("projects")
    for key, project in _pairs((_child(root, "projects") or (None, None))[1]):
        target = projects.get(key.value) if isinstance(projects, dict) else None
        values = target.get("deploy_variables") if isinstance(target, dict) else None
        if not isinstance(values, dict):
            continue
        for name, value in _pairs((_child(project, "deploy_variables") or (None, None))[1]):
            scalars = isinstance(name, yaml.ScalarNode) and isinstance(value, yaml.ScalarNode)
            if scalars and name.value in values:
                values[name.value] = value.value


def _read_yaml(text: str, filename: str) -> tuple[yaml.Node | None, Any]:
    """The node tree (for line numbers) and the data, or PolicyError for bad YAML."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        duplicate = _find_duplicate(root, (), set())
        if duplicate:
            raise PolicyError(f"{filename}:{duplicate}")
        return root, loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = exc.problem or exc.context
        if exc.context and problem.startswith("but "):  # "expected X", "but found Y"
            problem = f"{exc.context}, {problem}"
        raise PolicyError(f"{filename}:{line}: invalid YAML: {problem}") from None
    except (yaml.YAMLError, ValueError) as exc:
        # Explicit tags such as `!!int abc` fail in the constructor without a mark.
        raise PolicyError(f"{filename}: invalid YAML: {str(exc).splitlines()[0]}") from None
    finally:
        loader.dispose()


def parse_policy(text: str, filename: str = "releasebot.yml") -> Policy:
    """Validate policy text; PolicyError(`file:line: path: reason`) for the first problem."""
    root, data = _read_yaml(text, filename)
    if root is None or data is None:
        raise PolicyError(f"{filename}:1: the file is empty; start from releasebot.example.yml")
    if isinstance(data, dict):
        _keep_variables_verbatim(root, data)
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = sorted(_problems(exc, root, filename, text), key=lambda p: p[0])
        raise PolicyError(problems[0][1], [p[1] for p in problems]) from None


def load_policy(path: Path | str) -> Policy:
    """Read and validate the policy file; PolicyError with the file (and line) if it is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise PolicyError(
            f"{path}: no such file (set RELEASEBOT_CONFIG or create it from releasebot.example.yml)"
        ) from None
    except UnicodeDecodeError:
        raise PolicyError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read it ({exc.strerror})") from None
    return parse_policy(text, str(path))
