"""Building transactions in Python: compares and ops.

``ordo.value(k) >= 10`` is a compare; ``ordo.add(k, -10)`` is an op. Keys are
``str`` (UTF-8) or ``bytes``; values are ``bytes``, ``int``, ``str`` or lists
of those.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ordo.core import values as V
from ordo.core.txn import Compare, Op, Operator, OpType, Target

Key = str | bytes
UserValue = bytes | int | str | list[bytes | int | str] | tuple[bytes | int | str, ...]


def key_bytes(key: Key) -> bytes:
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode("utf-8")
    raise TypeError(f"keys are str or bytes, not {type(key).__name__}")


def to_value(value: Any) -> V.Value:
    if isinstance(value, list):
        value = tuple(value)
    try:
        return V.check_value(value)
    except ValueError as error:
        raise TypeError(str(error)) from None


def from_value(value: V.Value | None) -> Any:
    """Lists come back as Python lists."""
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True, slots=True)
class _Operand:
    key: Key
    target: Target

    def _cmp(self, operator: Operator, operand: Any) -> Compare:
        if self.target is Target.EXISTS:
            operand = int(bool(operand))
        return Compare(key_bytes(self.key), self.target, operator, to_value(operand))

    def __eq__(self, other: Any) -> Compare:  # type: ignore[override]
        return self._cmp(Operator.EQUAL, other)

    def __ne__(self, other: Any) -> Compare:  # type: ignore[override]
        return self._cmp(Operator.NOT_EQUAL, other)

    def __lt__(self, other: Any) -> Compare:
        return self._cmp(Operator.LESS, other)

    def __le__(self, other: Any) -> Compare:
        return self._cmp(Operator.LESS_EQUAL, other)

    def __gt__(self, other: Any) -> Compare:
        return self._cmp(Operator.GREATER, other)

    def __ge__(self, other: Any) -> Compare:
        return self._cmp(Operator.GREATER_EQUAL, other)

    __hash__ = None  # type: ignore[assignment]


def value(key: Key) -> _Operand:
    """The stored value; a compare on a missing key is false."""
    return _Operand(key, Target.VALUE)


def int_value(key: Key) -> _Operand:
    """The stored int64; a missing key counts as 0."""
    return _Operand(key, Target.INT_VALUE)


def version(key: Key) -> _Operand:
    """The position of the key's last write; 0 when missing."""
    return _Operand(key, Target.VERSION)


def exists(key: Key) -> _Operand:
    """``exists(k)`` alone in ``when=`` means the key exists; ``== False`` that it does not."""
    return _Operand(key, Target.EXISTS)


def as_compare(item: Compare | _Operand) -> Compare:
    if isinstance(item, _Operand):
        if item.target is not Target.EXISTS:
            raise TypeError("a bare value(k), int_value(k) or version(k) is not a compare")
        return item == True  # noqa: E712
    if not isinstance(item, Compare):
        raise TypeError(f"not a compare: {item!r}")
    return item


def get(key: Key) -> Op:
    return Op(OpType.GET, key_bytes(key), label=key)


def put(key: Key, value: UserValue) -> Op:
    return Op(OpType.PUT, key_bytes(key), to_value(value))


def delete(key: Key) -> Op:
    return Op(OpType.DELETE, key_bytes(key))


def add(key: Key, delta: int) -> Op:
    if isinstance(delta, bool) or not isinstance(delta, int):
        raise TypeError("add takes an int")
    return Op(OpType.ADD, key_bytes(key), to_value(delta))


def append(key: Key, item: bytes | int | str) -> Op:
    if isinstance(item, (list, tuple)):
        raise TypeError("append takes one scalar")
    return Op(OpType.APPEND, key_bytes(key), to_value(item))


def range(prefix: Key, limit: int = 0) -> Op:  # noqa: A001 - mirrors the op's name
    return Op(OpType.RANGE, key_bytes(prefix), None, limit, label=prefix)
