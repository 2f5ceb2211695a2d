from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MoveReplicaRequest(_message.Message):
    __slots__ = ("partition", "from_node_id", "to_node_id")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    FROM_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TO_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    partition: int
    from_node_id: int
    to_node_id: int
    def __init__(self, partition: _Optional[int] = ..., from_node_id: _Optional[int] = ..., to_node_id: _Optional[int] = ...) -> None: ...

class MoveReplicaResponse(_message.Message):
    __slots__ = ("replica_ids",)
    REPLICA_IDS_FIELD_NUMBER: _ClassVar[int]
    replica_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, replica_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class GetClusterStatusRequest(_message.Message):
    __slots__ = ("include_state_digest",)
    INCLUDE_STATE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    include_state_digest: bool
    def __init__(self, include_state_digest: bool = ...) -> None: ...

class GetClusterStatusResponse(_message.Message):
    __slots__ = ("node_id", "nodes", "partitions")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    partitions: _containers.RepeatedCompositeFieldContainer[PartitionStatus]
    def __init__(self, node_id: _Optional[int] = ..., nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., partitions: _Optional[_Iterable[_Union[PartitionStatus, _Mapping]]] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("node_id", "address")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    address: str
    def __init__(self, node_id: _Optional[int] = ..., address: _Optional[str] = ...) -> None: ...

class PartitionStatus(_message.Message):
    __slots__ = ("partition", "leader_id", "term", "commit_index", "applied_index", "role", "state_digest", "in_flight_transfers", "snapshot_index", "log_first_index", "replica_ids", "preferred_leader_id", "learner_ids")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    STATE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_TRANSFERS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_INDEX_FIELD_NUMBER: _ClassVar[int]
    LOG_FIRST_INDEX_FIELD_NUMBER: _ClassVar[int]
    REPLICA_IDS_FIELD_NUMBER: _ClassVar[int]
    PREFERRED_LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEARNER_IDS_FIELD_NUMBER: _ClassVar[int]
    partition: int
    leader_id: int
    term: int
    commit_index: int
    applied_index: int
    role: str
    state_digest: str
    in_flight_transfers: int
    snapshot_index: int
    log_first_index: int
    replica_ids: _containers.RepeatedScalarFieldContainer[int]
    preferred_leader_id: int
    learner_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, partition: _Optional[int] = ..., leader_id: _Optional[int] = ..., term: _Optional[int] = ..., commit_index: _Optional[int] = ..., applied_index: _Optional[int] = ..., role: _Optional[str] = ..., state_digest: _Optional[str] = ..., in_flight_transfers: _Optional[int] = ..., snapshot_index: _Optional[int] = ..., log_first_index: _Optional[int] = ..., replica_ids: _Optional[_Iterable[int]] = ..., preferred_leader_id: _Optional[int] = ..., learner_ids: _Optional[_Iterable[int]] = ...) -> None: ...
