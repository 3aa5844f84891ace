"""Dependency graphs of projects: cycles, what must come before, and one order for all (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

Graph = Mapping[str, Iterable[str]]  # node -> the nodes that must come before it


def find_cycle(graph: Graph) -> list[str] | None:
    """A cycle as its nodes with the first repeated at the end (`a → b → a`), or None."""
    state: dict[str, str] = {}  # "path": on the path being walked; "done": no cycle through it
    for start in graph:
        if start in state:
            continue
        path, stack = [start], [iter(graph.get(start, ()))]
        state[start] = "path"
        while stack:
            child = next(stack[-1], None)
            if child is None:
                state[path.pop()] = "done"
                stack.pop()
            elif state.get(child) == "path":
                return [*path[path.index(child):], child]
            elif child not in state:
                state[child] = "path"
                path.append(child)
                stack.append(iter(graph.get(child, ())))
    return None


def before(graph: Graph, node: str) -> set[str]:
    """Every node that must come before `node`, directly or through others."""
    seen: set[str] = set()
    todo = list(graph.get(node, ()))
    while todo:
        other = todo.pop()
        if other not in seen:
            seen.add(other)
            todo.extend(graph.get(other, ()))
    return seen


def ordered(nodes: Sequence[str], graph: Graph) -> list[str] | None:
    """`nodes` with each after everything it needs among them, else as given; None: a cycle."""
    need = {n: {m for m in graph.get(n, ()) if m in nodes and m != n} for n in nodes}
    out: list[str] = []
    while len(out) < len(nodes):
        ready = next((n for n in nodes if n not in out and need[n] <= set(out)), None)
        if ready is None:
            return None
        out.append(ready)
    return out
