"""The sample world agrees with itself: its policy text names its channel and people."""

from __future__ import annotations

from emulators.sample import (
    CHANNEL,
    CTO,
    DBA,
    DIRECTOR,
    LEAD,
    OPS,
    PEOPLE,
    SUPPORT,
    TESTER,
    sample_policy,
)


def test_the_policy_names_the_sample_channel_and_people() -> None:
    """Every role holder is one of PEOPLE, under the constant the tests use."""
    policy = sample_policy()
    assert policy.release_channel == CHANNEL
    assert policy.roles == {"tech_director": [DIRECTOR], "test_lead": [LEAD],
                            "tester": [LEAD, TESTER], "executive": [CTO],
                            "release_manager": [OPS], "dba": [DBA], "operations": [SUPPORT]}
    assert {user for users in policy.roles.values() for user in users} <= set(PEOPLE)


def test_a_variant_merges_keys_and_removes_none() -> None:
    """Mappings merge, None drops a key, anything else replaces; the sample itself is unchanged."""
    variant = sample_policy(projects={"web": None}, roles={"tester": [TESTER]},
                            observation_hours=1)
    assert list(variant.projects) == ["payments"]
    assert variant.roles["tester"] == [TESTER] and variant.roles["test_lead"] == [LEAD]
    assert variant.observation_hours == 1
    assert list(sample_policy().projects) == ["payments", "web"]
