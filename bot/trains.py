"""Release trains: one release of several projects, deployed in their dependency order (pure).

A one-project release is a train of one, so everything here works for both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

from bot.graph import Graph, before, find_cycle, ordered
from bot.policy import Policy
from storage.models import Deployment

MAX_COMPONENTS = 10  # the card shows each one as a row, within Slack's limits


def is_component(word: str) -> bool:
    """`payments@v1.2.0`: a project and the ref to release of it."""
    project, at, ref = word.partition("@")
    return bool(at and project and ref)


def split_component(word: str) -> tuple[str, str]:
    """`payments@v1.2.0` → ("payments", "v1.2.0"); a ref may itself hold '@' (not '@{')."""
    project, _, ref = word.partition("@")
    return project.strip(), ref.strip()


def parse_order(text: str) -> tuple[str, ...]:
    """`web,payments` or `web, payments` → ("web", "payments")."""
    return tuple(p.strip() for p in text.replace(" ", ",").split(",") if p.strip())


def repeated(projects: Sequence[str]) -> str | None:
    """The first project named twice, if any."""
    return next((p for i, p in enumerate(projects) if p in projects[:i]), None)


def order_problem(projects: Sequence[str], order: Sequence[str], depends: Graph) -> str | None:
    """Why `--order` can't be followed: it names a stranger or a project twice, or contradicts
    `depends_on` (it may only add to that order)."""
    if twice := repeated(order):
        return f"--order names {twice} twice."
    if stranger := next((p for p in order if p not in projects), None):
        return (f"--order names {stranger}, which is not part of this release "
                f"({', '.join(projects)}).")
    for i, first in enumerate(order):
        for later in order[i + 1:]:
            if later in before(depends, first):
                return (f"--order {','.join(order)} contradicts depends_on: {first} depends on "
                        f"{later}, so {later} deploys first.")
    return None


def deploy_order(projects: Sequence[str], order: Sequence[str], depends: Graph) -> list[str]:
    """The projects in the order a train deploys them: after what they depend on (directly or
    through projects outside the train), then as `--order` tightens it, else as typed.

    ValueError names a cycle, should the combined order go round in a circle.
    """
    graph: dict[str, set[str]] = {p: before(depends, p) & set(projects) - {p}
                                  for p in projects}
    for first, then in pairwise(order):
        graph[then].add(first)
    found = ordered(list(projects), graph)
    if found is None:
        cycle = find_cycle(graph) or list(projects)
        raise ValueError(f"The deploy order goes round in a circle: {' → '.join(cycle)}.")
    return found


def train_environments(projects: Sequence[str], policy: Policy) -> tuple[str, ...]:
    """Every environment of the train's projects, in the order they all agree on.

    ValueError when they disagree on the order, or end in different production environments.
    """
    train = train_of(projects, policy)
    productions = {envs[-1] for envs in train.envs.values()}
    if len(productions) > 1:
        shown = ", ".join(f"{p} in {envs[-1]}" for p, envs in train.envs.items())
        raise ValueError(f"One release's projects must end in the same production environment; "
                         f"these end {shown}.")
    if _merged(train.envs.values()) is None:
        raise ValueError(f"{', '.join(projects)} list their environments in different orders.")
    return train.environments


def _merged(lists: Iterable[Sequence[str]]) -> list[str] | None:
    """One order of environments that keeps each list's order (None: there is none)."""
    graph: dict[str, set[str]] = {}
    for envs in lists:
        for i, env in enumerate(envs):
            graph.setdefault(env, set()).update(envs[:i])
    return ordered(list(graph), graph)


def train_problems(parts: Sequence[tuple[str, str]], order: Sequence[str],
                   policy: Policy) -> dict[str, str]:
    """What is wrong with a request's projects as a train, keyed `components` or `order`.

    The first part's project and ref are checked with the request's own fields; here the
    others', and what only a train can get wrong.
    """
    projects = [p for p, _ in parts]
    if len(parts) > MAX_COMPONENTS:
        return {"components": f"A release has at most {MAX_COMPONENTS} projects; this one "
                              f"names {len(parts)}."}
    if twice := repeated(projects):
        return {"components": f"{twice} is named twice; a release lists each project once."}
    if unknown := next((p for p in projects[1:] if p not in policy.projects), None):
        return {"components": f"There is no project {unknown[:40]!r}; known projects: "
                              f"{', '.join(sorted(policy.projects))}."}
    if projects[0] not in policy.projects:
        return {}  # the request's own project check names it
    problems: dict[str, str] = {}
    try:
        train_environments(projects, policy)
    except ValueError as exc:
        problems["components"] = str(exc)
    if order and (sentence := order_problem(projects, order, policy.dependencies)):
        problems["order"] = sentence
    elif not problems:
        try:
            deploy_order(projects, order, policy.dependencies)
        except ValueError as exc:
            problems["order"] = str(exc)
    return problems


# --- a train on its way: which component goes next, what a rollback undoes ----------------------

@dataclass(frozen=True)
class Train:
    """A release's projects in deploy order, each with the environments it deploys to."""

    projects: tuple[str, ...]
    envs: Mapping[str, tuple[str, ...]]  # project → its environments, production last

    @property
    def environments(self) -> tuple[str, ...]:
        """Every environment of the train, in order; the last is production."""
        found = _merged(self.envs.values())  # a train filed under another policy: as listed
        return tuple(found or dict.fromkeys(e for envs in self.envs.values() for e in envs))

    def projects_in(self, env: str) -> tuple[str, ...]:
        """The projects that deploy to `env`, in deploy order."""
        return tuple(p for p in self.projects if env in self.envs[p])

    def reached(self, deployments: Sequence[Deployment], revision: int) -> frozenset[str]:
        """Environments every project of this revision deployed to successfully."""
        done = {(d.project, d.environment) for d in deployments
                if d.status == "success" and not d.rollback and d.revision == revision}
        return frozenset(env for env in self.environments
                         if all((p, env) in done for p in self.projects_in(env)))

    def waiting(self, deployments: Sequence[Deployment], revision: int,
                env: str) -> tuple[str, ...]:
        """The projects still to deploy to `env` in this revision, in deploy order."""
        done = {d.project for d in deployments if d.environment == env and not d.rollback
                and d.status == "success" and d.revision == revision}
        return tuple(p for p in self.projects_in(env) if p not in done)


def train_of(projects: Sequence[str], policy: Policy) -> Train:
    """The train of these projects as the policy knows them (production alone if it does not)."""
    envs = {p: tuple(policy.projects[p].environments) if p in policy.projects
            else ("production",) for p in projects}
    return Train(tuple(projects), envs)


def rollback_targets(deployments: Sequence[Deployment],
                     projects: Sequence[str]) -> list[Deployment]:
    """The deploys a rollback undoes, in the order it undoes them.

    In the environment this release last deployed to, each project's latest deploy there over
    a known version that no successful rollback has undone since, last deployed first. None
    when that environment ran nothing known before: an earlier environment is never undone in
    its place, since the newest one would keep running this release.
    """
    shipped = [d for d in deployments if not d.rollback]
    if not shipped:
        return []
    env = shipped[-1].environment
    targets = []
    for project in reversed(projects):
        mine = [d for d in deployments if d.project == project and d.environment == env]
        last = next((d for d in reversed(mine) if not d.rollback), None)
        if last is None or not (last.previous_ref or last.previous_sha):
            continue
        if not any(d.rollback and d.status == "success" and (d.id or 0) > (last.id or 0)
                   for d in mine):
            targets.append(last)
    return targets


def previous_version(targets: Sequence[Deployment]) -> str | None:
    """What a rollback would put back first, as people know it (ref, else commit); None: no
    recorded previous version."""
    return (targets[0].previous_ref or targets[0].previous_sha) if targets else None


def unpinned(targets: Sequence[Deployment]) -> str | None:
    """The ref a rollback would put back with no commit recorded for it (rows from before
    commits were pinned): redeploying it now would deploy its head, not what ran."""
    return next((d.previous_ref for d in targets if not d.previous_sha), None)
