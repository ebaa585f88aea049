"""Typed values and their storage encoding.

A value is ``bytes``, ``int`` (int64), ``str`` or a tuple of those scalars
(a list). The core uses tuples for lists so that values are immutable and
hashable; the client converts Python lists at the edge.

The storage encoding is deterministic and self-describing: one tag byte, then
the payload. It is what the MVCC store keeps and what the determinism digest
hashes, so it must never depend on anything but the value.
"""

from __future__ import annotations

import struct

Scalar = bytes | int | str
Value = bytes | int | str | tuple[Scalar, ...]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

_TAG_TOMBSTONE = 0
_TAG_BYTES = 1
_TAG_INT = 2
_TAG_TEXT = 3
_TAG_LIST = 4

_INT = struct.Struct(">q")
_LEN = struct.Struct(">I")


def type_name(value: Value) -> str:
    if isinstance(value, bytes):
        return "bytes"
    if isinstance(value, bool):
        raise TypeError("bool is not an ordo value")
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return "text"
    return "list"


def is_scalar(value: object) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, (bytes, int, str))


def check_value(value: object) -> Value:
    """Return ``value`` if it is a valid ordo value, else raise ValueError."""
    if isinstance(value, tuple):
        for item in value:
            _check_scalar(item)
        return value
    _check_scalar(value)
    return value  # type: ignore[return-value]


def _check_scalar(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (bytes, int, str)):
        raise ValueError(f"not an ordo scalar: {type(value).__name__}")
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise ValueError("integer outside int64")


def encode(value: Value | None) -> bytes:
    """Encode a value (None is a tombstone) for storage."""
    if value is None:
        return bytes((_TAG_TOMBSTONE,))
    if isinstance(value, tuple):
        parts = [bytes((_TAG_LIST,)), _LEN.pack(len(value))]
        for item in value:
            body = _encode_scalar(item)
            parts.append(_LEN.pack(len(body)))
            parts.append(body)
        return b"".join(parts)
    return _encode_scalar(value)


def _encode_scalar(value: Scalar) -> bytes:
    if isinstance(value, bytes):
        return bytes((_TAG_BYTES,)) + value
    if isinstance(value, int):
        return bytes((_TAG_INT,)) + _INT.pack(value)
    return bytes((_TAG_TEXT,)) + value.encode("utf-8")


def decode(data: bytes) -> Value | None:
    """Inverse of :func:`encode`."""
    tag = data[0]
    if tag == _TAG_TOMBSTONE:
        return None
    if tag == _TAG_LIST:
        (count,) = _LEN.unpack_from(data, 1)
        offset = 5
        items: list[Scalar] = []
        for _ in range(count):
            (size,) = _LEN.unpack_from(data, offset)
            offset += 4
            items.append(_decode_scalar(data[offset : offset + size]))
            offset += size
        assert offset == len(data), "trailing bytes in a stored list"
        return tuple(items)
    return _decode_scalar(data)


def _decode_scalar(data: bytes) -> Scalar:
    tag = data[0]
    if tag == _TAG_BYTES:
        return data[1:]
    if tag == _TAG_INT:
        return int(_INT.unpack_from(data, 1)[0])
    if tag == _TAG_TEXT:
        return data[1:].decode("utf-8")
    raise ValueError(f"unknown value tag {tag}")


LIST_ITEM_OVERHEAD_BYTES = 5  # the tag and length each stored list item carries


def size(value: Value) -> int:
    """Bytes a value counts against ``value_bytes_max``: its payload, plus
    each list item's overhead (so a list of empty strings is bounded too)."""
    if isinstance(value, tuple):
        return sum(_scalar_size(item) + LIST_ITEM_OVERHEAD_BYTES for item in value)
    return _scalar_size(value)


def _scalar_size(value: Scalar) -> int:
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, int):
        return 8
    return len(value.encode("utf-8"))
