"""`releasebot check`, each GitLab project's part: can the bot deploy, and can people get round it?

Each line names the GitLab setting to change. FAIL: the bot's deploys would be refused by
GitLab. WARN: the bot works, but someone could deploy around it (or the token may not read
the setting). docs/operations.md explains every setting.
"""

from __future__ import annotations

import re

from bot.cli.check import CheckLine
from bot.gitlab import GitLabClient, GitLabError, ProjectSettings, ProtectedTag, User
from bot.policy import Policy, Project

GUEST, REPORTER, DEVELOPER, MAINTAINER, OWNER = 10, 20, 30, 40, 50
ROLES = {0: "not a member", GUEST: "Guest", REPORTER: "Reporter", DEVELOPER: "Developer",
         MAINTAINER: "Maintainer", OWNER: "Owner"}
# ci_pipeline_variables_minimum_override_role and the access level each value asks for.
VARIABLE_ROLES: dict[str, int | None] = {"no_one_allowed": None, "developer": DEVELOPER,
                                         "maintainer": MAINTAINER, "owner": OWNER}
_MEMBERS = "Manage > Members"
_TAGS = "Settings > Repository > Protected tags"
_VARIABLES = "Settings > CI/CD > Variables > Minimum role to use pipeline variables"
_ENVIRONMENTS = "Settings > CI/CD > Protected environments"


def role_name(level: int) -> str:
    """Developer, Maintainer, …: how GitLab names an access level."""
    return ROLES.get(level, f"access level {level}")


async def check_project(gitlab: GitLabClient, policy: Policy, key: str, user: User
                        ) -> list[CheckLine]:
    """The project itself, then the bot's role, release tags, variables and production."""
    project = policy.projects[key]
    try:
        found = await gitlab.project_settings(project.gitlab)
    except GitLabError as exc:
        return [CheckLine(False, f"project {key}", f"{project.gitlab}: {exc}")]
    lines = [project_line(key, project, found)]
    try:
        level = await gitlab.access_level(project.gitlab, user.id)
    except GitLabError as exc:
        return [*lines, CheckLine(False, f"{key} role", f"@{user.username}: {exc}")]
    lines.append(role_line(key, user, level))
    lines.append(await _tags_line(gitlab, policy, key, user, level))
    lines.append(variables_line(key, found, user, level))
    lines.append(await _production_line(gitlab, key, project, level))
    return lines


def project_line(key: str, project: Project, found: ProjectSettings) -> CheckLine:
    """The project as GitLab names it now; a rename warns (the bot follows the ID)."""
    shown = f"{found.path} (id {found.id}, default branch {found.default_branch})"
    if isinstance(project.gitlab, int) or found.path.lower() == project.gitlab.lower():
        return CheckLine(True, f"project {key}", shown)
    return CheckLine(True, f"project {key}", (
        f"{project.gitlab} is now {shown}: renamed or moved in GitLab; the bot follows the "
        f"project by its id, but set `gitlab: {found.path}` in the policy"), warn=True)


def role_line(key: str, user: User, level: int) -> CheckLine:
    """The token user's role: Developer at least to tag and run pipelines."""
    if level < DEVELOPER:
        return CheckLine(False, f"{key} role", (
            f"@{user.username} is {role_name(level)}: it cannot create tags or run pipelines; "
            f"give it the Maintainer role in {_MEMBERS}"))
    detail = f"@{user.username} is {role_name(level)}"
    if level < MAINTAINER:
        return CheckLine(True, f"{key} role", (
            f"{detail}; GitLab shows protected tags, protected environments and the pipeline "
            f"variable settings to Maintainers only, so they go unchecked; give it the "
            f"Maintainer role in {_MEMBERS}"), warn=True)
    return CheckLine(True, f"{key} role", detail)


async def _tags_line(gitlab: GitLabClient, policy: Policy, key: str, user: User,
                     level: int) -> CheckLine:
    """Read the protected tags (maintainers only) and judge them."""
    if level < DEVELOPER:
        return tags_line(key, policy.tag_prefix, user, level, [])
    if level < MAINTAINER:
        return CheckLine(True, f"{key} release tags", "not checked: needs the Maintainer role",
                         warn=True)
    try:
        rules = await gitlab.protected_tags(policy.projects[key].gitlab)
    except GitLabError as exc:
        return CheckLine(True, f"{key} release tags", f"not checked: {exc}", warn=True)
    return tags_line(key, policy.tag_prefix, user, level, rules)


def tags_line(key: str, prefix: str, user: User, level: int,
              rules: list[ProtectedTag]) -> CheckLine:
    """Whether the bot may create `<prefix>REL-n` tags, and whether others are kept out."""
    what, tag = f"{key} release tags", f"{prefix}REL-1"
    if level < DEVELOPER:
        return CheckLine(False, what, f"@{user.username} is {role_name(level)} and cannot "
                                      f"create {prefix}* tags; it needs Developer at least")
    covering = [rule for rule in rules if wildcard_matches(rule.name, tag)]
    if not covering:
        return CheckLine(True, what, (
            f"no protected tag covers {prefix}*: anyone with the Developer role can create a "
            f"release tag; protect {prefix}* in {_TAGS} and allow the bot's role or "
            f"@{user.username} only"), warn=True)
    names = ", ".join(rule.name for rule in covering)
    if any(may_create(rule, user, level) for rule in covering):
        return CheckLine(True, what, f"{names} protected; @{user.username} "
                                     f"({role_name(level)}) may create {prefix}* tags")
    groups = any(r.group_id is not None for rule in covering for r in rule.create)
    unless = f" (unless @{user.username} is in a group it allows)" if groups else ""
    return CheckLine(False, what, (
        f"protected tag {names} does not let @{user.username} ({role_name(level)}) create "
        f"{prefix}* tags{unless}, so every deploy stops at its tag; in {_TAGS} add "
        f"{role_name(level)}s or @{user.username} to \"Allowed to create\" for {names}"))


def may_create(rule: ProtectedTag, user: User, level: int) -> bool:
    """Whether one entry of the rule lets this user in: a role it has, or the user itself."""
    return any((r.level is not None and 0 < r.level <= level) or r.user_id == user.id
               for r in rule.create)


def wildcard_matches(pattern: str, name: str) -> bool:
    """GitLab's protected ref wildcard: `*` stands for any characters, `/` included."""
    regex = ".*?".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, name) is not None


def variables_line(key: str, found: ProjectSettings, user: User, level: int) -> CheckLine:
    """Whether GitLab lets the bot's role set pipeline variables (it always sends them)."""
    what = f"{key} pipeline variables"
    if found.variables_restricted is None and found.variables_role is None:
        if level < MAINTAINER:
            return CheckLine(True, what, "not checked: needs the Maintainer role", warn=True)
        return _unrestricted(what, level)
    if found.variables_restricted is False:
        return _unrestricted(what, level)
    # Restricted without a minimum role (GitLab before 17.1): maintainers only.
    role = found.variables_role or "maintainer"
    needed = VARIABLE_ROLES.get(role)
    fix = f"in {_VARIABLES}, choose {role_name(min(level, OWNER))}"
    if needed is None or needed > level:
        who = "no one may" if needed is None else f"only {role_name(needed)}s and up may"
        return CheckLine(False, what, (
            f"{who} set pipeline variables ({role}) and @{user.username} is "
            f"{role_name(level)}: GitLab refuses every deploy with \"Insufficient permissions to "
            f"set pipeline variables\"; {fix}"))
    if needed < min(level, OWNER):
        return CheckLine(True, what, (
            f"{role_name(needed)}s may set pipeline variables ({role}), so they can run deploy "
            f"pipelines with variables of their own; {fix}, the bot's role"), warn=True)
    return CheckLine(True, what, f"{role_name(needed)}s and up ({role})")


def _unrestricted(what: str, level: int) -> CheckLine:
    """Pipeline variables are not restricted: the bot works, so does anyone with Developer."""
    return CheckLine(True, what, (
        f"not restricted: anyone with the Developer role can start a pipeline with deploy "
        f"variables; in {_VARIABLES}, choose {role_name(min(level, OWNER))}, the bot's role"),
        warn=True)


async def _production_line(gitlab: GitLabClient, key: str, project: Project,
                           level: int) -> CheckLine:
    """Whether the policy's production environment is protected in GitLab."""
    what, name = f"{key} production", project.production
    if level < MAINTAINER:
        return CheckLine(True, what, "not checked: needs the Maintainer role", warn=True)
    try:
        protected = await gitlab.environment_protected(project.gitlab, name)
    except GitLabError as exc:
        return CheckLine(True, what, f"not checked: {exc}", warn=True)
    return production_line(key, name, protected)


def production_line(key: str, name: str, protected: bool) -> CheckLine:
    """An unprotected production lets anyone who can run a pipeline deploy there."""
    if protected:
        return CheckLine(True, f"{key} production", f"environment {name} is protected")
    return CheckLine(True, f"{key} production", (
        f"environment {name} is not protected: anyone who can run a pipeline can deploy to it "
        f"without the bot; protect it in {_ENVIRONMENTS} (GitLab Premium) and allow the "
        f"bot's user only"), warn=True)
