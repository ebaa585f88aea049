"""The fault runner's checkers bite: ordo started with a deliberate bug is reported invalid.

Each test is one short run of ``jepsen-style/ordo_jepsen.py`` against a real
cluster (separate processes) with ``--inject-bug``, and asserts exit status 1
and the anomaly the bug must cause.
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "jepsen-style"))

from ordojepsen.testing import run  # noqa: E402

pytestmark = pytest.mark.cluster


def test_skip_writes_breaks_the_bank_total(tmp_path: object) -> None:
    # Shard 0 drops the writes of one transfer past position 50 and reports
    # success: the other half of the transfer lands, so money appears or vanishes.
    o = run(str(tmp_path), "--workload", "bank", "--time-limit", "8", "--rate", "40",
            "--concurrency", "5", "--seed", "1", "--inject-bug", "skip-writes")
    assert o.code == 1, o.explain()
    assert "wrong-total" in o.anomaly_types, o.explain()
    bad = o.results["checker"]["anomalies"]["wrong-total"][0]
    assert bad["delta"] != 0 and bad["ops"][0]["index"] >= 0
    # ordo verify replays shard 0's log and disagrees with its store.
    assert "verify-mismatch" in o.anomaly_types, o.explain()


def test_stale_read_breaks_read_your_writes(tmp_path: object) -> None:
    # Shards ignore min_position; a lagging shard's log stream (the lag
    # nemesis) leaves a window in which a read at the commit's position is stale.
    o = run(str(tmp_path), "--workload", "read-your-writes", "--nemesis", "lag",
            "--time-limit", "10", "--rate", "40", "--concurrency", "5", "--seed", "1",
            "--inject-bug", "stale-read")
    assert o.code == 1, o.explain()
    assert o.anomaly_types == {"stale-read"}, o.explain()
    stale = o.results["checker"]["anomalies"]["stale-read"][0]
    assert stale["version"] < stale["min_position"]


def test_ack_before_fsync_loses_acknowledged_appends(tmp_path: object) -> None:
    # The coordinator hands out positions 300 ms before writing the batch;
    # killing it in between loses appends that were acknowledged (wait="logged").
    o = run(str(tmp_path), "--workload", "list-append", "--nemesis", "kill",
            "--targets", "coordinator", "--time-limit", "10", "--rate", "40",
            "--concurrency", "5", "--seed", "1", "--inject-bug", "ack-before-fsync")
    assert o.results.get("workload_info", {}).get("logged_appends") is True
    assert o.code == 1, o.explain()
    assert "lost-append" in o.anomaly_types, o.explain()
    lost = o.results["checker"]["anomalies"]["lost-append"][0]
    assert lost["ops"][0]["type"] == "ok"
