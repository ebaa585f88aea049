"""Chat: thousands of channels, each its own small log, on a few shards.

The problem
-----------
A chat service has thousands of channels. Each channel needs an ordered
history that a client can replay, then follow live, without missing a
message posted in between and without seeing one twice, even while other
clients post. Giving every channel its own log (a topic, a stream, a table)
does not scale to millions of channels, and one shared log makes every
reader filter everybody's traffic.

Why the answer works
--------------------
A channel is a **key prefix with one hash tag**: message ``n`` of channel
``c`` is the key ``chat:{c}:msg:<n, zero padded>``, and the channel's counter
is ``chat:{c}:seq``. The hash tag ``{c}`` puts all of a channel's keys on one
shard, so its history replays from that shard alone, while the channels as a
whole spread over every shard. On top of a few physical logs, each channel is
a logical log of its own:

* **post** is one conditional transaction: "if the counter is still n, write
  message n+1 and bump the counter" (else: return the counter, and retry).
  Two posters can never take the same number, and a batch may post to many
  channels in one transaction (it may span shards: ordo's log order makes
  that atomic with no two-phase commit).
* **replay** reads the channel at one log position P (``range(prefix,
  at_position=P)``): a consistent snapshot, paged by key prefix.
* **follow** is ``watch(prefix=..., from_position=P + 1)``: every change to
  the channel after P, in log order. Because replay ended *exactly* at P and
  the watch starts *exactly* after it, the hand-over has no gap and no
  duplicate, and a watch that reconnects resumes from the last position it
  delivered. Positions, not timestamps, make that exact.

Run it (with a cluster from ``ordo dev`` on 127.0.0.1:7400)::

    python examples/chat.py demo --ordo 127.0.0.1:7400
    python examples/chat.py post general "hello" --ordo 127.0.0.1:7400
    python examples/chat.py history general --ordo 127.0.0.1:7400
    python examples/chat.py follow general --count 5 --ordo 127.0.0.1:7400
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import ordo

CHANNEL = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
SEQ_DIGITS = 10  # message keys sort in sequence order
PAGE_DIGITS = 3  # a replay page is every seq sharing its first 7 digits: 1,000 keys
TXN_OPS_MAX = 128  # ordo's limit on compares + ops in one transaction (limits.TXN_OPS_MAX)
POST_ATTEMPTS_MAX = 100


@dataclass(frozen=True, slots=True)
class Message:
    channel: str
    seq: int
    author: str
    text: str
    position: int  # where the log put it: the order every reader agrees on


def _check(channel: str) -> str:
    if not CHANNEL.match(channel):
        raise ValueError(f"channel names are [A-Za-z0-9_.-]{{1,100}}, not {channel!r}")
    return channel


def msg_prefix(channel: str) -> str:
    return f"chat:{{{_check(channel)}}}:msg:"


def msg_key(channel: str, seq: int) -> str:
    return f"{msg_prefix(channel)}{seq:0{SEQ_DIGITS}d}"


def seq_key(channel: str) -> str:
    return f"chat:{{{_check(channel)}}}:seq"


def _message(channel: str, key: str, value: list[str], position: int) -> Message:
    author, text = value
    return Message(channel, int(key[-SEQ_DIGITS:]), author, text, position)


# ------------------------------------------------------------------ posting


class Poster:
    """Posts messages; remembers each channel's last known counter to guess right."""

    def __init__(self, db: ordo.AsyncClient, author: str) -> None:
        self.db = db
        self.author = author
        self.known: dict[str, int] = {}

    async def post(self, channel: str, text: str) -> Message:
        return (await self.post_many([(channel, text)]))[0]

    async def post_many(
        self, posts: Iterable[tuple[str, str]], concurrency: int = 16
    ) -> list[Message]:
        """Post many messages, many channels per transaction, in argument order per channel.

        A channel's messages in one call go into one transaction when they fit
        (else into consecutive ones); transactions run ``concurrency`` at a time.
        """
        posts = list(posts)
        by_channel: dict[str, list[str]] = {}
        for channel, text in posts:
            by_channel.setdefault(_check(channel), []).append(text)
        # Per channel per transaction: 1 compare, a put per message, 1 add, and
        # 1 get in the failure branch.
        per_txn_max = TXN_OPS_MAX - 3
        packed: list[list[tuple[str, list[str]]]] = []  # many small channels per txn
        split: list[list[tuple[str, list[str]]]] = []  # a big channel: txns in order
        current: list[tuple[str, list[str]]] = []
        size = 0
        for channel, texts in by_channel.items():
            if len(texts) > per_txn_max:
                split.append([(channel, texts[i:i + per_txn_max])
                              for i in range(0, len(texts), per_txn_max)])
                continue
            if size + len(texts) + 3 > TXN_OPS_MAX:
                packed.append(current)
                current, size = [], 0
            current.append((channel, texts))
            size += len(texts) + 3
        if current:
            packed.append(current)

        out: dict[str, list[Message]] = {c: [] for c in by_channel}
        gate = asyncio.Semaphore(concurrency)

        async def one(group: list[tuple[str, list[str]]]) -> None:
            async with gate:
                for channel, messages in (await self._commit(group)).items():
                    out[channel].extend(messages)

        async def in_order(chunks: list[tuple[str, list[str]]]) -> None:
            for chunk in chunks:
                await one([chunk])

        await asyncio.gather(*(one(g) for g in packed), *(in_order(c) for c in split))
        # Back in the caller's order.
        cursor = {c: 0 for c in by_channel}
        result = []
        for channel, _ in posts:
            result.append(out[channel][cursor[channel]])
            cursor[channel] += 1
        return result

    async def _commit(self, group: list[tuple[str, list[str]]]) -> dict[str, list[Message]]:
        """One transaction: for each channel, if its counter is n, write n+1.. and bump it."""
        for attempt in range(POST_ATTEMPTS_MAX):
            when, then, otherwise = [], [], []
            guess = {channel: self.known.get(channel, 0) for channel, _ in group}
            for channel, texts in group:
                n = guess[channel]
                when.append(ordo.int_value(seq_key(channel)) == n)
                then += [ordo.put(msg_key(channel, n + 1 + i), [self.author, t])
                         for i, t in enumerate(texts)]
                then.append(ordo.add(seq_key(channel), len(texts)))
                otherwise.append(ordo.get(seq_key(channel)))
            result = await self.db.txn(when=when, then=then, otherwise=otherwise)
            if result.aborted:
                raise ordo.TransactionAborted(result)
            if result.succeeded:
                messages = {}
                for channel, texts in group:
                    n = guess[channel]
                    messages[channel] = [
                        Message(channel, n + 1 + i, self.author, t, result.position)
                        for i, t in enumerate(texts)]
                    self.known[channel] = n + len(texts)
                return messages
            # Someone else posted first: learn the counters and try again.
            for channel, _ in group:
                self.known[channel] = result.values.get(seq_key(channel)) or 0
            await asyncio.sleep(random.uniform(0, 0.002 * min(attempt + 1, 10)))
        raise RuntimeError(f"gave up posting after {POST_ATTEMPTS_MAX} attempts")


# ---------------------------------------------------------- replay, follow


async def replay(
    db: ordo.AsyncClient, channel: str, at_position: int | None = None
) -> tuple[list[Message], int]:
    """Every message of the channel as of one log position; (messages, that position)."""
    position = at_position if at_position is not None else await db.tail()
    count = await db.get(seq_key(channel), at_position=position) or 0
    page = 10 ** PAGE_DIGITS
    messages: list[Message] = []
    # A page is one key prefix ("...msg:0000001" = seqs 1000..1999), so no range
    # answer is ever over ordo's range limit, and every page reads at `position`.
    for first in range(0, count + 1, page):
        prefix = msg_prefix(channel) + f"{first // page:0{SEQ_DIGITS - PAGE_DIGITS}d}"
        for item in await db.range(prefix, at_position=position, limit=page):
            messages.append(_message(channel, item.key, item.value, item.version))
    if [m.seq for m in messages] != list(range(1, count + 1)):
        raise RuntimeError(f"channel {channel} is not messages 1..{count} at {position}")
    return messages, position


async def follow(
    db: ordo.AsyncClient, channel: str, from_position: int
) -> AsyncIterator[Message]:
    """The channel's messages committed at ``from_position`` or later, live, in order."""
    async for event in db.watch(prefix=msg_prefix(channel), from_position=from_position):
        if not event.deleted:
            yield _message(channel, event.key, event.value, event.position)


async def replay_then_follow(db: ordo.AsyncClient, channel: str) -> AsyncIterator[Message]:
    """History, then live messages: the hand-over at one position has no gap or duplicate."""
    history, position = await replay(db, channel)
    for message in history:
        yield message
    async for message in follow(db, channel, position + 1):
        yield message


# --------------------------------------------------------------------- CLI


async def demo(address: str, channels: int, per_channel: int, live: int) -> int:
    run = uuid.uuid4().hex[:6]
    names = [f"{run}-{i}" for i in range(channels)]
    async with ordo.connect(address) as db:
        poster = Poster(db, "demo")
        started = time.monotonic()
        await poster.post_many(
            (name, f"message {j} in {name}") for j in range(per_channel) for name in names)
        took = time.monotonic() - started
        print(f"posted {channels * per_channel} messages to {channels} channels "
              f"in {took:.2f}s")
        watched = names[len(names) // 2]
        history, position = await replay(db, watched)
        print(f"replay of {watched} at position {position}:")
        for m in history:
            print(f"  #{m.seq} @{m.position} {m.author}: {m.text}")

        async def chatter() -> None:
            other = Poster(db, "live")
            for i in range(live):
                await other.post_many([(watched, f"live {i}"), (names[0], f"noise {i}")])

        print(f"following {watched} while another task posts {live} messages:")
        talker = asyncio.create_task(chatter())
        seen = 0
        async with asyncio.timeout(30):
            async for m in follow(db, watched, position + 1):
                print(f"  #{m.seq} @{m.position} {m.author}: {m.text}")
                seen += 1
                if seen == live:
                    break
        await talker
    return 0


async def cli(args: argparse.Namespace) -> int:
    if args.command == "demo":
        return await demo(args.ordo, args.channels, args.per_channel, args.live)
    async with ordo.connect(args.ordo) as db:
        if args.command == "post":
            m = await Poster(db, args.author).post(args.channel, args.text)
            print(f"#{m.seq} at position {m.position}")
        elif args.command == "history":
            history, position = await replay(db, args.channel)
            for m in history:
                print(f"#{m.seq} @{m.position} {m.author}: {m.text}")
            print(f"(as of position {position})")
        elif args.command == "follow":
            seen = 0
            async for m in replay_then_follow(db, args.channel):
                print(f"#{m.seq} @{m.position} {m.author}: {m.text}", flush=True)
                seen += 1
                if args.count and seen >= args.count:
                    break
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ordo", default="127.0.0.1:7400", help="coordinator address")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="post to many channels, replay one, follow it live")
    d.add_argument("--channels", type=int, default=2000)
    d.add_argument("--per-channel", type=int, default=3)
    d.add_argument("--live", type=int, default=5)
    p = sub.add_parser("post")
    p.add_argument("channel")
    p.add_argument("text")
    p.add_argument("--author", default="cli")
    h = sub.add_parser("history")
    h.add_argument("channel")
    f = sub.add_parser("follow", help="replay, then follow live")
    f.add_argument("channel")
    f.add_argument("--count", type=int, default=0, help="stop after this many (0: never)")
    for s in (d, p, h, f):
        s.add_argument("--ordo", default=argparse.SUPPRESS, help="coordinator address")
    return asyncio.run(cli(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
