"""A ref change racing Deploy: whichever wins, only a signed-off ref ever reaches GitLab."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from bot.app import DEPLOYER, DEPS, RUNTIME
from bot.deploys import PipelineResult
from emulators.gitlab import variable
from emulators.sample import DEV, DIRECTOR, LEAD, OPS, TESTER, sample_policy
from handlers.blocks import ActionId
from storage import queries as q
from storage.db import transaction
from storage.models import Approval, Release, TestReport
from tests.adversarial.common import release
from tests.scenario.harness import Harness, running_app, wait_for

TRIALS, AT_ONCE = 100, 10
SIGNED_REF, NEW_REF = "v1.1.0", "main"
# Projects of their own, so concurrent trials never meet at one environment's deploy lock.
LANES = [f"lane{i}" for i in range(AT_ONCE)]
POLICY = sample_policy(projects={
    lane: {"gitlab": "acme/web", "environments": ["production"]} for lane in LANES})


async def signed_off(h: Harness) -> list[int]:
    """One release per lane, approved at SIGNED_REF: the rows sign-off leaves, in one write.

    How sign-off gets there is tested elsewhere; here only the race goes through HTTP.
    """
    now = h.app[DEPS].clock()
    sha = signed_sha(h)
    async with transaction(h.app[DEPS].sessions) as session:
        rels = [Release(project=lane, ref=SIGNED_REF, title=f"Race in {lane}", type="standard",
                        requester=DEV, state="approved", checklist=[], pinned_sha=sha,
                        pinned_revision=1) for lane in LANES]
        session.add_all(rels)
        await session.flush()
        for rel in rels:
            session.add(TestReport(release_id=rel.id, revision=1, url="https://ci/r", passes=True,
                                   reporter=TESTER, created_at=now))
            for role, user in (("tech_director", DIRECTOR), ("test_lead", LEAD)):
                session.add(Approval(release_id=rel.id, revision=1, role=role, approver=user,
                                     created_at=now))
    return [rel.id for rel in rels if rel.id is not None]


def signed_sha(h: Harness) -> str:
    """The commit SIGNED_REF names: what sign-off pinned."""
    commit = h.gitlab.resolve(h.gitlab.project("acme/web"), SIGNED_REF)
    assert commit is not None
    return commit.sha


async def race(h: Harness, rid: int) -> None:
    """`/release ref` and a Deploy click sent together, in a random order and stagger."""
    rel = await release(h, rid)
    assert rel.state == "approved"
    value = f"{rid}:{rel.revision}:approved"
    ref = h.driver.command(DEV, f"ref REL-{rid} {NEW_REF}")
    click = h.driver.click(OPS, ActionId.DEPLOY, value)
    # The click has more to do before its transaction, so it usually leaves first.
    first, second = (click, ref) if random.random() < 0.75 else (ref, click)

    async def later() -> object:
        await asyncio.sleep(random.uniform(0, 0.05))
        return await second

    replies = await asyncio.gather(first, later())
    assert [r.status for r in replies] == [200, 200]  # type: ignore[attr-defined]


async def finish(h: Harness, rid: int) -> None:
    """Let a started pipeline succeed, freeing its environment for the next trial."""
    pipeline, rel = h.pipeline_of(rid), await release(h, rid)
    if pipeline is not None:
        h.gitlab.set_status(pipeline.id, "success")
        await h.app[DEPLOYER].take_result(PipelineResult(rel.project, pipeline.id, "success"))


async def test_ref_change_racing_deploy_never_ships_an_unsigned_ref(db_url: str) -> None:
    """100 races: each pipeline runs the commit its deployment's revision was approved at."""
    outcomes: Counter[str] = Counter()
    async with running_app(db_url, POLICY) as h:
        runtime = h.app[RUNTIME]
        for _ in range(TRIALS // AT_ONCE):
            rids = await signed_off(h)
            await asyncio.gather(*[race(h, rid) for rid in rids])
            await wait_for(lambda: runtime.inflight == 0)
            for rid in rids:
                rel = await release(h, rid)
                outcomes[rel.state] += 1
                if rel.state == "testing":  # the new ref won: nothing may have been deployed
                    assert rel.ref == NEW_REF and h.pipeline_of(rid) is None, rid
                else:  # the deploy won: the ref change was refused
                    assert (rel.state, rel.ref) == ("deploying", SIGNED_REF), rid
                await finish(h, rid)
        async with h.app[DEPS].sessions() as session:
            for pipeline in h.gitlab.pipelines.values():
                rel = await q.get_release(session, int(str(
                    variable(pipeline.variables, "RELEASE_ID"))[4:]))
                dep = await q.deployment_by_pipeline(session, rel.project, pipeline.id)
                signed = {a.role for a in await q.approvals_of(session, rel, current_only=False)
                          if a.revision == dep.revision}
                assert pipeline.ref == dep.ref == f"release/REL-{rel.id}", rel.id
                assert pipeline.sha == dep.sha == signed_sha(h), rel.id
                assert signed == {"tech_director", "test_lead"}, rel.id
    assert sum(outcomes.values()) == TRIALS and set(outcomes) == {"testing", "deploying"}, outcomes
