"""An Elle-style checker for list-append histories.

After Kingsbury & Alvaro, "Elle: Inferring Isolation Anomalies from
Experimental Observations" (VLDB 2020). The workload's transactions are
lists of micro-ops ``["append", k, v]`` and ``["r", k, [v1, v2, ...]]``;
every appended value is unique, so a read of a list names the writer of
each of its elements and, because lists only grow, the order in which they
were installed. That is what lets a black-box checker infer the version
order of every key:

1. **Version order.** A key's versions are the prefixes of its longest read;
   every other read must be a prefix of it (else ``incompatible-order``).
2. **Direct checks** on each read: values that nobody appended
   (``garbage-read``), values from failed transactions (``G1a``, aborted
   read), a version that a transaction later overwrote itself (``G1b``,
   intermediate read), the same element twice (``duplicate-elements``),
   and a read that disagrees with the transaction's own earlier micro-ops
   (``internal``).
3. **Dependency graph** over the committed transactions (and the
   indeterminate ones whose writes were seen): ``ww`` from the writer of one
   version to the writer of the next, ``wr`` from the writer of the version a
   read saw to the reader, ``rw`` from a reader to the writer of the version
   after the one it saw, and ``rt`` when one transaction completed before
   another was invoked (strict serializability demands it).
4. **Cycles.** Strongly connected components (Tarjan) of the graph without
   ``rt`` edges, then of the graph with them; in each component a short
   cycle found by breadth-first search, searched for in order of severity:
   ``G0`` (only ww), ``G1c`` (ww and wr), ``G-single`` (exactly one rw),
   ``G2-item`` (several rw). A cycle that needs an ``rt`` edge gets the
   ``-realtime`` suffix: it is allowed by serializability but not by strict
   serializability, which ordo promises.
5. **Lost appends**: an acknowledged append that the final reads (made
   after every fault healed) do not contain.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from ordojepsen import INVALID, UNKNOWN, VALID
from ordojepsen.checkers.graph import RT, RW, WR, WW, Graph, find_cycle, find_cycle_with_one, tarjan
from ordojepsen.history import FAIL, INFO, OK, Op, pairs

ANOMALIES_PER_TYPE_MAX = 8
SEARCH_BUDGET = 2_000_000


@dataclass
class Txn:
    id: int
    invoke: Op
    complete: Op | None
    type: str
    mops: list[list[Any]]
    final: bool = False

    @property
    def invoke_index(self) -> int:
        return int(self.invoke["index"])

    @property
    def complete_index(self) -> float:
        if self.type == OK and self.complete is not None:
            return int(self.complete["index"])
        return float("inf")

    def brief(self) -> dict[str, Any]:
        op = self.complete if self.complete is not None else self.invoke
        out = {"index": op["index"], "process": op["process"], "type": self.type,
               "f": op["f"], "value": self.mops, "invoke_index": self.invoke_index}
        if "position" in op:
            out["position"] = op["position"]
        return out


@dataclass
class Report:
    anomalies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, kind: str, anomaly: dict[str, Any]) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        bucket = self.anomalies.setdefault(kind, [])
        if len(bucket) < ANOMALIES_PER_TYPE_MAX:
            bucket.append({"type": kind, **anomaly})


def _read_list(value: Any) -> list[Any]:
    return [] if value is None else list(value)


def _txns(history: list[Op]) -> list[Txn]:
    out = []
    for inv, comp in pairs(history):
        if inv["f"] != "txn":
            continue
        kind = INFO if comp is None else comp["type"]
        mops = comp["value"] if kind == OK and comp is not None else inv["value"]
        final = bool(inv.get("final")) or bool(comp and comp.get("final"))
        out.append(Txn(len(out), inv, comp, kind, [list(m) for m in mops], final))
    return out


def check(history: list[Op]) -> dict[str, Any]:
    """Check a list-append history; returns {"valid": ..., "anomalies": ..., ...}."""
    txns = _txns(history)
    report = Report()
    by_id = {t.id: t for t in txns}

    # ------------------------------------------------------------ writers
    writer: dict[tuple[Hashable, Any], int] = {}
    appends_of: dict[tuple[int, Hashable], list[Any]] = defaultdict(list)
    for t in txns:
        for f, k, v in t.mops:
            if f == "append":
                if (k, v) in writer and writer[(k, v)] != t.id:
                    report.notes.append(f"value {v!r} appended to key {k!r} twice; "
                                        "the workload must append unique values")
                writer.setdefault((k, v), t.id)
                appends_of[(t.id, k)].append(v)

    # -------------------------------------------------------------- reads
    oks = [t for t in txns if t.type == OK]
    reads: dict[Hashable, list[tuple[int, list[Any]]]] = defaultdict(list)
    for t in oks:
        for f, k, v in t.mops:
            if f == "r":
                reads[k].append((t.id, _read_list(v)))
    _direct_checks(txns, oks, writer, appends_of, report)
    _internal_checks(oks, report)

    # ------------------------------------------------------ version order
    orders: dict[Hashable, list[Any]] = {}
    for k, rs in reads.items():
        longest = max((lst for _, lst in rs), key=len)
        bad = False
        for tid, lst in rs:
            if lst != longest[: len(lst)]:
                bad = True
                report.add("incompatible-order", {
                    "key": k, "read": lst, "longest": longest,
                    "ops": [by_id[tid].brief()],
                })
        if not bad:
            seen: set[Any] = set()
            orders[k] = [v for v in longest if not (v in seen or seen.add(v))]  # type: ignore[func-returns-value]

    # --------------------------------------------------------------- graph
    observed_info = {
        writer[(k, v)] for k, order in orders.items() for v in order
        if (k, v) in writer and by_id[writer[(k, v)]].type == INFO
    }
    nodes = {t.id for t in oks} | observed_info
    g = Graph()
    for n in nodes:
        g.add_node(n)
    for k, order in orders.items():
        ws = [writer.get((k, v)) for v in order]
        for i in range(len(order) - 1):
            a, b = ws[i], ws[i + 1]
            if a in nodes and b in nodes and a != b:
                g.add(a, b, WW, {"key": k, "value": order[i], "next": order[i + 1]})
    for t in oks:
        for f, k, v in t.mops:
            if f != "r" or k not in orders:
                continue
            seen_list = _read_list(v)
            # The external part of the read: without this txn's own appends at its end.
            own = set(appends_of.get((t.id, k), ()))
            n = len(seen_list)
            while n and seen_list[n - 1] in own:
                n -= 1
            prefix = seen_list[:n]
            order = orders[k]
            if prefix:
                w = writer.get((k, prefix[-1]))
                if w in nodes and w != t.id:
                    g.add(w, t.id, WR, {"key": k, "value": prefix[-1]})
            if len(prefix) < len(order):
                w = writer.get((k, order[len(prefix)]))
                if w in nodes and w != t.id:
                    g.add(t.id, w, RW, {"key": k, "read": prefix[-3:], "next": order[len(prefix)]})
    _realtime_edges(g, [by_id[n] for n in nodes])

    _cycles(g, by_id, report)
    unchecked = _lost_appends(txns, report)

    anomaly_types = sorted(report.anomalies)
    for kind, count in sorted(report.counts.items()):
        if count > ANOMALIES_PER_TYPE_MAX:
            report.notes.append(f"{count} {kind} anomalies, {ANOMALIES_PER_TYPE_MAX} shown")
    if anomaly_types:
        valid = INVALID
    elif not oks or not any(t.final for t in oks):
        valid = UNKNOWN
        report.notes.append("no final read completed: lost appends could not be checked")
    elif unchecked:
        valid = UNKNOWN
        report.notes.append(f"keys without a final read: {sorted(unchecked, key=repr)[:20]}")
    else:
        valid = VALID
    return {
        "valid": valid,
        "anomaly_types": anomaly_types,
        "anomalies": report.anomalies,
        "anomaly_counts": report.counts,
        "notes": sorted(set(report.notes)),
        "stats": {
            "txns": len(txns), "ok": len(oks),
            "info": sum(t.type == INFO for t in txns),
            "fail": sum(t.type == FAIL for t in txns),
            "keys": len(reads), "graph_nodes": len(g.adj), "graph_edges": g.edge_count(),
        },
    }


def _direct_checks(
    txns: list[Txn], oks: list[Txn], writer: dict[tuple[Hashable, Any], int],
    appends_of: dict[tuple[int, Hashable], list[Any]], report: Report,
) -> None:
    by_id = {t.id: t for t in txns}
    for t in oks:
        for f, k, v in t.mops:
            if f != "r":
                continue
            lst = _read_list(v)
            if len(set(map(repr, lst))) != len(lst):
                dupes = sorted({repr(x) for x in lst if lst.count(x) > 1})
                report.add("duplicate-elements", {"key": k, "duplicates": dupes,
                                                  "ops": [t.brief()]})
            for x in lst:
                w = writer.get((k, x))
                if w is None:
                    report.add("garbage-read", {"key": k, "value": x, "ops": [t.brief()]})
                elif by_id[w].type == FAIL:
                    report.add("G1a", {"key": k, "value": x,
                                       "ops": [t.brief(), by_id[w].brief()],
                                       "explanation": "read a value appended by a failed txn"})
            if lst:
                last = lst[-1]
                w = writer.get((k, last))
                if w is not None and w != t.id:
                    mine = appends_of.get((w, k), [])
                    if last in mine and mine[-1] != last:
                        report.add("G1b", {
                            "key": k, "value": last, "ops": [t.brief(), by_id[w].brief()],
                            "explanation": f"read ended with {last!r}, an intermediate append of "
                                           f"a txn whose final append to the key is {mine[-1]!r}",
                        })


def _internal_checks(oks: list[Txn], report: Report) -> None:
    for t in oks:
        known: dict[Hashable, list[Any]] = {}
        suffix: dict[Hashable, list[Any]] = defaultdict(list)
        for f, k, v in t.mops:
            if f == "append":
                if k in known:
                    known[k] = known[k] + [v]
                else:
                    suffix[k].append(v)
            elif f == "r":
                lst = _read_list(v)
                if k in known:
                    expected = known[k]
                    ok = lst == expected
                else:
                    expected = suffix[k]
                    ok = not expected or lst[-len(expected):] == expected
                if not ok:
                    report.add("internal", {
                        "key": k, "read": lst, "expected": expected, "ops": [t.brief()],
                        "explanation": "a read disagrees with the txn's own earlier micro-ops",
                    })
                known[k] = lst


def _realtime_edges(g: Graph, nodes: list[Txn]) -> None:
    """op A -> op B when A completed before B was invoked (transitively reduced)."""
    events: list[tuple[float, int, Txn]] = []
    for t in nodes:
        events.append((t.invoke_index, 1, t))
        if t.complete_index != float("inf"):
            events.append((t.complete_index, 0, t))
    events.sort(key=lambda e: (e[0], e[1]))
    frontier: set[int] = set()
    before: dict[int, set[int]] = {}
    for _, kind, t in events:
        if kind == 1:
            before[t.id] = set(frontier)
            for f in frontier:
                g.add(f, t.id, RT)
        else:
            frontier -= before.get(t.id, set())
            frontier.add(t.id)


_ALL = frozenset({WW, WR, RW})


def _classify(cycle: list[tuple[Hashable, Hashable, str]]) -> str:
    kinds = [k for _, _, k in cycle]
    rw = kinds.count(RW)
    if rw == 0:
        base = "G1c" if WR in kinds else "G0"
    elif rw == 1:
        base = "G-single"
    else:
        base = "G2-item"
    return base + ("-realtime" if RT in kinds else "")


def _search(g: Graph, scope: set[Hashable], extra: frozenset[str], budget: list[int]):  # type: ignore[no-untyped-def]
    for allowed in (frozenset({WW}), frozenset({WW, WR})):
        cycle = find_cycle(g, scope, allowed | extra, budget)
        if cycle:
            return cycle
    cycle = find_cycle_with_one(g, scope, RW, frozenset({WW, WR}) | extra, budget)
    if cycle:
        return cycle
    return find_cycle(g, scope, _ALL | extra, budget)


def _cycles(g: Graph, by_id: dict[int, Txn], report: Report) -> None:
    budget = [SEARCH_BUDGET]
    # Phase 1: cycles of data dependencies alone.
    plain = {u: {v: ks for v, ks in outs.items() if ks - {RT}} for u, outs in g.adj.items()}
    in_plain_cycle: set[Hashable] = set()
    for component in tarjan(plain):
        if len(component) < 2:
            continue
        scope = set(component)
        in_plain_cycle |= scope
        cycle = _search(g, scope, frozenset(), budget)
        if cycle:
            _report_cycle(cycle, g, by_id, report)
    # Phase 2: cycles that need real-time edges.
    for component in tarjan(g.adj):
        if len(component) < 2 or set(component) & in_plain_cycle:
            continue
        cycle = _search(g, set(component), frozenset({RT}), budget)
        if cycle:
            _report_cycle(cycle, g, by_id, report)
    if budget[0] < 0:
        report.notes.append("cycle search budget exhausted; some cycles may be unreported")


def _report_cycle(cycle: list[tuple[Hashable, Hashable, str]], g: Graph, by_id: dict[int, Txn],
                  report: Report) -> None:
    kind = _classify(cycle)
    steps = []
    for u, v, k in cycle:
        steps.append({"from": by_id[u].brief()["index"], "to": by_id[v].brief()["index"],
                      "type": k, "why": g.why.get((u, v, k))})
    report.add(kind, {"ops": [by_id[u].brief() for u, _, _ in cycle], "steps": steps})


def _lost_appends(txns: list[Txn], report: Report) -> set[Hashable]:
    """Report acknowledged appends missing from the final reads; return unread keys."""
    final: dict[Hashable, list[Any]] = {}
    for t in txns:
        if t.final and t.type == OK:
            for f, k, v in t.mops:
                if f == "r":
                    lst = _read_list(v)
                    if k not in final or len(lst) > len(final[k]):
                        final[k] = lst
    present = {k: set(map(repr, v)) for k, v in final.items()}
    unchecked: set[Hashable] = set()
    for t in txns:
        if t.type != OK or t.final:
            continue
        for f, k, v in t.mops:
            if f == "append" and k not in present:
                unchecked.add(k)
            if f == "append" and k in present and repr(v) not in present[k]:
                report.add("lost-append", {
                    "key": k, "value": v, "ops": [t.brief()],
                    "explanation": "acknowledged append missing from the final read "
                                   f"(final list has {len(final[k])} elements)",
                })
    return unchecked
