from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CompareTarget(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPARE_TARGET_UNSPECIFIED: _ClassVar[CompareTarget]
    COMPARE_TARGET_VALUE: _ClassVar[CompareTarget]
    COMPARE_TARGET_INT_VALUE: _ClassVar[CompareTarget]
    COMPARE_TARGET_VERSION: _ClassVar[CompareTarget]
    COMPARE_TARGET_EXISTS: _ClassVar[CompareTarget]

class CompareOperator(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPARE_OPERATOR_UNSPECIFIED: _ClassVar[CompareOperator]
    COMPARE_OPERATOR_EQUAL: _ClassVar[CompareOperator]
    COMPARE_OPERATOR_NOT_EQUAL: _ClassVar[CompareOperator]
    COMPARE_OPERATOR_LESS: _ClassVar[CompareOperator]
    COMPARE_OPERATOR_LESS_EQUAL: _ClassVar[CompareOperator]
    COMPARE_OPERATOR_GREATER: _ClassVar[CompareOperator]
    COMPARE_OPERATOR_GREATER_EQUAL: _ClassVar[CompareOperator]

class OpType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OP_TYPE_UNSPECIFIED: _ClassVar[OpType]
    OP_TYPE_GET: _ClassVar[OpType]
    OP_TYPE_PUT: _ClassVar[OpType]
    OP_TYPE_DELETE: _ClassVar[OpType]
    OP_TYPE_ADD: _ClassVar[OpType]
    OP_TYPE_APPEND: _ClassVar[OpType]
    OP_TYPE_RANGE: _ClassVar[OpType]

class AbortReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ABORT_REASON_UNSPECIFIED: _ClassVar[AbortReason]
    ABORT_REASON_TYPE_MISMATCH: _ClassVar[AbortReason]
    ABORT_REASON_INT_OVERFLOW: _ClassVar[AbortReason]
    ABORT_REASON_VALUE_TOO_LARGE: _ClassVar[AbortReason]
COMPARE_TARGET_UNSPECIFIED: CompareTarget
COMPARE_TARGET_VALUE: CompareTarget
COMPARE_TARGET_INT_VALUE: CompareTarget
COMPARE_TARGET_VERSION: CompareTarget
COMPARE_TARGET_EXISTS: CompareTarget
COMPARE_OPERATOR_UNSPECIFIED: CompareOperator
COMPARE_OPERATOR_EQUAL: CompareOperator
COMPARE_OPERATOR_NOT_EQUAL: CompareOperator
COMPARE_OPERATOR_LESS: CompareOperator
COMPARE_OPERATOR_LESS_EQUAL: CompareOperator
COMPARE_OPERATOR_GREATER: CompareOperator
COMPARE_OPERATOR_GREATER_EQUAL: CompareOperator
OP_TYPE_UNSPECIFIED: OpType
OP_TYPE_GET: OpType
OP_TYPE_PUT: OpType
OP_TYPE_DELETE: OpType
OP_TYPE_ADD: OpType
OP_TYPE_APPEND: OpType
OP_TYPE_RANGE: OpType
ABORT_REASON_UNSPECIFIED: AbortReason
ABORT_REASON_TYPE_MISMATCH: AbortReason
ABORT_REASON_INT_OVERFLOW: AbortReason
ABORT_REASON_VALUE_TOO_LARGE: AbortReason

class Value(_message.Message):
    __slots__ = ("bytes_value", "int_value", "text_value", "list_value")
    BYTES_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    TEXT_VALUE_FIELD_NUMBER: _ClassVar[int]
    LIST_VALUE_FIELD_NUMBER: _ClassVar[int]
    bytes_value: bytes
    int_value: int
    text_value: str
    list_value: ValueList
    def __init__(self, bytes_value: _Optional[bytes] = ..., int_value: _Optional[int] = ..., text_value: _Optional[str] = ..., list_value: _Optional[_Union[ValueList, _Mapping]] = ...) -> None: ...

class ValueList(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Value]
    def __init__(self, items: _Optional[_Iterable[_Union[Value, _Mapping]]] = ...) -> None: ...

class Compare(_message.Message):
    __slots__ = ("key", "target", "operator", "operand")
    KEY_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    OPERAND_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    target: CompareTarget
    operator: CompareOperator
    operand: Value
    def __init__(self, key: _Optional[bytes] = ..., target: _Optional[_Union[CompareTarget, str]] = ..., operator: _Optional[_Union[CompareOperator, str]] = ..., operand: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...

class Op(_message.Message):
    __slots__ = ("type", "key", "value", "limit")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    type: OpType
    key: bytes
    value: Value
    limit: int
    def __init__(self, type: _Optional[_Union[OpType, str]] = ..., key: _Optional[bytes] = ..., value: _Optional[_Union[Value, _Mapping]] = ..., limit: _Optional[int] = ...) -> None: ...

class Txn(_message.Message):
    __slots__ = ("compares", "success", "failure")
    COMPARES_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    compares: _containers.RepeatedCompositeFieldContainer[Compare]
    success: _containers.RepeatedCompositeFieldContainer[Op]
    failure: _containers.RepeatedCompositeFieldContainer[Op]
    def __init__(self, compares: _Optional[_Iterable[_Union[Compare, _Mapping]]] = ..., success: _Optional[_Iterable[_Union[Op, _Mapping]]] = ..., failure: _Optional[_Iterable[_Union[Op, _Mapping]]] = ...) -> None: ...

class Abort(_message.Message):
    __slots__ = ("reason", "message", "index", "in_compare")
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    IN_COMPARE_FIELD_NUMBER: _ClassVar[int]
    reason: AbortReason
    message: str
    index: int
    in_compare: bool
    def __init__(self, reason: _Optional[_Union[AbortReason, str]] = ..., message: _Optional[str] = ..., index: _Optional[int] = ..., in_compare: _Optional[bool] = ...) -> None: ...

class KeyValue(_message.Message):
    __slots__ = ("key", "value", "version")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    value: Value
    version: int
    def __init__(self, key: _Optional[bytes] = ..., value: _Optional[_Union[Value, _Mapping]] = ..., version: _Optional[int] = ...) -> None: ...

class OpResult(_message.Message):
    __slots__ = ("index", "items", "more")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    index: int
    items: _containers.RepeatedCompositeFieldContainer[KeyValue]
    more: bool
    def __init__(self, index: _Optional[int] = ..., items: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ..., more: _Optional[bool] = ...) -> None: ...

class TxnResult(_message.Message):
    __slots__ = ("position", "request_id", "succeeded", "abort", "results")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    ABORT_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    position: int
    request_id: str
    succeeded: bool
    abort: Abort
    results: _containers.RepeatedCompositeFieldContainer[OpResult]
    def __init__(self, position: _Optional[int] = ..., request_id: _Optional[str] = ..., succeeded: _Optional[bool] = ..., abort: _Optional[_Union[Abort, _Mapping]] = ..., results: _Optional[_Iterable[_Union[OpResult, _Mapping]]] = ...) -> None: ...

class ShardResult(_message.Message):
    __slots__ = ("position", "shard", "request_id", "succeeded", "abort", "results", "digest", "writes")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    ABORT_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    position: int
    shard: int
    request_id: str
    succeeded: bool
    abort: Abort
    results: _containers.RepeatedCompositeFieldContainer[OpResult]
    digest: bytes
    writes: _containers.RepeatedCompositeFieldContainer[Write]
    def __init__(self, position: _Optional[int] = ..., shard: _Optional[int] = ..., request_id: _Optional[str] = ..., succeeded: _Optional[bool] = ..., abort: _Optional[_Union[Abort, _Mapping]] = ..., results: _Optional[_Iterable[_Union[OpResult, _Mapping]]] = ..., digest: _Optional[bytes] = ..., writes: _Optional[_Iterable[_Union[Write, _Mapping]]] = ...) -> None: ...

class ShardMap(_message.Message):
    __slots__ = ("shard_count", "partitioner")
    SHARD_COUNT_FIELD_NUMBER: _ClassVar[int]
    PARTITIONER_FIELD_NUMBER: _ClassVar[int]
    shard_count: int
    partitioner: str
    def __init__(self, shard_count: _Optional[int] = ..., partitioner: _Optional[str] = ...) -> None: ...

class LogEntry(_message.Message):
    __slots__ = ("position", "request_id", "txn", "shard_map", "timestamp_ms", "participants")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TXN_FIELD_NUMBER: _ClassVar[int]
    SHARD_MAP_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    position: int
    request_id: str
    txn: Txn
    shard_map: ShardMap
    timestamp_ms: int
    participants: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, position: _Optional[int] = ..., request_id: _Optional[str] = ..., txn: _Optional[_Union[Txn, _Mapping]] = ..., shard_map: _Optional[_Union[ShardMap, _Mapping]] = ..., timestamp_ms: _Optional[int] = ..., participants: _Optional[_Iterable[int]] = ...) -> None: ...

class Write(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    value: Value
    def __init__(self, key: _Optional[bytes] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...

class ShardLogRecord(_message.Message):
    __slots__ = ("entry", "inputs", "writes", "succeeded", "abort", "digest")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    ABORT_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    entry: LogEntry
    inputs: _containers.RepeatedCompositeFieldContainer[KeyValue]
    writes: _containers.RepeatedCompositeFieldContainer[Write]
    succeeded: bool
    abort: Abort
    digest: bytes
    def __init__(self, entry: _Optional[_Union[LogEntry, _Mapping]] = ..., inputs: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ..., writes: _Optional[_Iterable[_Union[Write, _Mapping]]] = ..., succeeded: _Optional[bool] = ..., abort: _Optional[_Union[Abort, _Mapping]] = ..., digest: _Optional[bytes] = ...) -> None: ...

class LogBatch(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LogEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[LogEntry, _Mapping]]] = ...) -> None: ...
