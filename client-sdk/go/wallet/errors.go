package wallet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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

// Stable reasons (google.rpc.ErrorInfo.reason) the nodes send, as documented in
// proto/wallet/v1/*.proto and the repository README. Match on these, never on messages.
const (
	// INVALID_ARGUMENT, with a BadRequest field.
	ReasonInvalidTransactionID    = "INVALID_TRANSACTION_ID"
	ReasonInvalidAccountID        = "INVALID_ACCOUNT_ID"
	ReasonInvalidAmount           = "INVALID_AMOUNT"
	ReasonUnknownCurrency         = "UNKNOWN_CURRENCY"
	ReasonSameAccount             = "SAME_ACCOUNT"
	ReasonInvalidBatchSize        = "INVALID_BATCH_SIZE"
	ReasonAmountOutOfRange        = "AMOUNT_OUT_OF_RANGE"
	ReasonNilTransactionID        = "NIL_TRANSACTION_ID"
	ReasonWrongPartition          = "WRONG_PARTITION"
	ReasonCreditFromLocalAccount  = "CREDIT_FROM_LOCAL_ACCOUNT"
	ReasonSettleOfUnknownTransfer = "SETTLE_OF_UNKNOWN_TRANSFER"
	ReasonTooManyCredits          = "TOO_MANY_CREDITS"
	// INVALID_ARGUMENT from a read node.
	ReasonInvalidConsistencyToken   = "INVALID_CONSISTENCY_TOKEN"
	ReasonInvalidPosition           = "INVALID_POSITION"
	ReasonPositionPartitionMismatch = "POSITION_PARTITION_MISMATCH"
	ReasonMissingPoint              = "MISSING_POINT"
	ReasonInvalidPageToken          = "INVALID_PAGE_TOKEN"
	ReasonPageSizeTooLarge          = "PAGE_SIZE_TOO_LARGE"
	ReasonTooManyAccounts           = "TOO_MANY_ACCOUNTS"
	ReasonInvalidResumeSequence     = "INVALID_RESUME_SEQUENCE"
	// INVALID_ARGUMENT from the event log service.
	ReasonInvalidPartition = "INVALID_PARTITION"
	ReasonInvalidFromIndex = "INVALID_FROM_INDEX"
	// INVALID_ARGUMENT without a field: the whole message.
	ReasonMalformedMessage = "MALFORMED_MESSAGE"
	ReasonMessageTooLarge  = "MESSAGE_TOO_LARGE"
	// NOT_FOUND, with a BadRequest field.
	ReasonAccountNotFound  = "ACCOUNT_NOT_FOUND"
	ReasonTransferNotFound = "TRANSFER_NOT_FOUND"
	// FAILED_PRECONDITION.
	ReasonInsufficientFunds = "INSUFFICIENT_FUNDS"
	ReasonCurrencyMismatch  = "CURRENCY_MISMATCH"
	// ALREADY_EXISTS.
	ReasonTransactionIDReused              = "TRANSACTION_ID_REUSED"
	ReasonAccountExistsWithOtherParameters = "ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS"
	// UNAVAILABLE (indefinite: retried).
	ReasonNotLeader              = "NOT_LEADER"
	ReasonNoLeader               = "NO_LEADER"
	ReasonOutcomeUnknown         = "OUTCOME_UNKNOWN"
	ReasonReadTimeout            = "READ_TIMEOUT"
	ReasonShuttingDown           = "SHUTTING_DOWN"
	ReasonStorageFailure         = "STORAGE_FAILURE"
	ReasonConsistencyWaitTimeout = "CONSISTENCY_WAIT_TIMEOUT"
	ReasonPartitionStuck         = "PARTITION_STUCK"
	// RESOURCE_EXHAUSTED, with RetryInfo (indefinite: retried).
	ReasonOverloaded         = "OVERLOADED"
	ReasonTooManyWatchers    = "TOO_MANY_WATCHERS"
	ReasonTooManySubscribers = "TOO_MANY_SUBSCRIBERS"
	// ABORTED: a watch cut off for lagging (WatchBalances resumes by itself).
	ReasonWatchLagged = "WATCH_LAGGED"
	// DATA_LOSS.
	ReasonEventLogCorrupt = "EVENT_LOG_CORRUPT"
	// UNAUTHENTICATED and PERMISSION_DENIED (tokens and peers).
	ReasonMissingToken       = "MISSING_TOKEN"
	ReasonInvalidToken       = "INVALID_TOKEN"
	ReasonScopeDenied        = "SCOPE_DENIED"
	ReasonIssueScopeRequired = "ISSUE_SCOPE_REQUIRED"
	ReasonNotAPeer           = "NOT_A_PEER"
	// UNIMPLEMENTED.
	ReasonUnknownMethod          = "UNKNOWN_METHOD"
	ReasonUnsupportedCompression = "UNSUPPORTED_COMPRESSION"

	// Given by the SDK, not a node.

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
}

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
	return &Rejected{Code: d.Code, Reason: reason, Message: d.Message, Field: d.Field(), Details: d}
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
