"""`ordo verify`: replay a shard's own log into an empty store and compare.

The shard log keeps, for every transaction the shard took part in, the remote
inputs it was applied with, what it wrote and the digest after it. Replaying
the records from the retention horizon (whose state the store keeps intact)
through the same pure apply code must give the same writes, the same digest
chain and the same final contents as the live store. Run it on a stopped
shard: LevelDB allows one process per database.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ordo import wire
from ordo.core.apply import MemoryMVCC, ShardApplier
from ordo.core.partition import ShardMap
from ordo.core.txn import Versioned
from ordo.v1 import types_pb2 as pb
from shard.store import VERSIONS, ShardStore, unescape

MISMATCHES_MAX = 20


@dataclass
class Report:
    shard: int
    applied: int
    horizon: int
    replayed: int = 0
    keys: int = 0
    digest: bytes = b""
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def note(self, text: str) -> None:
        if len(self.mismatches) < MISMATCHES_MAX:
            self.mismatches.append(text)


def _stored_keys(store: ShardStore) -> list[bytes]:
    keys: dict[bytes, None] = {}
    for dbkey in store.db.iterator(prefix=VERSIONS, include_value=False):
        keys.setdefault(unescape(dbkey[1:-10]), None)
    return list(keys)


def verify(path: str) -> Report:
    store = ShardStore(path)
    try:
        return _verify(store)
    finally:
        store.close()


def _verify(store: ShardStore) -> Report:
    shard = store.shard_id()
    raw_map = store.shard_map_bytes()
    applied = store.applied()
    horizon, horizon_digest = store.horizon()
    report = Report(shard=-1 if shard is None else shard, applied=applied, horizon=horizon)
    if shard is None or raw_map is None:
        if applied:
            report.note("the store has applied entries but no shard id or shard map")
        return report
    msg = pb.ShardMap.FromString(raw_map)
    applier = ShardApplier(shard, ShardMap(msg.shard_count, msg.partitioner), horizon_digest)
    keys = _stored_keys(store)
    replica = MemoryMVCC()
    for key in keys:  # the state as of the horizon, which compaction keeps
        state = store.read_before(key, horizon + 1)
        if state is not None:
            replica.write(state.version, ((key, state.value),))
    for position, raw in store.log_records(horizon + 1, applied):
        record = pb.ShardLogRecord.FromString(raw)
        txn = wire.txn_from_pb_trusted(record.entry.txn)
        remote: dict[bytes, Versioned | None] = {}
        for kv in record.inputs:
            item = wire.kv_from_pb(kv)
            remote[item.key] = None if item.value is None else Versioned(item.value, item.version)
        result = applier.apply(
            position, record.entry.request_id, txn,
            lambda k, p=position: replica.read_before(k, p),
            remote,
            lambda prefix, limit, p=position: replica.scan_before(prefix, p, limit),
        )
        logged = [(w.key, wire.value_from_pb(w.value) if w.HasField("value") else None)
                  for w in record.writes]
        if list(result.outcome.writes) != logged:
            report.note(f"position {position}: replay writes {len(result.outcome.writes)} keys, "
                        f"the log recorded {len(logged)}")
        if result.digest != record.digest:
            report.note(f"position {position}: digest differs from the logged one")
        if result.outcome.writes:
            replica.write(position, result.outcome.writes)
        report.replayed += 1
    report.digest = applier.digest
    if applier.digest != store.digest():
        report.note("final digest differs from the stored one")
    for key in sorted(set(keys) | set(replica.keys())):
        live = store.read_before(key, applied + 1)
        replayed = replica.read_before(key, applied + 1)
        if live != replayed:
            report.note(f"key {key!r}: store has {live}, replay has {replayed}")
        report.keys += 1
    return report
