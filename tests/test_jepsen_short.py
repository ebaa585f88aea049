"""Short fault-injection runs against a real cluster that must be VALID.

Kill, pause and partition, overlapping, on a coordinator and three shards.
A failure here is an ordo bug (or a runner bug): the assertion message has
the anomalies, the ops that form them and an excerpt of the history; the run
folder (results.json, history.jsonl, logs, plots) is kept under pytest's tmp.
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "jepsen-style"))

from ordojepsen.testing import run  # noqa: E402

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize("workload,seed", [("bank", 1), ("list-append", 2)])
def test_valid_under_kill_pause_partition(tmp_path: object, workload: str, seed: int) -> None:
    o = run(str(tmp_path), "--workload", workload, "--nemesis", "kill,pause,partition",
            "--time-limit", "15", "--rate", "40", "--concurrency", "5", "--seed", str(seed))
    assert o.code == 0, o.explain()
    r = o.results
    assert r["verdict"] == "valid"
    kinds = {f["kind"] for f in r["faults"] if f["started_at"] is not None}
    assert kinds == {"kill", "pause", "partition"}, r["faults"]
    assert r["counts"]["by_type"].get("ok", 0) >= 30, o.explain()
    assert r["recovery"]["caught_up"]
    assert not r["process_exits"], o.explain()
