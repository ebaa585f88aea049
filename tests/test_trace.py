"""Stage tracing (ordo.trace) and its report (bench.trace): the sampling and
the join in pure tests, then a real cluster whose client and services trace
the same transactions into one folder."""

from __future__ import annotations

import os
import tempfile
import zlib
from pathlib import Path

import pytest

import ordo
from bench import trace as report
from ordo import trace
from tests.conftest import Cluster, free_port_block


@pytest.fixture
def tracing(tmp_path: Path):  # type: ignore[no-untyped-def]
    yield tmp_path
    trace.stop()


def test_one_request_id_in_n_is_traced_and_the_same_ones_everywhere(tracing: Path) -> None:
    trace.start(str(tracing), 4)
    ids = [f"req-{i}" for i in range(2000)]
    for request_id in ids:
        trace.mark(request_id, "coord.received")
    trace.stop()
    lines = (tracing / f"{os.getpid()}.trace").read_text().splitlines()
    traced = {line.split()[0] for line in lines}
    expected = {i for i in ids if zlib.crc32(i.encode()) % 4 == 0}
    assert traced == expected
    assert 400 < len(traced) < 600
    assert all(line.split()[1] == "coord.received" for line in lines)
    assert not trace.sampled("")  # a submit without a request id gets one later


def test_nothing_is_written_once_stopped(tracing: Path) -> None:
    trace.start(str(tracing), 1)
    trace.stop()
    assert not trace.ON
    trace.mark("late", "coord.received")
    trace.flush()
    with pytest.raises(ValueError):
        trace.start(str(tracing), 0)
    assert list(tracing.iterdir()) == []


def test_a_trace_file_that_cannot_be_written_turns_tracing_off_quietly(
    tracing: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    folder = tracing / "gone"
    trace.start(str(folder), 1)
    folder.rmdir()  # the folder goes away (or the disk fills) while tracing
    for i in range(trace.FLUSH_LINES + 1):
        trace.mark(f"r{i}", "coord.durable")  # never raises into the caller
    assert not trace.ON
    assert "tracing stopped" in caplog.text


def test_a_blind_writes_shard_stages_are_apart_from_its_answer_path(tmp_path: Path) -> None:
    # Answered when durable; its shard received it between the coordinator's
    # answer and the client's reading of it.
    (tmp_path / "1.trace").write_text(
        "w client.call 1.000\nw coord.durable 1.002\nw coord.answered 1.003\n"
        "w shard.received 1.0035\nw client.answer 1.004\nw client.done 1.005\n")
    count, rows = report.table(report.load(tmp_path))
    steps = {r[0]: r[5] for r in rows}
    assert steps["client.answer"] == pytest.approx(1.0)  # from coord.answered
    assert steps["shard.received (after the answer)"] == pytest.approx(1.5)  # from durable
    assert rows[-1][0] == "shard.received (after the answer)"


def test_without_a_client_trace_the_report_counts_from_the_coordinator(tmp_path: Path) -> None:
    (tmp_path / "1.trace").write_text(
        "s coord.received 5.000\ns coord.batched 5.001\ns coord.durable 5.003\n"
        "s coord.answered 5.004\ns shard.received 5.0045\n")
    marks = report.load(tmp_path)
    assert report.origin_of(marks) == "coord.received"
    count, rows = report.table(marks)
    assert count == 1
    assert [r[0] for r in rows] == ["coord.received", "coord.batched", "coord.durable",
                                    "coord.answered", "shard.received (after the answer)"]
    assert rows[2][2] == pytest.approx(3.0)
    assert "milliseconds after coord.received" in report.render(count, rows, "coord.received")


def test_the_report_reads_one_runs_folder(tmp_path: Path) -> None:
    (tmp_path / "put-ordo-3-r0").mkdir()
    (tmp_path / "put-ordo-3-r0" / "1.trace").write_text("x client.call 1.0\n")
    assert report.table(report.load(tmp_path))[0] == 0
    assert report.main([str(tmp_path)]) == 1
    assert report.main([str(tmp_path / "put-ordo-3-r0")]) == 0


def test_the_report_orders_stages_and_counts_the_last_shard(tmp_path: Path) -> None:
    # Two transactions; in each, two shards publish and the later one counts.
    (tmp_path / "1.trace").write_text(
        "a client.call 10.000\na client.done 10.010\na coord.results 10.008\n"
        "b client.call 20.000\nb client.done 20.020\nb coord.results 20.015\n")
    (tmp_path / "2.trace").write_text(
        "a coord.received 10.001\na shard.published 10.004\n"
        "b coord.received 20.002\nb shard.published 20.006\n"
        "c coord.received 30.000\n"  # not traced by the client: left out
        "a shard.published\n")  # cut short by a kill: skipped
    (tmp_path / "3.trace").write_text("a shard.published 10.006\nb shard.published 20.010\n")
    count, rows = report.table(report.load(tmp_path))
    assert count == 2
    assert [r[0] for r in rows] == [
        "client.call", "coord.received", "shard.published", "coord.results", "client.done"]
    by_stage = {r[0]: r for r in rows}
    assert by_stage["shard.published"][2] == pytest.approx(8.0)  # mean of 6 and 10 ms
    assert by_stage["coord.results"][5] == pytest.approx(3.5)  # mean step: (2 + 5) / 2
    assert "| coord.received | 2 |" in report.render(count, rows)


def test_a_cluster_traces_each_stage_of_a_transaction_in_order(tmp_path: Path) -> None:
    folder = str(tmp_path / "trace")
    with tempfile.TemporaryDirectory(prefix="ordo-test-") as data:
        cluster = Cluster(shards=2, data=data, port=free_port_block(3),
                          extra=["--trace-dir", folder, "--trace-sample", "1"])
        cluster.start()
        try:
            async def work() -> None:
                async with ordo.connect(cluster.address) as db:
                    await db.put("warm", 1)  # the streams are open before tracing
                    trace.start(folder, 1)
                    for i in range(10):
                        await db.put(f"p{i}", i, request_id=f"put-{i}")
                        await db.txn(when=[ordo.int_value(f"a{i}") == 0],
                                     then=[ordo.put(f"a{i}", 1), ordo.put(f"b{i}", 1)],
                                     otherwise=[ordo.put(f"b{i}", 2)],
                                     request_id=f"txn-{i}")
                    trace.stop()

            import asyncio
            asyncio.run(work())
        finally:
            assert cluster.stop() == [0, 0, 0]  # a clean exit flushes the services' traces
    marks = report.load(Path(folder))
    # client.sent is when the client's write returned: the coordinator may
    # have the message before then, so it is checked apart.
    client_side = ("client.call", "client.send")
    answer_side = ("client.answer", "client.done")
    put_path = client_side + ("coord.received", "coord.batched", "coord.durable",
                              "coord.answered") + answer_side
    txn_path = client_side + ("coord.received", "coord.batched", "coord.durable",
                              "shard.received", "shard.applied", "shard.published",
                              "coord.results", "coord.answered") + answer_side
    for i in range(10):
        put, txn = marks[f"put-{i}"], marks[f"txn-{i}"]
        # A blind write is answered when durable; its shard still applies it.
        assert [put[s] for s in put_path] == sorted(put[s] for s in put_path), put
        assert {"shard.received", "shard.applied", "shard.published"} <= set(put)
        assert "coord.results" not in put
        assert [txn[s] for s in txn_path] == sorted(txn[s] for s in txn_path), txn
        assert put["client.send"] <= put["client.sent"] <= put["client.answer"]
    count, rows = report.table(marks)
    assert count == 20
    assert rows[0][0] == "client.call"
    after = {f"shard.{s} (after the answer)" for s in ("received", "applied", "published")}
    assert {r[0] for r in rows} == set(txn_path) | {"client.sent"} | after
