"""Transport security and bearer-token roles.

* TLS: every server takes a certificate and key; with ``client_auth`` it
  also demands a client certificate signed by the CA (mutual TLS). Every
  channel verifies the server against the CA and, for mutual TLS, presents
  its own certificate.
* Tokens: ``Authorization: Bearer <token>`` on every call, mapped to a role
  by the server's token table. Roles nest: ``admin`` can do what ``write``
  can, which can do what ``read`` can. The internal streams between services
  need ``admin``. Health checking and reflection need no token, so that
  probes and tools work.

One server interceptor checks every call before any handler runs, so a
refused call logs and applies nothing.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from ordo import errors

ROLES = {"read": 1, "write": 2, "admin": 3}

# The role each method needs. A method missing here is refused: a new RPC
# must be given a role before anyone can call it.
METHOD_ROLES: dict[str, str] = {
    "/ordo.v1.CoordinatorService/Submit": "write",
    "/ordo.v1.CoordinatorService/SubmitStream": "write",
    "/ordo.v1.CoordinatorService/Tail": "read",
    "/ordo.v1.CoordinatorService/GetResult": "read",
    "/ordo.v1.CoordinatorService/ClusterInfo": "read",
    "/ordo.v1.CoordinatorService/Status": "read",
    "/ordo.v1.CoordinatorService/Subscribe": "read",
    "/ordo.v1.SequencerService/ReadLog": "admin",
    "/ordo.v1.ShardService/Get": "read",
    "/ordo.v1.ShardService/GetStream": "read",
    "/ordo.v1.ShardService/Range": "read",
    "/ordo.v1.ShardService/History": "read",
    "/ordo.v1.ShardService/Watch": "read",
    "/ordo.v1.ShardService/ShardStatus": "read",
    "/ordo.v1.ShardService/ReadAt": "admin",
    "/ordo.v1.ShardService/StreamResults": "admin",
    "/ordo.v1.ShardService/GetShardResult": "admin",
}
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """Certificate files. ``ca`` verifies the other side; ``cert`` and ``key``
    are this side's (a server's, or a client's for mutual TLS)."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    client_auth: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.cert or self.ca)

    def _read(self, path: str | None) -> bytes | None:
        if path is None:
            return None
        with open(path, "rb") as f:
            return f.read()

    def server_credentials(self) -> grpc.ServerCredentials:
        if not (self.cert and self.key):
            raise ValueError("a TLS server needs a certificate and a key")
        pair = (self._read(self.key), self._read(self.cert))
        return grpc.ssl_server_credentials(
            [pair],  # type: ignore[list-item]
            root_certificates=self._read(self.ca) if self.client_auth else None,
            require_client_auth=self.client_auth,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self._read(self.ca),
            private_key=self._read(self.key) if self.cert else None,
            certificate_chain=self._read(self.cert) if self.cert else None,
        )


def load_tokens(path: str | None) -> dict[str, str] | None:
    """The token table: a TOML file ``[tokens]`` of ``"<token>" = "<role>"``,
    or ``ORDO_TOKENS`` as ``token:role,token:role``. None: no authentication."""
    table: dict[str, str] = {}
    if path:
        with open(path, "rb") as f:
            table.update(tomllib.load(f).get("tokens", {}))
    env = os.environ.get("ORDO_TOKENS", "")
    for pair in filter(None, (p.strip() for p in env.split(","))):
        token, _, role = pair.rpartition(":")
        table[token] = role
    if not path and not env:
        return None
    for token, role in table.items():
        if role not in ROLES or not token:
            raise ValueError(f"bad token table entry: role {role!r}")
    return table


def allowed(method: str, metadata: Any, tokens: dict[str, str]) -> errors.OrdoError | None:
    """None if the call may go on, else the error to answer with."""
    if method.startswith(OPEN_PREFIXES):
        return None
    token = None
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            token = value[len("Bearer "):]
    if token is None:
        return errors.Unauthenticated("this call needs a bearer token")
    role = tokens.get(token)
    if role is None:
        return errors.Unauthenticated("unknown token")
    needed = METHOD_ROLES.get(method)
    if needed is None or ROLES[role] < ROLES[needed]:
        return errors.PermissionDenied(f"role {role!r} may not call {method}")
    return None


class EdgeInterceptor(grpc.aio.ServerInterceptor):
    """Every call to an ordo method passes here first: its token is checked
    (when a token table is configured), and a request that does not parse
    is answered INVALID_ARGUMENT instead of gRPC's bare UNKNOWN."""

    def __init__(self, tokens: dict[str, str] | None) -> None:
        self.tokens = tokens

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        if self.tokens is not None:
            refusal = allowed(details.method, details.invocation_metadata, self.tokens)
            if refusal is not None:
                return _refusing(handler, refusal)
        if details.method.startswith("/ordo.v1."):
            return _parsing_checked(handler)
        return handler


class _Malformed:
    """Stands in for a request that did not parse."""

    def __init__(self, error: Exception) -> None:
        self.error = errors.InvalidArgument(f"the request does not parse: {error}", field="")


class _MalformedError(Exception):
    def __init__(self, marker: _Malformed) -> None:
        self.marker = marker


def _lenient(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def parse_or_mark(raw: bytes) -> Any:
        try:
            return parse(raw)
        except Exception as error:  # DecodeError, and whatever a bad message raises
            return _Malformed(error)

    return parse_or_mark


def _bytes_pass(serialize: Callable[[Any], bytes] | None) -> Callable[[Any], bytes] | None:
    """A handler may yield a message it serialized itself (bytes), to send
    one serialization to many streams."""
    if serialize is None:
        return None

    def serialize_or_pass(message: Any) -> bytes:
        return message if type(message) is bytes else serialize(message)

    return serialize_or_pass


async def _checked(requests: Any) -> Any:
    async for request in requests:
        if isinstance(request, _Malformed):
            raise _MalformedError(request)
        yield request


async def _abort_malformed(context: grpc.aio.ServicerContext, marker: _Malformed) -> None:
    await context.abort(marker.error.code, marker.error.message,
                        trailing_metadata=errors.to_grpc_metadata(marker.error))


def _parsing_checked(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    kw = {"request_deserializer": _lenient(handler.request_deserializer),
          "response_serializer": _bytes_pass(handler.response_serializer)}
    if handler.unary_unary:
        inner_uu = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, _Malformed):
                await _abort_malformed(context, request)
            return await inner_uu(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, **kw)
    if handler.unary_stream:
        inner_us = handler.unary_stream

        async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, _Malformed):
                await _abort_malformed(context, request)
                return
            async for item in inner_us(request, context):
                yield item

        return grpc.unary_stream_rpc_method_handler(unary_stream, **kw)
    if handler.stream_unary:
        inner_su = handler.stream_unary

        async def stream_unary(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await inner_su(_checked(requests), context)
            except _MalformedError as error:
                await _abort_malformed(context, error.marker)

        return grpc.stream_unary_rpc_method_handler(stream_unary, **kw)
    inner_ss = handler.stream_stream

    async def stream_stream(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            async for item in inner_ss(_checked(requests), context):
                yield item
        except _MalformedError as error:
            await _abort_malformed(context, error.marker)

    return grpc.stream_stream_rpc_method_handler(stream_stream, **kw)


def _refusing(handler: grpc.RpcMethodHandler, error: errors.OrdoError) -> grpc.RpcMethodHandler:
    async def abort(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(error.code, error.message,
                            trailing_metadata=errors.to_grpc_metadata(error))

    async def abort_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await abort(request, context)
        yield  # pragma: no cover - makes this an async generator

    kw = {"request_deserializer": handler.request_deserializer,
          "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(abort, **kw)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(abort_stream, **kw)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(abort, **kw)
    return grpc.stream_stream_rpc_method_handler(abort_stream, **kw)


class _AddToken:
    """Adds ``Authorization: Bearer <token>`` to a call's metadata."""

    def __init__(self, token: str) -> None:
        self.header = ("authorization", f"Bearer {token}")

    def _details(self, details: Any) -> Any:
        metadata = list(details.metadata or ()) + [self.header]
        return details._replace(metadata=grpc.aio.Metadata(*metadata))


class _UnaryUnaryToken(_AddToken, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return await continuation(self._details(details), request)


class _UnaryStreamToken(_AddToken, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, details, request):  # type: ignore[no-untyped-def]
        return await continuation(self._details(details), request)


class _StreamUnaryToken(_AddToken, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, details, request_iterator):  # type: ignore[no-untyped-def]
        return await continuation(self._details(details), request_iterator)


class _StreamStreamToken(_AddToken, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, details, request_iterator):  # type: ignore[no-untyped-def]
        return await continuation(self._details(details), request_iterator)


def token_interceptors(token: str | None) -> list[Any]:
    """Client interceptors adding the token to every kind of call (grpc.aio
    files each interceptor under one kind only, so there is one per kind)."""
    if not token:
        return []
    kinds = (_UnaryUnaryToken, _UnaryStreamToken, _StreamUnaryToken, _StreamStreamToken)
    return [kind(token) for kind in kinds]


def check_listen(address: str, tls: TLSConfig | None, insecure_listen_any: bool) -> None:
    """Refuse to serve a non-loopback address without TLS, unless told to."""
    if (tls is None or not tls.enabled) and not insecure_listen_any:
        if not is_loopback(address):
            raise SystemExit(
                f"refusing to listen on {address} without TLS; configure TLS, or pass "
                "--insecure-listen-any"
            )


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_dev_certificates(folder: str, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> TLSConfig:
    """A throwaway CA and one certificate for every local service (and client)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    os.makedirs(folder, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ordo dev CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ordo")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {name: os.path.join(folder, name) for name in ("ca.pem", "cert.pem", "key.pem")}
    with open(paths["ca.pem"], "wb") as f:
        f.write(ca_cert.public_bytes(serialization.Encoding.PEM))
    with open(paths["cert.pem"], "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(paths["key.pem"], "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    os.chmod(paths["key.pem"], 0o600)
    return TLSConfig(ca=paths["ca.pem"], cert=paths["cert.pem"], key=paths["key.pem"],
                     client_auth=True)
