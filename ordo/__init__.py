"""ordo: a transactional key-value database on a sharded log.

::

    import ordo

    async with ordo.connect("127.0.0.1:7400") as db:
        c = await db.put("user:{7}:name", "ada")
        v = await db.get("user:{7}:name", min_position=c.position)
"""

from ordo.client import (
    AsyncClient,
    Client,
    Committed,
    Item,
    Result,
    Snapshot,
    WatchEvent,
    connect,
)
from ordo.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OrdoError,
    OutOfRange,
    ResourceExhausted,
    TransactionAborted,
    Unavailable,
)
from ordo.ops import add, append, delete, exists, get, int_value, put, range, value, version

__all__ = [
    "AsyncClient",
    "Client",
    "Committed",
    "DeadlineExceeded",
    "FailedPrecondition",
    "InvalidArgument",
    "Item",
    "NotFound",
    "OrdoError",
    "OutOfRange",
    "ResourceExhausted",
    "Result",
    "Snapshot",
    "TransactionAborted",
    "Unavailable",
    "WatchEvent",
    "add",
    "append",
    "connect",
    "delete",
    "exists",
    "get",
    "int_value",
    "put",
    "range",
    "value",
    "version",
]
