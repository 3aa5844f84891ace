"""The sample world: one release channel, eight people and the policy they work under.

The demo, the tests and the benchmarks all use it; a variant is this sample with a few keys
changed (`sample_policy_yaml(freezes=[...])`), never a second copy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import yaml

if TYPE_CHECKING:
    from bot.policy import Policy

CHANNEL = "C0RELEASES"

DEV = "U0DEV"
TESTER = "U0TESTER"
LEAD = "U0TESTLEAD"
DIRECTOR = "U0DIRECTOR"
CTO = "U0CTO"
OPS = "U0OPS"
DBA = "U0DBA"
SUPPORT = "U0SUPPORT"


class Person(NamedTuple):
    """How a Slack user of the sample appears: the handle and the name people see."""

    handle: str
    name: str


# Slack user ID -> the person, in the order the demo introduces them.
PEOPLE: dict[str, Person] = {
    DEV: Person("dana", "Dana (developer)"),
    TESTER: Person("tariq", "Tariq (tester)"),
    LEAD: Person("lena", "Lena (test lead)"),
    DIRECTOR: Person("diego", "Diego (tech director)"),
    CTO: Person("chen", "Chen (CTO)"),
    OPS: Person("olga", "Olga (release manager)"),
    DBA: Person("dmitri", "Dmitri (DBA)"),
    SUPPORT: Person("sofia", "Sofia (operations)"),
}

# The text as an operator would write it (tests that check line numbers rely on its layout),
# with the IDs above.
SAMPLE_POLICY_YAML = """
release_channel: C0RELEASES
timezone: Asia/Shanghai
roles:
  tech_director: [U0DIRECTOR]
  test_lead: [U0TESTLEAD]
  tester: [U0TESTLEAD, U0TESTER]
  executive: [U0CTO]
  release_manager: [U0OPS]
  dba: [U0DBA]
  operations: [U0SUPPORT]
projects:
  payments:
    gitlab: acme/payments
    environments: [staging, production]
    deploy_variables: {DEPLOY: "true"}
    checklist: ["Database backup taken", "Rollback plan reviewed",
                {item: "DB scripts run in advance", role: dba}]
  web:
    gitlab: acme/web
    environments: [production]
    depends_on: [payments]           # a train deploys payments first
policies:
  standard:  {approvers: [tech_director, test_lead], max_open_bugs: {A: 0, B: 0, C: 5}}
  emergency: {approvers: [executive, tech_director, test_lead], allow_known_issues: true,
              bypass_freeze: true}
  hotfix:    {approvers: [tech_director, test_lead]}
  campaign:  {approvers: [tech_director, test_lead]}
observation_hours: 24
windows: []
freezes: []
# The tests and the bench file hundreds of releases as one person.
limits: {requests_per_hour: 1000, open_releases_per_requester: 1000}
"""


def merged(base: Any, patch: Any) -> Any:
    """`base` with `patch` applied as a JSON merge patch: mappings merge, None removes a key."""
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return patch
    out = dict(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merged(out.get(key), value)
    return out


def sample_policy_yaml(**patch: Any) -> str:
    """The sample policy's text, with top-level keys merged in (see `merged`)."""
    if not patch:
        return SAMPLE_POLICY_YAML
    data = merged(yaml.safe_load(SAMPLE_POLICY_YAML), patch)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def sample_policy(**patch: Any) -> Policy:
    """The sample policy, parsed, with top-level keys merged in."""
    # Imported here so the emulators and the bench's load generator stay free of the bot's code.
    from bot.policy import parse_policy

    return parse_policy(sample_policy_yaml(**patch))
