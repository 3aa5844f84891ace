"""A local GitLab REST API v4 emulator for tests and the offline demo.

Modules: records (the data and GitLab's vocabulary), ci (how job statuses add up to a
pipeline's), repository (history, trees, diffs), pipelines (creating and moving pipelines),
issues (issues, labels and milestones),
views (API entities and webhook bodies), http and api (requests and routes), emulator (the
server and its set-up helpers), control (/_emulator/* endpoints and the CLI).

GitLab behaviour the emulator does not model yet:
- CI configuration is a list of JobSpec per project, not a parsed .gitlab-ci.yml: no rules,
  needs (DAG), parallel, child or multi-project pipelines, resource groups, timeouts, retries
  on failure, artifacts or logs; pipelines stay where tests put them (or auto_advance moves
  them), no runner picks jobs up, and pending never turns into stuck.
- Manual and delayed jobs: a pipeline shows manual while a blocking when: manual job waits
  and scheduled while a when: delayed job does, and a cancel (200 whatever the state) leaves
  manual jobs alone, as GitLab does; but a delayed job has no start_in or scheduled_at and
  never starts by itself (play it, or let auto_advance move the pipeline on), there are no
  manual job variables, no unschedule, and no auto-cancel of redundant pipelines.
- A push starts a pipeline only when asked (push(..., pipeline=True)); there are no push,
  tag, job, deployment or merge request webhooks, only pipeline hooks, and no hook retries.
- Protected branches: only the default branch is protected (maintainers push and merge);
  no per-branch rules, no code owner approval, no force-push rules.
- Protected environments are listed (to maintainers) but do not stop a deploy job of a user
  below the level (GitLab fails it with protected_environment_failure); no deployment
  approvals, no group-level protected environments, and they answer on every tier (GitLab
  has them in Premium only).
- Tags: no deletion, no signed tags, no tag-name rules beyond git check-ref-format. Protected
  tag and environment rules take a role and single users (set-up helpers only: POST
  /protected_tags takes create_access_level, not allowed_to_create); no group or deploy-key
  entries, no protected tag updates or unprotecting.
- Members are per project only: no groups, inheritance, invitations, expiry or custom roles;
  current_user is the only user who makes API calls, and there is no sudo or impersonation;
  no instance administrators (access level 60 never matches).
- Repository: file contents are whole strings per path; no binary files, modes, renames,
  submodules or large-diff collapsing; merge() makes two-parent merge commits, nothing makes
  octopus merges.
- The pipeline variables restriction knows no_one_allowed ... owner and
  restrict_user_defined_variables, always both (GitLab before 17.1 had only the latter); no
  namespace default role; there are no project, group or instance CI/CD variables, no
  masking and no pipeline inputs.
- Projects have no visibility rules beyond "private to members", no archiving, deletion or
  forks; rename_project renames or moves one project (no group renames). Its old path
  redirects GETs (301 to the same URL by id) and refuses other methods (405) on every route,
  where GitLab lets a few endpoints (such as pipeline triggers) follow the old path
  silently; redirect_moved_projects=False gives older GitLab's 404. A redirect ends only
  when a new project takes the path.
- Environments never stop, auto-stop or get deleted; deployments come from deploy jobs, or
  from record_deployment (what POST /deployments records; that route itself is not served).
  The environments list filters by name and search only: search is a plain substring, with
  no 3-character minimum and not exclusive of name, and there is no states filter; the
  environment entity has no auto_stop_at, description, cluster agent or Kubernetes fields.
- Pagination is offset-based only (no keyset), and rate limits come only from fail().
- Issues, labels and milestones are made by set-up helpers (add_issue, close_issue, …): no
  issue writes through the API, no notes, assignees, weights, epics, confidential or group
  issues, and no group labels or milestones (include_ancestors finds project ones only); the
  `Upcoming` and `Started` milestone filters are plain titles here; label filters match names
  exactly.
"""

from emulators.gitlab.emulator import GitLabEmulator
from emulators.gitlab.records import (
    DEVELOPER,
    GUEST,
    MAINTAINER,
    NO_ACCESS,
    OWNER,
    PIPELINE_STATUSES,
    REPORTER,
    Commit,
    GitLabError,
    Job,
    JobSpec,
    Pipeline,
    Project,
    iso,
    variable,
)
from emulators.gitlab.views import View

__all__ = [
    "DEVELOPER", "GUEST", "MAINTAINER", "NO_ACCESS", "OWNER", "PIPELINE_STATUSES", "REPORTER",
    "Commit", "GitLabEmulator", "GitLabError", "Job", "JobSpec", "Pipeline", "Project", "View",
    "iso", "variable",
]
