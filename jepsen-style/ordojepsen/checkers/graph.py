"""Dependency graphs, strongly connected components and short cycles.

Edges are typed: ``ww`` (write-write: the next version of a key), ``wr``
(write-read: a read saw the write), ``rw`` (read-write, an anti-dependency:
a read saw the version just before the write) and ``rt`` (real time: one
op completed before the other was invoked). Between two nodes there may be
several types; a cycle names the type it used for each step.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

WW, WR, RW, RT = "ww", "wr", "rw", "rt"
# When an edge has several types, a cycle uses the most "severe-free" one:
# dependencies before anti-dependencies, data dependencies before real time.
PREFERENCE = (WW, WR, RT, RW)


@dataclass
class Graph:
    adj: dict[Hashable, dict[Hashable, set[str]]] = field(default_factory=dict)
    # Why an edge exists: (u, v, type) -> explanation (key, values, ...).
    why: dict[tuple[Hashable, Hashable, str], Any] = field(default_factory=dict)

    def add_node(self, u: Hashable) -> None:
        self.adj.setdefault(u, {})

    def add(self, u: Hashable, v: Hashable, kind: str, why: Any = None) -> None:
        if u == v:
            return
        self.adj.setdefault(u, {}).setdefault(v, set()).add(kind)
        self.adj.setdefault(v, {})
        if why is not None:
            self.why.setdefault((u, v, kind), why)

    def edges(self) -> Iterable[tuple[Hashable, Hashable, set[str]]]:
        for u, outs in self.adj.items():
            for v, kinds in outs.items():
                yield u, v, kinds

    def edge_count(self) -> int:
        return sum(len(outs) for outs in self.adj.values())


def tarjan(adj: dict[Hashable, dict[Hashable, Any]]) -> list[list[Hashable]]:
    """Strongly connected components (iterative Tarjan), in no particular order."""
    index: dict[Hashable, int] = {}
    low: dict[Hashable, int] = {}
    on_stack: set[Hashable] = set()
    stack: list[Hashable] = []
    out: list[list[Hashable]] = []
    counter = 0
    for root in adj:
        if root in index:
            continue
        work: list[tuple[Hashable, Any]] = [(root, iter(adj[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(adj.get(nxt, {}))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == node:
                        break
                out.append(component)
    return out


def _label(kinds: set[str], allowed: frozenset[str]) -> str | None:
    for kind in PREFERENCE:
        if kind in kinds and kind in allowed:
            return kind
    return None


Step = tuple[Hashable, Hashable, str]  # (from, to, edge type)


def _bfs_path(
    g: Graph, scope: set[Hashable], start: Hashable, goal: Hashable, allowed: frozenset[str],
    budget: list[int],
) -> list[Step] | None:
    """Shortest path start -> goal inside ``scope`` using ``allowed`` edge types."""
    if start == goal:
        return []
    prev: dict[Hashable, tuple[Hashable, str]] = {}
    seen = {start}
    queue = deque([start])
    while queue:
        u = queue.popleft()
        budget[0] -= 1
        if budget[0] < 0:
            return None
        for v, kinds in g.adj.get(u, {}).items():
            if v in seen or v not in scope:
                continue
            kind = _label(kinds, allowed)
            if kind is None:
                continue
            seen.add(v)
            prev[v] = (u, kind)
            if v == goal:
                path: list[Step] = []
                node = v
                while node != start:
                    p, k = prev[node]
                    path.append((p, node, k))
                    node = p
                path.reverse()
                return path
            queue.append(v)
    return None


def find_cycle(
    g: Graph, scope: set[Hashable], allowed: frozenset[str], budget: list[int],
    starts_max: int = 64,
) -> list[Step] | None:
    """A short cycle inside ``scope`` using only ``allowed`` edge types."""
    best: list[Step] | None = None
    for start in sorted(scope, key=repr)[:starts_max]:
        for v, kinds in g.adj.get(start, {}).items():
            if v not in scope:
                continue
            kind = _label(kinds, allowed)
            if kind is None:
                continue
            back = _bfs_path(g, scope, v, start, allowed, budget)
            if back is not None:
                cycle = [(start, v, kind), *back]
                if best is None or len(cycle) < len(best):
                    best = cycle
                if len(best) == 2:
                    return best
            if budget[0] < 0:
                return best
    return best


def find_cycle_with_one(
    g: Graph, scope: set[Hashable], special: str, others: frozenset[str], budget: list[int],
    tries_max: int = 256,
) -> list[Step] | None:
    """A short cycle with exactly one ``special`` edge, the rest from ``others``."""
    best: list[Step] | None = None
    tries = 0
    for u in sorted(scope, key=repr):
        for v, kinds in g.adj.get(u, {}).items():
            if v not in scope or special not in kinds:
                continue
            tries += 1
            back = _bfs_path(g, scope, v, u, others, budget)
            if back is not None:
                cycle = [(u, v, special), *back]
                if best is None or len(cycle) < len(best):
                    best = cycle
            if tries >= tries_max or budget[0] < 0:
                return best
    return best
