"""The results folder: results.json, the history (JSON Lines and EDN), plots, index.html.

::

    OUT/results.json     verdict, counts, anomalies with their ops, faults, seed, git commit
    OUT/history.jsonl    one op per line, Jepsen's fields
    OUT/history.edn      the same, as EDN maps (for Jepsen/Elle tooling)
    OUT/latency.png      latency of each op over time, ok/fail/info coloured, faults shaded
    OUT/throughput.png   completions per second by type, faults shaded
    OUT/index.html       all of it on one page
    OUT/logs/*.log       each process's log (all its restarts appended)
    OUT/data/            the data directories (kept unless the run was valid)
"""

from __future__ import annotations

import html
import json
import os
from typing import Any

from ordojepsen.history import INFO, INVOKE, NEMESIS, Op, write_edn, write_jsonl

COLORS = {"ok": "#2b8a3e", "fail": "#c92a2a", "info": "#f08c00"}
FAULT_COLORS = {"kill": "#e03131", "pause": "#1971c2", "partition": "#7048e8",
                "power-loss": "#212529", "delay": "#0ca678", "lag": "#e8590c"}


def write(out: str, results: dict[str, Any], ops: list[Op], run: Any = None) -> None:
    os.makedirs(out, exist_ok=True)
    write_jsonl(os.path.join(out, "history.jsonl"), ops)
    write_edn(os.path.join(out, "history.edn"), ops)
    try:
        plots = plot(out, ops, results.get("faults", []))
    except Exception as error:  # noqa: BLE001 - plots are a convenience
        plots = []
        results.setdefault("notes", []).append(f"plots failed: {error!r}")
    results["files"] = {
        "history": "history.jsonl", "history_edn": "history.edn", "plots": plots,
        "logs": sorted(os.path.join("logs", f) for f in os.listdir(os.path.join(out, "logs")))
        if os.path.isdir(os.path.join(out, "logs")) else [],
    }
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=2, default=repr)
    with open(os.path.join(out, "index.html"), "w") as f:
        f.write(render_html(results))


def _latencies(ops: list[Op]) -> list[tuple[float, float, str, str]]:
    """(invoke time s, latency ms, completion type, f) per client op."""
    open_: dict[Any, Op] = {}
    out = []
    for op in ops:
        if op["process"] == NEMESIS:
            continue
        if op["type"] == INVOKE:
            open_[op["process"]] = op
        else:
            inv = open_.pop(op["process"], None)
            if inv is not None:
                out.append((inv["time"] / 1e9, (op["time"] - inv["time"]) / 1e6, op["type"],
                            op["f"]))
    for inv in open_.values():
        out.append((inv["time"] / 1e9, float("nan"), INFO, inv["f"]))
    return out


def _shade(ax: Any, faults: list[dict[str, Any]]) -> None:
    seen: set[str] = set()
    kinds = sorted({f["kind"] for f in faults})
    for f in faults:
        start = f.get("started_at") if f.get("started_at") is not None else f["start"]
        end = f.get("ended_at") if f.get("ended_at") is not None else f["end"]
        lane = kinds.index(f["kind"])
        label = f["kind"] if f["kind"] not in seen else None
        seen.add(f["kind"])
        ax.axvspan(start, end, ymin=lane / len(kinds), ymax=(lane + 1) / len(kinds),
                   color=FAULT_COLORS.get(f["kind"], "#868e96"), alpha=0.15, label=label)


def plot(out: str, ops: list[Op], faults: list[dict[str, Any]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lat = _latencies(ops)
    files = []
    fig, ax = plt.subplots(figsize=(11, 4.5))
    _shade(ax, faults)
    for kind in ("ok", "fail", "info"):
        pts = [(t, ms) for t, ms, k, _ in lat if k == kind and ms == ms]
        if pts:
            ax.scatter([p[0] for p in pts], [max(p[1], 0.01) for p in pts], s=6,
                       c=COLORS[kind], label=f"{kind} ({len(pts)})", alpha=0.7, linewidths=0)
    ax.set_yscale("log")
    ax.set_xlabel("time since workload start (s)")
    ax.set_ylabel("latency (ms)")
    ax.set_title("latency of each op, by completion type; faults shaded")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "latency.png"), dpi=100)
    plt.close(fig)
    files.append("latency.png")

    fig, ax = plt.subplots(figsize=(11, 4.5))
    _shade(ax, faults)
    completions = [op for op in ops if op["process"] != NEMESIS and op["type"] != INVOKE]
    if completions:
        end = max(op["time"] for op in completions) / 1e9
        buckets = int(end / 0.5) + 1
        for kind in ("ok", "fail", "info"):
            counts = [0] * buckets
            for op in completions:
                if op["type"] == kind:
                    counts[int(op["time"] / 1e9 / 0.5)] += 1
            ax.plot([i * 0.5 for i in range(buckets)], [c * 2 for c in counts],
                    color=COLORS[kind], label=kind, drawstyle="steps-post")
    ax.set_xlabel("time since workload start (s)")
    ax.set_ylabel("completions per second (0.5 s buckets)")
    ax.set_title("throughput by completion type; faults shaded")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "throughput.png"), dpi=100)
    plt.close(fig)
    files.append("throughput.png")
    return files


def _pre(obj: Any, limit: int = 6000) -> str:
    text = json.dumps(obj, indent=2, default=repr)
    if len(text) > limit:
        text = text[:limit] + "\n..."
    return f"<pre>{html.escape(text)}</pre>"


def render_html(r: dict[str, Any]) -> str:
    verdict = r.get("verdict", "unknown")
    color = {"valid": "#2b8a3e", "invalid": "#c92a2a"}.get(verdict, "#f08c00")
    e = html.escape
    rows = []
    for f, d in sorted(r.get("counts", {}).get("by_f", {}).items()):
        rows.append(f"<tr><td>{e(f)}</td><td>{d.get('ok', 0)}</td><td>{d.get('fail', 0)}</td>"
                    f"<td>{d.get('info', 0)}</td></tr>")
    faults = []
    for f in r.get("faults", []):
        what = ", ".join(f.get("nodes") or []) or f.get("shape", "")
        faults.append(
            f"<tr><td>{f['id']}</td><td>{e(f['kind'])}</td><td>{f['start']}</td><td>{f['end']}</td>"
            f"<td>{f.get('started_at')}</td><td>{f.get('ended_at')}</td><td>{e(what)}</td></tr>")
    anomalies = []
    for kind, items in r.get("checker", {}).get("anomalies", {}).items():
        count = r.get("checker", {}).get("anomaly_counts", {}).get(kind, len(items))
        anomalies.append(f"<h3>{e(kind)} ({count})</h3>{_pre(items[:3])}")
    plots = "".join(f'<p><img src="{e(p)}" style="max-width:100%"></p>'
                    for p in r.get("files", {}).get("plots", []))
    logs = " ".join(f'<a href="{e(p)}">{e(os.path.basename(p))}</a>'
                    for p in r.get("files", {}).get("logs", []))
    exits = r.get("process_exits", [])
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>ordo jepsen: {e(r.get('workload', ''))}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1200px; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 2px 8px; }}
pre {{ background: #f6f6f6; padding: 8px; overflow-x: auto; font-size: 12px; }}
</style></head><body>
<h1>ordo {e(r.get('workload', ''))} &mdash;
<span style="color:{color}">{e(verdict.upper())}</span></h1>
<p>nemesis: <b>{e(','.join(r.get('nemesis') or []) or 'none')}</b>, seed {e(str(r.get('seed')))},
bug: {e(str(r.get('inject_bug')))}, commit {e(str((r.get('git') or {}).get('commit')))},
{e(str(r.get('duration_s')))} s.
Files: <a href="results.json">results.json</a> <a href="history.jsonl">history.jsonl</a>
<a href="history.edn">history.edn</a> {logs}</p>
<h2>Anomalies</h2>{''.join(anomalies) or '<p>none</p>'}
<p>notes: {e('; '.join(r.get('checker', {}).get('notes', []) + r.get('notes', [])) or 'none')}</p>
<h2>Plots</h2>{plots}
<h2>Operations</h2>
<table><tr><th>f</th><th>ok</th><th>fail</th><th>info</th></tr>{''.join(rows)}</table>
<h2>Faults</h2>
<table><tr><th>#</th><th>kind</th><th>start</th><th>end</th><th>started at</th><th>ended at</th>
<th>targets</th></tr>{''.join(faults)}</table>
<h2>Unexpected process exits</h2>{_pre(exits) if exits else '<p>none</p>'}
<h2>Recovery and determinism</h2>{_pre({'recovery': r.get('recovery'),
                                        'determinism': r.get('determinism')})}
<h2>Checker statistics</h2>{_pre(r.get('checker', {}).get('stats'))}
</body></html>
"""
