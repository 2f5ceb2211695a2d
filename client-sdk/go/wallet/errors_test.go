package wallet

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"wallet.ledger/client-sdk/go/walletv1"
)

// statusError is a real gRPC status error with ErrorInfo, BadRequest and RetryInfo details,
// as the nodes send them in grpc-status-details-bin.
func statusError(code codes.Code, reason, field string, metadata map[string]string, retryDelay ...time.Duration) error {
	st := status.New(code, "details")
	if reason != "" {
		var err error
		st, err = st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain, Metadata: metadata})
		if err != nil {
			panic(err)
		}
	}
	if field != "" {
		st, _ = st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: field, Description: "bad " + field},
		}})
	}
	for _, delay := range retryDelay {
		st, _ = st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)})
	}
	return st.Err()
}

func notLeader(address string) error {
	return statusError(codes.Unavailable, ReasonNotLeader, "", map[string]string{MetadataLeaderID: "2", MetadataLeaderAddress: address})
}

func unavailable(reason string, delay time.Duration) error {
	code := codes.Unavailable
	if reason == ReasonOverloaded {
		code = codes.ResourceExhausted
	}
	if delay > 0 {
		return statusError(code, reason, "", nil, delay)
	}
	return statusError(code, reason, "", nil)
}

// roundTrip sends a status through its wire form (the serialized google.rpc.Status of the
// grpc-status-details-bin trailer) and back, as grpc-go does between server and client.
func roundTrip(t *testing.T, err error) error {
	t.Helper()
	st, _ := status.FromError(err)
	return status.ErrorProto(st.Proto())
}

func TestNotLeaderRedirects(t *testing.T) {
	err := Classify(roundTrip(t, notLeader("http://127.0.0.1:50052/")))
	var indefinite *Indefinite
	if !errors.As(err, &indefinite) || indefinite.Reason != ReasonNotLeader || IsDefinite(err) {
		t.Fatalf("%v", err)
	}
	if hint := leaderHint(err); hint != "127.0.0.1:50052" {
		t.Fatalf("hint %q", hint)
	}
	if hint := leaderHint(Classify(notLeader(""))); hint != "" {
		t.Fatalf("empty hint %q", hint)
	}
	for _, reason := range []string{ReasonNoLeader, ReasonOutcomeUnknown, ReasonShuttingDown, ReasonStorageFailure} {
		err := Classify(statusError(codes.Unavailable, reason, "", map[string]string{MetadataLeaderAddress: "x:1"}))
		if !errors.As(err, &indefinite) || indefinite.Reason != reason || leaderHint(err) != "" {
			t.Fatalf("%s: %v", reason, err)
		}
	}
}

func TestRejectionsCarryReasonAndField(t *testing.T) {
	for _, c := range []struct {
		code          codes.Code
		reason, field string
	}{
		{codes.InvalidArgument, ReasonInvalidAmount, "amount"},
		{codes.NotFound, ReasonAccountNotFound, "to_account"},
		{codes.FailedPrecondition, ReasonInsufficientFunds, ""},
		{codes.FailedPrecondition, ReasonCurrencyMismatch, ""},
		{codes.AlreadyExists, ReasonTransactionIDReused, ""},
		{codes.Unauthenticated, ReasonMissingToken, ""},
		{codes.PermissionDenied, ReasonScopeDenied, ""},
	} {
		err := Classify(roundTrip(t, statusError(c.code, c.reason, c.field, nil)))
		var rejected *Rejected
		if !errors.As(err, &rejected) {
			t.Fatalf("%s: %T %v", c.reason, err, err)
		}
		if rejected.Code != c.code || rejected.Reason != c.reason || rejected.Field != c.field || rejected.Message != "details" {
			t.Fatalf("%s: %+v", c.reason, rejected)
		}
		if rejected.Details.Domain != ErrorDomain || !IsDefinite(err) || ReasonOf(err) != c.reason {
			t.Fatalf("%s: %+v", c.reason, rejected)
		}
		if status.Code(err) != c.code {
			t.Fatalf("status.Code: %v", status.Code(err))
		}
		// Wrapped, it is still found.
		if !errors.As(fmt.Errorf("paying: %w", err), &rejected) {
			t.Fatal("errors.As through a wrap")
		}
	}
	want := "FAILED_PRECONDITION INSUFFICIENT_FUNDS: details"
	if got := Classify(statusError(codes.FailedPrecondition, ReasonInsufficientFunds, "", nil)).Error(); got != want {
		t.Fatalf("%q", got)
	}
}

func TestRetryInfoAndTransportErrors(t *testing.T) {
	err := Classify(roundTrip(t, unavailable(ReasonOverloaded, 250*time.Millisecond)))
	var indefinite *Indefinite
	if !errors.As(err, &indefinite) || indefinite.Code != codes.ResourceExhausted || indefinite.Reason != ReasonOverloaded {
		t.Fatalf("%v", err)
	}
	if indefinite.RetryDelay != 250*time.Millisecond || !indefinite.Details.HasRetryDelay {
		t.Fatalf("retry delay %s", indefinite.RetryDelay)
	}
	for code, reason := range map[codes.Code]string{
		codes.Unavailable:       ReasonTransport,
		codes.Canceled:          ReasonTransport,
		codes.DeadlineExceeded:  ReasonDeadlineExceeded,
		codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	} {
		err := Classify(status.Error(code, "no details"))
		if !errors.As(err, &indefinite) || indefinite.Reason != reason || IsDefinite(err) {
			t.Fatalf("%v: %v", code, err)
		}
	}
	err = Classify(status.Error(codes.PermissionDenied, "no"))
	if ReasonOf(err) != "PERMISSION_DENIED" || !IsDefinite(err) {
		t.Fatalf("%v", err)
	}
}

func TestResultErrors(t *testing.T) {
	if ResultError("success", nil) != nil {
		t.Fatal("success is no error")
	}
	err := ResultError("rejected", &walletv1.TransferError{Code: int32(codes.InvalidArgument), Reason: ReasonInvalidAmount, Message: "m", Field: "amount"})
	var rejected *Rejected
	if !errors.As(err, &rejected) || rejected.Field != "amount" || rejected.Code != codes.InvalidArgument {
		t.Fatalf("%v", err)
	}
	err = ResultError("unavailable", &walletv1.TransferError{Code: int32(codes.Unavailable), Reason: ReasonNotLeader})
	if !errors.As(err, new(*Indefinite)) || ReasonOf(err) != ReasonNotLeader {
		t.Fatalf("%v", err)
	}
}

func TestEndpointsAndTokens(t *testing.T) {
	for in, want := range map[string]string{"127.0.0.1:1": "127.0.0.1:1", "http://h:2/": "h:2", " [::1]:3 ": "[::1]:3"} {
		if got, err := NormalizeEndpoint(in, false); err != nil || got != want {
			t.Errorf("%q: %q %v", in, got, err)
		}
	}
	if got, err := NormalizeEndpoint("https://h:4", true); err != nil || got != "h:4" {
		t.Errorf("https: %q %v", got, err)
	}
	for _, bad := range []string{"h", "http://h:2", "ftp://h:1", "h:x", ":1", "h:1/x"} {
		if _, err := NormalizeEndpoint(bad, true); !errors.As(err, new(*ConfigError)) {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := NormalizeEndpoint("https://h:1", false); err == nil {
		t.Error("https without TLS accepted")
	}
	for _, bad := range []string{"", "a b", "tök"} {
		if _, err := checkToken(bad); err == nil {
			t.Errorf("token %q accepted", bad)
		}
	}
	if _, err := NewWalletClient(nil); !errors.As(err, new(*ConfigError)) {
		t.Error("no endpoints accepted")
	}
	if _, err := NewWalletClient([]string{"h:1"}, WithTLS(TLSConfig{CAFile: "/nonexistent"})); !errors.As(err, new(*ConfigError)) {
		t.Error("a missing CA file accepted")
	}
}

func TestNewTransactionID(t *testing.T) {
	a, b := NewTransactionID(), NewTransactionID()
	if len(a) != 36 || a == b || a[14] != '4' || a[8] != '-' || a[13] != '-' || a[18] != '-' || a[23] != '-' {
		t.Fatalf("%s %s", a, b)
	}
}
