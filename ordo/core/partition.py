"""Routing keys to shards.

A key routes by a hash of its hash tag (the part inside its first ``{...}``,
as in Redis Cluster) when it has a non-empty one, else of the whole key, so
``doc:{42}:title`` and ``doc:{42}:body`` live on one shard. The hash is
BLAKE2b, never Python's ``hash()``, whose value changes per process.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

from ordo.core.txn import OpType, Txn

PARTITIONER = "blake2b64-mod"


def hash_tag(key: bytes) -> bytes | None:
    """The non-empty part inside the key's first ``{...}``, if any."""
    start = key.find(b"{")
    if start < 0:
        return None
    end = key.find(b"}", start + 1)
    if end < 0 or end == start + 1:
        return None
    return key[start + 1 : end]


def _slot(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


# Every transaction routes its keys several times on its way (edge, planning,
# applying); a bounded memo of the pure key -> shard function saves rehashing.
ROUTE_CACHE_KEYS = 1 << 16


@functools.lru_cache(maxsize=ROUTE_CACHE_KEYS)
def _route(key: bytes, shard_count: int) -> int:
    tag = hash_tag(key)
    return _slot(key if tag is None else tag) % shard_count


@dataclass(frozen=True, slots=True)
class ShardMap:
    shard_count: int
    partitioner: str = PARTITIONER

    def __post_init__(self) -> None:
        assert self.shard_count >= 1
        assert self.partitioner == PARTITIONER, self.partitioner

    def shard_for_key(self, key: bytes) -> int:
        if self.shard_count == 1:
            return 0
        return _route(key, self.shard_count)

    def shard_for_prefix(self, prefix: bytes) -> int | None:
        """The one shard that holds every key with ``prefix``, if there is one.

        Every key that starts with a prefix containing a complete, non-empty
        hash tag has that same first tag, so they share a shard.
        """
        if self.shard_count == 1:
            return 0
        tag = hash_tag(prefix)
        if tag is None:
            return None
        return _slot(tag) % self.shard_count

    def owner(self, txn_key: bytes, op_type: OpType | None) -> int:
        if op_type is OpType.RANGE:
            shard = self.shard_for_prefix(txn_key)
            assert shard is not None, "RANGE prefixes are validated at the edge"
            return shard
        return self.shard_for_key(txn_key)

    def participants(self, txn: Txn) -> list[int]:
        """Sorted ids of the shards that own any key the transaction names."""
        return self.participants_of(
            [cmp.key for cmp in txn.compares], [(op.key, op.type is OpType.RANGE) for op in txn.ops()]
        )

    def participants_of(self, keys: list[bytes], ops: list[tuple[bytes, bool]]) -> list[int]:
        """Participants from bare keys and (key, is_range) pairs, so that a
        shard can decide without decoding a transaction it has no part in."""
        if self.shard_count == 1:
            return [0]
        shards = {self.shard_for_key(key) for key in keys}
        shards.update(
            self.owner(key, OpType.RANGE if is_range else None) for key, is_range in ops
        )
        return sorted(shards)  # ints: sorted, so set order never leaks
