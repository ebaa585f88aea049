"""One error hierarchy for ordo, mapped once to gRPC status codes and back.

::

    OrdoError
    ├── InvalidArgument        INVALID_ARGUMENT   bad input; `field` names it
    ├── FailedPrecondition     FAILED_PRECONDITION  e.g. a request id reused for another txn
    ├── NotFound               NOT_FOUND          no such request id or position
    ├── OutOfRange             OUT_OF_RANGE       below the retention horizon; `oldest_position`
    ├── ResourceExhausted      RESOURCE_EXHAUSTED overload; retry after `retry_after_s`   (retryable)
    ├── Unavailable            UNAVAILABLE        a service is down or restarting           (retryable)
    ├── DeadlineExceeded       DEADLINE_EXCEEDED  a wait ran past its deadline; `position`
    ├── Unauthenticated        UNAUTHENTICATED
    ├── PermissionDenied       PERMISSION_DENIED
    ├── Cancelled              CANCELLED
    └── Internal               INTERNAL           a bug or a broken invariant

    TransactionAborted         not an RPC error: a transaction ran and aborted
                               deterministically (type mismatch, overflow, ...)

Servers raise these; :func:`to_rpc_status` turns one into a ``google.rpc.Status``
with ``BadRequest``, ``RetryInfo`` and ``ErrorInfo`` details. Clients call
:func:`from_rpc_error` to get the same class back.
"""

from __future__ import annotations

from typing import Any, ClassVar

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

ERROR_DOMAIN = "ordo.dev"
DETAILS_KEY = "grpc-status-details-bin"


class OrdoError(Exception):
    """Base of every ordo error."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, **metadata: Any) -> None:
        super().__init__(message)
        self.message = message
        self.metadata = {k: v for k, v in metadata.items() if v is not None}

    def __getattr__(self, name: str) -> Any:
        metadata = self.__dict__.get("metadata", {})
        if name in metadata:
            return metadata[name]
        raise AttributeError(name)


class InvalidArgument(OrdoError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, message: str, field: str = "", **metadata: Any) -> None:
        super().__init__(message, field=field, **metadata)


class FailedPrecondition(OrdoError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class NotFound(OrdoError):
    code = grpc.StatusCode.NOT_FOUND


class OutOfRange(OrdoError):
    code = grpc.StatusCode.OUT_OF_RANGE

    def __init__(self, message: str, oldest_position: int = 0, **metadata: Any) -> None:
        super().__init__(message, oldest_position=oldest_position, **metadata)


class ResourceExhausted(OrdoError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    retryable = True

    def __init__(self, message: str, retry_after_s: float = 0.05, **metadata: Any) -> None:
        super().__init__(message, retry_after_s=retry_after_s, **metadata)


class Unavailable(OrdoError):
    code = grpc.StatusCode.UNAVAILABLE
    retryable = True


class DeadlineExceeded(OrdoError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED

    def __init__(self, message: str, position: int | None = None, **metadata: Any) -> None:
        super().__init__(message, position=position, **metadata)


class Unauthenticated(OrdoError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(OrdoError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Cancelled(OrdoError):
    code = grpc.StatusCode.CANCELLED


class Internal(OrdoError):
    code = grpc.StatusCode.INTERNAL


class TransactionAborted(Exception):
    """A transaction was applied and aborted deterministically; nothing was written."""

    def __init__(self, result: Any) -> None:
        abort = result.abort
        super().__init__(f"transaction at position {result.position} aborted: {abort.message}")
        self.result = result
        self.reason = abort.reason
        self.position = result.position


_BY_CODE: dict[grpc.StatusCode, type[OrdoError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        FailedPrecondition,
        NotFound,
        OutOfRange,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
        Unauthenticated,
        PermissionDenied,
        Cancelled,
        Internal,
    )
}

# Metadata keys whose values are integers on the wire (ErrorInfo carries strings).
_INT_KEYS = ("position", "oldest_position")


def to_rpc_status(error: OrdoError) -> status_pb2.Status:
    status = status_pb2.Status(code=error.code.value[0], message=error.message)
    info = error_details_pb2.ErrorInfo(
        reason=type(error).__name__, domain=ERROR_DOMAIN
    )
    for key, value in error.metadata.items():
        if key == "field":
            continue
        info.metadata[key] = str(value)
    status.details.add().Pack(info)
    if isinstance(error, InvalidArgument):
        bad = error_details_pb2.BadRequest()
        bad.field_violations.add(field=error.metadata.get("field", ""), description=error.message)
        status.details.add().Pack(bad)
    if isinstance(error, ResourceExhausted):
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(round(error.metadata["retry_after_s"] * 1000))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return status


def to_grpc_metadata(error: OrdoError) -> tuple[tuple[str, bytes], ...]:
    return ((DETAILS_KEY, to_rpc_status(error).SerializeToString()),)


def from_rpc_error(error: grpc.RpcError) -> OrdoError:
    """Map a failed call back to the ordo error class the server raised."""
    code = error.code()  # type: ignore[attr-defined]
    message = error.details() or code.name  # type: ignore[attr-defined]
    status = None
    for key, value in error.trailing_metadata() or ():  # type: ignore[attr-defined]
        if key == DETAILS_KEY:
            status = status_pb2.Status.FromString(value)
    return _from_status(code, message, status)


def from_status_bytes(raw: bytes) -> OrdoError:
    """Map a serialized ``google.rpc.Status`` (as a streamed reply carries it)."""
    status = status_pb2.Status.FromString(raw)
    return _from_status(_CODES.get(status.code, grpc.StatusCode.UNKNOWN), status.message, status)


_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _from_status(
    code: grpc.StatusCode, message: str, status: status_pb2.Status | None
) -> OrdoError:
    cls = _BY_CODE.get(code, OrdoError)
    metadata: dict[str, Any] = {}
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            for k, v in info.metadata.items():
                metadata[k] = int(v) if k in _INT_KEYS else v
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            if bad.field_violations:
                metadata["field"] = bad.field_violations[0].field
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            metadata["retry_after_s"] = retry.retry_delay.ToMilliseconds() / 1000
    if cls is not ResourceExhausted:
        metadata.pop("retry_after_s", None)
    if cls is OrdoError:
        return OrdoError(f"{code.name}: {message}", **metadata)
    return cls(message, **metadata)


assert code_pb2.INVALID_ARGUMENT == grpc.StatusCode.INVALID_ARGUMENT.value[0]
