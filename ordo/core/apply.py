"""The shard's deterministic apply step, and an in-memory MVCC store.

A shard feeds every log entry to :class:`ShardApplier` in log order. For each
transaction it first asks :meth:`ShardApplier.plan` which inputs it must pull
from which peers, then calls :meth:`ShardApplier.apply` with its local state
just before the position and the pulled inputs. The result (local writes,
this shard's part of the outcome and the new digest) is what the adapter
persists, atomically. Nothing here reads a clock, randomness, or set order.
"""

from __future__ import annotations

import bisect
import collections
import hashlib
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ordo.core import values as V
from ordo.core.partition import ShardMap
from ordo.core.txn import KeyValue, OpType, Outcome, Txn, Versioned, evaluate, input_keys

_POS = struct.Struct(">Q")
_LEN = struct.Struct(">I")
DIGEST_BYTES = 32
GENESIS_DIGEST = bytes(DIGEST_BYTES)


@dataclass(frozen=True, slots=True)
class Plan:
    participant: bool
    # Peer shard -> keys to read from it as of just before the position.
    remote_inputs: dict[int, list[bytes]]
    # Keys of this shard that the transaction may write, in either branch
    # (first appearance order): what a peer's read of them must wait for.
    local_writes: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class Applied:
    position: int
    request_id: str
    outcome: Outcome
    digest: bytes


def chain_digest(previous: bytes, position: int, outcome: Outcome) -> bytes:
    """Hash chained over each applied transaction's position, outcome and writes."""
    h = hashlib.blake2b(previous, digest_size=DIGEST_BYTES)
    h.update(_POS.pack(position))
    h.update(b"\x01" if outcome.succeeded else b"\x00")
    h.update(bytes((0 if outcome.abort is None else int(outcome.abort.reason),)))
    for key, value in outcome.writes:
        encoded = V.encode(value)
        h.update(_LEN.pack(len(key)))
        h.update(key)
        h.update(_LEN.pack(len(encoded)))
        h.update(encoded)
    return h.digest()


class ShardApplier:
    """Pure apply state of one shard: its identity, the shard map and the digest."""

    def __init__(self, shard: int, shard_map: ShardMap, digest: bytes = GENESIS_DIGEST) -> None:
        assert 0 <= shard < shard_map.shard_count
        assert len(digest) == DIGEST_BYTES
        self.shard = shard
        self.shard_map = shard_map
        self.digest = digest

    def owns(self, key: bytes) -> bool:
        return self.shard_map.shard_for_key(key) == self.shard

    def plan(self, txn: Txn) -> Plan:
        participants = self.shard_map.participants(txn)
        if self.shard not in participants:
            return Plan(False, {})
        remote: dict[int, list[bytes]] = {}
        for key in input_keys(txn):
            owner = self.shard_map.shard_for_key(key)
            if owner != self.shard:
                remote.setdefault(owner, []).append(key)
        writes: dict[bytes, None] = {}
        for op in txn.ops():
            if op.type in _WRITING and self.owns(op.key):
                writes.setdefault(op.key, None)
        return Plan(True, remote, tuple(writes))

    def apply(
        self,
        position: int,
        request_id: str,
        txn: Txn,
        read_local: Callable[[bytes], Versioned | None],
        remote: Mapping[bytes, Versioned | None],
        scan_local: Callable[[bytes, int], tuple[list[KeyValue], bool]],
    ) -> Applied:
        """Evaluate ``txn`` at ``position``; ``read_local`` sees state before it."""

        def read(key: bytes) -> Versioned | None:
            if self.owns(key):
                return read_local(key)
            # A KeyError here means plan() and apply() disagree: a bug.
            return remote[key]

        outcome = evaluate(txn, position, read, self.owns, scan_local)
        self.digest = chain_digest(self.digest, position, outcome)
        return Applied(position, request_id, outcome, self.digest)


_WRITING = (OpType.PUT, OpType.DELETE, OpType.ADD, OpType.APPEND)


class PendingWriters:
    """Planned but not yet applied transactions, by the keys they may write.

    A shard registers each transaction it takes part in when it receives it
    (log order) and retires it when it has applied it (log order again). A
    peer's read of keys "as of just before position p" can be answered as
    soon as :meth:`newest_before` of those keys is applied: the state of a
    key changes only at positions that write it, and only transactions this
    shard takes part in write its keys. That lets the owner answer without
    applying every earlier position first, so independent multi-shard
    transactions do not wait on one another.
    """

    def __init__(self) -> None:
        self._by_key: dict[bytes, collections.deque[int]] = {}
        self._newest = 0

    def add(self, position: int, keys: tuple[bytes, ...]) -> None:
        assert position > self._newest, "writers are registered in log order"
        self._newest = position
        for key in keys:
            queue = self._by_key.get(key)
            if queue is None:
                self._by_key[key] = collections.deque((position,))
            else:
                queue.append(position)

    def done(self, position: int, keys: tuple[bytes, ...]) -> None:
        for key in keys:
            queue = self._by_key[key]
            assert queue[0] == position, "writers are retired in log order"
            queue.popleft()
            if not queue:
                del self._by_key[key]

    def newest_before(self, keys: list[bytes], position: int) -> int:
        """The newest pending writer of any of ``keys`` below ``position``; 0 if none."""
        newest = 0
        for key in keys:
            queue = self._by_key.get(key)
            if queue is None:
                continue
            for pending in reversed(queue):
                if pending < position:
                    newest = max(newest, pending)
                    break
        return newest

    def __len__(self) -> int:
        return len(self._by_key)


class MemoryMVCC:
    """Versions by (key, position) in memory: the reference store for tests,
    and the shape the LevelDB store follows."""

    def __init__(self) -> None:
        self._versions: dict[bytes, list[tuple[int, V.Value | None]]] = {}

    def write(self, position: int, writes: tuple[tuple[bytes, V.Value | None], ...]) -> None:
        for key, value in writes:
            versions = self._versions.setdefault(key, [])
            assert not versions or versions[-1][0] < position, "versions go forward"
            versions.append((position, value))

    def read_before(self, key: bytes, position: int) -> Versioned | None:
        """The newest version of ``key`` written before ``position``."""
        versions = self._versions.get(key)
        if not versions:
            return None
        i = bisect.bisect_left(versions, position, key=lambda v: v[0])
        if i == 0:
            return None
        at, value = versions[i - 1]
        return None if value is None else Versioned(value, at)

    def scan_before(self, prefix: bytes, position: int, limit: int) -> tuple[list[KeyValue], bool]:
        out: list[KeyValue] = []
        for key in sorted(k for k in self._versions if k.startswith(prefix)):
            state = self.read_before(key, position)
            if state is None:
                continue
            if len(out) == limit:
                return out, True
            out.append(KeyValue(key, state.value, state.version))
        return out, False

    def keys(self) -> list[bytes]:
        return sorted(self._versions)
