from ordo.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetRequest(_message.Message):
    __slots__ = ("key", "min_position", "at_position")
    KEY_FIELD_NUMBER: _ClassVar[int]
    MIN_POSITION_FIELD_NUMBER: _ClassVar[int]
    AT_POSITION_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    min_position: int
    at_position: int
    def __init__(self, key: _Optional[bytes] = ..., min_position: _Optional[int] = ..., at_position: _Optional[int] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("item", "position")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    item: _types_pb2.KeyValue
    position: int
    def __init__(self, item: _Optional[_Union[_types_pb2.KeyValue, _Mapping]] = ..., position: _Optional[int] = ...) -> None: ...

class TaggedGet(_message.Message):
    __slots__ = ("tag", "request", "timeout_ms")
    TAG_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    tag: int
    request: GetRequest
    timeout_ms: int
    def __init__(self, tag: _Optional[int] = ..., request: _Optional[_Union[GetRequest, _Mapping]] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class GetStreamRequest(_message.Message):
    __slots__ = ("gets",)
    GETS_FIELD_NUMBER: _ClassVar[int]
    gets: _containers.RepeatedCompositeFieldContainer[TaggedGet]
    def __init__(self, gets: _Optional[_Iterable[_Union[TaggedGet, _Mapping]]] = ...) -> None: ...

class TaggedGetReply(_message.Message):
    __slots__ = ("tag", "response", "error")
    TAG_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    tag: int
    response: GetResponse
    error: bytes
    def __init__(self, tag: _Optional[int] = ..., response: _Optional[_Union[GetResponse, _Mapping]] = ..., error: _Optional[bytes] = ...) -> None: ...

class GetStreamResponse(_message.Message):
    __slots__ = ("replies",)
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    replies: _containers.RepeatedCompositeFieldContainer[TaggedGetReply]
    def __init__(self, replies: _Optional[_Iterable[_Union[TaggedGetReply, _Mapping]]] = ...) -> None: ...

class RangeRequest(_message.Message):
    __slots__ = ("prefix", "min_position", "limit", "at_position", "start_key")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    MIN_POSITION_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AT_POSITION_FIELD_NUMBER: _ClassVar[int]
    START_KEY_FIELD_NUMBER: _ClassVar[int]
    prefix: bytes
    min_position: int
    limit: int
    at_position: int
    start_key: bytes
    def __init__(self, prefix: _Optional[bytes] = ..., min_position: _Optional[int] = ..., limit: _Optional[int] = ..., at_position: _Optional[int] = ..., start_key: _Optional[bytes] = ...) -> None: ...

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
    __slots__ = ("reads",)
    READS_FIELD_NUMBER: _ClassVar[int]
    reads: _containers.RepeatedCompositeFieldContainer[ReadAtQuery]
    def __init__(self, reads: _Optional[_Iterable[_Union[ReadAtQuery, _Mapping]]] = ...) -> None: ...

class ReadAtQuery(_message.Message):
    __slots__ = ("position", "keys")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    position: int
    keys: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, position: _Optional[int] = ..., keys: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ReadAtResponse(_message.Message):
    __slots__ = ("answers",)
    ANSWERS_FIELD_NUMBER: _ClassVar[int]
    answers: _containers.RepeatedCompositeFieldContainer[ReadAtAnswer]
    def __init__(self, answers: _Optional[_Iterable[_Union[ReadAtAnswer, _Mapping]]] = ...) -> None: ...

class ReadAtAnswer(_message.Message):
    __slots__ = ("position", "items")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    position: int
    items: _containers.RepeatedCompositeFieldContainer[_types_pb2.KeyValue]
    def __init__(self, position: _Optional[int] = ..., items: _Optional[_Iterable[_Union[_types_pb2.KeyValue, _Mapping]]] = ...) -> None: ...

class StreamResultsRequest(_message.Message):
    __slots__ = ("from_position", "include_writes", "undecided_only")
    FROM_POSITION_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_WRITES_FIELD_NUMBER: _ClassVar[int]
    UNDECIDED_ONLY_FIELD_NUMBER: _ClassVar[int]
    from_position: int
    include_writes: bool
    undecided_only: bool
    def __init__(self, from_position: _Optional[int] = ..., include_writes: _Optional[bool] = ..., undecided_only: _Optional[bool] = ...) -> None: ...

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
    __slots__ = ("shard", "applied_position", "digest", "log_position", "oldest_position")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    APPLIED_POSITION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    LOG_POSITION_FIELD_NUMBER: _ClassVar[int]
    OLDEST_POSITION_FIELD_NUMBER: _ClassVar[int]
    shard: int
    applied_position: int
    digest: bytes
    log_position: int
    oldest_position: int
    def __init__(self, shard: _Optional[int] = ..., applied_position: _Optional[int] = ..., digest: _Optional[bytes] = ..., log_position: _Optional[int] = ..., oldest_position: _Optional[int] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("key", "prefix", "from_position")
    KEY_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    FROM_POSITION_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    prefix: bytes
    from_position: int
    def __init__(self, key: _Optional[bytes] = ..., prefix: _Optional[bytes] = ..., from_position: _Optional[int] = ...) -> None: ...

class WatchEvent(_message.Message):
    __slots__ = ("position", "key", "value", "request_id")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    position: int
    key: bytes
    value: _types_pb2.Value
    request_id: str
    def __init__(self, position: _Optional[int] = ..., key: _Optional[bytes] = ..., value: _Optional[_Union[_types_pb2.Value, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ("events", "progress")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[WatchEvent]
    progress: int
    def __init__(self, events: _Optional[_Iterable[_Union[WatchEvent, _Mapping]]] = ..., progress: _Optional[int] = ...) -> None: ...

class HistoryRequest(_message.Message):
    __slots__ = ("key", "from_position", "limit", "min_position")
    KEY_FIELD_NUMBER: _ClassVar[int]
    FROM_POSITION_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    MIN_POSITION_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    from_position: int
    limit: int
    min_position: int
    def __init__(self, key: _Optional[bytes] = ..., from_position: _Optional[int] = ..., limit: _Optional[int] = ..., min_position: _Optional[int] = ...) -> None: ...

class HistoryResponse(_message.Message):
    __slots__ = ("versions", "more", "oldest_position")
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    OLDEST_POSITION_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[_types_pb2.KeyValue]
    more: bool
    oldest_position: int
    def __init__(self, versions: _Optional[_Iterable[_Union[_types_pb2.KeyValue, _Mapping]]] = ..., more: _Optional[bool] = ..., oldest_position: _Optional[int] = ...) -> None: ...
