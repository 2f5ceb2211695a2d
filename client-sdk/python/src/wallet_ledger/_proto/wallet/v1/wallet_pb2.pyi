from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AccountStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCOUNT_STATUS_UNSPECIFIED: _ClassVar[AccountStatus]
    ACCOUNT_STATUS_ACTIVE: _ClassVar[AccountStatus]
    ACCOUNT_STATUS_FROZEN: _ClassVar[AccountStatus]
    ACCOUNT_STATUS_CLOSED: _ClassVar[AccountStatus]

class TransferStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRANSFER_STATUS_UNSPECIFIED: _ClassVar[TransferStatus]
    TRANSFER_STATUS_COMPLETED: _ClassVar[TransferStatus]
    TRANSFER_STATUS_REJECTED: _ClassVar[TransferStatus]
    TRANSFER_STATUS_IN_FLIGHT: _ClassVar[TransferStatus]
    TRANSFER_STATUS_PENDING: _ClassVar[TransferStatus]
    TRANSFER_STATUS_VOIDED: _ClassVar[TransferStatus]
    TRANSFER_STATUS_EXPIRED: _ClassVar[TransferStatus]
ACCOUNT_STATUS_UNSPECIFIED: AccountStatus
ACCOUNT_STATUS_ACTIVE: AccountStatus
ACCOUNT_STATUS_FROZEN: AccountStatus
ACCOUNT_STATUS_CLOSED: AccountStatus
TRANSFER_STATUS_UNSPECIFIED: TransferStatus
TRANSFER_STATUS_COMPLETED: TransferStatus
TRANSFER_STATUS_REJECTED: TransferStatus
TRANSFER_STATUS_IN_FLIGHT: TransferStatus
TRANSFER_STATUS_PENDING: TransferStatus
TRANSFER_STATUS_VOIDED: TransferStatus
TRANSFER_STATUS_EXPIRED: TransferStatus

class OpenAccountRequest(_message.Message):
    __slots__ = ("account_id", "currency", "allow_negative_balance", "reference", "metadata")
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
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    currency: str
    allow_negative_balance: bool
    reference: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, account_id: _Optional[str] = ..., currency: _Optional[str] = ..., allow_negative_balance: bool = ..., reference: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class OpenAccountResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: Account
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ...) -> None: ...

class OpenAccountResult(_message.Message):
    __slots__ = ("account_id", "status", "account", "error")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    status: str
    account: Account
    error: TransferError
    def __init__(self, account_id: _Optional[str] = ..., status: _Optional[str] = ..., account: _Optional[_Union[Account, _Mapping]] = ..., error: _Optional[_Union[TransferError, _Mapping]] = ...) -> None: ...

class Account(_message.Message):
    __slots__ = ("account_id", "currency", "allow_negative_balance", "balance", "balance_minor", "held", "available", "status", "overdraft_limit", "reference", "metadata")
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
    held: str
    available: str
    status: AccountStatus
    overdraft_limit: str
    reference: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, account_id: _Optional[str] = ..., currency: _Optional[str] = ..., allow_negative_balance: bool = ..., balance: _Optional[str] = ..., balance_minor: _Optional[int] = ..., held: _Optional[str] = ..., available: _Optional[str] = ..., status: _Optional[_Union[AccountStatus, str]] = ..., overdraft_limit: _Optional[str] = ..., reference: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class FreezeAccountRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class FreezeAccountResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: Account
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ...) -> None: ...

class UnfreezeAccountRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class UnfreezeAccountResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: Account
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ...) -> None: ...

class CloseAccountRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class CloseAccountResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: Account
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ...) -> None: ...

class SetOverdraftLimitRequest(_message.Message):
    __slots__ = ("account_id", "overdraft_limit", "currency")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    OVERDRAFT_LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    overdraft_limit: str
    currency: str
    def __init__(self, account_id: _Optional[str] = ..., overdraft_limit: _Optional[str] = ..., currency: _Optional[str] = ...) -> None: ...

class SetOverdraftLimitResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: Account
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ...) -> None: ...

class TransferRequest(_message.Message):
    __slots__ = ("transaction_id", "from_account", "to_account", "amount", "currency", "reference", "metadata")
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
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    from_account: str
    to_account: str
    amount: str
    currency: str
    reference: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, transaction_id: _Optional[str] = ..., from_account: _Optional[str] = ..., to_account: _Optional[str] = ..., amount: _Optional[str] = ..., currency: _Optional[str] = ..., reference: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class TransferLeg(_message.Message):
    __slots__ = ("from_account", "to_account", "amount", "currency")
    FROM_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    TO_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    from_account: str
    to_account: str
    amount: str
    currency: str
    def __init__(self, from_account: _Optional[str] = ..., to_account: _Optional[str] = ..., amount: _Optional[str] = ..., currency: _Optional[str] = ...) -> None: ...

class TransferLegsRequest(_message.Message):
    __slots__ = ("transaction_id", "legs", "reference", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    LEGS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    legs: _containers.RepeatedCompositeFieldContainer[TransferLeg]
    reference: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, transaction_id: _Optional[str] = ..., legs: _Optional[_Iterable[_Union[TransferLeg, _Mapping]]] = ..., reference: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class TransferResponse(_message.Message):
    __slots__ = ("status", "transaction_id", "consistency_token", "replayed")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    status: str
    transaction_id: str
    consistency_token: str
    replayed: bool
    def __init__(self, status: _Optional[str] = ..., transaction_id: _Optional[str] = ..., consistency_token: _Optional[str] = ..., replayed: bool = ...) -> None: ...

class TransferBatchRequest(_message.Message):
    __slots__ = ("transfers",)
    TRANSFERS_FIELD_NUMBER: _ClassVar[int]
    transfers: _containers.RepeatedCompositeFieldContainer[TransferRequest]
    def __init__(self, transfers: _Optional[_Iterable[_Union[TransferRequest, _Mapping]]] = ...) -> None: ...

class TransferBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[TransferResult]
    def __init__(self, results: _Optional[_Iterable[_Union[TransferResult, _Mapping]]] = ...) -> None: ...

class TransferResult(_message.Message):
    __slots__ = ("transaction_id", "status", "consistency_token", "error", "replayed")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    status: str
    consistency_token: str
    error: TransferError
    replayed: bool
    def __init__(self, transaction_id: _Optional[str] = ..., status: _Optional[str] = ..., consistency_token: _Optional[str] = ..., error: _Optional[_Union[TransferError, _Mapping]] = ..., replayed: bool = ...) -> None: ...

class TransferError(_message.Message):
    __slots__ = ("code", "reason", "message", "field")
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    code: int
    reason: str
    message: str
    field: str
    def __init__(self, code: _Optional[int] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., field: _Optional[str] = ...) -> None: ...

class AuthorizeTransferRequest(_message.Message):
    __slots__ = ("transaction_id", "from_account", "to_account", "amount", "currency", "timeout", "reference", "metadata")
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
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    from_account: str
    to_account: str
    amount: str
    currency: str
    timeout: _duration_pb2.Duration
    reference: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, transaction_id: _Optional[str] = ..., from_account: _Optional[str] = ..., to_account: _Optional[str] = ..., amount: _Optional[str] = ..., currency: _Optional[str] = ..., timeout: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., reference: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CaptureTransferRequest(_message.Message):
    __slots__ = ("transaction_id", "from_account", "amount")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    from_account: str
    amount: str
    def __init__(self, transaction_id: _Optional[str] = ..., from_account: _Optional[str] = ..., amount: _Optional[str] = ...) -> None: ...

class VoidTransferRequest(_message.Message):
    __slots__ = ("transaction_id", "from_account")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    from_account: str
    def __init__(self, transaction_id: _Optional[str] = ..., from_account: _Optional[str] = ...) -> None: ...

class HoldResponse(_message.Message):
    __slots__ = ("transfer", "replayed", "consistency_token")
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_TOKEN_FIELD_NUMBER: _ClassVar[int]
    transfer: Transfer
    replayed: bool
    consistency_token: str
    def __init__(self, transfer: _Optional[_Union[Transfer, _Mapping]] = ..., replayed: bool = ..., consistency_token: _Optional[str] = ...) -> None: ...

class GetAccountRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class GetAccountResponse(_message.Message):
    __slots__ = ("account", "position")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    account: Account
    position: str
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ..., position: _Optional[str] = ...) -> None: ...

class GetTransferRequest(_message.Message):
    __slots__ = ("transaction_id",)
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    def __init__(self, transaction_id: _Optional[str] = ...) -> None: ...

class GetTransferResponse(_message.Message):
    __slots__ = ("transfer",)
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    transfer: Transfer
    def __init__(self, transfer: _Optional[_Union[Transfer, _Mapping]] = ...) -> None: ...

class HoldInfo(_message.Message):
    __slots__ = ("expires_at", "captured_amount", "resolved_at")
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    CAPTURED_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    expires_at: _timestamp_pb2.Timestamp
    captured_amount: str
    resolved_at: str
    def __init__(self, expires_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., captured_amount: _Optional[str] = ..., resolved_at: _Optional[str] = ...) -> None: ...

class Transfer(_message.Message):
    __slots__ = ("transaction_id", "from_account", "to_account", "amount", "currency", "status", "reject_reason", "committed_at_unix_ms", "consistency_token", "hold", "reference", "metadata", "legs", "rejected_leg")
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
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REJECT_REASON_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_TOKEN_FIELD_NUMBER: _ClassVar[int]
    HOLD_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    LEGS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_LEG_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    from_account: str
    to_account: str
    amount: str
    currency: str
    status: TransferStatus
    reject_reason: str
    committed_at_unix_ms: int
    consistency_token: str
    hold: HoldInfo
    reference: str
    metadata: _containers.ScalarMap[str, str]
    legs: _containers.RepeatedCompositeFieldContainer[TransferLeg]
    rejected_leg: int
    def __init__(self, transaction_id: _Optional[str] = ..., from_account: _Optional[str] = ..., to_account: _Optional[str] = ..., amount: _Optional[str] = ..., currency: _Optional[str] = ..., status: _Optional[_Union[TransferStatus, str]] = ..., reject_reason: _Optional[str] = ..., committed_at_unix_ms: _Optional[int] = ..., consistency_token: _Optional[str] = ..., hold: _Optional[_Union[HoldInfo, _Mapping]] = ..., reference: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., legs: _Optional[_Iterable[_Union[TransferLeg, _Mapping]]] = ..., rejected_leg: _Optional[int] = ...) -> None: ...
