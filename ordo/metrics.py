"""Prometheus metrics. Names end in their unit; no label carries a key."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

SUBMITTED = Counter("ordo_transactions_submitted_total", "Transactions accepted for sequencing")
COMMITTED = Counter("ordo_transactions_committed_total",
                    "Transactions applied by every participant (outcome delivered)")
ABORTED = Counter("ordo_transactions_aborted_total",
                  "Transactions that aborted deterministically at apply time", ["reason"])
REJECTED = Counter("ordo_requests_rejected_total", "Requests refused at the edge", ["code"])
BATCH_TXNS = Histogram("ordo_batch_transactions", "Transactions per sequencer log batch",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
LOG_APPEND_SECONDS = Histogram("ordo_log_append_seconds",
                               "Time to make one batch durable (write and fsync)")
COMMIT_SECONDS = Histogram("ordo_commit_latency_seconds",
                           "Submit to answer, for transactions answered with their outcome")
TAIL = Gauge("ordo_log_tail_position", "Newest durable position of the sequencer log")
SUBMIT_QUEUE = Gauge("ordo_submit_queue_depth", "Transactions waiting to be sequenced")
SHARD_LAG = Gauge("ordo_shard_lag_positions", "How far a shard's applied position trails the "
                  "tail, as the coordinator sees it", ["shard"])
APPLIED = Gauge("ordo_shard_applied_position", "Newest position applied and durable",
                ["shard"])
APPLY_QUEUE = Gauge("ordo_shard_apply_queue_depth", "Log entries received, not yet applied",
                    ["shard"])
APPLIED_TXNS = Counter("ordo_shard_transactions_applied_total",
                       "Transactions this shard took part in and applied")
FLUSH_SECONDS = Histogram("ordo_shard_flush_seconds", "Time to write one applied batch")
SYNC_SECONDS = Histogram("ordo_shard_sync_seconds",
                         "Time to fsync the applied state (one sync covers every flush before it)")


def serve(port: int, host: str = "127.0.0.1") -> None:
    start_http_server(port, addr=host)
