from ordo.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WaitFor(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WAIT_FOR_UNSPECIFIED: _ClassVar[WaitFor]
    WAIT_FOR_APPLIED: _ClassVar[WaitFor]
    WAIT_FOR_LOGGED: _ClassVar[WaitFor]
WAIT_FOR_UNSPECIFIED: WaitFor
WAIT_FOR_APPLIED: WaitFor
WAIT_FOR_LOGGED: WaitFor

class SubmitRequest(_message.Message):
    __slots__ = ("request_id", "txn", "wait")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TXN_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    txn: _types_pb2.Txn
    wait: WaitFor
    def __init__(self, request_id: _Optional[str] = ..., txn: _Optional[_Union[_types_pb2.Txn, _Mapping]] = ..., wait: _Optional[_Union[WaitFor, str]] = ...) -> None: ...

class SubmitResponse(_message.Message):
    __slots__ = ("position", "result", "duplicate")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    position: int
    result: _types_pb2.TxnResult
    duplicate: bool
    def __init__(self, position: _Optional[int] = ..., result: _Optional[_Union[_types_pb2.TxnResult, _Mapping]] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class TaggedSubmit(_message.Message):
    __slots__ = ("tag", "request", "timeout_ms")
    TAG_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    tag: int
    request: SubmitRequest
    timeout_ms: int
    def __init__(self, tag: _Optional[int] = ..., request: _Optional[_Union[SubmitRequest, _Mapping]] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class SubmitStreamRequest(_message.Message):
    __slots__ = ("submits",)
    SUBMITS_FIELD_NUMBER: _ClassVar[int]
    submits: _containers.RepeatedCompositeFieldContainer[TaggedSubmit]
    def __init__(self, submits: _Optional[_Iterable[_Union[TaggedSubmit, _Mapping]]] = ...) -> None: ...

class TaggedReply(_message.Message):
    __slots__ = ("tag", "response", "error")
    TAG_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    tag: int
    response: SubmitResponse
    error: bytes
    def __init__(self, tag: _Optional[int] = ..., response: _Optional[_Union[SubmitResponse, _Mapping]] = ..., error: _Optional[bytes] = ...) -> None: ...

class SubmitStreamResponse(_message.Message):
    __slots__ = ("replies",)
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    replies: _containers.RepeatedCompositeFieldContainer[TaggedReply]
    def __init__(self, replies: _Optional[_Iterable[_Union[TaggedReply, _Mapping]]] = ...) -> None: ...

class TailRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TailResponse(_message.Message):
    __slots__ = ("position",)
    POSITION_FIELD_NUMBER: _ClassVar[int]
    position: int
    def __init__(self, position: _Optional[int] = ...) -> None: ...

class GetResultRequest(_message.Message):
    __slots__ = ("request_id", "position")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    position: int
    def __init__(self, request_id: _Optional[str] = ..., position: _Optional[int] = ...) -> None: ...

class GetResultResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: _types_pb2.TxnResult
    def __init__(self, result: _Optional[_Union[_types_pb2.TxnResult, _Mapping]] = ...) -> None: ...

class ClusterInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShardInfo(_message.Message):
    __slots__ = ("shard", "address")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    shard: int
    address: str
    def __init__(self, shard: _Optional[int] = ..., address: _Optional[str] = ...) -> None: ...

class ClusterInfoResponse(_message.Message):
    __slots__ = ("shard_map", "shards", "bus_port_offset")
    SHARD_MAP_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    BUS_PORT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    shard_map: _types_pb2.ShardMap
    shards: _containers.RepeatedCompositeFieldContainer[ShardInfo]
    bus_port_offset: int
    def __init__(self, shard_map: _Optional[_Union[_types_pb2.ShardMap, _Mapping]] = ..., shards: _Optional[_Iterable[_Union[ShardInfo, _Mapping]]] = ..., bus_port_offset: _Optional[int] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShardStatus(_message.Message):
    __slots__ = ("shard", "address", "reachable", "applied_position", "lag", "digest", "error", "oldest_position")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    APPLIED_POSITION_FIELD_NUMBER: _ClassVar[int]
    LAG_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    OLDEST_POSITION_FIELD_NUMBER: _ClassVar[int]
    shard: int
    address: str
    reachable: bool
    applied_position: int
    lag: int
    digest: bytes
    error: str
    oldest_position: int
    def __init__(self, shard: _Optional[int] = ..., address: _Optional[str] = ..., reachable: _Optional[bool] = ..., applied_position: _Optional[int] = ..., lag: _Optional[int] = ..., digest: _Optional[bytes] = ..., error: _Optional[str] = ..., oldest_position: _Optional[int] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("tail", "shards")
    TAIL_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    tail: int
    shards: _containers.RepeatedCompositeFieldContainer[ShardStatus]
    def __init__(self, tail: _Optional[int] = ..., shards: _Optional[_Iterable[_Union[ShardStatus, _Mapping]]] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("from_position",)
    FROM_POSITION_FIELD_NUMBER: _ClassVar[int]
    from_position: int
    def __init__(self, from_position: _Optional[int] = ...) -> None: ...

class CommittedTxn(_message.Message):
    __slots__ = ("position", "request_id", "succeeded", "abort", "writes", "timestamp_ms")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    ABORT_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    position: int
    request_id: str
    succeeded: bool
    abort: _types_pb2.Abort
    writes: _containers.RepeatedCompositeFieldContainer[_types_pb2.Write]
    timestamp_ms: int
    def __init__(self, position: _Optional[int] = ..., request_id: _Optional[str] = ..., succeeded: _Optional[bool] = ..., abort: _Optional[_Union[_types_pb2.Abort, _Mapping]] = ..., writes: _Optional[_Iterable[_Union[_types_pb2.Write, _Mapping]]] = ..., timestamp_ms: _Optional[int] = ...) -> None: ...

class SubscribeResponse(_message.Message):
    __slots__ = ("txns", "progress")
    TXNS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    txns: _containers.RepeatedCompositeFieldContainer[CommittedTxn]
    progress: int
    def __init__(self, txns: _Optional[_Iterable[_Union[CommittedTxn, _Mapping]]] = ..., progress: _Optional[int] = ...) -> None: ...

class ReadLogRequest(_message.Message):
    __slots__ = ("from_position", "reader")
    FROM_POSITION_FIELD_NUMBER: _ClassVar[int]
    READER_FIELD_NUMBER: _ClassVar[int]
    from_position: int
    reader: str
    def __init__(self, from_position: _Optional[int] = ..., reader: _Optional[str] = ...) -> None: ...

class ReadLogResponse(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: _types_pb2.LogBatch
    def __init__(self, batch: _Optional[_Union[_types_pb2.LogBatch, _Mapping]] = ...) -> None: ...
