"""Fault schedules drawn from a seed, and the nemesis that carries them out.

A schedule is a list of faults, each with a start and an end time (seconds
from the start of the workload), a kind and its targets. It is a pure
function of (seed, nemesis kinds, time limit, shard count, targets), so the
same seed gives the same schedule, which ``results.json`` records next to the
times at which each fault really started and ended.

Kinds:

- ``kill``        SIGKILL one node (coordinator or a shard), restart it at the end
- ``pause``       SIGSTOP one node, SIGCONT at the end
- ``partition``   black-hole a set of directed links: isolate one node, split
                  the nodes in two (the clients on one side), cut one pair, or
                  cut one direction only; sometimes resetting live connections
- ``power-loss``  SIGKILL every node at once, restart them all at the end
- ``delay``       add 20-250 ms to a set of links
- ``lag``         add 100-500 ms to one shard's log stream only (its
                  shard->coordinator link): a lagging shard, which clients
                  still reach at full speed

Faults come one after another with quiet gaps between them; with several
kinds, a third of them start while the previous one is still on, so faults
overlap: a kill during a partition, a pause of a node that a power loss then
kills, and so on. Two faults of one kind never overlap. Holds are
reference counted in :class:`~ordojepsen.cluster.Cluster` and per link, so
overlapping faults compose and healing is exact.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ordojepsen.cluster import CLIENT, COORDINATOR, Cluster, shard_name
from ordojepsen.history import History
from ordojepsen.proxy import ProxyNet

KINDS = ("kill", "pause", "partition", "power-loss", "delay", "lag")

# (duration lo, hi), (gap before the next fault of the kind lo, hi), seconds.
TIMING = {
    "kill": ((0.5, 3.0), (1.5, 4.0)),
    "pause": ((1.0, 4.0), (1.5, 4.0)),
    "partition": ((2.0, 5.0), (1.5, 4.0)),
    "power-loss": ((0.5, 2.0), (4.0, 8.0)),
    "delay": ((2.0, 5.0), (1.5, 4.0)),
    "lag": ((2.0, 5.0), (1.0, 3.0)),
}
FIRST_FAULT_S = (1.0, 3.0)
QUIET_TAIL_S = 0.5  # every fault ends this long before the time limit


@dataclass
class Fault:
    id: int
    kind: str
    start: float
    end: float
    nodes: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    shape: str = ""
    reset: bool = False
    delay_s: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    effect: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("start", "end", "started_at", "ended_at", "delay_s"):
            if d[k] is not None:
                d[k] = round(d[k], 3)
        return d


def all_links(shards: int) -> list[str]:
    out = []
    nodes = [COORDINATOR] + [shard_name(i) for i in range(shards)]
    for i in range(shards):
        s = shard_name(i)
        out += [f"{COORDINATOR}->{s}", f"{s}->{COORDINATOR}", f"{CLIENT}->{s}"]
        out += [f"{s}->{shard_name(j)}" for j in range(shards) if j != i]
    out.append(f"{CLIENT}->{COORDINATOR}")
    assert all(link.split("->")[1] in nodes for link in out)
    return sorted(out)


def _between(side_a: set[str], side_b: set[str], shards: int) -> list[str]:
    links = []
    for link in all_links(shards):
        src, dst = link.split("->")
        if (src in side_a and dst in side_b) or (src in side_b and dst in side_a):
            links.append(link)
    return links


def _partition(rng: random.Random, shards: int) -> tuple[str, list[str]]:
    servers = [COORDINATOR] + [shard_name(i) for i in range(shards)]
    shape = rng.choice(["isolate", "isolate", "halves", "pair", "one-way"])
    if shape == "isolate":
        x = rng.choice(servers)
        others = set(servers + [CLIENT]) - {x}
        return f"isolate {x}", _between({x}, others, shards)
    if shape == "halves":
        shuffled = servers[:]
        rng.shuffle(shuffled)
        cut = rng.randint(1, len(shuffled) - 1)
        a, b = set(shuffled[:cut]), set(shuffled[cut:])
        (a if rng.random() < 0.5 else b).add(CLIENT)
        return f"halves {sorted(a)} | {sorted(b)}", _between(a, b, shards)
    if shape == "pair":
        x, y = rng.sample(servers, 2)
        return f"cut {x} <-> {y}", _between({x}, {y}, shards)
    links = [link for link in all_links(shards) if not link.startswith(CLIENT)]
    link = rng.choice(links)
    return f"one-way {link}", [link]


def make_schedule(
    seed: int | str, kinds: list[str], time_limit: float, shards: int,
    targets: list[str] | None = None,
) -> list[Fault]:
    """The faults of a run: a pure function of its arguments.

    One timeline: each step picks a kind, a duration and targets; the next
    fault starts after a quiet gap, or (with several kinds, one time in
    three) while this one is still on, so faults of different kinds overlap.
    """
    servers = [COORDINATOR] + [shard_name(i) for i in range(shards)]
    targets = [t for t in (targets or servers) if t in servers] or servers
    kinds = sorted(set(kinds))
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"unknown nemesis {kind!r}; known: {', '.join(KINDS)}")
    if not kinds:
        return []
    rng = random.Random(f"ordojepsen:{seed}:{kinds}:{shards}:{time_limit}:{sorted(targets)}")
    faults: list[Fault] = []
    end_by = time_limit - QUIET_TAIL_S
    busy_until: dict[str, float] = {}
    t = rng.uniform(*FIRST_FAULT_S)
    for _ in range(10_000):
        kind = rng.choice(kinds)
        (d_lo, d_hi), (g_lo, g_hi) = TIMING[kind]
        t = max(t, busy_until.get(kind, 0.0))  # one fault of a kind at a time
        if t + d_lo > end_by:
            break
        end = min(t + rng.uniform(d_lo, d_hi), end_by)
        fault = Fault(0, kind, t, end)
        if kind in ("kill", "pause"):
            fault.nodes = [rng.choice(targets)]
        elif kind == "power-loss":
            fault.nodes = list(servers)
        elif kind == "partition":
            fault.shape, fault.links = _partition(rng, shards)
            fault.reset = rng.random() < 0.5
        elif kind == "delay":
            fault.delay_s = round(rng.uniform(0.02, 0.25), 3)
            if rng.random() < 0.5:
                x = rng.choice(servers)
                fault.shape = f"slow {x}"
                fault.links = [lk for lk in all_links(shards) if x in lk.split("->")]
            else:
                pool = all_links(shards)
                fault.links = sorted(rng.sample(pool, max(1, len(pool) // 3)))
                fault.shape = "slow links"
        elif kind == "lag":
            shards_ = [x for x in targets if x != COORDINATOR] or servers[1:]
            x = rng.choice(shards_)
            fault.delay_s = round(rng.uniform(0.1, 0.5), 3)
            fault.shape = f"lagging {x}"
            fault.links = [f"{x}->{COORDINATOR}"]
        faults.append(fault)
        busy_until[kind] = end + 0.2
        if len(kinds) > 1 and rng.random() < 1 / 3:
            t = t + rng.uniform(0.3, max(0.31, end - t))
        else:
            t = end + rng.uniform(g_lo, g_hi)
    faults.sort(key=lambda f: (f.start, f.kind))
    for i, f in enumerate(faults):
        f.id = i
    return faults


class Nemesis:
    """Carries out a schedule against a cluster and its proxies."""

    def __init__(self, cluster: Cluster, proxies: ProxyNet, history: History) -> None:
        self.cluster = cluster
        self.proxies = proxies
        self.history = history
        self.blocks: dict[str, int] = {}
        self.delays: dict[str, list[float]] = {}
        self.t0 = time.monotonic()
        self.active: list[Fault] = []

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def run(self, schedule: list[Fault], t0: float) -> None:
        """Start and end each fault at its time; ``t0`` is the workload's start."""
        self.t0 = t0
        events: list[tuple[float, int, Fault]] = []
        for f in schedule:
            events.append((f.start, 1, f))
            events.append((f.end, 0, f))
        events.sort(key=lambda e: (e[0], e[1], e[2].id))
        try:
            for at, starting, fault in events:
                delay = at - self.now()
                if delay > 0:
                    await asyncio.sleep(delay)
                try:
                    if starting:
                        self.start(fault)
                    else:
                        self.end(fault)
                except Exception as error:  # noqa: BLE001 - recorded; heal_all cleans up
                    fault.effect["error"] = repr(error)
                    self.history.nemesis("nemesis-error", {"fault": fault.id, "error": repr(error)})
        except asyncio.CancelledError:
            pass

    def start(self, f: Fault) -> None:
        f.started_at = self.now()
        c = self.cluster
        if f.kind in ("kill", "power-loss"):
            f.effect["killed"] = c.kill(f.nodes)
        elif f.kind == "pause":
            f.effect["paused"] = c.pause(f.nodes)
        elif f.kind == "partition":
            newly = []
            for link in f.links:
                self.blocks[link] = self.blocks.get(link, 0) + 1
                if self.blocks[link] == 1:
                    newly.append(link)
            self.proxies.block(newly, reset=f.reset)
            f.effect["blocked"] = newly
        elif f.kind in ("delay", "lag"):
            for link in f.links:
                self.delays.setdefault(link, []).append(f.delay_s)
                self.proxies.set_delay([link], max(self.delays[link]))
        self.active.append(f)
        self.history.nemesis(f"start-{f.kind}", self._describe(f))

    def end(self, f: Fault) -> None:
        if f not in self.active:
            return
        self.active.remove(f)
        c = self.cluster
        if f.kind in ("kill", "power-loss"):
            f.effect["restarted"] = c.release(f.nodes)
        elif f.kind == "pause":
            f.effect["resumed"] = c.resume(f.nodes)
        elif f.kind == "partition":
            healed = []
            for link in f.links:
                self.blocks[link] = max(0, self.blocks.get(link, 0) - 1)
                if self.blocks[link] == 0:
                    healed.append(link)
            self.proxies.heal(healed)
        elif f.kind in ("delay", "lag"):
            for link in f.links:
                self.delays[link].remove(f.delay_s)
                self.proxies.set_delay([link], max(self.delays[link], default=0.0))
        f.ended_at = self.now()
        self.history.nemesis(f"stop-{f.kind}", self._describe(f))

    def heal_all(self) -> None:
        """End every active fault, then make sure everything is up and connected."""
        for f in list(self.active):
            self.end(f)
        self.proxies.heal(None)
        self.proxies.set_delay(list(self.proxies.links), 0.0)
        self.blocks.clear()
        self.delays.clear()
        started = self.cluster.heal()
        self.history.nemesis("heal-all", {"restarted": started})

    @staticmethod
    def _describe(f: Fault) -> dict[str, Any]:
        d: dict[str, Any] = {"fault": f.id, "kind": f.kind}
        if f.nodes:
            d["nodes"] = f.nodes
        if f.shape:
            d["shape"] = f.shape
        if f.links and f.kind == "partition":
            d["links"] = f.links
            d["reset"] = f.reset
        if f.kind in ("delay", "lag"):
            d["delay_s"] = f.delay_s
        if f.effect:
            d["effect"] = dict(f.effect)
        return d
