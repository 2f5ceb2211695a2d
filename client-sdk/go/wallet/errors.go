package wallet

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"wallet.ledger/client-sdk/go/walletv1"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of every wallet error.
const ErrorDomain = "wallet.ledger"

// MetadataLeaderAddress is the ErrorInfo metadata key with the leader's host:port (NOT_LEADER).
const MetadataLeaderAddress = "leader_address"

// MetadataLeaderID is the ErrorInfo metadata key with the leader's node id (NOT_LEADER).
const MetadataLeaderID = "leader_id"

// MetadataScope is the ErrorInfo metadata key naming the scope a token lacks (SCOPE_DENIED,
// ISSUE_SCOPE_REQUIRED).
const MetadataScope = "scope"

// Stable reasons (google.rpc.ErrorInfo.reason, TransferError.reason) the nodes send,
// initialised from the generated walletv1.ErrorReason enum (proto/wallet/v1/errors.proto):
// each is the value's name without ERROR_REASON_. Match on these, never on messages. A reason
// outside the enum (from a newer node) is passed on as it comes: decide by the gRPC code then.
var (
	// ReasonInvalidTransactionID: transaction_id is not a canonical UUID (INVALID_ARGUMENT).
	ReasonInvalidTransactionID = ReasonName(walletv1.ErrorReason_ERROR_REASON_INVALID_TRANSACTION_ID)
	// ReasonInvalidAccountID: An account id is empty, too long or has characters outside the allowed set (INVALID_ARGUMENT).
	ReasonInvalidAccountID = ReasonName(walletv1.ErrorReason_ERROR_REASON_INVALID_ACCOUNT_ID)
	// ReasonInvalidAmount: amount is not an exact positive decimal within the currency's minor units (INVALID_ARGUMENT).
	ReasonInvalidAmount = ReasonName(walletv1.ErrorReason_ERROR_REASON_INVALID_AMOUNT)
	// ReasonUnknownCurrency: currency is not an ISO 4217 code (INVALID_ARGUMENT).
	ReasonUnknownCurrency = ReasonName(walletv1.ErrorReason_ERROR_REASON_UNKNOWN_CURRENCY)
	// ReasonSameAccount: from_account and to_account are the same account (INVALID_ARGUMENT).
	ReasonSameAccount = ReasonName(walletv1.ErrorReason_ERROR_REASON_SAME_ACCOUNT)
	// ReasonInvalidBatchSize: TransferBatch with no transfer or more than 1,024 (INVALID_ARGUMENT); nothing in it is decided.
	ReasonInvalidBatchSize = ReasonName(walletv1.ErrorReason_ERROR_REASON_INVALID_BATCH_SIZE)
	// ReasonAmountOutOfRange: A command's amount outside 1..=AMOUNT_MINOR_MAX minor units (INVALID_ARGUMENT; peer credits, or the ledger's own check).
	ReasonAmountOutOfRange = ReasonName(walletv1.ErrorReason_ERROR_REASON_AMOUNT_OUT_OF_RANGE)
	// ReasonNilTransactionID: A command with the nil UUID as its id (INVALID_ARGUMENT; peer credits, or the ledger's own check).
	ReasonNilTransactionID = ReasonName(walletv1.ErrorReason_ERROR_REASON_NIL_TRANSACTION_ID)
	// ReasonWrongPartition: A command for an account of another partition (INVALID_ARGUMENT; peer credits).
	ReasonWrongPartition = ReasonName(walletv1.ErrorReason_ERROR_REASON_WRONG_PARTITION)
	// ReasonCreditFromLocalAccount: A peer credit whose source account lives in the target partition (INVALID_ARGUMENT).
	ReasonCreditFromLocalAccount = ReasonName(walletv1.ErrorReason_ERROR_REASON_CREDIT_FROM_LOCAL_ACCOUNT)
	// ReasonSettleOfUnknownTransfer: A settle of a transfer the source partition never debited (INVALID_ARGUMENT).
	ReasonSettleOfUnknownTransfer = ReasonName(walletv1.ErrorReason_ERROR_REASON_SETTLE_OF_UNKNOWN_TRANSFER)
	// ReasonTooManyCredits: A peer credit batch above its limit (INVALID_ARGUMENT).
	ReasonTooManyCredits = ReasonName(walletv1.ErrorReason_ERROR_REASON_TOO_MANY_CREDITS)
	// ReasonInvalidConsistencyToken: Read node: consistency_token is not a token a write node gave (INVALID_ARGUMENT).
	ReasonInvalidConsistencyToken = ReasonName(walletv1.ErrorReason_ERROR_REASON_INVALID_CONSISTENCY_TOKEN)
	// ReasonInvalidPosition: Read node: a position that is not partition:index (INVALID_ARGUMENT).
	ReasonInvalidPosition = ReasonName(walletv1.ErrorReason_ERROR_REASON_INVALID_POSITION)
	// ReasonPositionPartitionMismatch: Read node: a position of another partition than the account's (INVALID_ARGUMENT).
	ReasonPositionPartitionMismatch = ReasonName(walletv1.ErrorReason_ERROR_REASON_POSITION_PARTITION_MISMATCH)
	// ReasonMissingPoint: Read node: GetBalanceAt without a position or a time (INVALID_ARGUMENT).
	ReasonMissingPoint = ReasonName(walletv1.ErrorReason_ERROR_REASON_MISSING_POINT)
	// ReasonInvalidPageToken: Read node: page_token is not one this node gave (INVALID_ARGUMENT).
	ReasonInvalidPageToken = ReasonName(walletv1.ErrorReason_ERROR_REASON_INVALID_PAGE_TOKEN)
	// ReasonPageSizeTooLarge: Read node: page_size above its limit (INVALID_ARGUMENT).
	ReasonPageSizeTooLarge = ReasonName(walletv1.ErrorReason_ERROR_REASON_PAGE_SIZE_TOO_LARGE)
	// ReasonTooManyAccounts: Read node: a watch of more accounts than its limit (INVALID_ARGUMENT).
	ReasonTooManyAccounts = ReasonName(walletv1.ErrorReason_ERROR_REASON_TOO_MANY_ACCOUNTS)
	// ReasonInvalidResumeSequence: Read node: a resume sequence ahead of the account's (INVALID_ARGUMENT).
	ReasonInvalidResumeSequence = ReasonName(walletv1.ErrorReason_ERROR_REASON_INVALID_RESUME_SEQUENCE)
	// ReasonInvalidPartition: Event log or peer call: a partition this cluster does not have (INVALID_ARGUMENT).
	ReasonInvalidPartition = ReasonName(walletv1.ErrorReason_ERROR_REASON_INVALID_PARTITION)
	// ReasonInvalidFromIndex: Event log: from_index 0 (INVALID_ARGUMENT).
	ReasonInvalidFromIndex = ReasonName(walletv1.ErrorReason_ERROR_REASON_INVALID_FROM_INDEX)
	// ReasonMalformedMessage: Not a protobuf message of the method's type (INVALID_ARGUMENT).
	ReasonMalformedMessage = ReasonName(walletv1.ErrorReason_ERROR_REASON_MALFORMED_MESSAGE)
	// ReasonMessageTooLarge: A message above the 4 MiB decoding limit (INVALID_ARGUMENT).
	ReasonMessageTooLarge = ReasonName(walletv1.ErrorReason_ERROR_REASON_MESSAGE_TOO_LARGE)
	// ReasonMisaddressedMessage: Peer call: a raft message for another node (INVALID_ARGUMENT).
	ReasonMisaddressedMessage = ReasonName(walletv1.ErrorReason_ERROR_REASON_MISADDRESSED_MESSAGE)
	// ReasonAccountNotFound: The account does not exist (NOT_FOUND; field from_account, to_account or account_id).
	ReasonAccountNotFound = ReasonName(walletv1.ErrorReason_ERROR_REASON_ACCOUNT_NOT_FOUND)
	// ReasonTransferNotFound: No transfer with this transaction_id (NOT_FOUND).
	ReasonTransferNotFound = ReasonName(walletv1.ErrorReason_ERROR_REASON_TRANSFER_NOT_FOUND)
	// ReasonSnapshotNotFound: Peer call: no snapshot at the index asked for (NOT_FOUND).
	ReasonSnapshotNotFound = ReasonName(walletv1.ErrorReason_ERROR_REASON_SNAPSHOT_NOT_FOUND)
	// ReasonInsufficientFunds: The debited account's balance is below the amount (FAILED_PRECONDITION).
	ReasonInsufficientFunds = ReasonName(walletv1.ErrorReason_ERROR_REASON_INSUFFICIENT_FUNDS)
	// ReasonCurrencyMismatch: The transfer's currency differs from an account's (FAILED_PRECONDITION).
	ReasonCurrencyMismatch = ReasonName(walletv1.ErrorReason_ERROR_REASON_CURRENCY_MISMATCH)
	// ReasonTransactionIDReused: The id was used for a different transfer (ALREADY_EXISTS); nothing moved.
	ReasonTransactionIDReused = ReasonName(walletv1.ErrorReason_ERROR_REASON_TRANSACTION_ID_REUSED)
	// ReasonAccountExistsWithOtherParameters: OpenAccount of an open account with other parameters (ALREADY_EXISTS).
	ReasonAccountExistsWithOtherParameters = ReasonName(walletv1.ErrorReason_ERROR_REASON_ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS)
	// ReasonNotLeader: This node does not lead the partition (UNAVAILABLE; metadata leader_id, leader_address); only to a write sent with wallet-no-forward.
	ReasonNotLeader = ReasonName(walletv1.ErrorReason_ERROR_REASON_NOT_LEADER)
	// ReasonForwardFailed: The node forwarded the write to the leader and got no answer (UNAVAILABLE): outcome unknown, retry with the same id.
	ReasonForwardFailed = ReasonName(walletv1.ErrorReason_ERROR_REASON_FORWARD_FAILED)
	// ReasonNoLeader: The partition has no leader right now (UNAVAILABLE, RetryInfo).
	ReasonNoLeader = ReasonName(walletv1.ErrorReason_ERROR_REASON_NO_LEADER)
	// ReasonOutcomeUnknown: Leadership changed while the command was in flight (UNAVAILABLE): retry with the same id.
	ReasonOutcomeUnknown = ReasonName(walletv1.ErrorReason_ERROR_REASON_OUTCOME_UNKNOWN)
	// ReasonReadTimeout: A linearizable read did not complete in time (UNAVAILABLE, RetryInfo).
	ReasonReadTimeout = ReasonName(walletv1.ErrorReason_ERROR_REASON_READ_TIMEOUT)
	// ReasonShuttingDown: The node is shutting down (UNAVAILABLE).
	ReasonShuttingDown = ReasonName(walletv1.ErrorReason_ERROR_REASON_SHUTTING_DOWN)
	// ReasonStorageFailure: The node's RocksDB write or fsync failed; it stops (UNAVAILABLE): retry the same id on another node.
	ReasonStorageFailure = ReasonName(walletv1.ErrorReason_ERROR_REASON_STORAGE_FAILURE)
	// ReasonConsistencyWaitTimeout: Read node: the position a consistency token names was not projected in time (UNAVAILABLE).
	ReasonConsistencyWaitTimeout = ReasonName(walletv1.ErrorReason_ERROR_REASON_CONSISTENCY_WAIT_TIMEOUT)
	// ReasonPartitionStuck: Read node: the fold stopped this partition at a block it cannot apply (UNAVAILABLE).
	ReasonPartitionStuck = ReasonName(walletv1.ErrorReason_ERROR_REASON_PARTITION_STUCK)
	// ReasonEventLogUnreadable: Event log: the node could not read its own log (INTERNAL).
	ReasonEventLogUnreadable = ReasonName(walletv1.ErrorReason_ERROR_REASON_EVENT_LOG_UNREADABLE)
	// ReasonOverloaded: The node's call limit or command queue is full (RESOURCE_EXHAUSTED, RetryInfo).
	ReasonOverloaded = ReasonName(walletv1.ErrorReason_ERROR_REASON_OVERLOADED)
	// ReasonTooManyWatchers: Read node: watches at their limit (RESOURCE_EXHAUSTED).
	ReasonTooManyWatchers = ReasonName(walletv1.ErrorReason_ERROR_REASON_TOO_MANY_WATCHERS)
	// ReasonTooManySubscribers: Event log: subscribers at their limit (RESOURCE_EXHAUSTED).
	ReasonTooManySubscribers = ReasonName(walletv1.ErrorReason_ERROR_REASON_TOO_MANY_SUBSCRIBERS)
	// ReasonWatchLagged: The watcher fell too far behind (ABORTED): resume from the last sequence.
	ReasonWatchLagged = ReasonName(walletv1.ErrorReason_ERROR_REASON_WATCH_LAGGED)
	// ReasonEventLogCorrupt: Event log: a block fails its hash chain (DATA_LOSS).
	ReasonEventLogCorrupt = ReasonName(walletv1.ErrorReason_ERROR_REASON_EVENT_LOG_CORRUPT)
	// ReasonMissingToken: The call needs authorization: Bearer <token> (UNAUTHENTICATED).
	ReasonMissingToken = ReasonName(walletv1.ErrorReason_ERROR_REASON_MISSING_TOKEN)
	// ReasonInvalidToken: The token is malformed or unknown (UNAUTHENTICATED).
	ReasonInvalidToken = ReasonName(walletv1.ErrorReason_ERROR_REASON_INVALID_TOKEN)
	// ReasonPeerCertRequired: PeerService needs a write node's client certificate (UNAUTHENTICATED).
	ReasonPeerCertRequired = ReasonName(walletv1.ErrorReason_ERROR_REASON_PEER_CERT_REQUIRED)
	// ReasonScopeDenied: The token lacks the scope the call needs (PERMISSION_DENIED; metadata scope).
	ReasonScopeDenied = ReasonName(walletv1.ErrorReason_ERROR_REASON_SCOPE_DENIED)
	// ReasonIssueScopeRequired: Debiting an account that may go negative needs the issue scope (PERMISSION_DENIED).
	ReasonIssueScopeRequired = ReasonName(walletv1.ErrorReason_ERROR_REASON_ISSUE_SCOPE_REQUIRED)
	// ReasonAccountPrefixDenied: The account is outside the token's account prefixes (PERMISSION_DENIED).
	ReasonAccountPrefixDenied = ReasonName(walletv1.ErrorReason_ERROR_REASON_ACCOUNT_PREFIX_DENIED)
	// ReasonNotAPeer: Peer call naming a node id that is not a peer, or not the certificate's (PERMISSION_DENIED).
	ReasonNotAPeer = ReasonName(walletv1.ErrorReason_ERROR_REASON_NOT_A_PEER)
	// ReasonUnknownMethod: No such service or method (UNIMPLEMENTED).
	ReasonUnknownMethod = ReasonName(walletv1.ErrorReason_ERROR_REASON_UNKNOWN_METHOD)
	// ReasonUnsupportedCompression: A grpc-encoding other than identity (UNIMPLEMENTED).
	ReasonUnsupportedCompression = ReasonName(walletv1.ErrorReason_ERROR_REASON_UNSUPPORTED_COMPRESSION)
	// ReasonInternal: Read node: an unexpected failure inside the node (INTERNAL).
	ReasonInternal = ReasonName(walletv1.ErrorReason_ERROR_REASON_INTERNAL)
	// ReasonHoldNotFound: CaptureTransfer, VoidTransfer: no hold with this transaction_id (NOT_FOUND).
	ReasonHoldNotFound = ReasonName(walletv1.ErrorReason_ERROR_REASON_HOLD_NOT_FOUND)
	// ReasonNotAHold: CaptureTransfer, VoidTransfer: the transaction_id names an ordinary transfer (FAILED_PRECONDITION).
	ReasonNotAHold = ReasonName(walletv1.ErrorReason_ERROR_REASON_NOT_A_HOLD)
	// ReasonCaptureExceedsHold: CaptureTransfer: the amount exceeds the held amount (FAILED_PRECONDITION).
	ReasonCaptureExceedsHold = ReasonName(walletv1.ErrorReason_ERROR_REASON_CAPTURE_EXCEEDS_HOLD)
	// ReasonHoldAlreadyCaptured: The hold was captured with another amount, or a void came after its capture (FAILED_PRECONDITION).
	ReasonHoldAlreadyCaptured = ReasonName(walletv1.ErrorReason_ERROR_REASON_HOLD_ALREADY_CAPTURED)
	// ReasonHoldAlreadyVoided: The hold was voided (FAILED_PRECONDITION).
	ReasonHoldAlreadyVoided = ReasonName(walletv1.ErrorReason_ERROR_REASON_HOLD_ALREADY_VOIDED)
	// ReasonHoldExpired: The hold expired before it was captured or voided (FAILED_PRECONDITION).
	ReasonHoldExpired = ReasonName(walletv1.ErrorReason_ERROR_REASON_HOLD_EXPIRED)
	// ReasonHoldNotAuthorized: The hold's authorization was refused: nothing is held (FAILED_PRECONDITION).
	ReasonHoldNotAuthorized = ReasonName(walletv1.ErrorReason_ERROR_REASON_HOLD_NOT_AUTHORIZED)
	// ReasonHoldCaptureRefused: A cross-partition capture of the hold was refused by the target: nothing is held (FAILED_PRECONDITION).
	ReasonHoldCaptureRefused = ReasonName(walletv1.ErrorReason_ERROR_REASON_HOLD_CAPTURE_REFUSED)
	// ReasonHoldsLimitReached: The partition keeps its maximum of pending holds (RESOURCE_EXHAUSTED); retry later.
	ReasonHoldsLimitReached = ReasonName(walletv1.ErrorReason_ERROR_REASON_HOLDS_LIMIT_REACHED)
	// ReasonHoldTimeoutOutOfRange: AuthorizeTransfer: timeout missing, under 1 ms or over 30 days (INVALID_ARGUMENT).
	ReasonHoldTimeoutOutOfRange = ReasonName(walletv1.ErrorReason_ERROR_REASON_HOLD_TIMEOUT_OUT_OF_RANGE)
	// ReasonTooManyTransfers: Read node: BatchGetTransfers with more than 1,000 ids (INVALID_ARGUMENT).
	ReasonTooManyTransfers = ReasonName(walletv1.ErrorReason_ERROR_REASON_TOO_MANY_TRANSFERS)
	// ReasonInvalidTimeRange: Read node: ListTransfers with end_time before start_time, or a timestamp out of range (INVALID_ARGUMENT).
	ReasonInvalidTimeRange = ReasonName(walletv1.ErrorReason_ERROR_REASON_INVALID_TIME_RANGE)
	// ReasonAccountFrozen: FAILED_PRECONDITION: the account is frozen: it neither sends nor receives until unfrozen.
	ReasonAccountFrozen = ReasonName(walletv1.ErrorReason_ERROR_REASON_ACCOUNT_FROZEN)
	// ReasonAccountClosed: FAILED_PRECONDITION: the account is closed: it neither sends nor receives, and nothing about it changes.
	ReasonAccountClosed = ReasonName(walletv1.ErrorReason_ERROR_REASON_ACCOUNT_CLOSED)
	// ReasonAccountNotEmpty: FAILED_PRECONDITION: CloseAccount needs a zero balance.
	ReasonAccountNotEmpty = ReasonName(walletv1.ErrorReason_ERROR_REASON_ACCOUNT_NOT_EMPTY)
	// ReasonAccountHasPendingHolds: FAILED_PRECONDITION: CloseAccount needs every hold from the account captured, voided or expired.
	ReasonAccountHasPendingHolds = ReasonName(walletv1.ErrorReason_ERROR_REASON_ACCOUNT_HAS_PENDING_HOLDS)
	// ReasonAccountHasTransfersInFlight: FAILED_PRECONDITION: CloseAccount while a transfer from the account to another partition is not settled; retry shortly.
	ReasonAccountHasTransfersInFlight = ReasonName(walletv1.ErrorReason_ERROR_REASON_ACCOUNT_HAS_TRANSFERS_IN_FLIGHT)
	// ReasonOverdraftUnlimited: FAILED_PRECONDITION: SetOverdraftLimit on an account opened with allow_negative_balance, which has no limit.
	ReasonOverdraftUnlimited = ReasonName(walletv1.ErrorReason_ERROR_REASON_OVERDRAFT_UNLIMITED)
	// ReasonOverdraftLimitOutOfRange: INVALID_ARGUMENT: SetOverdraftLimit with a limit below 0 or above 1e15 minor units.
	ReasonOverdraftLimitOutOfRange = ReasonName(walletv1.ErrorReason_ERROR_REASON_OVERDRAFT_LIMIT_OUT_OF_RANGE)
	// ReasonInvalidReference: INVALID_ARGUMENT (field reference): a transfer's reference over 128 bytes or with control characters.
	ReasonInvalidReference = ReasonName(walletv1.ErrorReason_ERROR_REASON_INVALID_REFERENCE)
	// ReasonInvalidMetadata: INVALID_ARGUMENT (field metadata): a transfer's metadata over its limits: more than 16 entries, a key not of 1 to 64 characters from [A-Za-z0-9_.:-], a value over 512 bytes or with control characters, or more than 4096 bytes in all.
	ReasonInvalidMetadata = ReasonName(walletv1.ErrorReason_ERROR_REASON_INVALID_METADATA)
	// ReasonOverdraftLimitBelowDebt: FAILED_PRECONDITION (field overdraft_limit): SetOverdraftLimit below what the account owes.
	ReasonOverdraftLimitBelowDebt = ReasonName(walletv1.ErrorReason_ERROR_REASON_OVERDRAFT_LIMIT_BELOW_DEBT)
	// ReasonClusterUpgrading: FAILED_PRECONDITION: the call needs a newer release than a write node it would reach runs; retry once the rolling upgrade is complete.
	ReasonClusterUpgrading = ReasonName(walletv1.ErrorReason_ERROR_REASON_CLUSTER_UPGRADING)
	// ReasonLegsOutOfRange: INVALID_ARGUMENT (field legs): TransferLegs without legs or with more than 64.
	ReasonLegsOutOfRange = ReasonName(walletv1.ErrorReason_ERROR_REASON_LEGS_OUT_OF_RANGE)
	// ReasonRepeatedLeg: INVALID_ARGUMENT (field legs): TransferLegs with two legs of the same from_account and to_account; merge them.
	ReasonRepeatedLeg = ReasonName(walletv1.ErrorReason_ERROR_REASON_REPEATED_LEG)
	// ReasonMixedCurrencies: INVALID_ARGUMENT (field legs): TransferLegs with legs in different currencies.
	ReasonMixedCurrencies = ReasonName(walletv1.ErrorReason_ERROR_REASON_MIXED_CURRENCIES)
	// ReasonLegsSpanPartitions: FAILED_PRECONDITION: TransferLegs whose accounts are not all in one partition, answered only by nodes before 0.3, which did not move sets across partitions.
	ReasonLegsSpanPartitions = ReasonName(walletv1.ErrorReason_ERROR_REASON_LEGS_SPAN_PARTITIONS)
	// ReasonInvalidLegsPart: INVALID_ARGUMENT (field legs): a peer's step of a multi-leg transfer across partitions that is not the partition's part of the set (never a client's call).
	ReasonInvalidLegsPart = ReasonName(walletv1.ErrorReason_ERROR_REASON_INVALID_LEGS_PART)
	// ReasonLegsNotPrepared: INVALID_ARGUMENT (field legs): a peer's step of a multi-leg transfer across partitions that needs an earlier one (never a client's call).
	ReasonLegsNotPrepared = ReasonName(walletv1.ErrorReason_ERROR_REASON_LEGS_NOT_PREPARED)
	// ReasonNodeDataLost: FAILED_PRECONDITION: a peer's raft frames from a write node whose data directory was lost or replaced while a partition still counts it as a replica (never a client's call).
	ReasonNodeDataLost = ReasonName(walletv1.ErrorReason_ERROR_REASON_NODE_DATA_LOST)
)

// Reasons the SDK gives to failures no node answered: not in the ErrorReason enum.
const (
	// ReasonTransport: the failure never reached a node's application code (connection
	// refused or reset, TLS handshake failed, stream broken).
	ReasonTransport = "TRANSPORT_ERROR"
	// ReasonDeadlineExceeded: an attempt or the whole call ran out of time.
	ReasonDeadlineExceeded = "DEADLINE_EXCEEDED"
	// ReasonCancelled: the caller's context was cancelled while the call was in flight.
	ReasonCancelled = "CANCELLED"
	// ReasonInvalidConfig: the client configuration is unusable (see ConfigError).
	ReasonInvalidConfig = "INVALID_CONFIG"
)

// MetadataReplayed is the ErrorInfo metadata key set to "true" when an earlier log entry
// decided this rejection and this call found it recorded (a retry): see Rejected.Replayed.
const MetadataReplayed = "replayed"

// MetadataLeg is the ErrorInfo metadata key of a TransferLegs refusal: the index (0-based, a
// decimal string) of the first leg refused; see ErrorDetails.Leg and LegOf.
const MetadataLeg = "leg"

const reasonPrefix = "ERROR_REASON_"

// ReasonName is the reason string of a walletv1.ErrorReason value, its name without
// ERROR_REASON_ (ErrorReason_ERROR_REASON_INSUFFICIENT_FUNDS is "INSUFFICIENT_FUNDS"); "" for
// ERROR_REASON_UNSPECIFIED or a value the enum does not have.
func ReasonName(r walletv1.ErrorReason) string {
	name, ok := walletv1.ErrorReason_name[int32(r)]
	if !ok || r == walletv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
		return ""
	}
	return strings.TrimPrefix(name, reasonPrefix)
}

// Reasons lists every reason of the walletv1.ErrorReason enum, in the enum's order.
func Reasons() []string {
	values := make([]int32, 0, len(walletv1.ErrorReason_name))
	for value := range walletv1.ErrorReason_name {
		if value != int32(walletv1.ErrorReason_ERROR_REASON_UNSPECIFIED) {
			values = append(values, value)
		}
	}
	sort.Slice(values, func(i, j int) bool { return values[i] < values[j] })
	reasons := make([]string, len(values))
	for i, value := range values {
		reasons[i] = ReasonName(walletv1.ErrorReason(value))
	}
	return reasons
}

// IsKnownReason reports whether reason is one of the walletv1.ErrorReason enum's.
func IsKnownReason(reason string) bool {
	_, ok := walletv1.ErrorReason_value[reasonPrefix+reason]
	return ok && reason != "" && reason != "UNSPECIFIED"
}

// FieldViolation is one google.rpc.BadRequest field violation.
type FieldViolation struct {
	Field       string
	Description string
}

// ErrorDetails is what a failed call's google.rpc.Status says, decoded.
type ErrorDetails struct {
	Code     codes.Code
	Message  string
	Reason   string
	Domain   string
	Metadata map[string]string
	// FieldViolations of a BadRequest detail.
	FieldViolations []FieldViolation
	// RetryDelay from RetryInfo; HasRetryDelay says whether the server sent one.
	RetryDelay    time.Duration
	HasRetryDelay bool
}

// Field is the first non-empty BadRequest field, or "".
func (d ErrorDetails) Field() string {
	for _, v := range d.FieldViolations {
		if v.Field != "" {
			return v.Field
		}
	}
	return ""
}

// Leg is, for a refused TransferLegs, the index (0-based) of the first leg refused, from the
// ErrorInfo metadata MetadataLeg (for insufficient funds, the leg of the account's first
// debit); ok is false when the error names no leg (e.g. ReasonRepeatedLeg, or another call).
func (d ErrorDetails) Leg() (index int, ok bool) {
	value, found := d.Metadata[MetadataLeg]
	if !found || value == "" || len(value) > 9 {
		return 0, false
	}
	for _, c := range value {
		if c < '0' || c > '9' {
			return 0, false
		}
		index = index*10 + int(c-'0')
	}
	return index, true
}

// LegOf is ErrorDetails.Leg of a wallet error (a *Rejected or an *Indefinite); ok is false
// for other errors and for errors that name no leg.
func LegOf(err error) (index int, ok bool) {
	var rejected *Rejected
	var indefinite *Indefinite
	switch {
	case errors.As(err, &rejected):
		return rejected.Details.Leg()
	case errors.As(err, &indefinite):
		return indefinite.Details.Leg()
	}
	return 0, false
}

// DecodeStatus reads the rich status (ErrorInfo, BadRequest, RetryInfo) of a gRPC status;
// grpc-go has already parsed the grpc-status-details-bin trailer into st.
func DecodeStatus(st *status.Status) ErrorDetails {
	d := ErrorDetails{Code: st.Code(), Message: st.Message()}
	for _, detail := range st.Details() {
		switch m := detail.(type) {
		case *errdetails.ErrorInfo:
			d.Reason, d.Domain = m.GetReason(), m.GetDomain()
			d.Metadata = make(map[string]string, len(m.GetMetadata()))
			for k, v := range m.GetMetadata() {
				d.Metadata[k] = v
			}
		case *errdetails.BadRequest:
			for _, v := range m.GetFieldViolations() {
				d.FieldViolations = append(d.FieldViolations, FieldViolation{v.GetField(), v.GetDescription()})
			}
		case *errdetails.RetryInfo:
			if delay := m.GetRetryDelay(); delay != nil {
				d.RetryDelay = time.Duration(delay.GetSeconds())*time.Second + time.Duration(delay.GetNanos())
				d.HasRetryDelay = true
			}
		}
	}
	return d
}

// Rejected is a definite error: the ledger refused the request (bad argument, unknown
// account, insufficient funds, reused transaction id, missing token, ...). Nothing was
// applied and the same request gets the same answer, so it is never retried.
type Rejected struct {
	Code    codes.Code
	Reason  string
	Message string
	// Field is the offending request field (BadRequest; TransferError.field in streams).
	Field   string
	Details ErrorDetails
	// Replayed is true when an earlier log entry decided this rejection and this call found it
	// recorded (a retry): ErrorInfo metadata replayed = "true", or TransferResult.replayed for
	// a streamed or batched transfer. Older nodes never set it.
	Replayed bool
	// TransactionID is the transaction id of the refused call, set by calls that may make one
	// themselves (TransferLegs without one); "" otherwise.
	TransactionID string
}

// Leg is ErrorDetails.Leg: the first leg refused of a TransferLegs refusal.
func (e *Rejected) Leg() (index int, ok bool) { return e.Details.Leg() }

func (e *Rejected) Error() string {
	msg := fmt.Sprintf("%s %s: %s", codeName(e.Code), e.Reason, e.Message)
	if e.Field != "" {
		msg += " (field " + e.Field + ")"
	}
	return msg
}

// GRPCStatus lets status.Code(err) and status.FromError(err) read the code.
func (e *Rejected) GRPCStatus() *status.Status { return status.New(e.Code, e.Message) }

// Indefinite is an error whose outcome is unknown: the request may or may not have been
// applied (node unreachable, leader lost mid-call, overloaded, deadline passed) and the
// retries ran out. Retry with the same transaction id to learn the outcome: the ledger
// deduplicates by it, so a retry never moves money twice.
type Indefinite struct {
	Code    codes.Code
	Reason  string
	Message string
	// RetryDelay is the pause the server asked for (RetryInfo), if any.
	RetryDelay time.Duration
	Details    ErrorDetails
	// Cause is the underlying error (a context error, a transport error), if any.
	Cause error
	// TransactionID is the transaction id of the call, set by calls that may make one
	// themselves (TransferLegs without one): ask again with it to learn the outcome; ""
	// otherwise.
	TransactionID string
}

func (e *Indefinite) Error() string {
	return fmt.Sprintf("%s %s: %s (outcome unknown: retry with the same transaction id)",
		codeName(e.Code), e.Reason, e.Message)
}

// GRPCStatus lets status.Code(err) and status.FromError(err) read the code.
func (e *Indefinite) GRPCStatus() *status.Status { return status.New(e.Code, e.Message) }

// Unwrap returns the cause (e.g. context.DeadlineExceeded), for errors.Is.
func (e *Indefinite) Unwrap() error { return e.Cause }

// Unavailable is another name for Indefinite (the outcome of the call is unknown).
type Unavailable = Indefinite

// ConfigError says the client configuration is unusable; nothing was sent.
type ConfigError struct{ Message string }

func (e *ConfigError) Error() string { return "wallet: invalid client configuration: " + e.Message }

func configErrorf(format string, args ...interface{}) error {
	return &ConfigError{Message: fmt.Sprintf(format, args...)}
}

// IsDefinite reports whether err is a definite outcome (a *Rejected or a *ConfigError:
// nothing was applied and asking again gives the same answer).
func IsDefinite(err error) bool {
	var rejected *Rejected
	var config *ConfigError
	return errors.As(err, &rejected) || errors.As(err, &config)
}

// ReasonOf is the stable reason of a wallet error ("" for other errors).
func ReasonOf(err error) string {
	var rejected *Rejected
	var indefinite *Indefinite
	switch {
	case errors.As(err, &rejected):
		return rejected.Reason
	case errors.As(err, &indefinite):
		return indefinite.Reason
	case errors.As(err, new(*ConfigError)):
		return ReasonInvalidConfig
	}
	return ""
}

// retryableCodes: the outcome is unknown (the request may have been applied); retried with
// the same request. The same set as the Rust and Python SDKs'.
func retryable(code codes.Code) bool {
	switch code {
	case codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded, codes.Canceled:
		return true
	}
	return false
}

// Classify turns the error of a raw gRPC call (e.g. from the generated walletv1 stubs) into
// a *Rejected or an *Indefinite. Errors that already are wallet errors are returned as is.
func Classify(err error) error {
	if err == nil {
		return nil
	}
	var rejected *Rejected
	var indefinite *Indefinite
	var config *ConfigError
	if errors.As(err, &rejected) || errors.As(err, &indefinite) || errors.As(err, &config) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &Indefinite{Code: codes.DeadlineExceeded, Reason: ReasonDeadlineExceeded, Message: err.Error(), Cause: err}
	}
	if errors.Is(err, context.Canceled) {
		return &Indefinite{Code: codes.Canceled, Reason: ReasonCancelled, Message: err.Error(), Cause: err}
	}
	st, ok := status.FromError(err)
	if !ok {
		return &Indefinite{Code: codes.Unknown, Reason: ReasonTransport, Message: err.Error(), Cause: err}
	}
	return classifyDetails(DecodeStatus(st), err)
}

func classifyDetails(d ErrorDetails, cause error) error {
	if retryable(d.Code) {
		reason := d.Reason
		if reason == "" {
			switch d.Code {
			case codes.DeadlineExceeded:
				reason = ReasonDeadlineExceeded
			case codes.ResourceExhausted:
				reason = codeName(d.Code)
			default:
				// No ErrorInfo: grpc-go made the status (connection refused, reset, closed).
				reason = ReasonTransport
			}
		}
		return &Indefinite{Code: d.Code, Reason: reason, Message: d.Message, RetryDelay: d.RetryDelay, Details: d, Cause: cause}
	}
	reason := d.Reason
	if reason == "" {
		reason = codeName(d.Code)
	}
	return &Rejected{Code: d.Code, Reason: reason, Message: d.Message, Field: d.Field(), Details: d,
		Replayed: d.Metadata[MetadataReplayed] == "true"}
}

// ResultError is the error of a stream or batch result (OpenAccountResult, TransferResult):
// nil for "success", a *Rejected for "rejected", an *Indefinite for "unavailable" (retry
// that item with the same transaction id). The same shape the unary call fails with.
func ResultError(resultStatus string, e interface {
	GetCode() int32
	GetReason() string
	GetMessage() string
	GetField() string
}) error {
	if resultStatus == "success" {
		return nil
	}
	d := ErrorDetails{Code: codes.Unknown}
	if e != nil {
		d.Code, d.Reason, d.Message = codes.Code(e.GetCode()), e.GetReason(), e.GetMessage()
		if e.GetField() != "" {
			d.FieldViolations = []FieldViolation{{Field: e.GetField()}}
		}
		d.Domain = ErrorDomain
	}
	if resultStatus == "unavailable" {
		if !retryable(d.Code) {
			d.Code = codes.Unavailable
		}
		reason := d.Reason
		if reason == "" {
			reason = ReasonTransport
		}
		return &Indefinite{Code: d.Code, Reason: reason, Message: d.Message, Details: d}
	}
	return classifyDetails(d, nil)
}

// TransferResultError is ResultError for a TransferResult, with its replayed flag: nil for
// "success", a *Rejected (Replayed from TransferResult.replayed) for "rejected", an
// *Indefinite for "unavailable".
func TransferResultError(result *walletv1.TransferResult) error {
	err := ResultError(result.GetStatus(), result.GetError())
	var rejected *Rejected
	if result.GetReplayed() && errors.As(err, &rejected) {
		rejected.Replayed = true
		if rejected.Details.Metadata == nil {
			rejected.Details.Metadata = map[string]string{}
		}
		rejected.Details.Metadata[MetadataReplayed] = "true"
	}
	return err
}

// withTransactionID records id on a wallet error (TransactionID); other errors pass as they are.
func withTransactionID(err error, id string) error {
	var rejected *Rejected
	var indefinite *Indefinite
	switch {
	case errors.As(err, &rejected):
		rejected.TransactionID = id
	case errors.As(err, &indefinite):
		indefinite.TransactionID = id
	}
	return err
}

// leaderHint is the leader's host:port from a NOT_LEADER redirect, or "".
func leaderHint(err error) string {
	var indefinite *Indefinite
	if !errors.As(err, &indefinite) || indefinite.Code != codes.Unavailable || indefinite.Reason != ReasonNotLeader {
		return ""
	}
	address := strings.TrimRight(strings.TrimSpace(indefinite.Details.Metadata[MetadataLeaderAddress]), "/")
	for _, scheme := range []string{"http://", "https://"} {
		address = strings.TrimPrefix(address, scheme)
	}
	return address
}

// codeName is the canonical upper-case name of a code (FAILED_PRECONDITION).
func codeName(code codes.Code) string {
	switch code {
	case codes.OK:
		return "OK"
	case codes.Canceled:
		return "CANCELLED"
	case codes.Unknown:
		return "UNKNOWN"
	case codes.InvalidArgument:
		return "INVALID_ARGUMENT"
	case codes.DeadlineExceeded:
		return "DEADLINE_EXCEEDED"
	case codes.NotFound:
		return "NOT_FOUND"
	case codes.AlreadyExists:
		return "ALREADY_EXISTS"
	case codes.PermissionDenied:
		return "PERMISSION_DENIED"
	case codes.ResourceExhausted:
		return "RESOURCE_EXHAUSTED"
	case codes.FailedPrecondition:
		return "FAILED_PRECONDITION"
	case codes.Aborted:
		return "ABORTED"
	case codes.OutOfRange:
		return "OUT_OF_RANGE"
	case codes.Unimplemented:
		return "UNIMPLEMENTED"
	case codes.Internal:
		return "INTERNAL"
	case codes.Unavailable:
		return "UNAVAILABLE"
	case codes.DataLoss:
		return "DATA_LOSS"
	case codes.Unauthenticated:
		return "UNAUTHENTICATED"
	}
	return fmt.Sprintf("CODE_%d", int(code))
}

// CodeName is the canonical upper-case gRPC name of a code ("FAILED_PRECONDITION").
func CodeName(code codes.Code) string { return codeName(code) }
