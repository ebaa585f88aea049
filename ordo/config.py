"""Service settings: one table per role, merged from defaults, a TOML file,
environment variables and flags (in that order, later wins).

A setting ``retain_seconds`` is the flag ``--retain-seconds``, the TOML key
``retain_seconds`` (top level or under ``[coordinator]`` / ``[shard]``) and
the environment variable ``ORDO_RETAIN_SECONDS``.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from dataclasses import dataclass
from typing import Any

from ordo.core import limits as L

DEFAULT_ADDRESS = "127.0.0.1:7400"


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    kind: type = str
    repeated: bool = False
    choices: tuple[str, ...] | None = None


_COMMON = [
    Setting("config", None, "TOML config file; environment and flags override it"),
    Setting("retain_positions", 1_000_000, "keep at least this many positions of history "
            "(0: no bound)", int),
    Setting("retain_seconds", 86400.0, "keep at least this many seconds of history "
            "(0: no bound)", float),
    Setting("compact_interval_s", 10.0, "seconds between compactions", float),
    Setting("tls_cert", None, "this service's TLS certificate (PEM)"),
    Setting("tls_key", None, "this service's TLS private key (PEM)"),
    Setting("tls_ca", None, "the CA that signs every service's certificate (PEM)"),
    Setting("tls_client_auth", False, "require client certificates (mutual TLS)", bool),
    Setting("tokens_file", None, "TOML file of [tokens] token = role; callers need one"),
    Setting("token", None, "this service's own bearer token, for calls to other services"),
    Setting("insecure_listen_any", False, "allow a non-loopback address without TLS", bool),
    Setting("bus_port_offset", 0, "serve the bus (the internal streams, and clients' "
            "transaction and read streams) at each service's port plus this offset; the same "
            "in the whole cluster (0: everything over gRPC)", int),
    Setting("metrics_port", 0, "serve Prometheus metrics on this port (0: off)", int),
    Setting("log_level", "info", "debug, info, warning or error"),
    Setting("log_format", "text", "text or json", choices=("text", "json")),
    Setting("trace_dir", None, "append stage timestamps of sampled transactions to "
            "DIR/<pid>.trace, for finding where latency goes (python -m bench.trace DIR); "
            "for measuring, not for production"),
    Setting("trace_sample", 64, "with --trace-dir: trace one request id in this many", int),
]

ROLES: dict[str, list[Setting]] = {
    "coordinator": [
        Setting("listen", DEFAULT_ADDRESS, "address to serve on"),
        Setting("data", "data/coordinator", "data directory"),
        Setting("shard", [], "a shard's address; repeat, in shard order", repeated=True),
        Setting("batch_txns_max", L.BATCH_TXNS_MAX, "transactions per log batch", int),
        Setting("batch_delay_ms", L.BATCH_DELAY_MS, "linger after a batch's first "
                "transaction", float),
        Setting("inject_bug", "", "break ordo on purpose (fault-runner self-test only)",
                choices=("", "ack-before-fsync")),
        *_COMMON,
    ],
    "shard": [
        Setting("id", 0, "this shard's id (0-based)", int),
        Setting("listen", "127.0.0.1:7401", "address to serve on"),
        Setting("data", "data/shard-0", "data directory"),
        Setting("coordinator", DEFAULT_ADDRESS, "the coordinator's address"),
        Setting("peer", [], "every shard's address (this one too); repeat, in shard order",
                repeated=True),
        Setting("sync", True, "fsync applied batches (the log is durable either way)", bool),
        Setting("host", [], "also run shard ID in this process, at its --peer address, with "
                "its data in DIR: ID=DIR; repeat", repeated=True),
        Setting("inject_bug", "", "break ordo on purpose (fault-runner self-test only)",
                choices=("", "skip-writes", "stale-read")),
        *_COMMON,
    ],
}


def add_flags(parser: argparse.ArgumentParser, role: str) -> None:
    for s in ROLES[role]:
        flag = "--" + s.name.replace("_", "-")
        if s.kind is bool:
            parser.add_argument(flag, dest=s.name, default=None,
                                action=argparse.BooleanOptionalAction, help=s.help)
        elif s.repeated:
            parser.add_argument(flag, dest=s.name, action="append", default=None, help=s.help)
        else:
            parser.add_argument(flag, dest=s.name, type=s.kind, default=None,
                                choices=s.choices, help=s.help)


def _parse_env(setting: Setting, raw: str) -> Any:
    if setting.repeated:
        return [part for part in raw.split(",") if part]
    if setting.kind is bool:
        return raw.lower() in ("1", "true", "yes", "on")
    return setting.kind(raw)


def resolve(role: str, flags: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """The effective settings of a role: defaults < TOML file < environment < flags."""
    env = dict(os.environ) if env is None else env
    settings = ROLES[role]
    path = flags.get("config") or env.get("ORDO_CONFIG")
    file_values: dict[str, Any] = {}
    if path:
        with open(path, "rb") as f:
            data = tomllib.load(f)
        file_values = {**{k: v for k, v in data.items() if not isinstance(v, dict)},
                       **data.get(role, {})}
        unknown = set(file_values) - {s.name for s in settings}
        if unknown:
            raise SystemExit(f"unknown {role} settings in {path}: {sorted(unknown)}")
    out: dict[str, Any] = {}
    for s in settings:
        value = s.default
        if s.name in file_values:
            value = file_values[s.name]
        env_name = "ORDO_" + s.name.upper()
        if env_name in env:
            value = _parse_env(s, env[env_name])
        if flags.get(s.name) is not None:
            value = flags[s.name]
        out[s.name] = list(value) if s.repeated else value
    out["config"] = path
    return out


def to_toml(role: str, values: dict[str, Any]) -> str:
    """The settings as a TOML table that ``resolve`` reads back the same."""
    lines = [f"[{role}]"]
    for s in ROLES[role]:
        value = values.get(s.name)
        if s.name == "config" or value is None:
            continue
        if s.name == "token":
            value = "<redacted>"
        lines.append(f"{s.name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
