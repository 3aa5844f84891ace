"""GitLab's API entities and webhook bodies, rendered from the emulator's records."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from emulators.gitlab.records import (
    ACCESS_DESCRIPTIONS,
    DETAILED,
    MAINTAINER,
    Commit,
    Deployment,
    Environment,
    Issue,
    Job,
    Label,
    MergeRequest,
    Milestone,
    Pipeline,
    Project,
    ProtectedRef,
    Release,
    Tag,
    User,
    hook_time,
    iso,
    ref_matches,
    slug,
    tier,
    utc,
)


class View:
    """Renders records as GitLab's API entities for one base URL."""

    def __init__(self, base: str) -> None:
        """Remember the base URL used for every web_url."""
        self.base = base

    def project_url(self, project: Project) -> str:
        """The project's web URL."""
        return f"{self.base}/{project.path}"

    def user(self, user: User) -> dict[str, Any]:
        """UserBasic entity."""
        return {
            "id": user.id, "username": user.username, "name": user.name, "state": "active",
            "locked": False, "avatar_url": None, "web_url": f"{self.base}/{user.username}",
        }

    def project(self, p: Project, viewer: User) -> dict[str, Any]:
        """Project entity as viewer sees it; CI/CD settings only for a maintainer or owner."""
        namespace = p.namespace
        level = p.access_level(viewer)
        data = {
            "id": p.id, "name": p.name, "path": p.name, "path_with_namespace": p.path,
            "name_with_namespace": p.path.replace("/", " / "), "description": "",
            "default_branch": p.default_branch, "visibility": "private",
            "web_url": self.project_url(p),
            "http_url_to_repo": f"{self.project_url(p)}.git",
            "namespace": {"id": 100 + p.id, "name": namespace, "path": namespace,
                          "full_path": namespace, "kind": "group"},
            "archived": False, "created_at": iso(datetime(2024, 1, 1, tzinfo=UTC)),
            "permissions": {"project_access": {"access_level": level, "notification_level": 3}
                            if level else None, "group_access": None},
        }
        if level >= MAINTAINER:
            data["restrict_user_defined_variables"] = p.restrict_user_defined_variables
            data["ci_pipeline_variables_minimum_override_role"] = p.variables_role
        return data

    def member(self, user: User, level: int) -> dict[str, Any]:
        """Member entity: a user and their access level in the project."""
        return self.user(user) | {
            "access_level": level, "created_at": iso(user.created_at), "expires_at": None,
            "membership_state": "active",
        }

    def commit(self, p: Project, c: Commit) -> dict[str, Any]:
        """Commit entity."""
        email = f"{c.author.username}@example.com"
        return {
            "id": c.sha, "short_id": c.sha[:8], "created_at": iso(c.at),
            "parent_ids": list(c.parent_ids), "title": c.title, "message": c.message,
            "author_name": c.author.name, "author_email": email, "authored_date": iso(c.at),
            "committer_name": c.author.name, "committer_email": email,
            "committed_date": iso(c.at), "trailers": {}, "extended_trailers": {},
            "web_url": f"{self.project_url(p)}/-/commit/{c.sha}",
        }

    def detailed_status(self, pipeline: Pipeline) -> dict[str, Any]:
        """DetailedStatus entity."""
        icon, text, label, group = DETAILED[pipeline.status]
        path = f"/{pipeline.project.path}/-/pipelines/{pipeline.id}"
        return {
            "icon": icon, "text": text, "label": label, "group": group, "tooltip": label,
            "has_details": True, "details_path": path, "illustration": None,
            "favicon": f"/assets/ci_favicons/favicon_{icon}.png",
        }

    def pipeline_basic(self, pl: Pipeline) -> dict[str, Any]:
        """PipelineBasic entity, what the list endpoint returns."""
        return {
            "id": pl.id, "iid": pl.iid, "project_id": pl.project.id, "sha": pl.sha,
            "ref": pl.ref, "status": pl.status, "source": pl.source,
            "created_at": iso(pl.created_at), "updated_at": iso(pl.updated_at),
            "web_url": f"{self.project_url(pl.project)}/-/pipelines/{pl.id}", "name": None,
        }

    def pipeline(self, pl: Pipeline) -> dict[str, Any]:
        """Pipeline entity, what single-pipeline endpoints return."""
        return self.pipeline_basic(pl) | {
            "before_sha": pl.before_sha, "tag": pl.tag, "yaml_errors": None,
            "user": self.user(pl.user), "started_at": iso(pl.started_at),
            "finished_at": iso(pl.finished_at), "committed_at": None,
            "duration": pl.duration, "queued_duration": pl.queued_duration,
            "coverage": None, "detailed_status": self.detailed_status(pl), "archived": False,
        }

    def job(self, job: Job) -> dict[str, Any]:
        """Job entity."""
        pl = job.pipeline
        commit = pl.project.commits[pl.sha]
        data: dict[str, Any] = {
            "id": job.id, "name": job.name, "stage": job.stage, "status": job.status,
            "ref": pl.ref, "tag": pl.tag, "coverage": None, "allow_failure": job.allow_failure,
            "created_at": iso(job.created_at), "started_at": iso(job.started_at),
            "finished_at": iso(job.finished_at), "erased_at": None,
            "duration": job.duration, "queued_duration": job.queued_duration,
            "user": self.user(pl.user), "commit": self.commit(pl.project, commit),
            "pipeline": self.pipeline_basic(pl),
            "web_url": f"{self.project_url(pl.project)}/-/jobs/{job.id}",
            "artifacts": [], "runner": None, "archived": False, "tag_list": [],
        }
        if job.status == "failed":
            data["failure_reason"] = job.failure_reason
        return data

    def environment(self, env: Environment, p: Project, *, last: bool = False) -> dict[str, Any]:
        """Environment entity; the single GET adds last_deployment."""
        data: dict[str, Any] = {
            "id": env.id, "name": env.name, "slug": slug(env.name), "external_url": None,
            "state": "available", "tier": tier(env.name),
            "created_at": iso(env.created_at), "updated_at": iso(env.updated_at),
        }
        if last:
            done = [d for d in p.deployments if d.environment is env and d.status == "success"]
            # GitLab's last_deployment: the successful one that finished last.
            newest = max(done, key=lambda d: (d.finished_at or d.updated_at, d.id), default=None)
            data["last_deployment"] = self.deployment(newest, p) if newest else None
        return data

    def protected_ref(self, ref: ProtectedRef, key: str) -> dict[str, Any]:
        """ProtectedTag (key create_access_levels) or ProtectedEnvironment (deploy_...)."""
        levels = [{"id": level_id, "access_level": level,
                   "access_level_description": ACCESS_DESCRIPTIONS.get(level, str(level)),
                   "user_id": None, "group_id": None} for level_id, level in ref.access_levels]
        # A user entry keeps the column's default level (40) and is described by the name.
        levels += [{"id": level_id, "access_level": MAINTAINER,
                    "access_level_description": user.name, "user_id": user.id,
                    "group_id": None} for level_id, user in ref.users]
        if key == "create_access_levels":
            return {"name": ref.name,
                    key: [level | {"deploy_key_id": None} for level in levels]}
        return {"name": ref.name,
                key: [level | {"group_inheritance_type": 0} for level in levels],
                "required_approval_count": 0}

    def deployment(self, d: Deployment, p: Project) -> dict[str, Any]:
        """Deployment entity with its environment and deployable job."""
        user = d.job.pipeline.user if d.job else d.api_user
        return {
            "id": d.id, "iid": d.iid, "ref": d.ref, "sha": d.sha, "status": d.status,
            "created_at": iso(d.created_at), "updated_at": iso(d.updated_at),
            "finished_at": iso(d.finished_at), "user": self.user(user),
            "environment": self.environment(d.environment, p),
            "deployable": self.job(d.job) if d.job else None,
        }

    def merge_request(self, mr: MergeRequest, p: Project) -> dict[str, Any]:
        """MergeRequestBasic entity."""
        head = mr.commits[-1] if mr.commits else mr.merge_commit_sha
        return {
            "id": mr.id, "iid": mr.iid, "project_id": p.id, "title": mr.title,
            "description": mr.description, "state": mr.state,
            "created_at": iso(mr.created_at), "updated_at": iso(mr.updated_at),
            "merged_at": iso(mr.merged_at), "closed_at": None,
            "merged_by": self.user(mr.author) if mr.merged_at else None,
            "merge_user": self.user(mr.author) if mr.merged_at else None,
            "target_branch": mr.target_branch, "source_branch": mr.source_branch,
            "author": self.user(mr.author), "assignees": [], "reviewers": [],
            "labels": list(mr.labels), "draft": False, "sha": head,
            "merge_commit_sha": mr.merge_commit_sha, "squash_commit_sha": mr.squash_commit_sha,
            "squash": mr.squash_commit_sha is not None,
            "references": {"short": f"!{mr.iid}", "full": f"{p.path}!{mr.iid}"},
            "web_url": f"{self.project_url(p)}/-/merge_requests/{mr.iid}",
        }

    def milestone(self, m: Milestone, p: Project) -> dict[str, Any]:
        """Milestone entity (a project milestone)."""
        return {
            "id": m.id, "iid": m.iid, "project_id": p.id, "title": m.title, "description": "",
            "state": m.state, "created_at": iso(m.created_at), "updated_at": iso(m.created_at),
            "due_date": None, "start_date": None, "expired": False,
            "web_url": f"{self.project_url(p)}/-/milestones/{m.iid}",
        }

    def label(self, label: Label) -> dict[str, Any]:
        """Label entity, as GET /projects/:id/labels lists it."""
        return {
            "id": label.id, "name": label.name, "description": label.description,
            "description_html": "", "text_color": "#FFFFFF", "color": label.color,
            "subscribed": False, "priority": None, "is_project_label": True,
        }

    def issue(self, i: Issue, p: Project) -> dict[str, Any]:
        """Issue entity, as the issues list answers."""
        url = f"{self.project_url(p)}/-/issues/{i.iid}"
        return {
            "id": i.id, "iid": i.iid, "project_id": p.id, "title": i.title, "description": "",
            "state": i.state, "created_at": iso(i.created_at), "updated_at": iso(i.updated_at),
            "closed_at": iso(i.closed_at), "closed_by": None, "labels": list(i.labels),
            "milestone": self.milestone(i.milestone, p) if i.milestone else None,
            "assignees": [], "assignee": None, "author": self.user(i.author),
            "type": i.issue_type.upper(), "issue_type": i.issue_type,
            "user_notes_count": 0, "merge_requests_count": 0, "upvotes": 0, "downvotes": 0,
            "due_date": None, "confidential": False, "discussion_locked": None,
            "web_url": url, "severity": "UNKNOWN", "moved_to_id": None,
            "time_stats": {"time_estimate": 0, "total_time_spent": 0,
                           "human_time_estimate": None, "human_total_time_spent": None},
            "task_completion_status": {"count": 0, "completed_count": 0}, "has_tasks": False,
            "references": {"short": f"#{i.iid}", "relative": f"#{i.iid}",
                           "full": f"{p.path}#{i.iid}"},
            "_links": {"self": f"{self.base}/api/v4/projects/{p.id}/issues/{i.iid}",
                       "project": f"{self.base}/api/v4/projects/{p.id}"},
        }

    def tag(self, t: Tag, p: Project) -> dict[str, Any]:
        """Tag entity."""
        release = p.releases.get(t.name)
        return {
            "name": t.name, "message": t.message or None, "target": t.sha,
            "commit": self.commit(p, p.commits[t.sha]),
            "protected": any(ref_matches(pt.name, t.name) for pt in p.protected_tags.values()),
            "created_at": iso(t.created_at) if t.message else None,
            "release": {"tag_name": t.name, "description": release.description}
            if release else None,
        }

    def branch(self, name: str, p: Project, merged: bool) -> dict[str, Any]:
        """Branch entity."""
        return {
            "name": name, "commit": self.commit(p, p.commits[p.branches[name]]),
            "merged": merged, "protected": name == p.default_branch,
            "default": name == p.default_branch, "developers_can_push": False,
            "developers_can_merge": False, "can_push": True,
            "web_url": f"{self.project_url(p)}/-/tree/{name}",
        }

    def release(self, r: Release, p: Project) -> dict[str, Any]:
        """Release entity."""
        url = f"{self.project_url(p)}/-/releases/{r.tag_name}"
        archive = f"{self.project_url(p)}/-/archive/{r.tag_name}/{p.name}-{r.tag_name}"
        sources = [{"format": fmt, "url": f"{archive}.{fmt}"} for fmt in ("zip", "tar.gz")]
        return {
            "tag_name": r.tag_name, "name": r.name, "description": r.description,
            "created_at": iso(r.created_at), "released_at": iso(r.released_at),
            "upcoming_release": r.released_at > r.created_at, "author": self.user(r.author),
            "commit": self.commit(p, p.commits[p.tags[r.tag_name].sha]),
            "commit_path": f"/{p.path}/-/commit/{p.tags[r.tag_name].sha}",
            "tag_path": f"/{p.path}/-/tags/{r.tag_name}", "milestones": [], "evidences": [],
            "assets": {"count": len(sources), "sources": sources, "links": []},
            "_links": {"self": url, "edit_url": f"{url}/edit"},
        }

    def hook_build(self, job: Job) -> dict[str, Any]:
        """One entry of a Pipeline Hook's builds[]."""
        return {
            "id": job.id, "stage": job.stage, "name": job.name, "status": job.status,
            "created_at": hook_time(job.created_at), "started_at": hook_time(job.started_at),
            "finished_at": hook_time(job.finished_at), "duration": job.duration,
            "queued_duration": job.queued_duration,
            "failure_reason": job.failure_reason if job.status == "failed" else None,
            "when": job.when, "manual": job.manual, "allow_failure": job.allow_failure,
            "user": self.hook_user(job.pipeline.user), "runner": None,
            "artifacts_file": {"filename": None, "size": None},
            "environment": {"name": job.environment, "action": "start",
                            "deployment_tier": tier(job.environment)}
            if job.environment else None,
        }

    def hook_user(self, user: User) -> dict[str, Any]:
        """The user object of webhook payloads."""
        return {"id": user.id, "name": user.name, "username": user.username,
                "avatar_url": None, "email": "[REDACTED]"}

    def pipeline_hook(self, pl: Pipeline) -> dict[str, Any]:
        """GitLab's Pipeline Hook body for the pipeline's current state."""
        p, commit = pl.project, pl.project.commits[pl.sha]
        jobs = pl.latest_jobs()
        return {
            "object_kind": "pipeline",
            "object_attributes": {
                "id": pl.id, "iid": pl.iid, "name": None, "ref": pl.ref, "tag": pl.tag,
                "sha": pl.sha, "before_sha": pl.before_sha, "source": pl.source,
                "status": pl.status, "detailed_status": DETAILED[pl.status][2],
                "stages": list(pl.stages),
                "created_at": hook_time(pl.created_at), "finished_at": hook_time(pl.finished_at),
                "duration": pl.duration, "queued_duration": pl.queued_duration,
                "variables": [{"key": v["key"], "value": v["value"]} for v in pl.variables],
                "url": f"{self.project_url(p)}/-/pipelines/{pl.id}",
            },
            "merge_request": None,
            "user": self.hook_user(pl.user),
            "project": {
                "id": p.id, "name": p.name, "description": "", "web_url": self.project_url(p),
                "avatar_url": None, "git_http_url": f"{self.project_url(p)}.git",
                "namespace": p.namespace, "visibility_level": 0,
                "path_with_namespace": p.path, "default_branch": p.default_branch,
                "ci_config_path": "",
            },
            "commit": {
                "id": commit.sha, "message": commit.message, "title": commit.title,
                "timestamp": utc(commit.at).isoformat(),
                "url": f"{self.project_url(p)}/-/commit/{commit.sha}",
                "author": {"name": commit.author.name,
                           "email": f"{commit.author.username}@example.com"},
            },
            "builds": [self.hook_build(job) for job in jobs],
        }


