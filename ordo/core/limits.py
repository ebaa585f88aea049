"""Named limits, enforced at the edge (see DESIGN.md, "Limits are explicit").

Units come last in the name. Relationships between limits are asserted at
import so that a change to one cannot silently break another.
"""

from __future__ import annotations

from dataclasses import dataclass

KEY_BYTES_MAX = 4 * 1024
VALUE_BYTES_MAX = 256 * 1024
TXN_OPS_MAX = 128
TXN_BYTES_MAX = 1024 * 1024
RANGE_KEYS_MAX = 10_000
REQUEST_ID_BYTES_MAX = 128

# Sequencer batching. A batch is cut at BATCH_TXNS_MAX transactions or
# BATCH_DELAY_MS after its first one, whichever comes first. See
# bench/README.md for the measurements behind the defaults.
BATCH_TXNS_MAX = 512
BATCH_DELAY_MS = 1.0
BATCH_BYTES_MAX = 16 * 1024 * 1024

# Queues.
SUBMIT_QUEUE_MAX = 8192  # transactions waiting to be sequenced
SHARD_LOG_QUEUE_MAX = 4096  # log entries received but not yet applied
LOG_STREAM_BATCH_ENTRIES_MAX = 1024  # entries per ReadLog message on catch-up
SHARD_FLUSH_ENTRIES_MAX = 1024  # applied entries per LevelDB write batch
READ_AT_INFLIGHT_MAX = 4096  # ReadAt reads waiting for a writer, per peer stream
READ_AT_READS_PER_MESSAGE_MAX = 1024  # reads in one ReadAt request message
STREAM_SUBMITS_INFLIGHT_MAX = 8192  # submits in flight on one SubmitStream
STREAM_GETS_INFLIGHT_MAX = 8192  # reads in flight on one GetStream
# Memory: a shard's cache of newest versions (shard/store.py NewestCache).
NEWEST_CACHE_BYTES = 64 * 1024 * 1024
NEWEST_CACHE_VALUE_BYTES_MAX = 4096  # larger values are read from LevelDB
# A stream message collects items until it reaches this size (one item may
# be larger, up to GRPC_MESSAGE_BYTES_MAX).
STREAM_MESSAGE_BYTES_MAX = 4 * 1024 * 1024
# A RANGE op inside a transaction answers at most this many bytes of values
# (always at least one key); past it, it stops early with `more`. With GETs
# of at most VALUE_BYTES_MAX this keeps any transaction's result far below
# GRPC_MESSAGE_BYTES_MAX.
TXN_RANGE_BYTES_MAX = 128 * 1024
READ_AT_KEYS_MAX = 4 * TXN_OPS_MAX
READER_NAME_BYTES_MAX = 256
SHARD_LAG_MAX = 200_000  # positions a reachable shard may trail the tail before admission slows
GRPC_MESSAGE_BYTES_MAX = 64 * 1024 * 1024

assert TXN_BYTES_MAX <= BATCH_BYTES_MAX
assert VALUE_BYTES_MAX + KEY_BYTES_MAX <= TXN_BYTES_MAX
assert BATCH_TXNS_MAX <= SUBMIT_QUEUE_MAX
assert BATCH_BYTES_MAX <= GRPC_MESSAGE_BYTES_MAX
assert RANGE_KEYS_MAX * (KEY_BYTES_MAX + 64) <= GRPC_MESSAGE_BYTES_MAX


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits one service enforces; defaults are the constants above."""

    key_bytes_max: int = KEY_BYTES_MAX
    value_bytes_max: int = VALUE_BYTES_MAX
    txn_ops_max: int = TXN_OPS_MAX
    txn_bytes_max: int = TXN_BYTES_MAX
    range_keys_max: int = RANGE_KEYS_MAX
    request_id_bytes_max: int = REQUEST_ID_BYTES_MAX
