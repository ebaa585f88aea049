"""Workloads: what the clients do, how an op maps to ordo calls, which checker judges it.

Each workload generates ops (``next_op``), runs one op against ordo
(``invoke``, which returns the completion's type, value, error and extra
fields, or raises, and then :func:`ordojepsen.client.classify` decides),
lists the final reads to make once everything healed (``final_ops``), and
checks a history (``check``).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Any

import ordo
from ordo.core.partition import ShardMap
from ordojepsen.checkers import bank, elle, linear, ryw
from ordojepsen.history import Op

Completion = tuple[str, Any, "str | None", dict[str, Any]]


@dataclass
class Conns:
    """One worker's clients: ``db`` for its ops, ``other`` a second connection."""

    db: ordo.AsyncClient
    other: ordo.AsyncClient


def keys_on_shards(prefix: str, count: int, shards: int) -> list[str]:
    """``count`` key names, the i-th on shard i mod ``shards``."""
    shard_map = ShardMap(shards)
    out: list[str] = []
    for i in range(count):
        want = i % shards
        for j in itertools.count():
            name = f"{prefix}{i}" if j == 0 else f"{prefix}{i}.{j}"
            if shard_map.shard_for_key(name.encode()) == want:
                out.append(name)
                break
    return out


class Workload:
    name = ""

    def __init__(self, shards: int, timeout: float, options: dict[str, Any]) -> None:
        self.shards = shards
        self.timeout = timeout
        self.options = options
        self.shard_map = ShardMap(shards)

    async def setup(self, db: ordo.AsyncClient) -> None:
        """Prepare the database before the clients start (may raise)."""

    def next_op(self, process: int, rng: random.Random) -> tuple[str, Any, bool]:
        """(f, invoke value, immediate): immediate ops skip the stagger delay."""
        raise NotImplementedError

    async def invoke(self, conns: Conns, process: int, f: str, value: Any) -> Completion:
        raise NotImplementedError

    def observe(self, process: int, f: str, value: Any, type_: str, result: Any,
                extra: dict[str, Any]) -> None:
        """Told the outcome of every op (for workloads whose next op depends on it)."""

    def final_ops(self) -> list[tuple[str, Any]]:
        return []

    def check(self, history: list[Op]) -> dict[str, Any]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {}


# -------------------------------------------------------------------- bank


class Bank(Workload):
    """Transfers between accounts on different shards; whole-bank snapshot reads."""

    name = "bank"

    def __init__(self, shards: int, timeout: float, options: dict[str, Any]) -> None:
        super().__init__(shards, timeout, options)
        count = int(options.get("accounts", max(6, 2 * shards)))
        self.accounts = keys_on_shards("bank:acct", count, shards)
        self.initial = int(options.get("balance", 100))
        self.total = self.initial * len(self.accounts)
        self.max_transfer = int(options.get("max_transfer", 20))
        self.read_ratio = float(options.get("read_ratio", 0.3))

    def describe(self) -> dict[str, Any]:
        return {"accounts": self.accounts, "total": self.total,
                "shards": {a: self.shard_map.shard_for_key(a.encode()) for a in self.accounts}}

    async def setup(self, db: ordo.AsyncClient) -> None:
        r = await db.txn(then=[ordo.put(a, self.initial) for a in self.accounts])
        assert r.succeeded and not r.aborted, r

    def next_op(self, process: int, rng: random.Random) -> tuple[str, Any, bool]:
        if rng.random() < self.read_ratio:
            return "read", None, False
        a = rng.choice(self.accounts)
        sa = self.shard_map.shard_for_key(a.encode())
        others = [b for b in self.accounts if b != a and (
            self.shards == 1 or self.shard_map.shard_for_key(b.encode()) != sa)]
        b = rng.choice(others)
        return "transfer", {"from": a, "to": b, "amount": rng.randint(1, self.max_transfer)}, False

    async def invoke(self, conns: Conns, process: int, f: str, value: Any) -> Completion:
        db = conns.db
        if f == "read":
            r = await db.txn(then=[ordo.get(a) for a in self.accounts], timeout=self.timeout)
            return "ok", {a: r.values.get(a) for a in self.accounts}, None, {"position": r.position}
        a, b, amount = value["from"], value["to"], value["amount"]
        r = await db.txn(
            when=[ordo.value(a) >= amount],
            then=[ordo.add(a, -amount), ordo.add(b, amount)],
            timeout=self.timeout,
        )
        if r.aborted:
            return "fail", value, f"aborted: {r.abort_reason}", {"position": r.position}
        if not r.succeeded:
            return "fail", value, "insufficient-funds", {"position": r.position}
        return "ok", value, None, {"position": r.position}

    def final_ops(self) -> list[tuple[str, Any]]:
        return [("read", None)]

    def check(self, history: list[Op]) -> dict[str, Any]:
        return bank.check(history, self.accounts, self.total)


# ------------------------------------------------------------- list-append


class ListAppend(Workload):
    """Elle's list-append: transactions of appends and reads over rotating hot keys."""

    name = "list-append"

    def __init__(self, shards: int, timeout: float, options: dict[str, Any]) -> None:
        super().__init__(shards, timeout, options)
        self.active_keys = int(options.get("active_keys", max(4, 2 * shards)))
        self.max_writes_per_key = int(options.get("max_writes_per_key", 64))
        self.max_txn_len = int(options.get("max_txn_len", 4))
        # wait="logged": appends are acknowledged once durably sequenced,
        # before they are applied (how the ack-before-fsync bug is seen).
        self.logged_appends = bool(options.get("logged_appends", False))
        self.next_key = 0
        self.active: list[int] = []
        self.writes: dict[int, int] = {}
        self.next_value = itertools.count(1)
        self.names: dict[int, str] = {}
        while len(self.active) < self.active_keys:
            self._new_key()

    def _new_key(self) -> None:
        k = self.next_key
        self.next_key += 1
        self.active.append(k)
        self.writes[k] = 0

    def key_name(self, k: int) -> str:
        name = self.names.get(k)
        if name is None:
            want = k % self.shards
            for j in itertools.count():
                candidate = f"la:{k}" if j == 0 else f"la:{k}.{j}"
                if self.shard_map.shard_for_key(candidate.encode()) == want:
                    name = self.names[k] = candidate
                    break
        return name  # type: ignore[return-value]

    def describe(self) -> dict[str, Any]:
        return {"keys_used": self.next_key, "logged_appends": self.logged_appends,
                "max_writes_per_key": self.max_writes_per_key}

    def _append(self, k: int) -> list[Any]:
        self.writes[k] += 1
        if self.writes[k] >= self.max_writes_per_key:
            self.active.remove(k)
            self._new_key()
        return ["append", k, next(self.next_value)]

    def next_op(self, process: int, rng: random.Random) -> tuple[str, Any, bool]:
        n = rng.randint(1, self.max_txn_len)
        mops: list[list[Any]] = []
        read: set[int] = set()
        if self.logged_appends:
            # Appends go alone (wait="logged" returns no reads); reads alone.
            if rng.random() < 0.5:
                for k in rng.sample(self.active, min(n, len(self.active))):
                    mops.append(["r", k, None])
            else:
                for _ in range(n):
                    mops.append(self._append(rng.choice(self.active)))
            return "txn", mops, False
        for _ in range(n):
            k = rng.choice(self.active)
            if rng.random() < 0.5 and k not in read:
                read.add(k)  # ordo returns one value per key: one read per key per txn
                mops.append(["r", k, None])
            else:
                mops.append(self._append(k))
        return "txn", mops, False

    async def run_txn(self, db: ordo.AsyncClient, mops: list[list[Any]]) -> Completion:
        ops = [ordo.append(self.key_name(k), v) if f == "append" else ordo.get(self.key_name(k))
               for f, k, v in mops]
        logged = self.logged_appends and all(f == "append" for f, _, _ in mops)
        r = await db.txn(then=ops, wait="logged" if logged else "applied", timeout=self.timeout)
        if logged:
            return "ok", mops, None, {"position": r.position, "wait": "logged"}
        if r.aborted:
            return "fail", mops, f"aborted: {r.abort_reason}", {"position": r.position}
        out = []
        for f, k, v in mops:
            if f == "r":
                got = r.values.get(self.key_name(k))
                out.append(["r", k, [] if got is None else list(got)])
            else:
                out.append([f, k, v])
        return "ok", out, None, {"position": r.position}

    async def invoke(self, conns: Conns, process: int, f: str, value: Any) -> Completion:
        return await self.run_txn(conns.db, value)

    def final_ops(self) -> list[tuple[str, Any]]:
        keys = list(range(self.next_key))
        return [("txn", [["r", k, None] for k in keys[i:i + 100]])
                for i in range(0, len(keys), 100)]

    def check(self, history: list[Op]) -> dict[str, Any]:
        return elle.check(history)


# ---------------------------------------------------------------- register


class Register(Workload):
    """Single-key reads, writes and compare-and-sets, checked for linearizability."""

    name = "register"

    def __init__(self, shards: int, timeout: float, options: dict[str, Any]) -> None:
        super().__init__(shards, timeout, options)
        self.active_keys = int(options.get("active_keys", 3))
        self.ops_per_key = int(options.get("ops_per_key", 60))
        self.values = int(options.get("values", 5))
        self.next_key = 0
        self.active: list[int] = []
        self.used: dict[int, int] = {}
        while len(self.active) < self.active_keys:
            self._new_key()

    def _new_key(self) -> None:
        self.active.append(self.next_key)
        self.used[self.next_key] = 0
        self.next_key += 1

    def key_name(self, k: int) -> str:
        return f"reg:{k}"

    def describe(self) -> dict[str, Any]:
        return {"keys_used": self.next_key, "ops_per_key": self.ops_per_key}

    def next_op(self, process: int, rng: random.Random) -> tuple[str, Any, bool]:
        k = rng.choice(self.active)
        self.used[k] += 1
        if self.used[k] >= self.ops_per_key:
            self.active.remove(k)
            self._new_key()
        roll = rng.random()
        if roll < 0.4:
            return "read", [k, None], False
        if roll < 0.7:
            return "write", [k, rng.randrange(self.values)], False
        return "cas", [k, [rng.randrange(self.values), rng.randrange(self.values)]], False

    async def invoke(self, conns: Conns, process: int, f: str, value: Any) -> Completion:
        db = conns.db
        k, arg = value
        name = self.key_name(k)
        if f == "read":
            r = await db.txn(then=[ordo.get(name)], timeout=self.timeout)
            return "ok", [k, r.values.get(name)], None, {"position": r.position}
        if f == "write":
            r = await db.put(name, arg, timeout=self.timeout)
            return "ok", value, None, {"position": r.position}
        old, new = arg
        r = await db.txn(when=[ordo.value(name) == old], then=[ordo.put(name, new)],
                         timeout=self.timeout)
        if r.succeeded and not r.aborted:
            return "ok", value, None, {"position": r.position}
        return "fail", value, "compare-failed" if not r.aborted else "aborted", {
            "position": r.position}

    def check(self, history: list[Op]) -> dict[str, Any]:
        return linear.check(history)


# -------------------------------------------------------- read-your-writes


class ReadYourWrites(Workload):
    """Commit, then read the commit back at its position over another connection."""

    name = "read-your-writes"

    def __init__(self, shards: int, timeout: float, options: dict[str, Any]) -> None:
        super().__init__(shards, timeout, options)
        self.pending: dict[int, dict[str, Any]] = {}
        self.counter: dict[int, int] = {}
        self.logged_ratio = float(options.get("logged_ratio", 0.5))

    def key_name(self, process: int) -> str:
        """The process's own key, on shard ``process mod shards`` (so every shard is read)."""
        want = process % self.shards
        for j in itertools.count():
            name = f"ryw:{process}" if j == 0 else f"ryw:{process}.{j}"
            if self.shard_map.shard_for_key(name.encode()) == want:
                return name
        raise AssertionError("unreachable")

    def describe(self) -> dict[str, Any]:
        return {"logged_ratio": self.logged_ratio}

    def next_op(self, process: int, rng: random.Random) -> tuple[str, Any, bool]:
        read = self.pending.pop(process, None)
        if read is not None:
            return "read", read, True
        n = self.counter.get(process, 0) + 1
        self.counter[process] = n
        wait = "logged" if rng.random() < self.logged_ratio else "applied"
        return "write", {"key": self.key_name(process), "value": n, "wait": wait}, False

    async def invoke(self, conns: Conns, process: int, f: str, value: Any) -> Completion:
        if f == "write":
            r = await conns.db.put(value["key"], value["value"], wait=value["wait"],
                                   timeout=self.timeout)
            return "ok", value, None, {"position": r.position}
        item = await conns.other.get_item(value["key"], min_position=value["min_position"],
                                          timeout=self.timeout)
        return "ok", {**value, "read": item.value, "version": item.version}, None, {}

    def observe(self, process: int, f: str, value: Any, type_: str, result: Any,
                extra: dict[str, Any]) -> None:
        if f == "write" and type_ == "ok":
            self.pending[process] = {"key": value["key"], "min_position": extra["position"],
                                     "expect": value["value"]}

    def check(self, history: list[Op]) -> dict[str, Any]:
        return ryw.check(history)


WORKLOADS: dict[str, type[Workload]] = {
    w.name: w for w in (Bank, ListAppend, Register, ReadYourWrites)
}
