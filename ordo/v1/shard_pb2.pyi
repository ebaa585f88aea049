from ordo.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetRequest(_message.Message):
    __slots__ = ("key", "min_position")
    KEY_FIELD_NUMBER: _ClassVar[int]
    MIN_POSITION_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    min_position: int
    def __init__(self, key: _Optional[bytes] = ..., min_position: _Optional[int] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("item", "position")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    item: _types_pb2.KeyValue
    position: int
    def __init__(self, item: _Optional[_Union[_types_pb2.KeyValue, _Mapping]] = ..., position: _Optional[int] = ...) -> None: ...

class RangeRequest(_message.Message):
    __slots__ = ("prefix", "min_position", "limit")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    MIN_POSITION_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    prefix: bytes
    min_position: int
    limit: int
    def __init__(self, prefix: _Optional[bytes] = ..., min_position: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class RangeResponse(_message.Message):
    __slots__ = ("items", "more", "position")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[_types_pb2.KeyValue]
    more: bool
    position: int
    def __init__(self, items: _Optional[_Iterable[_Union[_types_pb2.KeyValue, _Mapping]]] = ..., more: _Optional[bool] = ..., position: _Optional[int] = ...) -> None: ...

class ReadAtRequest(_message.Message):
    __slots__ = ("position", "keys")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    position: int
    keys: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, position: _Optional[int] = ..., keys: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ReadAtResponse(_message.Message):
    __slots__ = ("position", "items")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    position: int
    items: _containers.RepeatedCompositeFieldContainer[_types_pb2.KeyValue]
    def __init__(self, position: _Optional[int] = ..., items: _Optional[_Iterable[_Union[_types_pb2.KeyValue, _Mapping]]] = ...) -> None: ...

class StreamResultsRequest(_message.Message):
    __slots__ = ("from_position",)
    FROM_POSITION_FIELD_NUMBER: _ClassVar[int]
    from_position: int
    def __init__(self, from_position: _Optional[int] = ...) -> None: ...

class StreamResultsResponse(_message.Message):
    __slots__ = ("results", "applied_position")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_POSITION_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[_types_pb2.ShardResult]
    applied_position: int
    def __init__(self, results: _Optional[_Iterable[_Union[_types_pb2.ShardResult, _Mapping]]] = ..., applied_position: _Optional[int] = ...) -> None: ...

class GetShardResultRequest(_message.Message):
    __slots__ = ("position",)
    POSITION_FIELD_NUMBER: _ClassVar[int]
    position: int
    def __init__(self, position: _Optional[int] = ...) -> None: ...

class GetShardResultResponse(_message.Message):
    __slots__ = ("result", "participant")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_FIELD_NUMBER: _ClassVar[int]
    result: _types_pb2.ShardResult
    participant: bool
    def __init__(self, result: _Optional[_Union[_types_pb2.ShardResult, _Mapping]] = ..., participant: _Optional[bool] = ...) -> None: ...

class ShardStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShardStatusResponse(_message.Message):
    __slots__ = ("shard", "applied_position", "digest", "log_position")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    APPLIED_POSITION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    LOG_POSITION_FIELD_NUMBER: _ClassVar[int]
    shard: int
    applied_position: int
    digest: bytes
    log_position: int
    def __init__(self, shard: _Optional[int] = ..., applied_position: _Optional[int] = ..., digest: _Optional[bytes] = ..., log_position: _Optional[int] = ...) -> None: ...
