"""A shard's LevelDB database: MVCC versions, shard log, results, metadata.

Key spaces (one database per process)::

    v <escaped key> 00 01 <position:8>  ->  encoded value (tag 0 = deleted)
    g <position:8>                      ->  ShardLogRecord (this shard's log)
    r <position:8>                      ->  ShardResult
    m <name>                            ->  metadata: applied, digest, shard_map,
                                            horizon and the digest at the horizon

Escaping doubles every 00 byte as 00 FF, so key order and prefix order are
kept and ``00 01`` ends every key. Reads see the unflushed overlay first: the
entries the applier has applied but not yet written in one batch.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

import plyvel

from ordo.core import limits as L
from ordo.core import values as V
from ordo.core.apply import GENESIS_DIGEST
from ordo.core.txn import KeyValue, Versioned

_POS = struct.Struct(">Q")
_END = b"\x00\x01"
VERSIONS = b"v"
LOG = b"g"
RESULTS = b"r"
META = b"m"
META_APPLIED = META + b"applied"
META_DIGEST = META + b"digest"
META_SHARD_MAP = META + b"shard_map"
META_HORIZON = META + b"horizon"  # position:8 + digest at that position
META_SHARD_ID = META + b"shard_id"


def escape(key: bytes) -> bytes:
    return key.replace(b"\x00", b"\x00\xff")


def unescape(data: bytes) -> bytes:
    return data.replace(b"\x00\xff", b"\x00")


def version_key(key: bytes, position: int) -> bytes:
    return VERSIONS + escape(key) + _END + _POS.pack(position)


def _prefix_end(prefix: bytes) -> bytes | None:
    """The first byte string after every string that starts with ``prefix``."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes((trimmed[-1] + 1,))


def pos_key(space: bytes, position: int) -> bytes:
    return space + _POS.pack(position)


class Overlay:
    """Applied but unflushed writes: key -> [(position, value)], ascending."""

    def __init__(self) -> None:
        self.versions: dict[bytes, list[tuple[int, V.Value | None]]] = {}

    def add(self, position: int, writes: Iterable[tuple[bytes, V.Value | None]]) -> None:
        for key, value in writes:
            self.versions.setdefault(key, []).append((position, value))

    def read_before(self, key: bytes, position: int) -> tuple[int, V.Value | None] | None:
        for at, value in reversed(self.versions.get(key, ())):
            if at < position:
                return at, value
        return None

    def drop_upto(self, position: int, keys: Iterable[bytes]) -> None:
        """Forget the versions of ``keys`` at or below ``position`` (now on disk)."""
        for key in keys:
            versions = self.versions.get(key)
            if versions is None:
                continue
            keep = [v for v in versions if v[0] > position]
            if keep:
                self.versions[key] = keep
            else:
                del self.versions[key]


class NewestCache:
    """The newest stored version of recently written or read keys.

    Invariant: an entry ``key -> (position, value)`` is the newest version
    of ``key`` in LevelDB (``position`` 0 and None: it has none). A read
    before any position above it is answered from here instead of a
    LevelDB iterator. Entries go in as batches are written (always the
    newest: writes reach the store in log order) and when a read at the tip
    goes to LevelDB; a key whose new value is too large to keep is dropped,
    never left stale. Compaction keeps every key's newest version (or drops
    a newest deletion, which reads the same). Bounded by ``budget_bytes``;
    the oldest entries go first.
    """

    # Bytes counted per entry beyond the key and the encoded value: the
    # entry's tuple, the dict slot and the Python objects' headers. Lists
    # decode to many objects each, so they are not kept.
    ENTRY_OVERHEAD = 200
    ITEM_BYTES_MAX = L.NEWEST_CACHE_VALUE_BYTES_MAX

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self.items: dict[bytes, tuple[int, V.Value | None, int]] = {}
        self.size = 0

    def get(self, key: bytes) -> tuple[int, V.Value | None] | None:
        item = self.items.get(key)
        return None if item is None else (item[0], item[1])

    def put(self, key: bytes, position: int, value: V.Value | None, nbytes: int) -> None:
        self.discard(key)
        cost = len(key) + nbytes + self.ENTRY_OVERHEAD
        if nbytes > self.ITEM_BYTES_MAX or cost > self.budget or isinstance(value, tuple):
            return
        self.items[key] = (position, value, cost)
        self.size += cost
        while self.size > self.budget:
            self.discard(next(iter(self.items)))

    def discard(self, key: bytes) -> None:
        item = self.items.pop(key, None)
        if item is not None:
            self.size -= item[2]


class ShardStore:
    def __init__(self, path: str, cache_bytes: int = L.NEWEST_CACHE_BYTES) -> None:
        self.db = plyvel.DB(path, create_if_missing=True)
        self.overlay = Overlay()
        self.newest = NewestCache(cache_bytes)
        # Every version in LevelDB is at or below this position.
        self.written = self.applied()

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------ metadata

    def applied(self) -> int:
        raw = self.db.get(META_APPLIED)
        return 0 if raw is None else int(_POS.unpack(raw)[0])

    def digest(self) -> bytes:
        return self.db.get(META_DIGEST) or GENESIS_DIGEST

    def shard_map_bytes(self) -> bytes | None:
        return self.db.get(META_SHARD_MAP)

    def claim_shard_id(self, shard: int) -> None:
        """Bind this data directory to one shard id, refusing any other."""
        raw = self.db.get(META_SHARD_ID)
        if raw is not None and int(raw) != shard:
            raise SystemExit(f"this data directory belongs to shard {int(raw)}, not {shard}")
        if raw is None:
            self.db.put(META_SHARD_ID, str(shard).encode(), sync=True)

    def shard_id(self) -> int | None:
        raw = self.db.get(META_SHARD_ID)
        return None if raw is None else int(raw)

    def horizon(self) -> tuple[int, bytes]:
        """The retention horizon H and the digest after applying up to H.

        The state as of H is intact (the newest version <= H of every key is
        kept); versions, log records and results below it may be gone.
        """
        raw = self.db.get(META_HORIZON)
        if raw is None:
            return 0, GENESIS_DIGEST
        return int(_POS.unpack(raw[:8])[0]), raw[8:]

    # ---------------------------------------------------------------- MVCC

    def read_before(self, key: bytes, position: int) -> Versioned | None:
        """The newest version of ``key`` at a position smaller than ``position``."""
        hit = self.overlay.read_before(key, position)
        if hit is None:
            newest = self.newest.get(key)
            if newest is not None and newest[0] < position:
                hit = newest
        if hit is None:
            base = VERSIONS + escape(key) + _END
            size = 0
            for dbkey, raw in self.db.iterator(
                start=base, stop=base + _POS.pack(position), reverse=True, include_key=True
            ):
                # The iterator is built per read; one item is all we need.
                hit = (int(_POS.unpack(dbkey[-8:])[0]), V.decode(raw))
                size = len(raw)
                break
            if position > self.written:
                # Nothing stored is at or after the position: this is the
                # key's newest version (or its absence).
                self.newest.put(key, *(hit or (0, None)), size)
        if hit is None or hit[1] is None:
            return None
        return Versioned(hit[1], hit[0])

    def scan_before(
        self, prefix: bytes, position: int, limit: int, start: bytes = b""
    ) -> tuple[list[KeyValue], bool]:
        """Keys starting with ``prefix`` (from ``start`` on, if given), each at
        its newest version before ``position``, in key order; and whether
        more keys follow the ``limit`` returned."""
        assert limit >= 1
        pending = [k for k in self.overlay.versions if k.startswith(prefix) and k >= start]
        # Read a few more stored keys than asked, so that deletions in the
        # overlay cannot leave the answer short.
        wanted = limit + 1 + len(pending)
        found: dict[bytes, tuple[int, V.Value | None]] = {}
        first = VERSIONS + escape(max(prefix, start))
        current: bytes | None = None
        best: tuple[int, V.Value | None] | None = None
        for dbkey, raw in self.db.iterator(start=first, stop=_prefix_end(VERSIONS + escape(prefix))):
            body, at = dbkey[1:-8], int(_POS.unpack(dbkey[-8:])[0])
            key = unescape(body[: -len(_END)])
            if key != current:
                if current is not None and best is not None and best[1] is not None:
                    found[current] = best
                    if len(found) >= wanted:
                        current, best = None, None
                        break
                current, best = key, None
            if at < position:
                best = (at, V.decode(raw))
        if current is not None and best is not None and best[1] is not None:
            found[current] = best
        for key in pending:
            hit = self.overlay.read_before(key, position)
            if hit is not None:
                found[key] = hit
        out: list[KeyValue] = []
        for key in sorted(found):
            at, value = found[key]
            if value is None:
                continue
            if len(out) == limit:
                return out, True
            out.append(KeyValue(key, value, at))
        return out, False

    # --------------------------------------------------------------- batch

    def write_batch(
        self,
        writes: list[tuple[int, bytes, V.Value | None]],
        log_entries: list[tuple[int, bytes]],
        results: list[tuple[int, bytes]],
        applied: int,
        digest: bytes,
        shard_map: bytes | None,
        sync: bool,
    ) -> None:
        """Persist applied entries atomically: versions, log, results, metadata.

        fsync point: with ``sync`` the batch is durable when this returns.
        The shard reports results and its applied position only after that.
        """
        sizes = []
        # transaction=True: if building the batch fails, nothing of it is
        # written (the cache and ``written`` must match what is stored).
        with self.db.write_batch(transaction=True, sync=sync) as batch:
            for position, key, value in writes:
                raw = V.encode(value)
                batch.put(version_key(key, position), raw)
                sizes.append(len(raw))
            for position, entry in log_entries:
                batch.put(pos_key(LOG, position), entry)
            for position, result in results:
                batch.put(pos_key(RESULTS, position), result)
            if shard_map is not None:
                batch.put(META_SHARD_MAP, shard_map)
            batch.put(META_APPLIED, _POS.pack(applied))
            batch.put(META_DIGEST, digest)
        # Written: these are now the keys' newest stored versions.
        for (position, key, value), size in zip(writes, sizes, strict=True):
            self.newest.put(key, position, value, size)
        self.written = max(self.written, applied, *(p for p, _, _ in writes))

    def sync(self) -> None:
        """fsync everything written so far (a synced write syncs the log)."""
        self.db.put(META + b"sync", b"", sync=True)

    def result(self, position: int) -> bytes | None:
        return self.db.get(pos_key(RESULTS, position))

    def results_from(self, position: int, upto: int) -> Iterable[tuple[int, bytes]]:
        for key, raw in self.db.iterator(
            start=pos_key(RESULTS, position), stop=pos_key(RESULTS, upto + 1)
        ):
            yield int(_POS.unpack(key[1:])[0]), raw

    def log_records(self, position: int = 0, upto: int | None = None) -> Iterable[tuple[int, bytes]]:
        """This shard's log records with positions in [position, upto]."""
        stop = pos_key(LOG, upto + 1) if upto is not None else LOG + b"\xff"
        for key, raw in self.db.iterator(start=pos_key(LOG, position), stop=stop):
            yield int(_POS.unpack(key[1:])[0]), raw

    def versions(
        self, key: bytes, from_position: int, limit: int
    ) -> tuple[list[tuple[int, V.Value | None]], bool]:
        """Stored versions of ``key`` at positions >= ``from_position``, oldest first."""
        base = VERSIONS + escape(key) + _END
        out: list[tuple[int, V.Value | None]] = []
        stop = base + b"\xff" * 9
        for dbkey, raw in self.db.iterator(start=base + _POS.pack(from_position), stop=stop):
            if len(out) == limit:
                return out, True
            out.append((int(_POS.unpack(dbkey[-8:])[0]), V.decode(raw)))
        return out, False

    def compact(self, horizon: int, digest: bytes, sync: bool) -> int:
        """Drop what lies below ``horizon`` but keep the state as of it.

        Every version at or below the horizon except the newest of its key
        (that one is the key's state as of the horizon; a deletion there is
        dropped too), and every log record and result at or below it. Returns
        the number of entries deleted.
        """
        deleted = 0
        with self.db.write_batch(sync=sync) as batch:
            current: bytes | None = None
            newest: tuple[bytes, bytes] | None = None  # (dbkey, raw) of the newest <= horizon
            for dbkey, raw in self.db.iterator(prefix=VERSIONS):
                body, at = dbkey[:-8], int(_POS.unpack(dbkey[-8:])[0])
                if body != current:
                    if newest is not None and newest[1] == b"\x00":
                        batch.delete(newest[0])
                        deleted += 1
                    current, newest = body, None
                if at > horizon:
                    continue
                if newest is not None:
                    batch.delete(newest[0])
                    deleted += 1
                newest = (dbkey, raw)
            if newest is not None and newest[1] == b"\x00":
                batch.delete(newest[0])
                deleted += 1
            for space in (LOG, RESULTS):
                for dbkey in self.db.iterator(
                    start=space, stop=pos_key(space, horizon + 1), include_value=False
                ):
                    batch.delete(dbkey)
                    deleted += 1
            batch.put(META_HORIZON, _POS.pack(horizon) + digest)
        return deleted
