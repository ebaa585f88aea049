"""One run, start to verdict.

1. Start the proxies and the cluster (separate processes, data under
   ``OUT/data``, logs under ``OUT/logs``); wait until every node serves.
2. Set up the workload's data.
3. For ``time_limit`` seconds: ``concurrency`` workers run ops at ``rate``
   ops/s in total; the nemesis carries out the seed's fault schedule; a
   monitor restarts (and records) any node that dies on its own.
4. Heal everything, wait for every node to serve and every shard to apply
   the whole log, make the final reads.
5. Record each shard's applied position and digest, stop the cluster, check
   the history, write the results folder. Exit code: 0 valid, 1 invalid,
   2 unknown.

Everything talks only to 127.0.0.1; every wait is bounded; a watchdog kills
the cluster and exits 2 if the run overstays its budget.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any

from ordojepsen import EXIT_CODES, INVALID, UNKNOWN, VALID, merge_verdicts
from ordojepsen import client as jclient
from ordojepsen.cluster import REPO, Cluster
from ordojepsen.history import FAIL, INFO, OK, History
from ordojepsen.nemesis import Fault, Nemesis, make_schedule
from ordojepsen.proxy import ProxyNet
from ordojepsen.workloads import WORKLOADS, Conns, Workload

log = logging.getLogger("ordojepsen")


@dataclass
class Options:
    workload: str = "bank"
    nemesis: list[str] = field(default_factory=list)
    time_limit: float = 30.0
    rate: float = 50.0
    concurrency: int = 5
    shards: int = 3
    seed: int = 0
    inject_bug: str = ""
    out: str = "results/ordo-jepsen"
    client_timeout: float = 2.5
    targets: list[str] = field(default_factory=list)
    recovery_s: float = 45.0
    keep_data: bool = False
    workload_options: dict[str, Any] = field(default_factory=dict)
    log_level: str = "info"


def git_info() -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                                 timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    status = git("status", "--porcelain")
    return {"commit": git("rev-parse", "HEAD"),
            "dirty": None if status is None else bool(status)}


class Run:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.history = History()
        self.events: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.schedule: list[Fault] = []
        self.cluster: Cluster | None = None
        self.proxies: ProxyNet | None = None
        self.workload: Workload = WORKLOADS[opts.workload](
            opts.shards, opts.client_timeout, dict(opts.workload_options)
        )
        self.next_process = opts.concurrency
        self.created = time.monotonic()
        self.workload_t0 = 0.0
        self.workload_t1 = 0.0

    def event(self, what: str, detail: dict[str, Any]) -> None:
        # Seconds since the workload started (before it: since the run started).
        since = time.monotonic() - (self.workload_t0 or self.created)
        self.events.append({"time_s": round(since, 3), "event": what, **detail})
        log.info("%s %s", what, detail)

    async def new_client(self) -> jclient.RoutedClient:
        assert self.cluster is not None
        db = jclient.connect(self.cluster.client_coordinator(), self.cluster.client_shards(),
                             self.opts.client_timeout)
        await db.connect()
        return db

    async def new_conns(self) -> Conns:
        return Conns(await self.new_client(), await self.new_client())

    def fresh_process(self) -> int:
        p = self.next_process
        self.next_process += 1
        return p

    # --------------------------------------------------------------- one op

    async def run_op(self, conns: Conns, process: int, f: str, value: Any,
                     **extra: Any) -> tuple[str, Any, dict[str, Any]]:
        inv = self.history.invoke(process, f, value, **extra)
        try:
            type_, out, error, more = await asyncio.wait_for(
                self.workload.invoke(conns, process, f, value), self.opts.client_timeout + 3.0
            )
        except Exception as e:  # noqa: BLE001 - every error is classified
            type_, error, more = jclient.classify(e)
            out = value
        self.history.complete(inv, type_, out, error, **more, **extra)
        self.workload.observe(process, f, value, type_, out, more)
        return type_, out, more

    async def worker(self, wid: int, stop: asyncio.Event) -> None:
        rng = random.Random(f"ordojepsen:{self.opts.seed}:worker:{wid}")
        process = wid
        conns = await self.new_conns()
        stagger = 2.0 * self.opts.concurrency / max(self.opts.rate, 0.001)
        try:
            while not stop.is_set():
                f, value, immediate = self.workload.next_op(process, rng)
                if not immediate:  # e.g. a read-your-writes read goes right after its write
                    try:
                        await asyncio.wait_for(stop.wait(), rng.uniform(0, stagger))
                        break
                    except TimeoutError:
                        pass
                type_, _, _ = await self.run_op(conns, process, f, value)
                if type_ == INFO:
                    # Jepsen: an indeterminate op's process never runs again.
                    process = self.fresh_process()
                    await jclient.close_quietly(conns.db)
                    await jclient.close_quietly(conns.other)
                    conns = await self.new_conns()
        finally:
            await jclient.close_quietly(conns.db)
            await jclient.close_quietly(conns.other)

    async def monitor(self, stop: asyncio.Event) -> None:
        assert self.cluster is not None
        while not stop.is_set():
            self.cluster.check_exits()
            try:
                await asyncio.wait_for(stop.wait(), 0.25)
            except TimeoutError:
                pass

    # ---------------------------------------------------------------- phases

    async def setup(self) -> None:
        deadline = time.monotonic() + 30
        last: BaseException | None = None
        while time.monotonic() < deadline:
            db = await self.new_client()
            try:
                await asyncio.wait_for(self.workload.setup(db), 10)
                return
            except Exception as e:  # noqa: BLE001 - retried, then reported
                last = e
                if jclient.classify(e)[0] == FAIL or isinstance(e, (AssertionError, TypeError,
                                                                     ValueError)):
                    break  # certain: retrying will not help
                await asyncio.sleep(0.5)
            finally:
                await jclient.close_quietly(db)
        raise RuntimeError(f"workload setup failed: {last!r}")

    async def recover(self) -> dict[str, Any]:
        """Wait until every node serves and every shard has applied the whole log."""
        assert self.cluster is not None
        t = time.monotonic()
        out: dict[str, Any] = {"serving": False, "caught_up": False}
        out["serving"] = await self.cluster.wait_serving(timeout_s=self.opts.recovery_s)
        deadline = t + self.opts.recovery_s
        db = await self.new_client()
        last: Any = None
        try:
            while time.monotonic() < deadline:
                self.cluster.check_exits()
                try:
                    status = await asyncio.wait_for(db.status(timeout=2.0), 3.0)
                    last = _status_json(status)
                    if all(s["reachable"] and s["applied_position"] >= status.tail
                           for s in last["shards"]):
                        out["caught_up"] = True
                        break
                except Exception as e:  # noqa: BLE001 - retried until the deadline
                    last = {"error": repr(e)}
                await asyncio.sleep(0.25)
        finally:
            await jclient.close_quietly(db)
        out["status"] = last
        out["seconds"] = round(time.monotonic() - t, 3)
        return out

    async def final_reads(self) -> None:
        ops = self.workload.final_ops()
        if not ops:
            return
        conns = await self.new_conns()
        try:
            for f, value in ops:
                for _attempt in range(8):
                    process = self.fresh_process()
                    type_, _, _ = await self.run_op(conns, process, f, value, final=True)
                    if type_ == OK:
                        break
                    await asyncio.sleep(0.5)
        finally:
            await jclient.close_quietly(conns.db)
            await jclient.close_quietly(conns.other)

    async def status_snapshot(self) -> dict[str, Any]:
        """Each shard's applied position and digest after recovery (`ordo status`)."""
        db = await self.new_client()
        try:
            status = await asyncio.wait_for(db.status(timeout=3.0), 5.0)
            return _status_json(status)
        except Exception as e:  # noqa: BLE001
            return {"error": repr(e)}
        finally:
            await jclient.close_quietly(db)

    async def main(self) -> dict[str, Any]:
        opts = self.opts
        os.makedirs(opts.out, exist_ok=True)
        self.schedule = make_schedule(opts.seed, opts.nemesis, opts.time_limit, opts.shards,
                                      opts.targets or None)
        self.proxies = ProxyNet()
        self.cluster = Cluster(opts.shards, opts.out, self.proxies, opts.inject_bug,
                               log_level=opts.log_level, events=self.event)
        results: dict[str, Any] = {}
        try:
            for name in self.cluster.names:
                self.cluster.spawn(name)
            if not await self.cluster.wait_serving(timeout_s=60, fail_fast=True):
                raise RuntimeError("the cluster did not start; see the logs in "
                                   f"{os.path.join(opts.out, 'logs')}")
            self.event("cluster-up", {})
            await self.setup()
            self.event("setup-done", {})

            stop = asyncio.Event()
            nemesis = Nemesis(self.cluster, self.proxies, self.history)
            # History times and fault times both count from here.
            self.history.t0 = time.monotonic_ns()
            self.workload_t0 = self.history.t0 / 1e9
            self.history.nemesis("workload-start", {})
            tasks = [asyncio.create_task(self.worker(i, stop)) for i in range(opts.concurrency)]
            mon = asyncio.create_task(self.monitor(stop))
            nem = asyncio.create_task(nemesis.run(self.schedule, self.workload_t0))
            await asyncio.sleep(opts.time_limit)
            stop.set()
            self.workload_t1 = time.monotonic()
            nem.cancel()
            await asyncio.gather(nem, return_exceptions=True)
            nemesis.heal_all()
            self.event("healed", {})
            done, pending = await asyncio.wait(tasks, timeout=opts.client_timeout + 10)
            for t in pending:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if pending:
                self.notes.append(f"{len(pending)} workers did not stop in time")
            await asyncio.gather(mon, return_exceptions=True)
            self.event("workers-stopped", {})

            recovery = await self.recover()
            results["recovery"] = recovery
            self.event("recovered" if recovery["caught_up"] else "not-recovered",
                       {"seconds": recovery["seconds"]})
            await self.final_reads()
            self.event("final-reads-done", {})
            results["determinism"] = {"status": await self.status_snapshot()}
        finally:
            codes = self.cluster.stop_all()
            self.event("cluster-stopped", {"exit_codes": codes})
            results["exit_codes"] = codes
            results["proxy_stats"] = self.proxies.stats()
            self.proxies.close()
        # The cluster is stopped: replay each shard's log and compare (ordo verify).
        results.setdefault("determinism", {})["verify"] = await verify_hook(self)
        self.event("verified", {})
        return results


def _status_json(status: Any) -> dict[str, Any]:
    return {
        "tail": int(status.tail),
        "shards": [
            {"shard": int(s.shard), "address": s.address, "reachable": bool(s.reachable),
             "applied_position": int(s.applied_position), "lag": int(s.lag),
             "digest": bytes(s.digest).hex(), "error": s.error}
            for s in status.shards
        ],
    }


async def verify_hook(run: Run) -> dict[str, Any]:
    """Run `ordo verify --data <shard dir>` on every (stopped) shard, in parallel.

    `ordo verify` replays a shard's own log into an empty store and compares
    writes, digests and contents with the live store. A mismatch is a
    determinism violation (reported as the anomaly ``verify-mismatch``). If
    this ordo has no `verify` command, the hook records that it was skipped.
    """
    assert run.cluster is not None
    shards = [n for n in run.cluster.nodes if n != "coordinator"]

    async def one(name: str) -> dict[str, Any]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ordo", "verify", "--data", run.cluster.nodes[name].data,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 120)
        except TimeoutError:
            proc.kill()
            return {"node": name, "status": "timeout"}
        text = out.decode(errors="replace").strip()
        if proc.returncode == 2 and b"invalid choice" in err:
            return {"node": name, "status": "skipped", "reason": "ordo has no verify command"}
        report: dict[str, Any] = {}
        try:
            report = json.loads(text.splitlines()[-1]) if text else {}
        except json.JSONDecodeError:
            pass
        return {"node": name, "status": "ok" if proc.returncode == 0 else "failed",
                "code": proc.returncode, "report": report or text[-2000:],
                "stderr": err.decode(errors="replace")[-2000:]}

    return {"shards": list(await asyncio.gather(*(one(n) for n in shards)))}


def _add_verify_anomalies(check: dict[str, Any], verify: dict[str, Any]) -> None:
    """A shard whose replay disagrees with its store is a determinism violation."""
    for item in verify.get("shards", []):
        report = item.get("report")
        if item.get("status") == "failed" and isinstance(report, dict) and not report.get("ok"):
            check.setdefault("anomalies", {}).setdefault("verify-mismatch", []).append(
                {"type": "verify-mismatch", "node": item["node"],
                 "mismatches": report.get("mismatches"), "ops": []})
            counts = check.setdefault("anomaly_counts", {})
            counts["verify-mismatch"] = counts.get("verify-mismatch", 0) + 1
            check["anomaly_types"] = sorted(set(check.get("anomaly_types", []))
                                            | {"verify-mismatch"})
            check["valid"] = INVALID
        elif item.get("status") not in ("ok", "skipped", None):
            check.setdefault("notes", []).append(
                f"ordo verify on {item.get('node')}: {item.get('status')} "
                f"{str(item.get('report'))[:300]} {str(item.get('stderr'))[-300:]}")


def _counts(history: list[dict[str, Any]]) -> dict[str, Any]:
    by_type: dict[str, int] = {}
    by_f: dict[str, dict[str, int]] = {}
    for op in history:
        if op["process"] == "nemesis":
            continue
        by_type[op["type"]] = by_type.get(op["type"], 0) + 1
        if op["type"] != "invoke":
            d = by_f.setdefault(op["f"], {OK: 0, FAIL: 0, INFO: 0})
            d[op["type"]] += 1
    return {"by_type": by_type, "by_f": by_f}


def execute(opts: Options) -> int:
    """Run, check, report. Returns the exit code."""
    from ordojepsen import report

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        stream=sys.stderr)
    os.makedirs(opts.out, exist_ok=True)
    budget = opts.time_limit + 2 * opts.recovery_s + 120
    run = Run(opts)

    def watchdog() -> None:
        time.sleep(budget)
        sys.stderr.write(f"ordojepsen: run exceeded its {budget:.0f}s budget; aborting\n")
        if run.cluster is not None:
            run.cluster.kill_all_now()
        os._exit(EXIT_CODES[UNKNOWN])

    threading.Thread(target=watchdog, daemon=True, name="watchdog").start()
    started = time.time()
    error: str | None = None
    extra: dict[str, Any] = {}
    try:
        extra = asyncio.run(run.main())
    except Exception:  # noqa: BLE001 - a crashed run is "unknown", with its traceback
        error = traceback.format_exc()
        sys.stderr.write(error)
        if run.cluster is not None:
            run.cluster.kill_all_now()
    ops = run.history.ops
    check: dict[str, Any]
    try:
        check = run.workload.check(ops)
    except Exception:  # noqa: BLE001
        check = {"valid": UNKNOWN, "anomaly_types": [], "anomalies": {},
                 "notes": ["checker crashed:\n" + traceback.format_exc()]}
    if error is not None and check["valid"] != INVALID:
        check["valid"] = UNKNOWN
        check.setdefault("notes", []).append("the run crashed; its partial history was checked")
    _add_verify_anomalies(check, extra.get("determinism", {}).get("verify", {}))
    verdict = check["valid"]
    recovery = extra.get("recovery", {})
    if error is None and not recovery.get("caught_up"):
        verdict = merge_verdicts(verdict, UNKNOWN) if verdict != INVALID else verdict
        run.notes.append("the cluster did not fully recover after healing")
    process_exits = []
    if run.cluster is not None:
        for node in run.cluster.nodes.values():
            process_exits.extend(node.exits)
    results: dict[str, Any] = {
        "verdict": verdict,
        "valid": verdict == VALID,
        "workload": opts.workload,
        "nemesis": opts.nemesis,
        "seed": opts.seed,
        "inject_bug": opts.inject_bug or None,
        "options": asdict(opts),
        "git": git_info(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 3),
        "workload_window_s": [0.0, round(run.workload_t1 - run.workload_t0, 3)],
        "counts": _counts(ops),
        "checker": check,
        "anomaly_types": check.get("anomaly_types", []),
        "faults": [f.to_json() for f in run.schedule],
        "process_exits": process_exits,
        "events": run.events,
        "notes": run.notes,
        "workload_info": run.workload.describe(),
        "error": error,
        **{k: v for k, v in extra.items()},
    }
    if run.cluster is not None:
        results["command_lines"] = run.cluster.command_lines()
    report.write(opts.out, results, ops, run)
    if not opts.keep_data and verdict == VALID:
        shutil.rmtree(os.path.join(opts.out, "data"), ignore_errors=True)
    summary = (f"ordojepsen: {opts.workload} nemesis={','.join(opts.nemesis) or 'none'} "
               f"seed={opts.seed}: {verdict.upper()} "
               f"({sum(1 for o in ops if o['type'] == OK)} ok, "
               f"{sum(1 for o in ops if o['type'] == INFO and o['process'] != 'nemesis')} info, "
               f"{sum(1 for o in ops if o['type'] == FAIL)} fail)"
               + (f" anomalies: {', '.join(results['anomaly_types'])}"
                  if results["anomaly_types"] else "")
               + f" -> {opts.out}")
    print(summary, flush=True)
    if verdict == INVALID:
        for kind, items in check.get("anomalies", {}).items():
            print(f"  {kind}: {len(items)} shown, e.g. {str(items[0])[:400]}", flush=True)
    if process_exits:
        print(f"  {len(process_exits)} unexpected process exits, see results.json", flush=True)
    return EXIT_CODES[verdict]
