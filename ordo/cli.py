"""The ``ordo`` command: services (coordinator, shard, dev) and a terminal client."""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from ordo.config import DEFAULT_ADDRESS

# ---------------------------------------------------------------- services


def _security(values: dict[str, Any]) -> dict[str, Any]:
    from ordo.security import TLSConfig, load_tokens

    tls = None
    if values["tls_cert"] or values["tls_ca"]:
        tls = TLSConfig(ca=values["tls_ca"], cert=values["tls_cert"], key=values["tls_key"],
                        client_auth=bool(values["tls_client_auth"]))
    return {"tls": tls, "tokens": load_tokens(values["tokens_file"]),
            "token": values["token"], "insecure_listen_any": bool(values["insecure_listen_any"]),
            "bus_port_offset": int(values["bus_port_offset"])}


def _start_common(values: dict[str, Any], role: str) -> None:
    from ordo import metrics, serve

    if values["trace_dir"] and values["trace_sample"] < 1:
        print(f"ordo {role}: --trace-sample is at least 1", file=sys.stderr)
        raise SystemExit(2)
    serve.setup_logging(values["log_level"], values["log_format"])
    os.makedirs(values["data"], exist_ok=True)
    if values["metrics_port"]:
        metrics.serve(int(values["metrics_port"]), values["listen"].rsplit(":", 1)[0].strip("[]"))
    if values["trace_dir"]:
        from ordo import trace

        trace.start(values["trace_dir"], values["trace_sample"])


def cmd_coordinator(args: argparse.Namespace) -> int:
    from coordinator.service import Coordinator, CoordinatorConfig
    from ordo import config as C
    from ordo import serve

    v = C.resolve("coordinator", vars(args))
    if not v["shard"]:
        print("ordo coordinator: give each shard's address with --shard", file=sys.stderr)
        return 2
    _start_common(v, "coordinator")
    cfg = CoordinatorConfig(
        listen=v["listen"], data_dir=v["data"], shards=v["shard"],
        batch_txns_max=v["batch_txns_max"], batch_delay_ms=v["batch_delay_ms"],
        inject_bug=v["inject_bug"], retain_positions=v["retain_positions"],
        retain_seconds=v["retain_seconds"], compact_interval_s=v["compact_interval_s"],
        **_security(v),
    )
    return serve.run(lambda: Coordinator(cfg))


def cmd_shard(args: argparse.Namespace) -> int:
    from ordo import config as C
    from ordo import serve
    from shard.service import Shard, ShardConfig, ShardGroup

    v = C.resolve("shard", vars(args))
    if not v["peer"]:
        print("ordo shard: give every shard's address, in shard order, with --peer",
              file=sys.stderr)
        return 2
    hosted: dict[int, str] = {v["id"]: v["data"]}
    for spec in v["host"]:
        shard_id, sep, data = spec.partition("=")
        if not sep or not shard_id.isdigit() or not data:
            print(f"ordo shard: --host takes ID=DIR, not {spec!r}", file=sys.stderr)
            return 2
        if int(shard_id) in hosted or int(shard_id) >= len(v["peer"]):
            print(f"ordo shard: --host {spec}: no such shard, or hosted twice", file=sys.stderr)
            return 2
        hosted[int(shard_id)] = data
    _start_common(v, "shard")
    security = _security(v)
    configs = [ShardConfig(
        shard=shard_id, listen=v["listen"] if shard_id == v["id"] else v["peer"][shard_id],
        data_dir=data, coordinator=v["coordinator"],
        peers=v["peer"], sync=bool(v["sync"]), inject_bug=v["inject_bug"],
        retain_positions=v["retain_positions"], retain_seconds=v["retain_seconds"],
        compact_interval_s=v["compact_interval_s"], **security,
    ) for shard_id, data in sorted(hosted.items())]
    if len(configs) == 1:
        return serve.run(lambda: Shard(configs[0]))
    for config in configs:
        os.makedirs(config.data_dir, exist_ok=True)
    return serve.run(lambda: ShardGroup(configs))


def cmd_config_show(args: argparse.Namespace) -> int:
    from ordo import config as C

    print(C.to_toml(args.role, C.resolve(args.role, vars(args))), end="")
    return 0


def _set_pdeathsig() -> None:
    """Children of `ordo dev` die with it, even if it is killed with SIGKILL."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:
        pass


def dev_commands(
    shards: int, data: str, host: str, port: int, extra: list[str] | None = None,
    shards_per_process: int = 1, bus_port_offset: int | None = None,
) -> list[list[str]]:
    """The command lines of a local cluster: a coordinator and N shards.

    The coordinator serves gRPC on ``port`` and shard i on ``port + 1 + i``;
    each also serves the bus (internal streams, clients' streams),
    ``bus_port_offset`` above (by default the next N + 1 ports; 0: no bus). ``extra``
    flags go to every service (retention settings, say). With
    ``shards_per_process`` above 1, each shard process hosts that many
    consecutive shards (the first one's command line names the others).
    """
    if bus_port_offset is None:
        bus_port_offset = dev_bus_port_offset(shards)
    extra = ["--bus-port-offset", str(bus_port_offset)] + (extra or [])
    exe = [sys.executable, "-m", "ordo"]
    coordinator = f"{host}:{port}"
    peers = [f"{host}:{port + 1 + i}" for i in range(shards)]
    cmds = [exe + ["coordinator", "--listen", coordinator,
                   "--data", os.path.join(data, "coordinator")]
            + [a for p in peers for a in ("--shard", p)] + extra]
    per = max(1, shards_per_process)
    for i in range(0, shards, per):
        hosted = [a for j in range(i + 1, min(shards, i + per))
                  for a in ("--host", f"{j}={os.path.join(data, f'shard-{j}')}")]
        cmds.append(exe + ["shard", "--id", str(i), "--listen", peers[i],
                           "--data", os.path.join(data, f"shard-{i}"),
                           "--coordinator", coordinator]
                    + [a for p in peers for a in ("--peer", p)] + hosted + extra)
    return cmds


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``port`` can be listened on right now."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def dev_bus_port_offset(shards: int) -> int:
    """The bus port offset of a local cluster: its gRPC ports, then as many bus ports."""
    return shards + 1


def wait_serving(addresses: list[str], timeout_s: float, tls: Any = None) -> bool:
    """True once every address answers SERVING to a health check."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout_s
    for address in addresses:
        channel = (grpc.secure_channel(address, tls.channel_credentials())
                   if tls is not None else grpc.insecure_channel(address))
        with channel as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while True:
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
    return True


def _dev_security(args: argparse.Namespace) -> tuple[list[str], Any, str | None]:
    """Flags for every service, the client TLS config, and the admin token."""
    extra: list[str] = []
    tls = token = None
    if args.tls:
        from ordo.security import make_dev_certificates

        tls = make_dev_certificates(os.path.join(args.data, "tls"))
        extra += ["--tls-cert", tls.cert, "--tls-key", tls.key, "--tls-ca", tls.ca,
                  "--tls-client-auth"]
        print(f"ordo dev: TLS on; CA {tls.ca}, client certificate {tls.cert}, key {tls.key}",
              file=sys.stderr)
    if args.auth:
        import secrets

        tokens = {role: secrets.token_hex(16) for role in ("admin", "write", "read")}
        path = os.path.join(args.data, "tokens.toml")
        with open(path, "w") as f:
            f.write("[tokens]\n" + "".join(f'"{t}" = "{r}"\n' for r, t in tokens.items()))
        os.chmod(path, 0o600)
        token = tokens["admin"]
        extra += ["--tokens-file", path, "--token", token]
        print(f"ordo dev: tokens in {path}; admin token {token}", file=sys.stderr)
    return extra, tls, token


def cmd_dev(args: argparse.Namespace) -> int:
    os.makedirs(args.data, exist_ok=True)
    extra, tls, token = _dev_security(args)
    if args.shards_per_process < 1:
        print("ordo dev: --shards-per-process is 1 or more", file=sys.stderr)
        return 2
    cmds = dev_commands(args.shards, args.data, args.host, args.port, extra,
                        args.shards_per_process, args.bus_port_offset)
    procs = [subprocess.Popen(c, preexec_fn=_set_pdeathsig) for c in cmds]
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    addresses = [f"{args.host}:{args.port + i}" for i in range(args.shards + 1)]
    if wait_serving(addresses, 60.0, tls):
        print(f"ordo ready: {addresses[0]}", flush=True)
    else:
        print("ordo dev: services did not become ready", file=sys.stderr, flush=True)
        stopping = True
    code = 0
    while not stopping:
        for p in procs:
            if p.poll() is not None:
                print(f"ordo dev: {' '.join(p.args[3:5])} exited with {p.returncode}",
                      file=sys.stderr, flush=True)
                stopping, code = True, 1
        time.sleep(0.2)
    # Shards first, so the coordinator is last to go and they drain against it.
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            code = 1
    return code


# ------------------------------------------------------------------ client


def _at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer, ``low`` or more."""

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if number < low:
            raise argparse.ArgumentTypeError(f"{number} is less than {low}")
        return number

    return parse


class UsageError(Exception):
    """Input a command cannot use: printed as ``ordo <command>: <message>``
    with exit status 2, and nothing is sent."""


def _parse_value(text: str, kind: str) -> Any:
    try:
        if kind == "int":
            return int(text)
        if kind == "bytes":
            return text.encode()
        if kind == "json":
            return _json_to_value(json.loads(text))
    except ValueError as error:  # json.JSONDecodeError is a ValueError too
        raise UsageError(f"not a value of type {kind}: {text!r} ({error})") from None
    return text


def _json_to_value(obj: Any) -> Any:
    """JSON to an ordo value: numbers are ints, strings text, {"bytes": b64} bytes."""
    if isinstance(obj, dict) and set(obj) == {"bytes"}:
        try:
            return base64.b64decode(obj["bytes"], validate=True)
        except (TypeError, ValueError):
            raise ValueError(f"not base64: {obj['bytes']!r}") from None
    if isinstance(obj, list):
        return [_json_to_value(x) for x in obj]
    if isinstance(obj, bool) or not isinstance(obj, (int, str)):
        raise ValueError(f"not an ordo value: {json.dumps(obj)} (an integer, a string, "
                         '{"bytes": base64} or a list of them)')
    return obj


def _value_to_json(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return {"bytes": base64.b64encode(value).decode(), "text": value.decode()}
        except UnicodeDecodeError:
            return {"bytes": base64.b64encode(value).decode()}
    if isinstance(value, list):
        return [_value_to_json(v) for v in value]
    return value


def _key_out(key: Any) -> Any:
    return key.decode("utf-8", "backslashreplace") if isinstance(key, bytes) else key


_TXN_FIELDS = ("when", "then", "otherwise")
_TARGETS = ("value", "int_value", "version", "exists")
_OPERATORS = {"=": "__eq__", "==": "__eq__", "!=": "__ne__", "<": "__lt__", "<=": "__le__",
              ">": "__gt__", ">=": "__ge__"}
# Each op's fields beside "op" and "key": (required, optional).
_OP_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "put": (("value",), ()), "add": (("value",), ()), "append": (("value",), ()),
    "get": ((), ()), "delete": ((), ()), "range": ((), ("limit",)),
}


def _txn_from_json(text: str) -> dict[str, Any]:
    """``ordo txn``'s JSON document to ``txn()`` arguments; a UsageError
    naming the part at fault for anything else (a misspelt field included:
    a transaction must not run without the part its author meant)."""
    import ordo

    try:
        doc = json.loads(text)
    except ValueError as error:
        raise UsageError(f"not JSON: {error}") from None

    def fields(obj: Any, where: str, required: tuple[str, ...],
               optional: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise UsageError(f"{where}: expected an object, got {json.dumps(obj)}")
        unknown = sorted(set(obj) - set(required) - set(optional))
        if unknown:
            allowed = ", ".join(required + optional)
            raise UsageError(f"{where}: unknown field {unknown[0]!r} (allowed: {allowed})")
        for name in required:
            if name not in obj:
                raise UsageError(f"{where}: missing {name!r}")
        if "key" in obj and not isinstance(obj["key"], str):
            raise UsageError(f"{where}: the key must be a string")
        return obj

    def items(name: str) -> list[Any]:
        got = doc.get(name, [])
        if not isinstance(got, list):
            raise UsageError(f"{name!r} must be a list")
        return got

    def value(obj: dict[str, Any], where: str) -> Any:
        try:
            return _json_to_value(obj["value"])
        except ValueError as error:
            raise UsageError(f"{where}: {error}") from None

    def condition(c: Any, where: str) -> Any:
        c = fields(c, where, ("key",), ("target", "op", "value"))
        target = c.get("target", "value")
        if not isinstance(target, str) or target not in _TARGETS:
            raise UsageError(f"{where}: unknown target {target!r} (one of {', '.join(_TARGETS)})")
        operator = c.get("op", "=")
        if not isinstance(operator, str) or operator not in _OPERATORS:
            raise UsageError(f"{where}: unknown operator {operator!r} "
                             f"(one of {' '.join(_OPERATORS)})")
        operand = getattr(ordo, target)(c["key"])
        if target == "exists":
            if not isinstance(c.get("value", True), bool) or operator not in ("=", "==", "!="):
                raise UsageError(f"{where}: exists compares with = or != to true or false")
            return getattr(operand, _OPERATORS[operator])(c.get("value", True))
        if "value" not in c:
            raise UsageError(f"{where}: missing 'value'")
        try:
            return getattr(operand, _OPERATORS[operator])(value(c, where))
        except TypeError as error:  # a list of lists, say
            raise UsageError(f"{where}: {error}") from None

    def op(o: Any, where: str) -> Any:
        kinds = ", ".join(_OP_FIELDS)
        if isinstance(o, dict) and "op" not in o:
            raise UsageError(f"{where}: missing 'op' (one of {kinds})")
        kind = o["op"] if isinstance(o, dict) else None
        if isinstance(o, dict) and (not isinstance(kind, str) or kind not in _OP_FIELDS):
            raise UsageError(f"{where}: unknown op {kind!r} (one of {kinds})")
        required, optional = _OP_FIELDS[kind] if isinstance(kind, str) else ((), ())
        o = fields(o, where, ("op", "key", *required), optional)
        if kind == "range":
            limit = o.get("limit", 0)
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise UsageError(f"{where}: limit must be an integer >= 0")
            return ordo.range(o["key"], limit)
        if kind in ("get", "delete"):
            return getattr(ordo, kind)(o["key"])
        try:
            return getattr(ordo, kind)(o["key"], value(o, where))
        except TypeError as error:  # add of a string, append of a list
            raise UsageError(f"{where}: {error}") from None

    fields(doc, "the transaction", (), _TXN_FIELDS)
    return {
        "when": [condition(c, f"when[{i}]") for i, c in enumerate(items("when"))],
        "then": [op(o, f"then[{i}]") for i, o in enumerate(items("then"))],
        "otherwise": [op(o, f"otherwise[{i}]") for i, o in enumerate(items("otherwise"))],
    }


def _print_result(result: Any) -> None:
    out: dict[str, Any] = {"position": result.position, "request_id": result.request_id}
    if result.applied:
        out["succeeded"] = result.succeeded
        if result.values:
            out["values"] = {_key_out(k): _value_to_json(v) for k, v in result.values.items()}
        if result.ranges:
            out["ranges"] = {
                _key_out(p): [{"key": _key_out(i.key), "value": _value_to_json(i.value),
                               "version": i.version} for i in items]
                for p, items in result.ranges.items()
            }
        if result.aborted:
            out["aborted"] = {"reason": result.abort_reason, "message": result.abort_message}
    else:
        out["applied"] = False
    print(json.dumps(out))


def _client(args: argparse.Namespace) -> Any:
    import ordo
    from ordo.security import TLSConfig

    tls = None
    if args.tls_ca or args.tls_cert:
        tls = TLSConfig(ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key)
    return ordo.Client(args.address, timeout=args.timeout, token=args.token, tls=tls)


def cmd_put(args: argparse.Namespace) -> int:
    value = _parse_value(args.value, args.type)
    with _client(args) as db:
        _print_result(db.put(args.key, value))
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    with _client(args) as db:
        item = db.get_item(args.key, min_position=args.min_position, at_position=args.at)
    print(json.dumps({"key": args.key, "value": _value_to_json(item.value),
                      "version": item.version}))
    return 0 if item.value is not None else 1


def cmd_txn(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.json == "-" else args.json
    spec = _txn_from_json(text)
    with _client(args) as db:
        _print_result(db.txn(**spec, wait=args.wait))
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    with _client(args) as db:
        versions = db.history(args.key, from_position=args.from_position, limit=args.limit)
    for item in versions:
        print(json.dumps({"position": item.version, "value": _value_to_json(item.value),
                          "deleted": item.value is None}))
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    with _client(args) as db:
        seen = 0
        for event in db.watch(prefix=args.prefix, from_position=args.from_position):
            print(json.dumps({"position": event.position, "key": _key_out(event.key),
                              "value": _value_to_json(event.value), "deleted": event.deleted,
                              "request_id": event.request_id}), flush=True)
            seen += 1
            if args.count and seen >= args.count:
                break
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from shard.verify import verify

    report = verify(args.data)
    print(json.dumps({"shard": report.shard, "applied": report.applied,
                      "horizon": report.horizon, "replayed": report.replayed,
                      "keys": report.keys, "digest": report.digest.hex(), "ok": report.ok,
                      "mismatches": report.mismatches}))
    return 0 if report.ok else 1


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as db:
        status = db.status()
    print(f"tail {status.tail}")
    print(f"{'shard':>5}  {'address':<22} {'applied':>10} {'lag':>8} {'oldest':>8}  digest")
    for s in status.shards:
        if s.reachable:
            print(f"{s.shard:>5}  {s.address:<22} {s.applied_position:>10} {s.lag:>8} "
                  f"{s.oldest_position:>8}  {s.digest.hex()}")
        else:
            print(f"{s.shard:>5}  {s.address:<22} {'down':>10} {'-':>8}  ({s.error})")
    return 0


# -------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ordo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    from ordo import config as C

    p = sub.add_parser("coordinator", help="run the coordinator (sequencer log)")
    C.add_flags(p, "coordinator")
    p.set_defaults(func=cmd_coordinator)

    p = sub.add_parser("shard", help="run one shard")
    C.add_flags(p, "shard")
    p.set_defaults(func=cmd_shard)

    p = sub.add_parser("config", help="print a service's effective settings")
    p.add_argument("action", choices=["show"])
    p.add_argument("role", choices=sorted(C.ROLES))
    p.add_argument("--config", help="TOML config file")
    p.set_defaults(func=cmd_config_show)

    p = sub.add_parser("dev", help="run a local cluster: a coordinator and N shards")
    p.add_argument("--shards", type=int, default=3)
    p.add_argument("--data", default="data")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7400)
    p.add_argument("--shards-per-process", type=int, default=1,
                   help="shards hosted by each shard process (they read each other's "
                        "inputs directly; on a small machine, one process per core)")
    p.add_argument("--tls", action="store_true",
                   help="generate a throwaway CA and certificates; mutual TLS on every link")
    p.add_argument("--auth", action="store_true",
                   help="generate read, write and admin tokens; every call needs one")
    p.add_argument("--bus-port-offset", type=int, default=None,
                   help="the bus (internal streams, clients' transaction and read streams) "
                        "at each service's port plus this offset (default: the next SHARDS+1 "
                        "ports; 0: everything over gRPC)")
    p.set_defaults(func=cmd_dev)

    def client_parser(name: str, help_text: str) -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=help_text)
        q.add_argument("--address", default=os.environ.get("ORDO_ADDRESS", DEFAULT_ADDRESS))
        q.add_argument("--timeout", type=float, default=10.0)
        q.add_argument("--token", default=os.environ.get("ORDO_TOKEN"),
                       help="bearer token (default: $ORDO_TOKEN)")
        q.add_argument("--tls-ca", default=os.environ.get("ORDO_TLS_CA"),
                       help="CA to verify the servers with (enables TLS)")
        q.add_argument("--tls-cert", default=os.environ.get("ORDO_TLS_CERT"),
                       help="client certificate, for mutual TLS")
        q.add_argument("--tls-key", default=os.environ.get("ORDO_TLS_KEY"))
        return q

    p = client_parser("put", "write a key")
    p.add_argument("key")
    p.add_argument("value")
    p.add_argument("--type", choices=["text", "int", "bytes", "json"], default="text")
    p.set_defaults(func=cmd_put)

    p = client_parser("get", "read a key")
    p.add_argument("key")
    p.add_argument("--min-position", type=_at_least(0), default=None,
                   help="read at least at this position (default: linearizable)")
    p.add_argument("--at", type=_at_least(1), default=None,
                   help="read exactly as of this position")
    p.set_defaults(func=cmd_get)

    p = client_parser("history", "a key's retained versions")
    p.add_argument("key")
    p.add_argument("--from", dest="from_position", type=_at_least(0), default=None)
    p.add_argument("--limit", type=_at_least(0), default=0)
    p.set_defaults(func=cmd_history)

    p = client_parser("watch", "print changes under a prefix as JSON lines")
    p.add_argument("prefix")
    p.add_argument("--from", dest="from_position", type=_at_least(0), default=None,
                   help="first position (default: changes from now on)")
    p.add_argument("--count", type=_at_least(0), default=0,
                   help="stop after this many events")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("verify", help="replay a stopped shard's log and compare")
    p.add_argument("--data", required=True, help="the shard's data directory")
    p.set_defaults(func=cmd_verify)

    p = client_parser("txn", "run a transaction given as JSON (or - for stdin)")
    p.add_argument("json")
    p.add_argument("--wait", choices=["applied", "logged"], default="applied")
    p.set_defaults(func=cmd_txn)

    p = client_parser("status", "tail, and each shard's applied position and lag")
    p.set_defaults(func=cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except UsageError as error:
        print(f"ordo {args.command}: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        from ordo.errors import OrdoError

        if isinstance(error, OrdoError):
            print(f"ordo: {type(error).__name__}: {error}", file=sys.stderr)
            return 1
        raise
