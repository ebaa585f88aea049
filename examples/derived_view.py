"""A derived view kept in SQLite: users by city, built from ordo's log.

The problem
-----------
The primary data lives in ordo: one key per user, ``user:<id>``, whose value
is ``"name|city"`` (text) or ``[name, city]`` (a list). Another service wants
"every user in Lyon" from a local SQL index. The view has to follow every
change (creates, moves between cities, deletes), survive being killed at any
instant, and afterwards neither miss a change nor apply one twice. Dual
writes from the application cannot promise that, and a consumer that
remembers its progress in a different place than its data can always crash
between the two.

Why the answer works
--------------------
ordo's log is the serial order of every transaction, and
``db.subscribe(from_position=P)`` streams every committed transaction from
position P on, in that order, with the writes it actually made (the branch
that ran; nothing for an aborted one). So the view is a deterministic
function of a log prefix, and its whole progress is one integer: the last
position applied. This consumer stores that integer **in the same SQLite
transaction** as the view rows it changed (table ``meta``), so the two can
never disagree: after ``kill -9`` SQLite rolls back the unfinished
transaction, the stored position still describes exactly the rows on disk,
and the consumer resumes with ``subscribe(from_position=stored + 1)``.
Nothing is missed (the log keeps every position after the stored one) and
nothing is repeated (everything up to the stored one is in the file). Table
``applied`` records one row per transaction that changed the view, keyed by
its position: a repeat would violate its primary key and stop the consumer
loudly instead of corrupting the view silently.

Changes arrive in batches: the consumer takes whatever the stream has ready
(up to ``BATCH_TXNS_MAX`` transactions) and applies it as one SQLite
transaction, so catching up on a long log is not one fsync per position.

Run it::

    python examples/derived_view.py --ordo 127.0.0.1:7400 --db view.sqlite
    python examples/derived_view.py --db view.sqlite --city Lyon   # query the view

``--until-position P`` stops once every transaction up to P is applied (P
should be a transaction's position, e.g. one a commit returned). A new view
starts at ``--from-position`` (default 1, the whole log); if the log has been
compacted past that, ordo answers OUT_OF_RANGE and the consumer says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
from typing import Any

import ordo

BATCH_TXNS_MAX = 500
QUEUE_TXNS_MAX = 2000

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id   TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    city TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS users_by_city ON users (city, id);
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value NOT NULL
);
CREATE TABLE IF NOT EXISTS applied (
    position   INTEGER PRIMARY KEY,  -- a log position applied twice fails here
    request_id TEXT NOT NULL,
    changes    INTEGER NOT NULL      -- rows written or deleted by that transaction
);
"""


def parse_user(value: Any) -> tuple[str, str] | None:
    """(name, city) from ``"name|city"`` or ``[name, city]``; None if malformed."""
    if isinstance(value, str):
        name, sep, city = value.partition("|")
        if sep and "|" not in city:
            return name, city
    elif isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value):
        return value[0], value[1]
    return None


class View:
    """The SQLite side: open, read progress, apply a batch atomically."""

    def __init__(self, path: str, prefix: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)  # explicit BEGIN/COMMIT
        self.conn.execute("PRAGMA journal_mode=WAL")  # readers never block the consumer
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.executescript(SCHEMA)
        self.prefix = prefix.encode()
        stored = self.conn.execute("SELECT value FROM meta WHERE name='prefix'").fetchone()
        if stored is None:
            self.conn.execute("INSERT INTO meta VALUES ('prefix', ?)", (prefix,))
        elif stored[0] != prefix:
            raise SystemExit(f"{path} indexes {stored[0]!r}, not {prefix!r}")

    def position(self) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE name='position'").fetchone()
        return 0 if row is None else int(row[0])

    def apply(self, batch: list[ordo.Committed]) -> int:
        """Apply transactions in log order, with the new position, as ONE transaction."""
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            for txn in batch:
                changes = 0
                for key, value in txn.writes:  # aborted: no writes
                    if not key.startswith(self.prefix):
                        continue
                    user_id = key[len(self.prefix):].decode("utf-8", "replace")
                    user = None if value is None else parse_user(value)
                    if value is not None and user is None:
                        print(f"position {txn.position}: {key!r} is not a user record; "
                              "dropped from the view", file=sys.stderr, flush=True)
                    if user is None:
                        cur.execute("DELETE FROM users WHERE id = ?", (user_id,))
                    else:
                        cur.execute(
                            "INSERT INTO users (id, name, city) VALUES (?, ?, ?) "
                            "ON CONFLICT (id) DO UPDATE SET name = excluded.name, "
                            "city = excluded.city",
                            (user_id, *user),
                        )
                    changes += 1
                if changes:
                    cur.execute("INSERT INTO applied VALUES (?, ?, ?)",
                                (txn.position, txn.request_id, changes))
            last = batch[-1].position
            cur.execute(
                "INSERT INTO meta VALUES ('position', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (last,))
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return last

    def city(self, city: str) -> list[tuple[str, str]]:
        return self.conn.execute(
            "SELECT id, name FROM users WHERE city = ? ORDER BY id", (city,)).fetchall()


async def run(args: argparse.Namespace) -> int:
    view = View(args.db, args.prefix)
    position = view.position()
    if args.until_position is not None and position >= args.until_position:
        print(f"caught up to position {position}", flush=True)
        return 0
    start = position + 1 if position else max(1, args.from_position)
    print(f"resuming from position {start}", flush=True)
    queue: asyncio.Queue[ordo.Committed | BaseException] = asyncio.Queue(QUEUE_TXNS_MAX)

    async with ordo.connect(args.ordo) as db:

        async def produce() -> None:
            try:
                async for txn in db.subscribe(from_position=start):
                    await queue.put(txn)
            except Exception as error:  # noqa: BLE001 - hand it to the consumer
                await queue.put(error)

        producer = asyncio.create_task(produce())
        try:
            while True:
                batch: list[ordo.Committed] = []
                item = await queue.get()
                while True:
                    if isinstance(item, BaseException):
                        if batch:
                            view.apply(batch)
                        raise item
                    batch.append(item)
                    if len(batch) >= BATCH_TXNS_MAX or queue.empty():
                        break
                    item = queue.get_nowait()
                assert batch[0].position > position, "the log went backwards"
                position = view.apply(batch)
                if args.verbose:
                    print(f"applied up to {position}", flush=True)
                if args.until_position is not None and position >= args.until_position:
                    print(f"caught up to position {position}", flush=True)
                    return 0
        except ordo.OutOfRange as error:
            print(f"the log below {error.oldest_position} is compacted; rebuild the view "
                  f"from a snapshot: {error}", file=sys.stderr, flush=True)
            return 2
        finally:
            producer.cancel()
            try:
                await producer
            except asyncio.CancelledError:
                pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ordo", default="127.0.0.1:7400", help="coordinator address")
    parser.add_argument("--db", required=True, help="the SQLite file of the view")
    parser.add_argument("--prefix", default="user:", help="the user keys' prefix")
    parser.add_argument("--from-position", type=int, default=1,
                        help="where a new view starts reading the log")
    parser.add_argument("--until-position", type=int,
                        help="stop once this position is applied")
    parser.add_argument("--city", help="print the users in this city from the view and exit")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.city is not None:
        view = View(args.db, args.prefix)
        print(json.dumps({"position": view.position(), "users": view.city(args.city)}))
        return 0
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
