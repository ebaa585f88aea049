"""The runnable examples in examples/, end to end against a real cluster.

Each example that is a process runs as one (``sys.executable``), exactly as a
user would start it; the chat example is also driven through its functions.
"""

from __future__ import annotations

import asyncio
import http.client
import importlib.util
import json
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import ordo
from ordo.core.partition import ShardMap
from tests.conftest import Cluster

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"ordo_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def _line(proc: subprocess.Popen[str], timeout_s: float) -> str:
    """The next stdout line of ``proc``, or fail after ``timeout_s``."""
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout_s)
    except queue.Empty:
        raise AssertionError(f"no output from {proc.args} in {timeout_s}s") from None


def _stop(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


# ------------------------------------------------------- read your writes


@contextmanager
def _notes_service(cluster: Cluster, tmp: Path, name: str) -> Iterator[int]:
    """Run examples/read_your_writes.py on a free port; yield the port."""
    with open(tmp / f"{name}.err", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "read_your_writes.py"),
             "--ordo", cluster.address, "--port", "0"],
            stdout=subprocess.PIPE, stderr=err, text=True, env=_env(), cwd=ROOT,
        )
    try:
        first = _line(proc, 30)
        assert first.startswith("listening on 127.0.0.1:"), (
            first + (tmp / f"{name}.err").read_text())
        yield int(first.rsplit(":", 1)[1])
    finally:
        code = _stop(proc)
        assert code == 0, (tmp / f"{name}.err").read_text()


def _request(conn: http.client.HTTPConnection, method: str, path: str,
             body: bytes | None = None) -> tuple[int, dict[str, Any]]:
    conn.request(method, path, body=body)
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def _key_on(shard_map: ShardMap, shard: int, prefix: str) -> str:
    return next(key for key in (f"{prefix}{i}" for i in range(10_000))
                if shard_map.shard_for_key(key.encode()) == shard)


def test_read_your_writes_across_two_service_processes(cluster: Cluster, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:6]
    with _notes_service(cluster, tmp_path, "a") as port_a, \
            _notes_service(cluster, tmp_path, "b") as port_b:
        conns = [http.client.HTTPConnection("127.0.0.1", p, timeout=10)
                 for p in (port_a, port_b)]
        try:
            for i in range(50):
                # Overwrite a few notes again and again: a stale read would
                # return an earlier text of the same note.
                note = f"{run}-{i % 4}"
                text = f"note {i}: {uuid.uuid4().hex} ✓"
                writer, reader = conns[i % 2], conns[(i + 1) % 2]
                status, posted = _request(writer, "POST", f"/notes/{note}", text.encode())
                assert status == 200, posted
                position = posted["position"]
                status, got = _request(reader, "GET",
                                       f"/notes/{note}?min_position={position}")
                assert status == 200, got
                assert got["text"] == text, f"iteration {i}: stale read {got} after {posted}"
                assert got["version"] == position
            # Now make the token do visible work: hold the note's shard back
            # behind a cross-shard transaction whose other shard is paused.
            # The shard stays up and answers reads, but from before the note.
            note = f"{run}-lag"
            old = _request(conns[0], "POST", f"/notes/{note}", b"old")[1]["position"]
            assert _request(conns[1], "GET", f"/notes/{note}?min_position={old}")[1][
                "text"] == "old"
            shard_map = ShardMap(cluster.shards)
            owner = shard_map.shard_for_key(f"note:{note}".encode())
            other = (owner + 1) % cluster.shards
            other_key = _key_on(shard_map, other, f"lag:{run}:")
            owner_key = _key_on(shard_map, owner, f"lag:{run}:")
            with ordo.Client(cluster.address) as db:
                db.put(other_key, 1)
                paused = cluster.procs[1 + other]
                paused.send_signal(signal.SIGSTOP)
                resume = threading.Timer(0.5, paused.send_signal, (signal.SIGCONT,))
                try:
                    # The owner needs other_key's value to apply this one.
                    db.txn(when=[ordo.int_value(other_key) == 1],
                           then=[ordo.put(owner_key, 1)], wait="logged")
                    status, posted = _request(conns[0], "POST", f"/notes/{note}", b"new")
                    assert status == 200, posted
                    # A read that ignores the token answers at once, and stale.
                    assert db.get(f"note:{note}", min_position=0) == "old"
                    resume.start()
                    started = time.monotonic()
                    status, got = _request(
                        conns[1], "GET", f"/notes/{note}?min_position={posted['position']}")
                    waited = time.monotonic() - started
                finally:
                    resume.cancel()
                    paused.send_signal(signal.SIGCONT)
            assert status == 200 and got["text"] == "new", got
            assert waited > 0.3, "the read waited for the position instead of answering stale"
            # The edges: a missing note, a bad token, an unknown route.
            assert _request(conns[0], "GET", f"/notes/{run}-none")[0] == 404
            assert _request(conns[1], "GET", f"/notes/{run}-0?min_position=x")[0] == 400
            assert _request(conns[0], "GET", "/elsewhere")[0] == 404
        finally:
            for conn in conns:
                conn.close()


# ------------------------------------------------------------ derived view

CITIES = ["Paris", "Lyon", "Oslo", "Lima", "Kyiv", "Pune"]


class _Users:
    """Writes users to ordo and keeps the state the view must reach."""

    def __init__(self, db: ordo.Client, rng: random.Random) -> None:
        self.db = db
        self.rng = rng
        self.state: dict[str, tuple[str, str]] = {}
        self.changes: dict[int, int] = {}  # position -> user keys written there
        self.next_id = 0

    def _value(self, name: str, city: str) -> Any:
        return f"{name}|{city}" if self.rng.random() < 0.5 else [name, city]

    def commit(self, puts: dict[str, tuple[str, str]], deletes: tuple[str, ...] = (),
               noise: int = 1) -> int:
        ops = [ordo.put(f"user:{i}", self._value(*u)) for i, u in puts.items()]
        ops += [ordo.delete(f"user:{i}") for i in deletes]
        ops += [ordo.put(f"other:{uuid.uuid4().hex}", "not a user") for _ in range(noise)]
        self.rng.shuffle(ops)
        result = self.db.txn(then=ops)
        assert result.succeeded and not result.aborted
        self.state.update(puts)
        for i in deletes:
            del self.state[i]
        if puts or deletes:
            self.changes[result.position] = len(puts) + len(deletes)
        return result.position

    def create(self, count: int) -> int:
        puts = {}
        for _ in range(count):
            puts[str(self.next_id)] = (f"name{self.next_id}", self.rng.choice(CITIES))
            self.next_id += 1
        return self.commit(puts)

    def random_change(self) -> int:
        ids = sorted(self.state)
        kind = self.rng.random()
        if kind < 0.45:
            moved = self.rng.sample(ids, self.rng.randint(1, 3))
            return self.commit({i: (self.state[i][0], self.rng.choice(CITIES)) for i in moved})
        if kind < 0.7:
            return self.commit({}, deletes=(self.rng.choice(ids),))
        if kind < 0.85:
            return self.create(self.rng.randint(1, 3))
        mover, gone = self.rng.sample(ids, 2)
        return self.commit({mover: (self.state[mover][0] + "'", self.rng.choice(CITIES))},
                           deletes=(gone,))


def _view(path: Path) -> tuple[int, dict[str, tuple[str, str]], list[tuple[int, int]]]:
    """(stored position, users, applied rows) of the consumer's SQLite file."""
    with sqlite3.connect(path, timeout=10) as conn:
        row = conn.execute("SELECT value FROM meta WHERE name='position'").fetchone()
        users = {i: (n, c) for i, n, c in conn.execute("SELECT id, name, city FROM users")}
        applied = conn.execute("SELECT position, changes FROM applied ORDER BY position")
        result = (0 if row is None else int(row[0]), users, applied.fetchall())
    conn.close()
    return result


def _stored_position(path: Path) -> int:
    try:
        return _view(path)[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def _consumer(cluster: Cluster, path: Path, log: Path,
              until: int | None = None) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, str(EXAMPLES / "derived_view.py"),
           "--ordo", cluster.address, "--db", str(path)]
    if until is not None:
        cmd += ["--until-position", str(until)]
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=out, env=_env(), cwd=ROOT)


def test_derived_view_resumes_after_kill_9_without_loss_or_repeat(
    cluster: Cluster, tmp_path: Path
) -> None:
    path, log = tmp_path / "view.sqlite", tmp_path / "consumer.log"
    with ordo.Client(cluster.address) as db:
        users = _Users(db, random.Random(20240601))
        # Batch 1: creates, moves, deletes, mixed with keys the view ignores.
        for _ in range(10):
            users.create(4)
        for _ in range(15):
            users.random_change()
        # An aborted transaction writes nothing (add to a text value).
        text_user = next(i for i in sorted(users.state)
                         if isinstance(db.get(f"user:{i}"), str))
        aborted = db.txn(then=[ordo.put("user:ghost", "Ghost|Nowhere"),
                               ordo.add(f"user:{text_user}", 1)])
        assert aborted.aborted
        # A failed compare runs the other branch: those are the writes.
        # (The compare is text against text: against a list it would abort.)
        mover = text_user
        branch = db.txn(when=[ordo.value(f"user:{mover}") == "nobody|nowhere"],
                        then=[ordo.put(f"user:{mover}", "Wrong|Branch")],
                        otherwise=[ordo.put(f"user:{mover}", "Moved|Oslo")])
        assert not branch.succeeded and not branch.aborted
        users.state[mover] = ("Moved", "Oslo")
        users.changes[branch.position] = 1
        end_1 = users.commit({}, noise=3)  # the last position touches no user

        consumer = _consumer(cluster, path, log, until=end_1)
        assert consumer.wait(timeout=30) == 0, log.read_text()
        stored, view, _ = _view(path)
        assert stored == end_1 and view == users.state

        # Batch 2, with the consumer killed -9 half way through it.
        consumer = _consumer(cluster, path, log)
        killed = threading.Event()
        batch_2: list[int] = []
        failure: list[BaseException] = []

        def write_batch_2() -> None:
            try:
                for n in range(60):
                    if n == 30 and not killed.wait(30):
                        raise AssertionError("the consumer was not killed in time")
                    batch_2.append(users.random_change())
            except BaseException as error:  # noqa: BLE001 - reported below
                failure.append(error)

        writer = threading.Thread(target=write_batch_2)
        writer.start()
        try:
            deadline = time.monotonic() + 30
            while not (len(batch_2) > 10 and _stored_position(path) >= batch_2[10]):
                assert time.monotonic() < deadline, "the consumer made no progress\n" + (
                    log.read_text())
                assert consumer.poll() is None, log.read_text()
                time.sleep(0.005)
            consumer.send_signal(signal.SIGKILL)
            consumer.wait(timeout=10)
        finally:
            killed.set()
            _stop(consumer, signal.SIGKILL)
            writer.join(timeout=60)
        assert not failure, failure
        killed_at = _stored_position(path)
        end_2 = batch_2[-1]
        assert end_1 < killed_at < batch_2[30] <= end_2, "killed midway through batch 2"

        consumer = _consumer(cluster, path, log, until=end_2)
        assert consumer.wait(timeout=30) == 0, log.read_text()
        stored, view, applied = _view(path)
        snapshot = {item.key.removeprefix("user:"): tuple(item.value.split("|"))
                    if isinstance(item.value, str) else tuple(item.value)
                    for item in db.range("user:", at_position=end_2)}

    assert stored == end_2
    assert view == users.state, "the view is the state the writes produced"
    assert view == snapshot, "and the state ordo itself holds at that position"
    # Every transaction that touched a user applied exactly once, in order,
    # with exactly its changes (the positions are the table's primary key).
    assert applied == sorted(users.changes.items())
    assert log.read_text().count("resuming from position") == 3
    assert f"resuming from position {killed_at + 1}" in log.read_text()


# -------------------------------------------------------------------- chat


async def test_chat_two_thousand_channels_replay_then_follow(cluster: Cluster) -> None:
    chat = _load("chat")
    run = uuid.uuid4().hex[:6]
    channels = [f"{run}-{i}" for i in range(2000)]
    watched = channels[1234]
    async with ordo.connect(cluster.address, timeout=30) as db:
        poster = chat.Poster(db, "alice")
        started = time.monotonic()
        posted = await poster.post_many(
            [(c, f"{c} says {j}") for j in range(3) for c in channels])
        took = time.monotonic() - started
        assert len(posted) == 6000 and took < 20, took
        assert {(m.channel, m.seq) for m in posted} == {(c, s) for c in channels
                                                       for s in (1, 2, 3)}
        # The channels spread over every shard.
        shard_map = ShardMap(cluster.shards)
        assert {shard_map.shard_for_key(chat.seq_key(c).encode())
                for c in channels} == set(range(cluster.shards))

        history, position = await chat.replay(db, watched)
        assert [(m.seq, m.text) for m in history] == [
            (s, f"{watched} says {s - 1}") for s in (1, 2, 3)]
        assert all(m.position <= position for m in history)

        # Follow live (replay, then watch from just after the replay's
        # position) while four posters race on the same channel.
        followed: list[Any] = []
        live_count = 4 * 8

        async def follower() -> None:
            async for m in chat.replay_then_follow(db, watched):
                followed.append(m)
                if len(followed) == 3 + live_count:
                    return

        follow_task = asyncio.create_task(follower())
        while not followed:  # the replay part is in: the watch starts next
            await asyncio.sleep(0.01)

        async def live(author: str) -> list[Any]:
            me = chat.Poster(db, author)
            sent = []
            for i in range(8):
                noise = (channels[(i * 7) % 2000], f"{author} noise {i}")
                sent.append((await me.post_many([(watched, f"{author} {i}"), noise]))[0])
            return sent

        sent = await asyncio.gather(*(live(a) for a in ("bob", "carol", "dan", "erin")))
        await asyncio.wait_for(follow_task, 20)

    assert [m.seq for m in followed] == list(range(1, 3 + live_count + 1)), "no gap, no repeat"
    assert [m.position for m in followed] == sorted(m.position for m in followed)
    by_seq = {m.seq: (m.author, m.text, m.position) for m in followed}
    for author_sent in sent:
        for m in author_sent:
            assert by_seq[m.seq] == (m.author, m.text, m.position)
        assert [m.seq for m in author_sent] == sorted(m.seq for m in author_sent)
    assert all(m.channel == watched for m in followed)


def test_chat_demo_runs_as_a_process(cluster: Cluster) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "chat.py"), "demo", "--ordo", cluster.address,
         "--channels", "50", "--live", "4"],
        capture_output=True, text=True, timeout=60, env=_env(), cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("posted 150 messages to 50 channels")
    assert [line.split()[0] for line in lines if line.startswith("  #")] == [
        "#1", "#2", "#3", "#4", "#5", "#6", "#7"]
