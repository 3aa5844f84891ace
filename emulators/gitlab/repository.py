"""The repository side of a project: history walks, file trees and diffs in GitLab's shape."""

from __future__ import annotations

import difflib
from typing import Any

from emulators.gitlab.records import Commit, Project


def ancestors(project: Project, sha: str) -> set[str]:
    """Every commit reachable from sha, sha included."""
    seen: set[str] = set()
    stack = [sha]
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(project.commits[current].parent_ids)
    return seen


def merge_base(project: Project, one: str, other: str) -> Commit | None:
    """The newest commit both shas reach, or None."""
    common = ancestors(project, one) & ancestors(project, other)
    newest = [c for sha, c in project.commits.items() if sha in common]
    return newest[-1] if newest else None


def tree(project: Project, sha: str) -> dict[str, str]:
    """The files at a commit: its first-parent line's changes applied oldest first."""
    line: list[Commit] = []
    current: str | None = sha
    while current is not None:
        commit = project.commits[current]
        line.append(commit)
        current = commit.parent_ids[0] if commit.parent_ids else None
    files: dict[str, str] = {}
    for commit in reversed(line):
        for path, content in commit.changes.items():
            if content is None:
                files.pop(path, None)
            else:
                files[path] = content
    return files


def diffs(old: dict[str, str], new: dict[str, str]) -> list[dict[str, Any]]:
    """GitLab's diff entries between two trees, by path (no rename detection)."""
    return [_diff(path, old.get(path), new.get(path))
            for path in sorted(set(old) | set(new)) if old.get(path) != new.get(path)]


def _diff(path: str, before: str | None, after: str | None) -> dict[str, Any]:
    """One entry: unified hunks without the ---/+++ header, as the API sends them."""
    lines = difflib.unified_diff((before or "").splitlines(keepends=True),
                                 (after or "").splitlines(keepends=True), n=3, lineterm="\n")
    body = "".join(line if line.endswith("\n") else line + "\n" for line in list(lines)[2:])
    return {
        "old_path": path, "new_path": path,
        "a_mode": "0" if before is None else "100644",
        "b_mode": "0" if after is None else "100644",
        "diff": body, "new_file": before is None, "renamed_file": False,
        "deleted_file": after is None, "generated_file": False,
    }


def stats(project: Project, commit: Commit) -> dict[str, int]:
    """Lines added and removed by a commit against its first parent."""
    parent = tree(project, commit.parent_ids[0]) if commit.parent_ids else {}
    added = removed = 0
    for entry in diffs(parent, tree(project, commit.sha)):
        for line in entry["diff"].splitlines():
            if line.startswith("+"):
                added += 1
            elif line.startswith("-"):
                removed += 1
    return {"additions": added, "deletions": removed, "total": added + removed}
