"""The fault runner's checkers, on hand-built histories: each anomaly is found, valid ones pass.

Fast and pure: no cluster. (The runner lives in jepsen-style/, a folder that
is not a Python package name, so its directory goes on sys.path here.)
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from typing import Any

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "jepsen-style"))

from ordojepsen.checkers import bank, elle, linear, ryw  # noqa: E402
from ordojepsen.history import edn_op, pairs  # noqa: E402
from ordojepsen.nemesis import make_schedule  # noqa: E402


class H:
    """A hand-built history: invoke and complete ops in the order written."""

    def __init__(self) -> None:
        self.ops: list[dict[str, Any]] = []

    def _add(self, op: dict[str, Any]) -> None:
        op["index"] = len(self.ops)
        op["time"] = len(self.ops) * 1000
        self.ops.append(op)

    def invoke(self, p: int, f: str, value: Any, **extra: Any) -> H:
        self._add({"process": p, "type": "invoke", "f": f, "value": value, **extra})
        return self

    def ok(self, p: int, f: str, value: Any, **extra: Any) -> H:
        self._add({"process": p, "type": "ok", "f": f, "value": value, **extra})
        return self

    def fail(self, p: int, f: str, value: Any) -> H:
        self._add({"process": p, "type": "fail", "f": f, "value": value, "error": "x"})
        return self

    def info(self, p: int, f: str, value: Any) -> H:
        self._add({"process": p, "type": "info", "f": f, "value": value, "error": "timeout"})
        return self

    def txn(self, p: int, mops: list[list[Any]], **extra: Any) -> H:
        """A whole ok transaction: ``mops`` are the completed micro-ops."""
        invoked = [[f, k, None if f == "r" else v] for f, k, v in mops]
        return self.invoke(p, "txn", invoked, **extra).ok(p, "txn", mops, **extra)


def final(h: H, p: int, reads: dict[Any, list[Any]]) -> H:
    return h.txn(p, [["r", k, v] for k, v in reads.items()], final=True)


def types(result: dict[str, Any]) -> set[str]:
    return set(result["anomaly_types"])


# ------------------------------------------------------------- list-append


def test_valid_serial_list_append() -> None:
    h = H()
    h.txn(0, [["append", "x", 1], ["r", "x", [1]]])
    h.txn(1, [["r", "x", [1]], ["append", "y", 2]])
    h.txn(0, [["append", "x", 3], ["r", "y", [2]]])
    final(h, 9, {"x": [1, 3], "y": [2]})
    r = elle.check(h.ops)
    assert r["valid"] == "valid", r
    assert r["stats"]["graph_edges"] > 0


def test_valid_concurrent_list_append_with_info_and_fail() -> None:
    h = H()
    h.invoke(0, "txn", [["append", "x", 1]])
    h.invoke(1, "txn", [["append", "x", 2], ["r", "y", None]])
    h.ok(1, "txn", [["append", "x", 2], ["r", "y", []]])
    h.info(0, "txn", [["append", "x", 1]])  # indeterminate: may or may not be there
    h.invoke(2, "txn", [["append", "y", 3]])
    h.fail(2, "txn", [["append", "y", 3]])  # certainly not there
    h.txn(3, [["r", "x", [2, 1]]])
    final(h, 9, {"x": [2, 1], "y": []})
    r = elle.check(h.ops)
    assert r["valid"] == "valid", r


def test_g0_write_cycle() -> None:
    h = H()
    h.invoke(0, "txn", [["append", "x", 1], ["append", "y", 1]])
    h.invoke(1, "txn", [["append", "x", 2], ["append", "y", 2]])
    h.ok(0, "txn", [["append", "x", 1], ["append", "y", 1]])
    h.ok(1, "txn", [["append", "x", 2], ["append", "y", 2]])
    h.txn(2, [["r", "x", [1, 2]], ["r", "y", [2, 1]]])
    r = elle.check(h.ops)
    assert "G0" in types(r), r
    cycle = r["anomalies"]["G0"][0]
    assert {s["type"] for s in cycle["steps"]} == {"ww"}
    assert len(cycle["ops"]) == 2


def test_g1a_aborted_read() -> None:
    h = H()
    h.invoke(0, "txn", [["append", "x", 1]]).fail(0, "txn", [["append", "x", 1]])
    h.txn(1, [["r", "x", [1]]])
    r = elle.check(h.ops)
    assert "G1a" in types(r), r
    assert r["valid"] == "invalid"


def test_g1b_intermediate_read() -> None:
    h = H()
    h.invoke(0, "txn", [["append", "x", 1], ["append", "x", 2]])
    h.invoke(1, "txn", [["r", "x", None]])
    h.ok(1, "txn", [["r", "x", [1]]])
    h.ok(0, "txn", [["append", "x", 1], ["append", "x", 2]])
    r = elle.check(h.ops)
    assert "G1b" in types(r), r


def test_g1c_circular_information_flow() -> None:
    h = H()
    h.invoke(0, "txn", [["append", "x", 1], ["r", "y", None]])
    h.invoke(1, "txn", [["append", "y", 1], ["r", "x", None]])
    h.ok(0, "txn", [["append", "x", 1], ["r", "y", [1]]])
    h.ok(1, "txn", [["append", "y", 1], ["r", "x", [1]]])
    r = elle.check(h.ops)
    assert "G1c" in types(r), r
    kinds = [s["type"] for s in r["anomalies"]["G1c"][0]["steps"]]
    assert kinds.count("wr") >= 1 and "rw" not in kinds


def test_g_single_read_skew() -> None:
    h = H()
    h.invoke(0, "txn", [["r", "x", None], ["r", "y", None]])
    h.invoke(1, "txn", [["append", "x", 1], ["append", "y", 1]])
    h.ok(1, "txn", [["append", "x", 1], ["append", "y", 1]])
    h.ok(0, "txn", [["r", "x", []], ["r", "y", [1]]])
    final(h, 9, {"x": [1], "y": [1]})
    r = elle.check(h.ops)
    assert types(r) == {"G-single"}, r
    kinds = sorted(s["type"] for s in r["anomalies"]["G-single"][0]["steps"])
    assert kinds == ["rw", "wr"]


def test_g2_item_write_skew() -> None:
    h = H()
    h.invoke(0, "txn", [["r", "x", None], ["append", "y", 1]])
    h.invoke(1, "txn", [["r", "y", None], ["append", "x", 2]])
    h.ok(0, "txn", [["r", "x", []], ["append", "y", 1]])
    h.ok(1, "txn", [["r", "y", []], ["append", "x", 2]])
    final(h, 9, {"x": [2], "y": [1]})
    r = elle.check(h.ops)
    assert types(r) == {"G2-item"}, r
    kinds = [s["type"] for s in r["anomalies"]["G2-item"][0]["steps"]]
    assert kinds.count("rw") == 2


def test_realtime_stale_read_is_g_single_realtime() -> None:
    h = H()
    h.txn(0, [["append", "x", 1]])  # completes ...
    h.txn(1, [["r", "x", []]])  # ... before this read is invoked, which misses it
    final(h, 9, {"x": [1]})
    r = elle.check(h.ops)
    assert types(r) == {"G-single-realtime"}, r
    kinds = sorted(s["type"] for s in r["anomalies"]["G-single-realtime"][0]["steps"])
    assert kinds == ["rt", "rw"]


def test_concurrent_stale_looking_read_is_fine() -> None:
    h = H()
    h.invoke(0, "txn", [["append", "x", 1]])
    h.invoke(1, "txn", [["r", "x", None]])
    h.ok(0, "txn", [["append", "x", 1]])
    h.ok(1, "txn", [["r", "x", []]])  # concurrent with the append: may precede it
    final(h, 9, {"x": [1]})
    assert elle.check(h.ops)["valid"] == "valid"


def test_g0_realtime() -> None:
    # T1 appends x 1, completes; T2 (later) appends x 2; but the order says 2 before 1.
    h = H()
    h.txn(0, [["append", "x", 1]])
    h.txn(1, [["append", "x", 2]])
    final(h, 9, {"x": [2, 1]})
    r = elle.check(h.ops)
    assert types(r) == {"G0-realtime"}, r


def test_internal_inconsistency() -> None:
    h = H()
    h.txn(0, [["append", "x", 1], ["r", "x", []]])
    r = elle.check(h.ops)
    assert "internal" in types(r), r


def test_duplicate_elements_and_garbage() -> None:
    h = H()
    h.txn(0, [["append", "x", 1]])
    h.txn(1, [["r", "x", [1, 1]]])
    h.txn(2, [["r", "y", [77]]])
    r = elle.check(h.ops)
    assert {"duplicate-elements", "garbage-read"} <= types(r), r


def test_incompatible_order() -> None:
    h = H()
    h.invoke(0, "txn", [["append", "x", 1]])
    h.invoke(1, "txn", [["append", "x", 2]])
    h.ok(0, "txn", [["append", "x", 1]])
    h.ok(1, "txn", [["append", "x", 2]])
    h.txn(2, [["r", "x", [1, 2]]])
    h.txn(3, [["r", "x", [2, 1]]])
    r = elle.check(h.ops)
    assert "incompatible-order" in types(r), r


def test_lost_acknowledged_append() -> None:
    h = H()
    h.txn(0, [["append", "x", 1]])
    h.txn(1, [["append", "x", 2]], wait="logged")
    h.invoke(2, "txn", [["append", "x", 3]]).info(2, "txn", [["append", "x", 3]])
    final(h, 9, {"x": [1]})
    r = elle.check(h.ops)
    assert types(r) == {"lost-append"}, r
    lost = r["anomalies"]["lost-append"]
    assert [a["value"] for a in lost] == [2]  # the info append 3 may be lost


def test_no_final_read_is_unknown() -> None:
    h = H()
    h.txn(0, [["append", "x", 1], ["r", "x", [1]]])
    assert elle.check(h.ops)["valid"] == "unknown"


def test_cycle_search_scales_to_a_few_thousand_txns() -> None:
    h = H()
    lists: dict[int, list[int]] = {k: [] for k in range(6)}
    v = 0
    for i in range(3000):
        k = i % 6
        v += 1
        lists[k].append(v)
        h.txn(i % 7, [["append", k, v], ["r", k, list(lists[k])]])
    final(h, 99, {k: list(lst) for k, lst in lists.items()})
    t = time.monotonic()
    r = elle.check(h.ops)
    assert r["valid"] == "valid", r["anomaly_types"]
    assert time.monotonic() - t < 10


# -------------------------------------------------------------------- bank


def _bank(reads: list[dict[str, int]]) -> list[dict[str, Any]]:
    h = H()
    h.invoke(0, "transfer", {"from": "a", "to": "b", "amount": 5})
    h.ok(0, "transfer", {"from": "a", "to": "b", "amount": 5})
    for i, balances in enumerate(reads):
        h.invoke(1 + i, "read", None).ok(1 + i, "read", balances)
    return h.ops


def test_bank_valid() -> None:
    r = bank.check(_bank([{"a": 10, "b": 10}, {"a": 5, "b": 15}]), ["a", "b"], 20)
    assert r["valid"] == "valid", r


def test_bank_wrong_total_and_negative() -> None:
    r = bank.check(_bank([{"a": 5, "b": 10}, {"a": -1, "b": 21}]), ["a", "b"], 20)
    assert types(r) == {"wrong-total", "negative-value"}, r
    assert r["anomalies"]["wrong-total"][0]["delta"] == -5


def test_bank_without_reads_is_unknown() -> None:
    assert bank.check(_bank([]), ["a", "b"], 20)["valid"] == "unknown"


# ---------------------------------------------------------------- register


def test_register_linearizable_with_concurrency_info_and_failed_cas() -> None:
    h = H()
    h.invoke(0, "write", ["k", 1]).ok(0, "write", ["k", 1])
    h.invoke(1, "write", ["k", 2])
    h.invoke(2, "read", ["k", None])
    h.ok(2, "read", ["k", 2])  # the concurrent write took effect first
    h.ok(1, "write", ["k", 2])
    h.invoke(3, "cas", ["k", [1, 3]]).fail(3, "cas", ["k", [1, 3]])
    h.invoke(4, "cas", ["k", [2, 4]]).info(4, "cas", ["k", [2, 4]])
    h.invoke(5, "read", ["k", None]).ok(5, "read", ["k", 2])  # the info cas did not happen yet
    h.invoke(6, "read", ["k", None]).ok(6, "read", ["k", 4])  # now it did
    h.invoke(7, "read", ["j", None]).ok(7, "read", ["j", None])
    r = linear.check(h.ops)
    assert r["valid"] == "valid", r


def test_register_stale_read_is_not_linearizable() -> None:
    h = H()
    h.invoke(0, "write", ["k", 1]).ok(0, "write", ["k", 1])
    h.invoke(1, "write", ["k", 2]).ok(1, "write", ["k", 2])
    h.invoke(2, "read", ["k", None]).ok(2, "read", ["k", 1])
    h.invoke(3, "read", ["j", None]).ok(3, "read", ["j", None])
    r = linear.check(h.ops)
    assert r["valid"] == "invalid", r
    bad = r["anomalies"]["nonlinearizable"]
    assert [a["key"] for a in bad] == ["k"]
    assert bad[0]["could_not_place"][0]["f"] == "read"


def test_register_cas_success_needs_the_old_value() -> None:
    h = H()
    h.invoke(0, "write", ["k", 1]).ok(0, "write", ["k", 1])
    h.invoke(1, "cas", ["k", [2, 3]]).ok(1, "cas", ["k", [2, 3]])
    assert linear.check(h.ops)["valid"] == "invalid"


def test_register_info_write_can_explain_a_read() -> None:
    h = H()
    h.invoke(0, "write", ["k", 1]).ok(0, "write", ["k", 1])
    h.invoke(1, "write", ["k", 9]).info(1, "write", ["k", 9])
    h.invoke(2, "read", ["k", None]).ok(2, "read", ["k", 9])
    h.invoke(3, "read", ["k", None]).ok(3, "read", ["k", 9])
    assert linear.check(h.ops)["valid"] == "valid"
    h.invoke(4, "read", ["k", None]).ok(4, "read", ["k", 1])  # cannot go back
    assert linear.check(h.ops)["valid"] == "invalid"


# -------------------------------------------------------- read-your-writes


def _ryw(seen: Any, version: int) -> list[dict[str, Any]]:
    h = H()
    w = {"key": "ryw:0", "value": 1, "wait": "logged"}
    h.invoke(0, "write", w).ok(0, "write", w, position=10)
    rd = {"key": "ryw:0", "min_position": 10, "expect": 1}
    h.invoke(0, "read", rd).ok(0, "read", {**rd, "read": seen, "version": version})
    return h.ops


def test_ryw_valid() -> None:
    assert ryw.check(_ryw(1, 10))["valid"] == "valid"


def test_ryw_stale_read() -> None:
    r = ryw.check(_ryw(None, 0))
    assert types(r) == {"stale-read"}, r
    assert r["anomalies"]["stale-read"][0]["min_position"] == 10


def test_ryw_wrong_value() -> None:
    assert types(ryw.check(_ryw(5, 12))) == {"wrong-value"}


# ------------------------------------------------------------ plumbing


def test_pairs_and_edn() -> None:
    h = H()
    h.invoke(0, "txn", [["append", 1, 2]]).ok(0, "txn", [["append", 1, 2]], position=3)
    h.invoke(1, "read", None)
    ps = pairs(h.ops)
    assert [(a["index"], b and b["index"]) for a, b in ps] == [(0, 1), (2, None)]
    assert edn_op(h.ops[1]) == (
        "{:index 1, :time 1000, :type :ok, :process 0, :f :txn, :value [[:append 1 2]], "
        ":position 3}"
    )
    assert json.loads(json.dumps(h.ops)) == h.ops


def test_schedule_is_a_function_of_the_seed() -> None:
    a = make_schedule(7, ["kill", "pause", "partition", "power-loss"], 60, 3)
    b = make_schedule(7, ["partition", "kill", "power-loss", "pause"], 60, 3)
    c = make_schedule(8, ["kill", "pause", "partition", "power-loss"], 60, 3)
    assert [f.to_json() for f in a] == [f.to_json() for f in b]
    assert [f.to_json() for f in a] != [f.to_json() for f in c]
    assert {f.kind for f in a} == {"kill", "pause", "partition", "power-loss"}
    assert all(0 < f.start < f.end <= 59.5 for f in a)
    overlapping = any(x.start < y.start < x.end for x in a for y in a if x is not y)
    assert overlapping, "combined nemeses overlap"
    only = make_schedule(1, ["kill"], 30, 3, targets=["coordinator"])
    assert only and all(f.nodes == ["coordinator"] for f in only)


def test_proxy_blackholes_resets_and_delays() -> None:
    from ordojepsen.proxy import ProxyNet

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(10)

    def echo() -> None:
        for _ in range(3):
            try:
                conn, _ = server.accept()
            except OSError:
                return

            def serve(c: socket.socket = conn) -> None:
                with c:
                    while data := c.recv(100):
                        c.sendall(data)

            threading.Thread(target=serve, daemon=True).start()

    threading.Thread(target=echo, daemon=True).start()
    net = ProxyNet()
    try:
        port = int(net.add("a->b", f"127.0.0.1:{server.getsockname()[1]}").split(":")[1])
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        s.sendall(b"one")
        assert s.recv(100) == b"one"
        net.block(["a->b"])
        s.sendall(b"two")
        s.settimeout(0.3)
        with pytest.raises(socket.timeout):
            s.recv(100)
        net.heal()
        s.settimeout(2)
        assert s.recv(100) == b"two"  # held, not lost
        net.set_delay(["a->b"], 0.1)
        t = time.monotonic()
        s.sendall(b"three")
        assert s.recv(100) == b"three"
        assert time.monotonic() - t >= 0.19  # both directions delayed
        net.set_delay(["a->b"], 0)
        net.block(["a->b"], reset=True)
        assert s.recv(100) == b""  # connection dropped
        net.heal()
    finally:
        net.close()
        server.close()
