from google.protobuf import timestamp_pb2 as _timestamp_pb2
from wallet_ledger._proto.wallet.v1 import wallet_pb2 as _wallet_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TransferState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRANSFER_STATE_UNSPECIFIED: _ClassVar[TransferState]
    TRANSFER_STATE_IN_FLIGHT: _ClassVar[TransferState]
    TRANSFER_STATE_COMPLETED: _ClassVar[TransferState]
    TRANSFER_STATE_REJECTED: _ClassVar[TransferState]
    TRANSFER_STATE_PENDING: _ClassVar[TransferState]
    TRANSFER_STATE_VOIDED: _ClassVar[TransferState]
    TRANSFER_STATE_EXPIRED: _ClassVar[TransferState]
TRANSFER_STATE_UNSPECIFIED: TransferState
TRANSFER_STATE_IN_FLIGHT: TransferState
TRANSFER_STATE_COMPLETED: TransferState
TRANSFER_STATE_REJECTED: TransferState
TRANSFER_STATE_PENDING: TransferState
TRANSFER_STATE_VOIDED: TransferState
TRANSFER_STATE_EXPIRED: TransferState

class Balance(_message.Message):
    __slots__ = ("account_id", "currency", "allow_negative_balance", "balance", "balance_minor", "sequence", "partition", "index", "timestamp_ms", "held", "available", "status", "overdraft_limit", "reference", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    ALLOW_NEGATIVE_BALANCE_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    BALANCE_MINOR_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OVERDRAFT_LIMIT_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    currency: str
    allow_negative_balance: bool
    balance: str
    balance_minor: int
    sequence: int
    partition: int
    index: int
    timestamp_ms: int
    held: str
    available: str
    status: _wallet_pb2.AccountStatus
    overdraft_limit: str
    reference: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, account_id: _Optional[str] = ..., currency: _Optional[str] = ..., allow_negative_balance: bool = ..., balance: _Optional[str] = ..., balance_minor: _Optional[int] = ..., sequence: _Optional[int] = ..., partition: _Optional[int] = ..., index: _Optional[int] = ..., timestamp_ms: _Optional[int] = ..., held: _Optional[str] = ..., available: _Optional[str] = ..., status: _Optional[_Union[_wallet_pb2.AccountStatus, str]] = ..., overdraft_limit: _Optional[str] = ..., reference: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetBalanceRequest(_message.Message):
    __slots__ = ("account_id", "consistency_token")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_TOKEN_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    consistency_token: str
    def __init__(self, account_id: _Optional[str] = ..., consistency_token: _Optional[str] = ...) -> None: ...

class GetBalanceResponse(_message.Message):
    __slots__ = ("balance", "position")
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    balance: Balance
    position: str
    def __init__(self, balance: _Optional[_Union[Balance, _Mapping]] = ..., position: _Optional[str] = ...) -> None: ...

class WatchBalancesRequest(_message.Message):
    __slots__ = ("account_ids", "resume_after_sequence")
    class ResumeAfterSequenceEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ACCOUNT_IDS_FIELD_NUMBER: _ClassVar[int]
    RESUME_AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    account_ids: _containers.RepeatedScalarFieldContainer[str]
    resume_after_sequence: _containers.ScalarMap[str, int]
    def __init__(self, account_ids: _Optional[_Iterable[str]] = ..., resume_after_sequence: _Optional[_Mapping[str, int]] = ...) -> None: ...

class BalanceUpdate(_message.Message):
    __slots__ = ("snapshot", "balance", "delta_minor", "delta", "transaction_id", "counterparty", "position")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    DELTA_MINOR_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    COUNTERPARTY_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    snapshot: bool
    balance: Balance
    delta_minor: int
    delta: str
    transaction_id: str
    counterparty: str
    position: str
    def __init__(self, snapshot: bool = ..., balance: _Optional[_Union[Balance, _Mapping]] = ..., delta_minor: _Optional[int] = ..., delta: _Optional[str] = ..., transaction_id: _Optional[str] = ..., counterparty: _Optional[str] = ..., position: _Optional[str] = ...) -> None: ...

class WatchTransferRequest(_message.Message):
    __slots__ = ("transaction_id",)
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    def __init__(self, transaction_id: _Optional[str] = ...) -> None: ...

class TransferUpdate(_message.Message):
    __slots__ = ("transaction_id", "from_account", "to_account", "amount", "amount_minor", "currency", "state", "reject_reason", "version", "is_final", "position", "timestamp_ms", "status", "reference", "metadata", "legs", "rejected_leg")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    TO_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REJECT_REASON_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    IS_FINAL_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    LEGS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_LEG_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    from_account: str
    to_account: str
    amount: str
    amount_minor: int
    currency: str
    state: TransferState
    reject_reason: str
    version: int
    is_final: bool
    position: str
    timestamp_ms: int
    status: _wallet_pb2.TransferStatus
    reference: str
    metadata: _containers.ScalarMap[str, str]
    legs: _containers.RepeatedCompositeFieldContainer[_wallet_pb2.TransferLeg]
    rejected_leg: int
    def __init__(self, transaction_id: _Optional[str] = ..., from_account: _Optional[str] = ..., to_account: _Optional[str] = ..., amount: _Optional[str] = ..., amount_minor: _Optional[int] = ..., currency: _Optional[str] = ..., state: _Optional[_Union[TransferState, str]] = ..., reject_reason: _Optional[str] = ..., version: _Optional[int] = ..., is_final: bool = ..., position: _Optional[str] = ..., timestamp_ms: _Optional[int] = ..., status: _Optional[_Union[_wallet_pb2.TransferStatus, str]] = ..., reference: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., legs: _Optional[_Iterable[_Union[_wallet_pb2.TransferLeg, _Mapping]]] = ..., rejected_leg: _Optional[int] = ...) -> None: ...

class ListTransfersRequest(_message.Message):
    __slots__ = ("account_id", "page_token", "page_size", "start_time", "end_time")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    page_token: str
    page_size: int
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, account_id: _Optional[str] = ..., page_token: _Optional[str] = ..., page_size: _Optional[int] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class HistoryEntry(_message.Message):
    __slots__ = ("sequence", "transaction_id", "delta_minor", "delta", "balance_after_minor", "balance_after", "counterparty", "currency", "position", "timestamp_ms", "reference", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    DELTA_MINOR_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    BALANCE_AFTER_MINOR_FIELD_NUMBER: _ClassVar[int]
    BALANCE_AFTER_FIELD_NUMBER: _ClassVar[int]
    COUNTERPARTY_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    transaction_id: str
    delta_minor: int
    delta: str
    balance_after_minor: int
    balance_after: str
    counterparty: str
    currency: str
    position: str
    timestamp_ms: int
    reference: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, sequence: _Optional[int] = ..., transaction_id: _Optional[str] = ..., delta_minor: _Optional[int] = ..., delta: _Optional[str] = ..., balance_after_minor: _Optional[int] = ..., balance_after: _Optional[str] = ..., counterparty: _Optional[str] = ..., currency: _Optional[str] = ..., position: _Optional[str] = ..., timestamp_ms: _Optional[int] = ..., reference: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListTransfersResponse(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[HistoryEntry]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[HistoryEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetBalanceAtRequest(_message.Message):
    __slots__ = ("account_id", "position", "timestamp_ms")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    position: str
    timestamp_ms: int
    def __init__(self, account_id: _Optional[str] = ..., position: _Optional[str] = ..., timestamp_ms: _Optional[int] = ...) -> None: ...

class GetBalanceAtResponse(_message.Message):
    __slots__ = ("balance",)
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    balance: Balance
    def __init__(self, balance: _Optional[_Union[Balance, _Mapping]] = ...) -> None: ...

class ListAccountsRequest(_message.Message):
    __slots__ = ("prefix", "page_token", "page_size")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    page_token: str
    page_size: int
    def __init__(self, prefix: _Optional[str] = ..., page_token: _Optional[str] = ..., page_size: _Optional[int] = ...) -> None: ...

class ListAccountsResponse(_message.Message):
    __slots__ = ("accounts", "next_page_token")
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    accounts: _containers.RepeatedCompositeFieldContainer[Balance]
    next_page_token: str
    def __init__(self, accounts: _Optional[_Iterable[_Union[Balance, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class BatchGetAccountsRequest(_message.Message):
    __slots__ = ("account_ids",)
    ACCOUNT_IDS_FIELD_NUMBER: _ClassVar[int]
    account_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, account_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class BatchGetAccountsResponse(_message.Message):
    __slots__ = ("accounts", "not_found")
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    NOT_FOUND_FIELD_NUMBER: _ClassVar[int]
    accounts: _containers.RepeatedCompositeFieldContainer[Balance]
    not_found: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, accounts: _Optional[_Iterable[_Union[Balance, _Mapping]]] = ..., not_found: _Optional[_Iterable[str]] = ...) -> None: ...

class BatchGetTransfersRequest(_message.Message):
    __slots__ = ("transaction_ids",)
    TRANSACTION_IDS_FIELD_NUMBER: _ClassVar[int]
    transaction_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, transaction_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class BatchGetTransfersResponse(_message.Message):
    __slots__ = ("transfers", "not_found")
    TRANSFERS_FIELD_NUMBER: _ClassVar[int]
    NOT_FOUND_FIELD_NUMBER: _ClassVar[int]
    transfers: _containers.RepeatedCompositeFieldContainer[TransferUpdate]
    not_found: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, transfers: _Optional[_Iterable[_Union[TransferUpdate, _Mapping]]] = ..., not_found: _Optional[_Iterable[str]] = ...) -> None: ...
