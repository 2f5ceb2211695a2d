from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AccountChangeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCOUNT_CHANGE_KIND_UNSPECIFIED: _ClassVar[AccountChangeKind]
    ACCOUNT_CHANGE_KIND_FREEZE: _ClassVar[AccountChangeKind]
    ACCOUNT_CHANGE_KIND_UNFREEZE: _ClassVar[AccountChangeKind]
    ACCOUNT_CHANGE_KIND_CLOSE: _ClassVar[AccountChangeKind]
    ACCOUNT_CHANGE_KIND_SET_OVERDRAFT_LIMIT: _ClassVar[AccountChangeKind]
ACCOUNT_CHANGE_KIND_UNSPECIFIED: AccountChangeKind
ACCOUNT_CHANGE_KIND_FREEZE: AccountChangeKind
ACCOUNT_CHANGE_KIND_UNFREEZE: AccountChangeKind
ACCOUNT_CHANGE_KIND_CLOSE: AccountChangeKind
ACCOUNT_CHANGE_KIND_SET_OVERDRAFT_LIMIT: AccountChangeKind

class SubscribeRequest(_message.Message):
    __slots__ = ("partition", "from_index")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    FROM_INDEX_FIELD_NUMBER: _ClassVar[int]
    partition: int
    from_index: int
    def __init__(self, partition: _Optional[int] = ..., from_index: _Optional[int] = ...) -> None: ...

class SubscribeResponse(_message.Message):
    __slots__ = ("partition", "index", "timestamp_ms", "events", "chain_hash")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    CHAIN_HASH_FIELD_NUMBER: _ClassVar[int]
    partition: int
    index: int
    timestamp_ms: int
    events: _containers.RepeatedCompositeFieldContainer[LedgerEvent]
    chain_hash: bytes
    def __init__(self, partition: _Optional[int] = ..., index: _Optional[int] = ..., timestamp_ms: _Optional[int] = ..., events: _Optional[_Iterable[_Union[LedgerEvent, _Mapping]]] = ..., chain_hash: _Optional[bytes] = ...) -> None: ...

class LedgerEvent(_message.Message):
    __slots__ = ("account_opened", "transfer_completed", "transfer_rejected", "transfer_debited", "transfer_credited", "credit_refused", "transfer_settled", "transfer_refunded", "hold_authorized", "hold_refused", "hold_captured", "hold_capture_debited", "hold_voided", "hold_expired", "account_changed", "legs_completed", "legs_rejected", "legs_prepared", "legs_part_refused", "legs_resolved", "legs_aborted", "legs_finished")
    ACCOUNT_OPENED_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_REJECTED_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_DEBITED_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_CREDITED_FIELD_NUMBER: _ClassVar[int]
    CREDIT_REFUSED_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_SETTLED_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_REFUNDED_FIELD_NUMBER: _ClassVar[int]
    HOLD_AUTHORIZED_FIELD_NUMBER: _ClassVar[int]
    HOLD_REFUSED_FIELD_NUMBER: _ClassVar[int]
    HOLD_CAPTURED_FIELD_NUMBER: _ClassVar[int]
    HOLD_CAPTURE_DEBITED_FIELD_NUMBER: _ClassVar[int]
    HOLD_VOIDED_FIELD_NUMBER: _ClassVar[int]
    HOLD_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_CHANGED_FIELD_NUMBER: _ClassVar[int]
    LEGS_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    LEGS_REJECTED_FIELD_NUMBER: _ClassVar[int]
    LEGS_PREPARED_FIELD_NUMBER: _ClassVar[int]
    LEGS_PART_REFUSED_FIELD_NUMBER: _ClassVar[int]
    LEGS_RESOLVED_FIELD_NUMBER: _ClassVar[int]
    LEGS_ABORTED_FIELD_NUMBER: _ClassVar[int]
    LEGS_FINISHED_FIELD_NUMBER: _ClassVar[int]
    account_opened: AccountOpened
    transfer_completed: TransferCompleted
    transfer_rejected: TransferRejected
    transfer_debited: TransferDebited
    transfer_credited: TransferCredited
    credit_refused: CreditRefused
    transfer_settled: TransferSettled
    transfer_refunded: TransferRefunded
    hold_authorized: HoldAuthorized
    hold_refused: HoldRefused
    hold_captured: HoldCaptured
    hold_capture_debited: HoldCaptureDebited
    hold_voided: HoldVoided
    hold_expired: HoldExpired
    account_changed: AccountChanged
    legs_completed: LegsCompleted
    legs_rejected: LegsRejected
    legs_prepared: LegsPrepared
    legs_part_refused: LegsPartRefused
    legs_resolved: LegsResolved
    legs_aborted: LegsAborted
    legs_finished: LegsFinished
    def __init__(self, account_opened: _Optional[_Union[AccountOpened, _Mapping]] = ..., transfer_completed: _Optional[_Union[TransferCompleted, _Mapping]] = ..., transfer_rejected: _Optional[_Union[TransferRejected, _Mapping]] = ..., transfer_debited: _Optional[_Union[TransferDebited, _Mapping]] = ..., transfer_credited: _Optional[_Union[TransferCredited, _Mapping]] = ..., credit_refused: _Optional[_Union[CreditRefused, _Mapping]] = ..., transfer_settled: _Optional[_Union[TransferSettled, _Mapping]] = ..., transfer_refunded: _Optional[_Union[TransferRefunded, _Mapping]] = ..., hold_authorized: _Optional[_Union[HoldAuthorized, _Mapping]] = ..., hold_refused: _Optional[_Union[HoldRefused, _Mapping]] = ..., hold_captured: _Optional[_Union[HoldCaptured, _Mapping]] = ..., hold_capture_debited: _Optional[_Union[HoldCaptureDebited, _Mapping]] = ..., hold_voided: _Optional[_Union[HoldVoided, _Mapping]] = ..., hold_expired: _Optional[_Union[HoldExpired, _Mapping]] = ..., account_changed: _Optional[_Union[AccountChanged, _Mapping]] = ..., legs_completed: _Optional[_Union[LegsCompleted, _Mapping]] = ..., legs_rejected: _Optional[_Union[LegsRejected, _Mapping]] = ..., legs_prepared: _Optional[_Union[LegsPrepared, _Mapping]] = ..., legs_part_refused: _Optional[_Union[LegsPartRefused, _Mapping]] = ..., legs_resolved: _Optional[_Union[LegsResolved, _Mapping]] = ..., legs_aborted: _Optional[_Union[LegsAborted, _Mapping]] = ..., legs_finished: _Optional[_Union[LegsFinished, _Mapping]] = ...) -> None: ...

class LegMoved(_message.Message):
    __slots__ = ("from_account", "to_account", "amount", "amount_minor")
    FROM_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    TO_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    from_account: str
    to_account: str
    amount: str
    amount_minor: int
    def __init__(self, from_account: _Optional[str] = ..., to_account: _Optional[str] = ..., amount: _Optional[str] = ..., amount_minor: _Optional[int] = ...) -> None: ...

class LegsCompleted(_message.Message):
    __slots__ = ("transaction_id", "currency", "legs", "annotations")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    LEGS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    currency: str
    legs: _containers.RepeatedCompositeFieldContainer[LegMoved]
    annotations: TransferAnnotations
    def __init__(self, transaction_id: _Optional[str] = ..., currency: _Optional[str] = ..., legs: _Optional[_Iterable[_Union[LegMoved, _Mapping]]] = ..., annotations: _Optional[_Union[TransferAnnotations, _Mapping]] = ...) -> None: ...

class LegsRejected(_message.Message):
    __slots__ = ("transaction_id", "currency", "legs", "annotations", "leg", "reason", "field")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    LEGS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    LEG_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    currency: str
    legs: _containers.RepeatedCompositeFieldContainer[LegMoved]
    annotations: TransferAnnotations
    leg: int
    reason: str
    field: str
    def __init__(self, transaction_id: _Optional[str] = ..., currency: _Optional[str] = ..., legs: _Optional[_Iterable[_Union[LegMoved, _Mapping]]] = ..., annotations: _Optional[_Union[TransferAnnotations, _Mapping]] = ..., leg: _Optional[int] = ..., reason: _Optional[str] = ..., field: _Optional[str] = ...) -> None: ...

class LegsPart(_message.Message):
    __slots__ = ("accounts", "home")
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    HOME_FIELD_NUMBER: _ClassVar[int]
    accounts: _containers.RepeatedScalarFieldContainer[str]
    home: bool
    def __init__(self, accounts: _Optional[_Iterable[str]] = ..., home: bool = ...) -> None: ...

class LegsMove(_message.Message):
    __slots__ = ("account_id", "delta", "delta_minor")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    DELTA_MINOR_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    delta: str
    delta_minor: int
    def __init__(self, account_id: _Optional[str] = ..., delta: _Optional[str] = ..., delta_minor: _Optional[int] = ...) -> None: ...

class LegsPrepared(_message.Message):
    __slots__ = ("transaction_id", "currency", "legs", "annotations", "part", "moves")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    LEGS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    MOVES_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    currency: str
    legs: _containers.RepeatedCompositeFieldContainer[LegMoved]
    annotations: TransferAnnotations
    part: LegsPart
    moves: _containers.RepeatedCompositeFieldContainer[LegsMove]
    def __init__(self, transaction_id: _Optional[str] = ..., currency: _Optional[str] = ..., legs: _Optional[_Iterable[_Union[LegMoved, _Mapping]]] = ..., annotations: _Optional[_Union[TransferAnnotations, _Mapping]] = ..., part: _Optional[_Union[LegsPart, _Mapping]] = ..., moves: _Optional[_Iterable[_Union[LegsMove, _Mapping]]] = ...) -> None: ...

class LegsPartRefused(_message.Message):
    __slots__ = ("transaction_id", "currency", "legs", "annotations", "part", "leg", "reason", "field")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    LEGS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    LEG_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    currency: str
    legs: _containers.RepeatedCompositeFieldContainer[LegMoved]
    annotations: TransferAnnotations
    part: LegsPart
    leg: int
    reason: str
    field: str
    def __init__(self, transaction_id: _Optional[str] = ..., currency: _Optional[str] = ..., legs: _Optional[_Iterable[_Union[LegMoved, _Mapping]]] = ..., annotations: _Optional[_Union[TransferAnnotations, _Mapping]] = ..., part: _Optional[_Union[LegsPart, _Mapping]] = ..., leg: _Optional[int] = ..., reason: _Optional[str] = ..., field: _Optional[str] = ...) -> None: ...

class LegsResolved(_message.Message):
    __slots__ = ("transaction_id", "currency", "legs", "annotations", "part", "completed", "leg", "reason", "field", "moves")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    LEGS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    LEG_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    MOVES_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    currency: str
    legs: _containers.RepeatedCompositeFieldContainer[LegMoved]
    annotations: TransferAnnotations
    part: LegsPart
    completed: bool
    leg: int
    reason: str
    field: str
    moves: _containers.RepeatedCompositeFieldContainer[LegsMove]
    def __init__(self, transaction_id: _Optional[str] = ..., currency: _Optional[str] = ..., legs: _Optional[_Iterable[_Union[LegMoved, _Mapping]]] = ..., annotations: _Optional[_Union[TransferAnnotations, _Mapping]] = ..., part: _Optional[_Union[LegsPart, _Mapping]] = ..., completed: bool = ..., leg: _Optional[int] = ..., reason: _Optional[str] = ..., field: _Optional[str] = ..., moves: _Optional[_Iterable[_Union[LegsMove, _Mapping]]] = ...) -> None: ...

class LegsAborted(_message.Message):
    __slots__ = ("transaction_id", "currency", "legs", "annotations", "part", "leg", "reason", "field")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    LEGS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    LEG_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    currency: str
    legs: _containers.RepeatedCompositeFieldContainer[LegMoved]
    annotations: TransferAnnotations
    part: LegsPart
    leg: int
    reason: str
    field: str
    def __init__(self, transaction_id: _Optional[str] = ..., currency: _Optional[str] = ..., legs: _Optional[_Iterable[_Union[LegMoved, _Mapping]]] = ..., annotations: _Optional[_Union[TransferAnnotations, _Mapping]] = ..., part: _Optional[_Union[LegsPart, _Mapping]] = ..., leg: _Optional[int] = ..., reason: _Optional[str] = ..., field: _Optional[str] = ...) -> None: ...

class LegsFinished(_message.Message):
    __slots__ = ("transaction_id",)
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    def __init__(self, transaction_id: _Optional[str] = ...) -> None: ...

class HoldAuthorized(_message.Message):
    __slots__ = ("transaction_id", "from_account", "to_account", "amount", "amount_minor", "currency", "expires_at_ms", "cross_partition", "annotations")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    TO_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    CROSS_PARTITION_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    from_account: str
    to_account: str
    amount: str
    amount_minor: int
    currency: str
    expires_at_ms: int
    cross_partition: bool
    annotations: TransferAnnotations
    def __init__(self, transaction_id: _Optional[str] = ..., from_account: _Optional[str] = ..., to_account: _Optional[str] = ..., amount: _Optional[str] = ..., amount_minor: _Optional[int] = ..., currency: _Optional[str] = ..., expires_at_ms: _Optional[int] = ..., cross_partition: bool = ..., annotations: _Optional[_Union[TransferAnnotations, _Mapping]] = ...) -> None: ...

class HoldRefused(_message.Message):
    __slots__ = ("transaction_id", "from_account", "to_account", "amount", "amount_minor", "currency", "reason", "field", "expires_at_ms", "cross_partition", "annotations")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    TO_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    CROSS_PARTITION_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    from_account: str
    to_account: str
    amount: str
    amount_minor: int
    currency: str
    reason: str
    field: str
    expires_at_ms: int
    cross_partition: bool
    annotations: TransferAnnotations
    def __init__(self, transaction_id: _Optional[str] = ..., from_account: _Optional[str] = ..., to_account: _Optional[str] = ..., amount: _Optional[str] = ..., amount_minor: _Optional[int] = ..., currency: _Optional[str] = ..., reason: _Optional[str] = ..., field: _Optional[str] = ..., expires_at_ms: _Optional[int] = ..., cross_partition: bool = ..., annotations: _Optional[_Union[TransferAnnotations, _Mapping]] = ...) -> None: ...

class HoldCaptured(_message.Message):
    __slots__ = ("transaction_id", "amount_minor")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    amount_minor: int
    def __init__(self, transaction_id: _Optional[str] = ..., amount_minor: _Optional[int] = ...) -> None: ...

class HoldCaptureDebited(_message.Message):
    __slots__ = ("transaction_id", "amount_minor")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    amount_minor: int
    def __init__(self, transaction_id: _Optional[str] = ..., amount_minor: _Optional[int] = ...) -> None: ...

class HoldVoided(_message.Message):
    __slots__ = ("transaction_id",)
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    def __init__(self, transaction_id: _Optional[str] = ...) -> None: ...

class HoldExpired(_message.Message):
    __slots__ = ("transaction_id",)
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    def __init__(self, transaction_id: _Optional[str] = ...) -> None: ...

class AccountChanged(_message.Message):
    __slots__ = ("account_id", "change", "overdraft_limit", "overdraft_limit_minor", "currency")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    OVERDRAFT_LIMIT_FIELD_NUMBER: _ClassVar[int]
    OVERDRAFT_LIMIT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    change: AccountChangeKind
    overdraft_limit: str
    overdraft_limit_minor: int
    currency: str
    def __init__(self, account_id: _Optional[str] = ..., change: _Optional[_Union[AccountChangeKind, str]] = ..., overdraft_limit: _Optional[str] = ..., overdraft_limit_minor: _Optional[int] = ..., currency: _Optional[str] = ...) -> None: ...

class AccountOpened(_message.Message):
    __slots__ = ("account_id", "currency", "allow_negative_balance", "annotations")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    ALLOW_NEGATIVE_BALANCE_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    currency: str
    allow_negative_balance: bool
    annotations: TransferAnnotations
    def __init__(self, account_id: _Optional[str] = ..., currency: _Optional[str] = ..., allow_negative_balance: bool = ..., annotations: _Optional[_Union[TransferAnnotations, _Mapping]] = ...) -> None: ...

class TransferAnnotations(_message.Message):
    __slots__ = ("reference", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    reference: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, reference: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class TransferCompleted(_message.Message):
    __slots__ = ("transaction_id", "from_account", "to_account", "amount", "amount_minor", "currency", "annotations")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    TO_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    from_account: str
    to_account: str
    amount: str
    amount_minor: int
    currency: str
    annotations: TransferAnnotations
    def __init__(self, transaction_id: _Optional[str] = ..., from_account: _Optional[str] = ..., to_account: _Optional[str] = ..., amount: _Optional[str] = ..., amount_minor: _Optional[int] = ..., currency: _Optional[str] = ..., annotations: _Optional[_Union[TransferAnnotations, _Mapping]] = ...) -> None: ...

class TransferRejected(_message.Message):
    __slots__ = ("transaction_id", "from_account", "to_account", "amount", "amount_minor", "currency", "reason", "field", "annotations")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    TO_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    from_account: str
    to_account: str
    amount: str
    amount_minor: int
    currency: str
    reason: str
    field: str
    annotations: TransferAnnotations
    def __init__(self, transaction_id: _Optional[str] = ..., from_account: _Optional[str] = ..., to_account: _Optional[str] = ..., amount: _Optional[str] = ..., amount_minor: _Optional[int] = ..., currency: _Optional[str] = ..., reason: _Optional[str] = ..., field: _Optional[str] = ..., annotations: _Optional[_Union[TransferAnnotations, _Mapping]] = ...) -> None: ...

class TransferDebited(_message.Message):
    __slots__ = ("transaction_id", "from_account", "to_account", "amount", "amount_minor", "currency", "annotations")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    TO_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    from_account: str
    to_account: str
    amount: str
    amount_minor: int
    currency: str
    annotations: TransferAnnotations
    def __init__(self, transaction_id: _Optional[str] = ..., from_account: _Optional[str] = ..., to_account: _Optional[str] = ..., amount: _Optional[str] = ..., amount_minor: _Optional[int] = ..., currency: _Optional[str] = ..., annotations: _Optional[_Union[TransferAnnotations, _Mapping]] = ...) -> None: ...

class TransferCredited(_message.Message):
    __slots__ = ("transaction_id", "from_account", "to_account", "amount", "amount_minor", "currency", "annotations")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    TO_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    from_account: str
    to_account: str
    amount: str
    amount_minor: int
    currency: str
    annotations: TransferAnnotations
    def __init__(self, transaction_id: _Optional[str] = ..., from_account: _Optional[str] = ..., to_account: _Optional[str] = ..., amount: _Optional[str] = ..., amount_minor: _Optional[int] = ..., currency: _Optional[str] = ..., annotations: _Optional[_Union[TransferAnnotations, _Mapping]] = ...) -> None: ...

class CreditRefused(_message.Message):
    __slots__ = ("transaction_id", "from_account", "to_account", "amount", "amount_minor", "currency", "reason", "field", "annotations")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    TO_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    from_account: str
    to_account: str
    amount: str
    amount_minor: int
    currency: str
    reason: str
    field: str
    annotations: TransferAnnotations
    def __init__(self, transaction_id: _Optional[str] = ..., from_account: _Optional[str] = ..., to_account: _Optional[str] = ..., amount: _Optional[str] = ..., amount_minor: _Optional[int] = ..., currency: _Optional[str] = ..., reason: _Optional[str] = ..., field: _Optional[str] = ..., annotations: _Optional[_Union[TransferAnnotations, _Mapping]] = ...) -> None: ...

class TransferSettled(_message.Message):
    __slots__ = ("transaction_id", "credit_index")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    CREDIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    credit_index: int
    def __init__(self, transaction_id: _Optional[str] = ..., credit_index: _Optional[int] = ...) -> None: ...

class TransferRefunded(_message.Message):
    __slots__ = ("transaction_id", "reason", "field", "credit_index")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    CREDIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    reason: str
    field: str
    credit_index: int
    def __init__(self, transaction_id: _Optional[str] = ..., reason: _Optional[str] = ..., field: _Optional[str] = ..., credit_index: _Optional[int] = ...) -> None: ...
