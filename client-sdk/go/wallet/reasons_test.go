package wallet

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"sort"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"wallet.ledger/client-sdk/go/walletv1"
)

// exposedReasons: every Reason… variable of errors.go, by name (the test below checks this
// table against the file itself, so a constant added there must be added here too).
func exposedReasons() map[string]string {
	return map[string]string{
		"ReasonInvalidTransactionID":             ReasonInvalidTransactionID,
		"ReasonInvalidAccountID":                 ReasonInvalidAccountID,
		"ReasonInvalidAmount":                    ReasonInvalidAmount,
		"ReasonUnknownCurrency":                  ReasonUnknownCurrency,
		"ReasonSameAccount":                      ReasonSameAccount,
		"ReasonInvalidBatchSize":                 ReasonInvalidBatchSize,
		"ReasonAmountOutOfRange":                 ReasonAmountOutOfRange,
		"ReasonNilTransactionID":                 ReasonNilTransactionID,
		"ReasonWrongPartition":                   ReasonWrongPartition,
		"ReasonCreditFromLocalAccount":           ReasonCreditFromLocalAccount,
		"ReasonSettleOfUnknownTransfer":          ReasonSettleOfUnknownTransfer,
		"ReasonTooManyCredits":                   ReasonTooManyCredits,
		"ReasonInvalidConsistencyToken":          ReasonInvalidConsistencyToken,
		"ReasonInvalidPosition":                  ReasonInvalidPosition,
		"ReasonPositionPartitionMismatch":        ReasonPositionPartitionMismatch,
		"ReasonMissingPoint":                     ReasonMissingPoint,
		"ReasonInvalidPageToken":                 ReasonInvalidPageToken,
		"ReasonPageSizeTooLarge":                 ReasonPageSizeTooLarge,
		"ReasonTooManyAccounts":                  ReasonTooManyAccounts,
		"ReasonInvalidResumeSequence":            ReasonInvalidResumeSequence,
		"ReasonInvalidPartition":                 ReasonInvalidPartition,
		"ReasonInvalidFromIndex":                 ReasonInvalidFromIndex,
		"ReasonMalformedMessage":                 ReasonMalformedMessage,
		"ReasonMessageTooLarge":                  ReasonMessageTooLarge,
		"ReasonMisaddressedMessage":              ReasonMisaddressedMessage,
		"ReasonAccountNotFound":                  ReasonAccountNotFound,
		"ReasonTransferNotFound":                 ReasonTransferNotFound,
		"ReasonSnapshotNotFound":                 ReasonSnapshotNotFound,
		"ReasonInsufficientFunds":                ReasonInsufficientFunds,
		"ReasonCurrencyMismatch":                 ReasonCurrencyMismatch,
		"ReasonTransactionIDReused":              ReasonTransactionIDReused,
		"ReasonAccountExistsWithOtherParameters": ReasonAccountExistsWithOtherParameters,
		"ReasonNotLeader":                        ReasonNotLeader,
		"ReasonForwardFailed":                    ReasonForwardFailed,
		"ReasonNoLeader":                         ReasonNoLeader,
		"ReasonOutcomeUnknown":                   ReasonOutcomeUnknown,
		"ReasonReadTimeout":                      ReasonReadTimeout,
		"ReasonShuttingDown":                     ReasonShuttingDown,
		"ReasonStorageFailure":                   ReasonStorageFailure,
		"ReasonConsistencyWaitTimeout":           ReasonConsistencyWaitTimeout,
		"ReasonPartitionStuck":                   ReasonPartitionStuck,
		"ReasonEventLogUnreadable":               ReasonEventLogUnreadable,
		"ReasonOverloaded":                       ReasonOverloaded,
		"ReasonTooManyWatchers":                  ReasonTooManyWatchers,
		"ReasonTooManySubscribers":               ReasonTooManySubscribers,
		"ReasonWatchLagged":                      ReasonWatchLagged,
		"ReasonEventLogCorrupt":                  ReasonEventLogCorrupt,
		"ReasonMissingToken":                     ReasonMissingToken,
		"ReasonInvalidToken":                     ReasonInvalidToken,
		"ReasonPeerCertRequired":                 ReasonPeerCertRequired,
		"ReasonScopeDenied":                      ReasonScopeDenied,
		"ReasonIssueScopeRequired":               ReasonIssueScopeRequired,
		"ReasonAccountPrefixDenied":              ReasonAccountPrefixDenied,
		"ReasonNotAPeer":                         ReasonNotAPeer,
		"ReasonUnknownMethod":                    ReasonUnknownMethod,
		"ReasonUnsupportedCompression":           ReasonUnsupportedCompression,
		"ReasonInternal":                         ReasonInternal,
		"ReasonHoldNotFound":                     ReasonHoldNotFound,
		"ReasonNotAHold":                         ReasonNotAHold,
		"ReasonCaptureExceedsHold":               ReasonCaptureExceedsHold,
		"ReasonHoldAlreadyCaptured":              ReasonHoldAlreadyCaptured,
		"ReasonHoldAlreadyVoided":                ReasonHoldAlreadyVoided,
		"ReasonHoldExpired":                      ReasonHoldExpired,
		"ReasonHoldNotAuthorized":                ReasonHoldNotAuthorized,
		"ReasonHoldCaptureRefused":               ReasonHoldCaptureRefused,
		"ReasonHoldsLimitReached":                ReasonHoldsLimitReached,
		"ReasonHoldTimeoutOutOfRange":            ReasonHoldTimeoutOutOfRange,
		"ReasonTooManyTransfers":                 ReasonTooManyTransfers,
		"ReasonInvalidTimeRange":                 ReasonInvalidTimeRange,
		"ReasonAccountFrozen":                    ReasonAccountFrozen,
		"ReasonAccountClosed":                    ReasonAccountClosed,
		"ReasonAccountNotEmpty":                  ReasonAccountNotEmpty,
		"ReasonAccountHasPendingHolds":           ReasonAccountHasPendingHolds,
		"ReasonAccountHasTransfersInFlight":      ReasonAccountHasTransfersInFlight,
		"ReasonOverdraftUnlimited":               ReasonOverdraftUnlimited,
		"ReasonOverdraftLimitOutOfRange":         ReasonOverdraftLimitOutOfRange,
		"ReasonInvalidReference":                 ReasonInvalidReference,
		"ReasonInvalidMetadata":                  ReasonInvalidMetadata,
		"ReasonOverdraftLimitBelowDebt":          ReasonOverdraftLimitBelowDebt,
		"ReasonClusterUpgrading":                 ReasonClusterUpgrading,
		"ReasonLegsOutOfRange":                   ReasonLegsOutOfRange,
		"ReasonRepeatedLeg":                      ReasonRepeatedLeg,
		"ReasonMixedCurrencies":                  ReasonMixedCurrencies,
		"ReasonLegsSpanPartitions":               ReasonLegsSpanPartitions,
		"ReasonInvalidLegsPart":                  ReasonInvalidLegsPart,
		"ReasonLegsNotPrepared":                  ReasonLegsNotPrepared,
		"ReasonNodeDataLost":                     ReasonNodeDataLost,
	}
}

// ownReasons: the reasons the SDK gives itself, outside the enum.
var ownReasons = []string{ReasonTransport, ReasonDeadlineExceeded, ReasonCancelled, ReasonInvalidConfig}

// declaredReasons parses errors.go for the names of its Reason… variables and constants.
func declaredReasons(t *testing.T) (vars, consts map[string]bool) {
	t.Helper()
	file, err := parser.ParseFile(token.NewFileSet(), "errors.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	vars, consts = map[string]bool{}, map[string]bool{}
	for _, decl := range file.Decls {
		gen, ok := decl.(*ast.GenDecl)
		if !ok || (gen.Tok != token.VAR && gen.Tok != token.CONST) {
			continue
		}
		for _, spec := range gen.Specs {
			for _, name := range spec.(*ast.ValueSpec).Names {
				if !strings.HasPrefix(name.Name, "Reason") || !name.IsExported() {
					continue
				}
				if gen.Tok == token.VAR {
					vars[name.Name] = true
				} else {
					consts[name.Name] = true
				}
			}
		}
	}
	return vars, consts
}

func TestReasonConstantsAreTheErrorReasonEnum(t *testing.T) {
	exposed := exposedReasons()
	vars, consts := declaredReasons(t)
	if len(vars) != len(exposed) {
		t.Fatalf("errors.go declares %d Reason variables, the test knows %d", len(vars), len(exposed))
	}
	if len(consts) != len(ownReasons) {
		t.Fatalf("errors.go declares %d Reason constants, the test knows %d: %v", len(consts), len(ownReasons), consts)
	}
	seen := map[string]bool{}
	for name, value := range exposed {
		if !vars[name] {
			t.Fatalf("%s is not declared in errors.go", name)
		}
		if !IsKnownReason(value) {
			t.Fatalf("%s = %q is not a value of walletv1.ErrorReason", name, value)
		}
		if _, ok := walletv1.ErrorReason_value["ERROR_REASON_"+value]; !ok {
			t.Fatalf("%s = %q: no ERROR_REASON_%s", name, value, value)
		}
		seen[value] = true
	}
	// Every reason of the enum is exposed, and Reasons() lists exactly them.
	var fromEnum []string
	for name, number := range walletv1.ErrorReason_value {
		if number == 0 {
			continue
		}
		reason := strings.TrimPrefix(name, "ERROR_REASON_")
		fromEnum = append(fromEnum, reason)
		if !seen[reason] {
			t.Fatalf("the enum's %s has no Reason constant", name)
		}
	}
	listed := Reasons()
	sort.Strings(fromEnum)
	sorted := append([]string(nil), listed...)
	sort.Strings(sorted)
	if strings.Join(sorted, ",") != strings.Join(fromEnum, ",") {
		t.Fatalf("Reasons() = %v, the enum has %v", listed, fromEnum)
	}
	for _, own := range ownReasons {
		if IsKnownReason(own) {
			t.Fatalf("the SDK's own %q is in the enum", own)
		}
	}
	if ReasonInsufficientFunds != "INSUFFICIENT_FUNDS" || ReasonNotLeader != "NOT_LEADER" {
		t.Fatalf("%q %q", ReasonInsufficientFunds, ReasonNotLeader)
	}
	if ReasonLegsOutOfRange != "LEGS_OUT_OF_RANGE" || ReasonRepeatedLeg != "REPEATED_LEG" ||
		ReasonMixedCurrencies != "MIXED_CURRENCIES" || ReasonLegsSpanPartitions != "LEGS_SPAN_PARTITIONS" {
		t.Fatalf("%q %q %q %q", ReasonLegsOutOfRange, ReasonRepeatedLeg, ReasonMixedCurrencies, ReasonLegsSpanPartitions)
	}
	if ReasonName(walletv1.ErrorReason_ERROR_REASON_UNSPECIFIED) != "" || ReasonName(walletv1.ErrorReason(9999)) != "" {
		t.Fatal("UNSPECIFIED or an unknown value has a reason")
	}
	if IsKnownReason("") || IsKnownReason("UNSPECIFIED") {
		t.Fatal("UNSPECIFIED is not a reason")
	}
}

func TestReplayedIsReadFromErrorInfoAndTransferResult(t *testing.T) {
	replayed := Classify(roundTrip(t, statusError(codes.FailedPrecondition, ReasonInsufficientFunds, "", map[string]string{MetadataReplayed: "true"})))
	if r, ok := replayed.(*Rejected); !ok || !r.Replayed || r.Reason != ReasonInsufficientFunds {
		t.Fatalf("%#v", replayed)
	}
	fresh := Classify(roundTrip(t, statusError(codes.FailedPrecondition, ReasonInsufficientFunds, "", nil)))
	if r, ok := fresh.(*Rejected); !ok || r.Replayed {
		t.Fatalf("%#v", fresh)
	}
	result := &walletv1.TransferResult{Status: "rejected", Replayed: true,
		Error: &walletv1.TransferError{Code: int32(codes.AlreadyExists), Reason: ReasonTransactionIDReused}}
	if r, ok := TransferResultError(result).(*Rejected); !ok || !r.Replayed || r.Details.Metadata[MetadataReplayed] != "true" {
		t.Fatalf("%#v", TransferResultError(result))
	}
	if r, ok := ResultError(result.GetStatus(), result.GetError()).(*Rejected); !ok || r.Replayed {
		t.Fatal("ResultError has no result to read replayed from")
	}
	if err := TransferResultError(&walletv1.TransferResult{Status: "success", Replayed: true}); err != nil {
		t.Fatal(err)
	}
}

// fakeReplays answers as a node that finds transfers of ids starting with "again" recorded.
type fakeReplays struct {
	walletv1.UnimplementedWalletServiceServer
}

func (fakeReplays) Transfer(ctx context.Context, r *walletv1.TransferRequest) (*walletv1.TransferResponse, error) {
	again := strings.HasPrefix(r.TransactionId, "again")
	if r.Amount == "100.00" {
		var md map[string]string
		if again {
			md = map[string]string{MetadataReplayed: "true"}
		}
		return nil, statusError(codes.FailedPrecondition, ReasonInsufficientFunds, "", md)
	}
	return &walletv1.TransferResponse{Status: "success", TransactionId: r.TransactionId, ConsistencyToken: "t", Replayed: again}, nil
}

func (fakeReplays) TransferBatch(ctx context.Context, r *walletv1.TransferBatchRequest) (*walletv1.TransferBatchResponse, error) {
	response := &walletv1.TransferBatchResponse{}
	for _, transfer := range r.Transfers {
		result := &walletv1.TransferResult{TransactionId: transfer.TransactionId, Status: "success", ConsistencyToken: "b",
			Replayed: strings.HasPrefix(transfer.TransactionId, "again")}
		if transfer.Amount == "100.00" {
			result.Status, result.ConsistencyToken = "rejected", ""
			result.Error = &walletv1.TransferError{Code: int32(codes.FailedPrecondition), Reason: ReasonInsufficientFunds}
		}
		response.Results = append(response.Results, result)
	}
	return response, nil
}

func TestTransferAndBatchCarryReplayed(t *testing.T) {
	address, _ := serve(t, func(s *grpc.Server) { walletv1.RegisterWalletServiceServer(s, fakeReplays{}) })
	client, err := NewWalletClient([]string{address}, WithRetryPolicy(quickPolicy()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx := context.Background()
	params := func(id, amount string) TransferParams {
		return TransferParams{TransactionID: id, From: "x", To: "y", Amount: amount, Currency: "USD"}
	}
	for _, id := range []string{"again-1", "fresh-1"} {
		response, err := client.Transfer(ctx, params(id, "1.00"))
		if err != nil || response.GetReplayed() != strings.HasPrefix(id, "again") {
			t.Fatalf("%s: %v %v", id, response, err)
		}
		_, err = client.Transfer(ctx, params(id, "100.00"))
		if r, ok := err.(*Rejected); !ok || r.Replayed != strings.HasPrefix(id, "again") {
			t.Fatalf("%s: %#v", id, err)
		}
	}
	outcomes, err := client.TransferBatch(ctx, []TransferParams{
		params("again-2", "1.00"), params("fresh-2", "1.00"), params("again-3", "100.00"), params("fresh-3", "100.00"),
	})
	if err != nil || len(outcomes) != 4 {
		t.Fatalf("%v %v", outcomes, err)
	}
	if !outcomes[0].Response.GetReplayed() || outcomes[1].Response.GetReplayed() {
		t.Fatalf("%v %v", outcomes[0].Response, outcomes[1].Response)
	}
	if r, ok := outcomes[2].Err.(*Rejected); !ok || !r.Replayed {
		t.Fatalf("%#v", outcomes[2].Err)
	}
	if r, ok := outcomes[3].Err.(*Rejected); !ok || r.Replayed {
		t.Fatalf("%#v", outcomes[3].Err)
	}
}
