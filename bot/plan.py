"""The go-live plan (上线方案): what it holds, what is missing, and its review."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum

PLAN_LIMIT = 4000  # characters per field


class PlanField(StrEnum):
    """One part of the go-live plan; the value is the policy and storage key."""

    IMPACT = "impact"
    ROLLBACK = "rollback"
    DB_SCRIPTS = "db_scripts"
    STOP_SERVICES = "stop_services"
    DEPLOY_ORDER = "deploy_order"
    PLANNED_TIME = "planned_time"
    ON_DUTY = "on_duty"

    @property
    def label(self) -> str:
        """The words people read."""
        return _LABELS[self]

    @property
    def hint(self) -> str:
        """What to write, shown in the form."""
        return _HINTS[self]


_LABELS = {
    PlanField.IMPACT: "impact scope",
    PlanField.ROLLBACK: "rollback steps",
    PlanField.DB_SCRIPTS: "database scripts",
    PlanField.STOP_SERVICES: "services to stop",
    PlanField.DEPLOY_ORDER: "deploy order and dependencies",
    PlanField.PLANNED_TIME: "planned go-live time",
    PlanField.ON_DUTY: "people on duty",
}
_HINTS = {
    PlanField.IMPACT: "Who and what is affected while it goes live, and after",
    PlanField.ROLLBACK: "Application and database: how to get back to the version before",
    PlanField.DB_SCRIPTS: "`none`, or which scripts, where, and who runs them",
    PlanField.STOP_SERVICES: "`none`, or which services stop and for how long",
    PlanField.DEPLOY_ORDER: "Which applications deploy first and what depends on what",
    PlanField.PLANNED_TIME: "When, agreed with whom",
    PlanField.ON_DUTY: "Who watches the go-live, from development, test and operations",
}


def clean_plan(plan: Mapping[str, str]) -> dict[str, str]:
    """Only known fields, trimmed, empty ones left out."""
    return {f.value: text.strip() for f in PlanField
            if (text := str(plan.get(f.value) or "")).strip()}


def missing(plan: Mapping[str, str], required: Sequence[str]) -> tuple[str, ...]:
    """The labels of required fields the plan leaves empty, in the plan's order."""
    return tuple(f.label for f in PlanField if f.value in required and not plan.get(f.value))


def too_long(plan: Mapping[str, str]) -> tuple[PlanField, str] | None:
    """The first field over its limit, with the sentence naming it."""
    for f in PlanField:
        if len(text := plan.get(f.value, "")) > PLAN_LIMIT:
            return f, (f"Too long: the plan's {f.label} ({len(text)} characters; "
                       f"at most {PLAN_LIMIT}).")
    return None


def listed(labels: Sequence[str]) -> str:
    """'impact scope, rollback steps and database scripts'."""
    items = list(labels)
    if len(items) < 2:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"
