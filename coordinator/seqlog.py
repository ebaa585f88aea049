"""The sequencer log: one global, durable, totally ordered log of batches.

:class:`SequencerLog` is the small interface the coordinator needs (append a
batch, read from a position, truncate below a position, look up a request
id). :class:`LevelDBSequencerLog` is the embedded implementation: one
coordinator, one LevelDB. An etcd-backed one for several coordinators can sit
behind the same interface.

Key spaces::

    b <first position:8>  ->  LogBatch
    q <request id>        ->  position  (exactly-once submit)
    m tail                ->  newest durable position
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Protocol

import plyvel

from ordo.v1 import types_pb2 as pb

_POS = struct.Struct(">Q")
BATCHES = b"b"
REQUESTS = b"q"
META_TAIL = b"mtail"
# A larger memtable than LevelDB's 4 MiB: fewer level-0 files under a steady
# write load, so fewer compactions and no write stalls behind them.
WRITE_BUFFER_BYTES = 32 * 1024 * 1024


class SequencerLog(Protocol):
    def tail(self) -> int: ...

    def append(self, batch: pb.LogBatch, raw: bytes | None = None) -> None:
        """Make ``batch`` durable. Its positions follow the tail without a gap.
        ``raw``: the batch already serialized, if the caller has it."""

    def prepare(self, batch: pb.LogBatch, raw: bytes | None = None) -> Callable[[], None]:
        """Split :meth:`append` in two: the returned function makes ``batch``
        durable. Preparing is cheap CPU work for the caller's thread; the
        returned function blocks on the disk, for a writer thread, and must
        be called in log order."""

    def read(
        self, from_position: int, entries_max: int, bytes_max: int = 1 << 62
    ) -> list[pb.LogEntry]:
        """Durable entries with positions >= ``from_position``, in order; at
        most ``entries_max`` of them and about ``bytes_max`` bytes."""

    def position_of(self, request_id: str) -> int | None: ...

    def oldest(self) -> int:
        """The oldest position still in the log (tail + 1 when it is empty)."""

    def newest_before(self, cutoff_ms: int) -> int: ...

    def truncate_below(self, position: int) -> int: ...

    def close(self) -> None: ...


class LevelDBSequencerLog:
    def __init__(self, path: str) -> None:
        # The bloom filter makes the lookup of a new request id (the
        # common case: absent) skip the table files.
        self.db = plyvel.DB(path, create_if_missing=True, bloom_filter_bits=10,
                            write_buffer_size=WRITE_BUFFER_BYTES)
        raw = self.db.get(META_TAIL)
        self._tail = 0 if raw is None else int(_POS.unpack(raw)[0])
        self._oldest = 1
        for _, raw_batch in self.db.iterator(prefix=BATCHES):
            self._oldest = pb.LogBatch.FromString(raw_batch).entries[0].position
            break
        else:
            self._oldest = self._tail + 1

    def tail(self) -> int:
        return self._tail

    def append(self, batch: pb.LogBatch, raw: bytes | None = None) -> None:
        self.prepare(batch, raw)()

    def prepare(self, batch: pb.LogBatch, raw: bytes | None = None) -> Callable[[], None]:
        entries = batch.entries
        assert entries, "an empty batch is never appended"
        first = entries[0].position
        last = entries[-1].position
        assert last == first + len(entries) - 1, "a batch's positions are consecutive"
        wb = self.db.write_batch(sync=True)
        wb.put(BATCHES + _POS.pack(first), raw if raw is not None else batch.SerializeToString())
        for entry in entries:
            if entry.request_id:
                wb.put(REQUESTS + entry.request_id.encode(), _POS.pack(entry.position))
        wb.put(META_TAIL, _POS.pack(last))

        def commit() -> None:
            if first != self._tail + 1:  # an earlier append failed: never leave a gap
                raise RuntimeError(f"gap in the log: tail {self._tail}, batch at {first}")
            # fsync point: the batch, its request ids and the new tail are
            # one synced LevelDB write. Nothing in it is acknowledged before
            # this returns.
            wb.write()
            self._tail = last

        return commit

    def read(
        self, from_position: int, entries_max: int, bytes_max: int = 1 << 62
    ) -> list[pb.LogEntry]:
        if from_position > self._tail:
            return []
        assert from_position >= self._oldest, "read below the log's oldest position"
        out: list[pb.LogEntry] = []
        # Start from the batch that holds from_position: the last batch whose
        # first position is <= from_position.
        start = BATCHES + _POS.pack(from_position)
        begin = BATCHES
        for key in self.db.iterator(
            start=BATCHES, stop=start + b"\x00", reverse=True, include_value=False
        ):
            begin = key
            break
        size = 0
        for _, raw in self.db.iterator(start=begin, stop=BATCHES + b"\xff" * 9):
            batch = pb.LogBatch.FromString(raw)
            for entry in batch.entries:
                if entry.position >= from_position:
                    size += entry.ByteSize()
                    if out and size > bytes_max:
                        return out
                    out.append(entry)
            if len(out) >= entries_max:
                break
        return out[:entries_max]

    def oldest(self) -> int:
        return self._oldest

    def newest_before(self, cutoff_ms: int) -> int:
        """The newest position sequenced at or before ``cutoff_ms`` (oldest - 1 if none)."""
        newest = self._oldest - 1
        for _, raw in self.db.iterator(prefix=BATCHES):
            batch = pb.LogBatch.FromString(raw)
            if batch.entries[0].timestamp_ms > cutoff_ms:
                break
            newest = batch.entries[-1].position
        return newest

    def position_of(self, request_id: str) -> int | None:
        raw = self.db.get(REQUESTS + request_id.encode())
        return None if raw is None else int(_POS.unpack(raw)[0])

    def truncate_below(self, position: int) -> int:
        """Drop whole batches whose last entry is below ``position``, with the
        request ids they hold (which ends their deduplication). Returns the
        new oldest position."""
        doomed: list[pb.LogBatch] = []
        keys = []
        for key, raw in self.db.iterator(prefix=BATCHES):
            batch = pb.LogBatch.FromString(raw)
            if batch.entries[-1].position >= position:
                break
            keys.append(key)
            doomed.append(batch)
        if not doomed:
            return self._oldest
        with self.db.write_batch(sync=True) as wb:
            for key, batch in zip(keys, doomed, strict=True):
                wb.delete(key)
                for entry in batch.entries:
                    if entry.request_id:
                        wb.delete(REQUESTS + entry.request_id.encode())
        self._oldest = doomed[-1].entries[-1].position + 1
        return self._oldest

    def close(self) -> None:
        self.db.close()
