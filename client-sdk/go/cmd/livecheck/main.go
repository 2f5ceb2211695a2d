// Command livecheck checks the Go SDK against a live cluster (run by test.sh live, from
// client-sdk/test-sdks.sh), like client-sdk/python/tests/live_check.py: bad input gets the
// documented code, reason and field and changes nothing; a retry with the same transaction
// id gets the same outcome; the retry loop gets past a dead node and gives up, bounded,
// when all are dead; 200 concurrent transfers each get exactly their own outcome, the
// balances are exact, and sending them all again moves no money twice; every other
// wrapper (batches, streams, history, watches, cluster status) answers; the account
// lifecycle (freeze, unfreeze, overdraft limit, close) gives every refusal it documents; a
// transfer's reference and metadata are stored and read back (write node, read node),
// compared on a retry, and refused over their limits; an account's reference and metadata
// likewise (set at opening, compared when it is opened again, refused over their limits with
// no account opened); a multi-leg transfer (TransferLegs) moves every leg or none.
//
//	livecheck --write HOST:PORT,... --read HOST:PORT
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"os"
	"reflect"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"wallet.ledger/client-sdk/go/wallet"
	"wallet.ledger/client-sdk/go/walletv1"
)

var checks int

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "go live checks: FAILED: "+format+"\n", args...)
	os.Exit(1)
}

func must(err error, what string) {
	if err != nil {
		fail("%s: %v", what, err)
	}
}

// expectRejected: err is a *Rejected with code and reason, naming field ("" for none), in
// the wallet.ledger domain.
func expectRejected(err error, code codes.Code, reason, field, what string) *wallet.Rejected {
	var rejected *wallet.Rejected
	if err == nil {
		fail("%s: expected %s %s, the call succeeded", what, wallet.CodeName(code), reason)
	}
	if !errors.As(err, &rejected) {
		fail("%s: expected a *wallet.Rejected %s, got %T: %v", what, reason, err, err)
	}
	if rejected.Code != code || rejected.Reason != reason || rejected.Field != field {
		fail("%s: expected %s %s field=%q, got %s %s field=%q: %s", what, wallet.CodeName(code), reason, field,
			wallet.CodeName(rejected.Code), rejected.Reason, rejected.Field, rejected.Message)
	}
	if rejected.Details.Domain != wallet.ErrorDomain {
		fail("%s: domain %q", what, rejected.Details.Domain)
	}
	if !wallet.IsDefinite(err) {
		fail("%s: a rejection is not definite", what)
	}
	checks++
	return rejected
}

func decimal(s string) *big.Rat {
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		fail("not a decimal: %q", s)
	}
	return r
}

func main() {
	write := flag.String("write", "", "write nodes, comma-separated")
	read := flag.String("read", "", "read nodes, comma-separated")
	flag.Parse()
	if *write == "" || *read == "" {
		fail("--write and --read are required")
	}
	writes := strings.Split(*write, ",")
	prefix := "gocheck-" + wallet.NewTransactionID()[:8] + "-"
	issuer, alice := prefix+"issuer", prefix+"alice"
	ctx := context.Background()

	w, err := wallet.NewWalletClient(writes)
	must(err, "wallet client")
	defer w.Close()
	q, err := wallet.NewQueryClient([]string{*read})
	must(err, "query client")
	defer q.Close()

	_, err = w.OpenAccount(ctx, wallet.OpenAccountParams{AccountID: issuer, Currency: "USD", AllowNegativeBalance: true})
	must(err, "open issuer")
	_, err = w.OpenAccount(ctx, wallet.OpenAccountParams{AccountID: alice, Currency: "USD"})
	must(err, "open alice")
	funding := wallet.TransferParams{TransactionID: wallet.NewTransactionID(), From: issuer, To: alice, Amount: "10.00", Currency: "USD"}
	funded, err := w.Transfer(ctx, funding)
	must(err, "fund alice")

	// A retry with the same transaction id gets the original outcome, and moves nothing.
	again, err := w.Transfer(ctx, funding)
	must(err, "retry the funding")
	if again.ConsistencyToken != funded.ConsistencyToken || again.TransactionId != funded.TransactionId {
		fail("a retry got another outcome: %v vs %v", again, funded)
	}
	checks++

	pay := func(p wallet.TransferParams) error {
		if p.TransactionID == "" {
			p.TransactionID = wallet.NewTransactionID()
		}
		if p.From == "" {
			p.From = issuer
		}
		if p.To == "" {
			p.To = alice
		}
		if p.Currency == "" {
			p.Currency = "USD"
		}
		_, err := w.Transfer(ctx, p)
		return err
	}

	// Every documented rejection of a transfer, decoded with its reason and field.
	for _, amount := range []string{"abc", "-1", "0", "1.005", "1e3", " 1.00", "NaN"} {
		expectRejected(pay(wallet.TransferParams{Amount: amount}), codes.InvalidArgument, wallet.ReasonInvalidAmount, "amount", "amount "+amount)
	}
	expectRejected(pay(wallet.TransferParams{Amount: "1.00", Currency: "XYZ"}), codes.InvalidArgument, wallet.ReasonUnknownCurrency, "currency", "unknown currency")
	expectRejected(pay(wallet.TransferParams{Amount: "1.00", TransactionID: "not-a-uuid"}), codes.InvalidArgument, wallet.ReasonInvalidTransactionID, "transaction_id", "bad transaction id")
	expectRejected(pay(wallet.TransferParams{Amount: "1.00", To: issuer}), codes.InvalidArgument, wallet.ReasonSameAccount, "to_account", "same account")
	_, err = w.OpenAccount(ctx, wallet.OpenAccountParams{AccountID: "has space", Currency: "USD"})
	expectRejected(err, codes.InvalidArgument, wallet.ReasonInvalidAccountID, "account_id", "bad account id")
	expectRejected(pay(wallet.TransferParams{Amount: "1.00", To: prefix + "nobody"}), codes.NotFound, wallet.ReasonAccountNotFound, "to_account", "unknown target")
	expectRejected(pay(wallet.TransferParams{Amount: "1.00", From: prefix + "nobody"}), codes.NotFound, wallet.ReasonAccountNotFound, "from_account", "unknown source")
	_, err = w.GetAccount(ctx, prefix+"nobody")
	expectRejected(err, codes.NotFound, wallet.ReasonAccountNotFound, "account_id", "get unknown account")
	_, err = w.GetTransfer(ctx, wallet.NewTransactionID())
	expectRejected(err, codes.NotFound, wallet.ReasonTransferNotFound, "transaction_id", "get unknown transfer")
	expectRejected(pay(wallet.TransferParams{From: alice, To: issuer, Amount: "10.01"}), codes.FailedPrecondition, wallet.ReasonInsufficientFunds, "", "insufficient funds")
	euro := prefix + "euro"
	_, err = w.OpenAccount(ctx, wallet.OpenAccountParams{AccountID: euro, Currency: "EUR"})
	must(err, "open a EUR account")
	expectRejected(pay(wallet.TransferParams{To: euro, Amount: "1.00"}), codes.FailedPrecondition, wallet.ReasonCurrencyMismatch, "", "currency mismatch")
	expectRejected(pay(wallet.TransferParams{TransactionID: funding.TransactionID, Amount: "9.99"}), codes.AlreadyExists, wallet.ReasonTransactionIDReused, "", "reused id, other parameters")
	_, err = w.OpenAccount(ctx, wallet.OpenAccountParams{AccountID: alice, Currency: "EUR"})
	expectRejected(err, codes.AlreadyExists, wallet.ReasonAccountExistsWithOtherParameters, "", "reopen with other parameters")
	_, err = w.OpenAccount(ctx, wallet.OpenAccountParams{AccountID: alice, Currency: "USD"})
	must(err, "reopening with the same parameters is a no-op success")
	checks++

	rawStatusDecodes(writes[0], issuer, alice)

	// The read node's errors decode the same way, streams included.
	watchCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = q.WatchBalances(watchCtx, nil, nil).Recv()
	cancel()
	expectRejected(err, codes.InvalidArgument, wallet.ReasonInvalidAccountID, "account_ids", "empty watch")
	_, err = q.GetBalance(ctx, alice, "garbage")
	expectRejected(err, codes.InvalidArgument, wallet.ReasonInvalidConsistencyToken, "consistency_token", "bad consistency token")

	// Bad input changed nothing.
	account, err := w.GetAccount(ctx, alice)
	must(err, "get alice")
	if account.GetAccount().GetBalance() != "10.00" {
		fail("alice has %s, not 10.00", account.GetAccount().GetBalance())
	}
	projected, err := q.GetBalance(ctx, alice, funded.ConsistencyToken)
	must(err, "projected alice")
	if projected.GetBalance().GetBalance() != "10.00" {
		fail("alice is projected at %s, not 10.00", projected.GetBalance().GetBalance())
	}
	checks++

	// A dead node first in the list: the retry loop moves on with the same request.
	dead := "127.0.0.1:1"
	withDead, err := wallet.NewWalletClient(append([]string{dead}, writes...))
	must(err, "client with a dead node")
	account, err = withDead.GetAccount(ctx, alice)
	must(err, "get through a dead node")
	if account.GetAccount().GetBalance() != "10.00" {
		fail("alice has %s through the dead node's client", account.GetAccount().GetBalance())
	}
	withDead.Close()
	checks++
	// Only dead nodes: an indefinite error, within the total deadline.
	policy := wallet.RetryPolicy{CallTimeout: time.Second, TotalDeadline: 2 * time.Second, AttemptsMax: 4,
		BackoffBase: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond}
	onlyDead, err := wallet.NewWalletClient([]string{dead}, wallet.WithRetryPolicy(policy))
	must(err, "client of a dead node")
	started := time.Now()
	_, err = onlyDead.Transfer(ctx, wallet.TransferParams{TransactionID: wallet.NewTransactionID(), From: issuer, To: alice, Amount: "1.00", Currency: "USD"})
	var indefinite *wallet.Indefinite
	if !errors.As(err, &indefinite) || indefinite.Code != codes.Unavailable || indefinite.Reason != wallet.ReasonTransport || wallet.IsDefinite(err) {
		fail("a transfer through a dead node: expected an indefinite UNAVAILABLE TRANSPORT_ERROR, got %v", err)
	}
	if elapsed := time.Since(started); elapsed > policy.TotalDeadline+time.Second {
		fail("giving up took %s", elapsed)
	}
	onlyDead.Close()
	checks++

	transferLegs(ctx, w, issuer)
	accountLifecycle(ctx, w, prefix)
	transferAnnotations(ctx, w, q, prefix)
	accountAnnotations(ctx, w, q, prefix)
	concurrentTransfers(ctx, w, prefix)
	otherWrappers(ctx, w, q, prefix, issuer, alice)
	fmt.Printf("go live checks: %d passed\n", checks)
}

// The accounts of the multi-leg check, fixed so that the first four are in one partition of
// the 4 of client-sdk/test-sdks.sh's cluster (the server's partition function) and the last in
// another; opened idempotently, so the check compares balances as deltas.
var (
	legsAccounts  = [4]string{"go-legs-0", "go-legs-10", "go-legs-11", "go-legs-12"}
	legsElsewhere = "go-legs-1"
)

// transferLegs: a multi-leg transfer moves every leg or none. Three legs among four accounts
// of one partition move exactly their amounts (GetAccount on the write node, as deltas); the
// same id and legs again answer the original outcome (Replayed) and move nothing, other legs
// under the id are ALREADY_EXISTS TRANSACTION_ID_REUSED; a set taking more than its first
// account has is FAILED_PRECONDITION INSUFFICIENT_FUNDS naming leg 0 and moves nothing; a
// repeated leg, mixed currencies and no legs are INVALID_ARGUMENT (REPEATED_LEG,
// MIXED_CURRENCIES, LEGS_OUT_OF_RANGE); a set reaching another partition (first -> second and
// first -> legsElsewhere) completes too, "success" and not Replayed, and moves exactly its
// amounts in both partitions (legsElsewhere read on its own), and the same id and legs again
// answer Replayed and move nothing; GetTransfer answers the set with its legs, COMPLETED, no
// FromAccount.
func transferLegs(ctx context.Context, w *wallet.WalletClient, issuer string) {
	first, second, third, fourth := legsAccounts[0], legsAccounts[1], legsAccounts[2], legsAccounts[3]
	for _, account := range append(legsAccounts[:], legsElsewhere) {
		_, err := w.OpenAccount(ctx, wallet.OpenAccountParams{AccountID: account, Currency: "USD"})
		must(err, "open "+account)
	}
	_, err := w.Transfer(ctx, wallet.TransferParams{TransactionID: wallet.NewTransactionID(), From: issuer, To: first, Amount: "100.00", Currency: "USD"})
	must(err, "fund "+first)
	balances := func() [4]*big.Rat {
		var out [4]*big.Rat
		for i, account := range legsAccounts {
			got, err := w.GetAccount(ctx, account)
			must(err, "GetAccount "+account)
			out[i] = decimal(got.GetAccount().GetBalance())
		}
		return out
	}
	moved := func(since [4]*big.Rat) []string {
		now := balances()
		out := make([]string, 4)
		for i := range now {
			out[i] = new(big.Rat).Sub(now[i], since[i]).FloatString(2)
		}
		return out
	}
	nothing := []string{"0.00", "0.00", "0.00", "0.00"}
	leg := func(from, to, amount, currency string) wallet.TransferLeg {
		return wallet.TransferLeg{From: from, To: to, Amount: amount, Currency: currency}
	}
	legs := []wallet.TransferLeg{leg(first, second, "30.00", "USD"), leg(first, third, "20.00", "USD"), leg(second, fourth, "10.00", "USD")}
	reference := "legs-" + wallet.NewTransactionID()
	md := map[string]string{"channel": "sdk-go"}
	id := wallet.NewTransactionID()
	params := wallet.TransferLegsParams{TransactionID: id, Legs: legs, Reference: reference, Metadata: md}

	before := balances()
	done, err := w.TransferLegs(ctx, params)
	must(err, "TransferLegs")
	if done.GetStatus() != "success" || done.GetTransactionId() != id || done.GetReplayed() {
		fail("TransferLegs answered %v", done)
	}
	if got, want := moved(before), []string{"-50.00", "20.00", "20.00", "10.00"}; !reflect.DeepEqual(got, want) {
		fail("the legs moved %v, not %v", got, want)
	}
	checks += 2

	after := balances()
	again, err := w.TransferLegs(ctx, params)
	must(err, "TransferLegs again")
	if again.GetStatus() != "success" || again.GetTransactionId() != id || !again.GetReplayed() || again.GetConsistencyToken() != done.GetConsistencyToken() {
		fail("the same TransferLegs again answered %v, first %v", again, done)
	}
	_, err = w.TransferLegs(ctx, wallet.TransferLegsParams{TransactionID: id, Legs: legs[:2], Reference: reference, Metadata: md})
	if reused := expectRejected(err, codes.AlreadyExists, wallet.ReasonTransactionIDReused, "", "the same id with other legs"); reused.TransactionID != id {
		fail("the error's TransactionID %q, not %q", reused.TransactionID, id)
	}
	if got := moved(after); !reflect.DeepEqual(got, nothing) {
		fail("a replay or a reused id moved %v", got)
	}
	checks++

	tooMuch := new(big.Rat).Add(after[0], big.NewRat(1000, 1)).FloatString(2)
	_, err = w.TransferLegs(ctx, wallet.TransferLegsParams{Legs: []wallet.TransferLeg{leg(first, second, tooMuch, "USD"), leg(second, fourth, "1.00", "USD")}})
	refused := expectRejected(err, codes.FailedPrecondition, wallet.ReasonInsufficientFunds, "", "legs taking more than the first account has")
	if index, ok := refused.Leg(); !ok || index != 0 || refused.Details.Metadata[wallet.MetadataLeg] != "0" {
		fail("insufficient funds: leg %d %v, ErrorInfo metadata %v", index, ok, refused.Details.Metadata)
	}
	if len(refused.TransactionID) != 36 {
		fail("insufficient funds: the generated id is not on the error: %q", refused.TransactionID)
	}
	invalid := codes.InvalidArgument
	_, err = w.TransferLegs(ctx, wallet.TransferLegsParams{Legs: []wallet.TransferLeg{leg(first, second, "1.00", "USD"), leg(first, second, "2.00", "USD")}})
	expectRejected(err, invalid, wallet.ReasonRepeatedLeg, "legs", "a repeated leg")
	_, err = w.TransferLegs(ctx, wallet.TransferLegsParams{Legs: []wallet.TransferLeg{leg(first, second, "1.00", "USD"), leg(first, third, "1.00", "EUR")}})
	expectRejected(err, invalid, wallet.ReasonMixedCurrencies, "legs", "mixed currencies")
	_, err = w.TransferLegs(ctx, wallet.TransferLegsParams{})
	expectRejected(err, invalid, wallet.ReasonLegsOutOfRange, "legs", "no legs")
	if got := moved(after); !reflect.DeepEqual(got, nothing) {
		fail("a refused set moved %v", got)
	}
	checks++

	// Across partitions: the consistency token names a position in every partition the set
	// touches, so a retry's may differ from the first answer's.
	elsewhere := func() *big.Rat {
		got, err := w.GetAccount(ctx, legsElsewhere)
		must(err, "GetAccount "+legsElsewhere)
		return decimal(got.GetAccount().GetBalance())
	}
	acrossID := wallet.NewTransactionID()
	across := wallet.TransferLegsParams{TransactionID: acrossID, Legs: []wallet.TransferLeg{leg(first, second, "1.00", "USD"), leg(first, legsElsewhere, "1.00", "USD")}}
	acrossBefore, elsewhereBefore := balances(), elsewhere()
	acrossDone, err := w.TransferLegs(ctx, across)
	must(err, "TransferLegs across partitions")
	if acrossDone.GetStatus() != "success" || acrossDone.GetTransactionId() != acrossID || acrossDone.GetReplayed() {
		fail("TransferLegs across partitions answered %v", acrossDone)
	}
	if got, want := moved(acrossBefore), []string{"-2.00", "1.00", "0.00", "0.00"}; !reflect.DeepEqual(got, want) {
		fail("the legs across partitions moved %v, not %v", got, want)
	}
	if got := new(big.Rat).Sub(elsewhere(), elsewhereBefore).FloatString(2); got != "1.00" {
		fail("the legs across partitions moved %s to %s, not 1.00", got, legsElsewhere)
	}
	checks += 2

	acrossAfter, elsewhereAfter := balances(), elsewhere()
	acrossAgain, err := w.TransferLegs(ctx, across)
	must(err, "TransferLegs across partitions again")
	if acrossAgain.GetStatus() != "success" || acrossAgain.GetTransactionId() != acrossID || !acrossAgain.GetReplayed() {
		fail("the same TransferLegs across partitions again answered %v, first %v", acrossAgain, acrossDone)
	}
	if got := moved(acrossAfter); !reflect.DeepEqual(got, nothing) {
		fail("a replay across partitions moved %v", got)
	}
	if got := new(big.Rat).Sub(elsewhere(), elsewhereAfter).FloatString(2); got != "0.00" {
		fail("a replay across partitions moved %s to %s", got, legsElsewhere)
	}
	checks++

	got, err := w.GetTransfer(ctx, id)
	must(err, "GetTransfer of the legs")
	if got.GetStatus() != walletv1.TransferStatus_TRANSFER_STATUS_COMPLETED || got.GetTransactionId() != id ||
		got.GetFromAccount() != "" || got.GetToAccount() != "" || got.GetAmount() != "" || got.GetCurrency() != "USD" {
		fail("GetTransfer of the legs: %v", got)
	}
	if len(got.GetLegs()) != len(legs) {
		fail("GetTransfer: %d legs, not %d: %v", len(got.GetLegs()), len(legs), got)
	}
	for i, l := range got.GetLegs() {
		if l.GetFromAccount() != legs[i].From || l.GetToAccount() != legs[i].To || decimal(l.GetAmount()).Cmp(decimal(legs[i].Amount)) != 0 {
			fail("GetTransfer: leg %d is %v, not %v", i, l, legs[i])
		}
	}
	if got.GetReference() != reference || !reflect.DeepEqual(got.GetMetadata(), md) || got.RejectedLeg != nil {
		fail("GetTransfer: reference %q, metadata %v, rejected leg %v", got.GetReference(), got.GetMetadata(), got.RejectedLeg)
	}
	checks++
	fmt.Println("go live checks: a multi-leg transfer moves every leg or none, within and across partitions (replayed, refused as documented, read back)")
}

// transferAnnotations: a transfer with a reference and metadata (unicode included) reads
// back the same from GetTransfer (write node), WatchTransfer and ListTransfers (read node); a
// retry with the same id and parameters answers the original outcome (replayed), with other
// metadata or another reference it is ALREADY_EXISTS TRANSACTION_ID_REUSED; 17 metadata
// entries are INVALID_METADATA and a 129-byte reference INVALID_REFERENCE (INVALID_ARGUMENT,
// naming the field); a hold keeps its reference and metadata.
func transferAnnotations(ctx context.Context, w *wallet.WalletClient, q *wallet.QueryClient, prefix string) {
	payer, payee := prefix+"ann-payer", prefix+"ann-payee"
	_, err := w.OpenAccount(ctx, wallet.OpenAccountParams{AccountID: payer, Currency: "USD", AllowNegativeBalance: true})
	must(err, "open the annotations payer")
	_, err = w.OpenAccount(ctx, wallet.OpenAccountParams{AccountID: payee, Currency: "USD"})
	must(err, "open the annotations payee")
	reference := "order-" + wallet.NewTransactionID()
	metadata := func() map[string]string { return map[string]string{"channel": "sdk-go", "note": "ünïcode ✓"} }
	same := func(got map[string]string) bool { return reflect.DeepEqual(got, metadata()) }
	transfer := wallet.TransferParams{TransactionID: wallet.NewTransactionID(), From: payer, To: payee, Amount: "3.00",
		Currency: "USD", Reference: reference, Metadata: metadata()}
	done, err := w.Transfer(ctx, transfer)
	must(err, "a transfer with a reference and metadata")
	if done.GetReplayed() {
		fail("a first transfer said replayed")
	}
	got, err := w.GetTransfer(ctx, transfer.TransactionID)
	must(err, "GetTransfer of the annotated transfer")
	// COMPLETED, or for a few milliseconds IN_FLIGHT when the accounts' partitions differ.
	if got.GetReference() != reference || !same(got.GetMetadata()) ||
		got.GetStatus() != walletv1.TransferStatus_TRANSFER_STATUS_COMPLETED && got.GetStatus() != walletv1.TransferStatus_TRANSFER_STATUS_IN_FLIGHT {
		fail("GetTransfer: %v", got)
	}
	again, err := w.Transfer(ctx, transfer)
	must(err, "the same annotated transfer again")
	if !again.GetReplayed() {
		fail("a retry with the same parameters did not say replayed: %v", again)
	}
	checks += 3
	changed := transfer
	changed.Metadata = metadata()
	changed.Metadata["note"] = "changed"
	_, err = w.Transfer(ctx, changed)
	expectRejected(err, codes.AlreadyExists, wallet.ReasonTransactionIDReused, "", "the same id with other metadata")
	changed = transfer
	changed.Reference = reference + "-other"
	_, err = w.Transfer(ctx, changed)
	expectRejected(err, codes.AlreadyExists, wallet.ReasonTransactionIDReused, "", "the same id with another reference")

	tooMany := map[string]string{}
	for i := 0; i < 17; i++ {
		tooMany[fmt.Sprintf("k%d", i)] = "v"
	}
	_, err = w.Transfer(ctx, wallet.TransferParams{TransactionID: wallet.NewTransactionID(), From: payer, To: payee,
		Amount: "1.00", Currency: "USD", Metadata: tooMany})
	expectRejected(err, codes.InvalidArgument, wallet.ReasonInvalidMetadata, "metadata", "17 metadata entries")
	_, err = w.Transfer(ctx, wallet.TransferParams{TransactionID: wallet.NewTransactionID(), From: payer, To: payee,
		Amount: "1.00", Currency: "USD", Reference: strings.Repeat("r", 129)})
	expectRejected(err, codes.InvalidArgument, wallet.ReasonInvalidReference, "reference", "a 129-byte reference")
	// Down a SubmitTransfers stream the item's error names the field too.
	stream, err := w.SubmitTransfers(ctx, w.Leader(payer))
	must(err, "SubmitTransfers")
	must(stream.Send(wallet.TransferParams{TransactionID: wallet.NewTransactionID(), From: payer, To: payee,
		Amount: "1.00", Currency: "USD", Metadata: tooMany}), "SubmitTransfers send")
	must(stream.CloseSend(), "SubmitTransfers close")
	result, err := stream.Recv()
	must(err, "SubmitTransfers recv")
	expectRejected(wallet.ResultError(result.GetStatus(), result.GetError()), codes.InvalidArgument,
		wallet.ReasonInvalidMetadata, "metadata", "17 metadata entries down a stream")
	for {
		if _, err := stream.Recv(); err != nil {
			break
		}
	}

	hold := wallet.AuthorizeParams{TransactionID: wallet.NewTransactionID(), From: payer, To: payee, Amount: "1.00",
		Currency: "USD", Timeout: time.Minute, Metadata: map[string]string{"bad key": "v"}}
	_, err = w.AuthorizeTransfer(ctx, hold)
	expectRejected(err, codes.InvalidArgument, wallet.ReasonInvalidMetadata, "metadata", "a hold with a bad metadata key")
	hold.TransactionID, hold.Reference, hold.Metadata = wallet.NewTransactionID(), reference+"-hold", map[string]string{"channel": "sdk-go"}
	held, err := w.AuthorizeTransfer(ctx, hold)
	must(err, "an annotated hold")
	if held.GetTransfer().GetReference() != hold.Reference || held.GetTransfer().GetMetadata()["channel"] != "sdk-go" {
		fail("AuthorizeTransfer answered %v", held.GetTransfer())
	}
	heldAgain, err := w.GetTransfer(ctx, hold.TransactionID)
	must(err, "GetTransfer of the hold")
	if heldAgain.GetReference() != hold.Reference || !reflect.DeepEqual(heldAgain.GetMetadata(), hold.Metadata) {
		fail("GetTransfer of the hold: %v", heldAgain)
	}
	_, err = w.VoidTransfer(ctx, hold.TransactionID, payer)
	must(err, "void the annotated hold")
	checks += 2

	// The read node: the transfer's final update, then the payer's history.
	tw := q.WatchTransfer(ctx, transfer.TransactionID)
	var final *walletv1.TransferUpdate
	for {
		update, err := tw.Recv()
		if err == io.EOF {
			break
		}
		must(err, "WatchTransfer of the annotated transfer")
		final = update
	}
	if final == nil || final.GetStatus() != walletv1.TransferStatus_TRANSFER_STATUS_COMPLETED ||
		final.GetReference() != reference || !same(final.GetMetadata()) {
		fail("WatchTransfer of the annotated transfer ended with %v", final)
	}
	_, err = q.GetBalance(ctx, payer, done.GetConsistencyToken())
	must(err, "GetBalance of the payer")
	var entry *walletv1.HistoryEntry
	for token := ""; entry == nil; {
		page, err := q.ListTransfers(ctx, wallet.ListTransfersParams{AccountID: payer, PageToken: token})
		must(err, "ListTransfers of the payer")
		for _, e := range page.GetEntries() {
			if e.GetTransactionId() == transfer.TransactionID {
				entry = e
			}
		}
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	if entry == nil || entry.GetReference() != reference || !same(entry.GetMetadata()) {
		fail("ListTransfers: the annotated transfer's entry is %v", entry)
	}
	checks += 2
	fmt.Println("go live checks: a transfer's reference and metadata stored, read back, compared on a retry, refused over their limits")
}

// accountAnnotations: a fresh account opened with a reference and metadata carries them in
// the answer and in GetAccount (write node); opening it again with the same parameters answers
// the account (also through OpenAccounts), with other metadata or another reference it is
// ALREADY_EXISTS ACCOUNT_EXISTS_WITH_OTHER_PARAMETERS and nothing changes; a 129-byte
// reference is INVALID_REFERENCE and 17 metadata entries INVALID_METADATA (INVALID_ARGUMENT,
// naming the field), and that account then does not exist; the read node's GetBalance (at the
// consistency token of a transfer into the account) and the snapshot of WatchBalances carry
// them too.
func accountAnnotations(ctx context.Context, w *wallet.WalletClient, q *wallet.QueryClient, prefix string) {
	suffix := wallet.NewTransactionID()[:8]
	account, issuer := prefix+"acct-ann-"+suffix, prefix+"acct-ann-issuer-"+suffix
	const reference = "cust-42"
	metadata := func() map[string]string { return map[string]string{"tier": "gold", "region": "eu"} }
	type annotated interface {
		GetReference() string
		GetMetadata() map[string]string
	}
	carries := func(m annotated, reference string, metadata map[string]string) bool {
		return m.GetReference() == reference && len(m.GetMetadata()) == len(metadata) &&
			(len(metadata) == 0 || reflect.DeepEqual(m.GetMetadata(), metadata))
	}
	params := wallet.OpenAccountParams{AccountID: account, Currency: "USD", Reference: reference, Metadata: metadata()}
	opened, err := w.OpenAccount(ctx, params)
	must(err, "open an account with a reference and metadata")
	if opened.GetAccountId() != account || opened.GetCurrency() != "USD" || !carries(opened, reference, metadata()) {
		fail("OpenAccount answered %v", opened)
	}
	got, err := w.GetAccount(ctx, account)
	must(err, "GetAccount of the annotated account")
	if !carries(got.GetAccount(), reference, metadata()) {
		fail("GetAccount: %v", got.GetAccount())
	}
	again, err := w.OpenAccount(ctx, wallet.OpenAccountParams{AccountID: account, Currency: "USD", Reference: reference, Metadata: metadata()})
	must(err, "open the annotated account again with the same parameters")
	if again.GetAccountId() != account || !carries(again, reference, metadata()) {
		fail("opening again answered %v", again)
	}
	checks += 3

	changed := params
	changed.Metadata = map[string]string{"tier": "silver"}
	_, err = w.OpenAccount(ctx, changed)
	expectRejected(err, codes.AlreadyExists, wallet.ReasonAccountExistsWithOtherParameters, "", "reopening with other metadata")
	changed = params
	changed.Reference = "cust-43"
	_, err = w.OpenAccount(ctx, changed)
	expectRejected(err, codes.AlreadyExists, wallet.ReasonAccountExistsWithOtherParameters, "", "reopening with another reference")
	_, err = w.OpenAccount(ctx, wallet.OpenAccountParams{AccountID: account, Currency: "USD"})
	expectRejected(err, codes.AlreadyExists, wallet.ReasonAccountExistsWithOtherParameters, "", "reopening without them")
	got, err = w.GetAccount(ctx, account)
	must(err, "GetAccount after the refused reopenings")
	if !carries(got.GetAccount(), reference, metadata()) {
		fail("a refused reopening changed the account: %v", got.GetAccount())
	}
	checks++

	fresh := prefix + "acct-ann-refused-" + suffix
	_, err = w.OpenAccount(ctx, wallet.OpenAccountParams{AccountID: fresh, Currency: "USD", Reference: strings.Repeat("r", 129)})
	expectRejected(err, codes.InvalidArgument, wallet.ReasonInvalidReference, "reference", "an account with a 129-byte reference")
	tooMany := map[string]string{}
	for i := 0; i < 17; i++ {
		tooMany[fmt.Sprintf("k%d", i)] = "v"
	}
	_, err = w.OpenAccount(ctx, wallet.OpenAccountParams{AccountID: fresh, Currency: "USD", Metadata: tooMany})
	expectRejected(err, codes.InvalidArgument, wallet.ReasonInvalidMetadata, "metadata", "an account with 17 metadata entries")
	_, err = w.GetAccount(ctx, fresh)
	expectRejected(err, codes.NotFound, wallet.ReasonAccountNotFound, "account_id", "GetAccount of the refused account")

	// OpenAccounts: an item with annotations opens with them, an existing account given the
	// same ones answers it, given others it is refused like the unary call.
	bulk := prefix + "acct-ann-bulk-" + suffix
	bronze := map[string]string{"tier": "bronze"}
	accounts, errs := w.OpenAccounts(ctx, []wallet.OpenAccountParams{
		{AccountID: bulk, Currency: "USD", Reference: "cust-44", Metadata: bronze}, params,
	})
	must(errs[0], "OpenAccounts of an annotated account")
	must(errs[1], "OpenAccounts of the annotated account again")
	if !carries(accounts[0], "cust-44", bronze) || !carries(accounts[1], reference, metadata()) {
		fail("OpenAccounts answered %v", accounts)
	}
	_, errs = w.OpenAccounts(ctx, []wallet.OpenAccountParams{{AccountID: bulk, Currency: "USD", Reference: "cust-45"}})
	var rejected *wallet.Rejected
	if !errors.As(errs[0], &rejected) || rejected.Code != codes.AlreadyExists || rejected.Reason != wallet.ReasonAccountExistsWithOtherParameters {
		fail("OpenAccounts of the bulk account with another reference: expected ALREADY_EXISTS %s, got %v",
			wallet.ReasonAccountExistsWithOtherParameters, errs[0])
	}
	checks += 2

	// The read node: GetBalance at least as fresh as a transfer into the account, and the
	// snapshot a watch of it starts with.
	_, err = w.OpenAccount(ctx, wallet.OpenAccountParams{AccountID: issuer, Currency: "USD", AllowNegativeBalance: true})
	must(err, "open the annotated account's issuer")
	funded, err := w.Transfer(ctx, wallet.TransferParams{TransactionID: wallet.NewTransactionID(), From: issuer, To: account,
		Amount: "1.00", Currency: "USD"})
	must(err, "fund the annotated account")
	projected, err := q.GetBalance(ctx, account, funded.GetConsistencyToken())
	must(err, "GetBalance of the annotated account")
	if b := projected.GetBalance(); b.GetAccountId() != account || b.GetBalance() != "1.00" || !carries(b, reference, metadata()) {
		fail("GetBalance of the annotated account: %v", b)
	}
	plain, err := q.GetBalance(ctx, issuer, funded.GetConsistencyToken())
	must(err, "GetBalance of the issuer")
	if !carries(plain.GetBalance(), "", nil) {
		fail("GetBalance of an account opened without annotations: %v", plain.GetBalance())
	}
	watchCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	watch := q.WatchBalances(watchCtx, []string{account}, nil)
	snapshot, err := watch.Recv()
	watch.Close()
	must(err, "WatchBalances of the annotated account")
	if snapshot.GetBalance().GetAccountId() != account || !carries(snapshot.GetBalance(), reference, metadata()) {
		fail("WatchBalances of the annotated account: %v", snapshot)
	}
	checks += 3
	fmt.Println("go live checks: an account's reference and metadata set at opening, read back, compared on reopening, refused over their limits")
}

// closeWhenSettled is CloseAccount, called again while the node answers
// ReasonAccountHasTransfersInFlight (a cross-partition transfer from the account answered
// "success" before its settle step: "retry shortly", as documented).
func closeWhenSettled(ctx context.Context, w *wallet.WalletClient, accountID string) (*walletv1.Account, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		account, err := w.CloseAccount(ctx, accountID)
		var rejected *wallet.Rejected
		if err == nil || !errors.As(err, &rejected) || rejected.Reason != wallet.ReasonAccountHasTransfersInFlight || time.Now().After(deadline) {
			return account, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// accountLifecycle: freeze, unfreeze, overdraft limit and close on a fresh account, each
// refusal with its documented code and reason (FAILED_PRECONDITION carries no field), the
// status and limit read back.
func accountLifecycle(ctx context.Context, w *wallet.WalletClient, prefix string) {
	issuer, account, sink := prefix+"life-issuer", prefix+"life-account", prefix+"life-sink"
	move := func(from, to, amount string) error {
		_, err := w.Transfer(ctx, wallet.TransferParams{TransactionID: wallet.NewTransactionID(), From: from, To: to, Amount: amount, Currency: "USD"})
		return err
	}
	expectState := func(status walletv1.AccountStatus, balance, limit, what string) {
		got, err := w.GetAccount(ctx, account)
		must(err, what)
		a := got.GetAccount()
		if a.GetStatus() != status || a.GetBalance() != balance || a.GetOverdraftLimit() != limit {
			fail("%s: expected %s, balance %s, limit %s; got %s, balance %s, limit %s", what, status, balance, limit,
				a.GetStatus(), a.GetBalance(), a.GetOverdraftLimit())
		}
	}
	expectStatus := func(a *walletv1.Account, err error, status walletv1.AccountStatus, what string) *walletv1.Account {
		must(err, what)
		if a.GetAccountId() != account || a.GetStatus() != status {
			fail("%s: expected %s %s, got %v", what, account, status, a)
		}
		return a
	}
	const precondition = codes.FailedPrecondition

	_, err := w.OpenAccount(ctx, wallet.OpenAccountParams{AccountID: issuer, Currency: "USD", AllowNegativeBalance: true})
	must(err, "open the lifecycle issuer")
	opened, err := w.OpenAccount(ctx, wallet.OpenAccountParams{AccountID: account, Currency: "USD"})
	if expectStatus(opened, err, walletv1.AccountStatus_ACCOUNT_STATUS_ACTIVE, "open the account").GetOverdraftLimit() != "0.00" {
		fail("a new account's overdraft limit is %q, not 0.00", opened.GetOverdraftLimit())
	}
	_, err = w.OpenAccount(ctx, wallet.OpenAccountParams{AccountID: sink, Currency: "USD"})
	must(err, "open the sink")
	must(move(issuer, account, "20.00"), "fund the account")

	a, err := w.FreezeAccount(ctx, account)
	expectStatus(a, err, walletv1.AccountStatus_ACCOUNT_STATUS_FROZEN, "freeze")
	a, err = w.FreezeAccount(ctx, account)
	expectStatus(a, err, walletv1.AccountStatus_ACCOUNT_STATUS_FROZEN, "freeze again (idempotent)")
	expectRejected(move(account, sink, "5.00"), precondition, wallet.ReasonAccountFrozen, "", "a transfer from a frozen account")
	expectRejected(move(issuer, account, "5.00"), precondition, wallet.ReasonAccountFrozen, "", "a transfer to a frozen account")
	expectState(walletv1.AccountStatus_ACCOUNT_STATUS_FROZEN, "20.00", "0.00", "the frozen account")

	a, err = w.UnfreezeAccount(ctx, account)
	expectStatus(a, err, walletv1.AccountStatus_ACCOUNT_STATUS_ACTIVE, "unfreeze")
	must(move(account, sink, "5.00"), "a transfer from the unfrozen account")

	a, err = w.SetOverdraftLimit(ctx, account, "50.00", "USD")
	if expectStatus(a, err, walletv1.AccountStatus_ACCOUNT_STATUS_ACTIVE, "set the overdraft limit").GetOverdraftLimit() != "50.00" {
		fail("the overdraft limit reads %q, not 50.00", a.GetOverdraftLimit())
	}
	a, err = w.SetOverdraftLimit(ctx, account, "50.00", "USD")
	if expectStatus(a, err, walletv1.AccountStatus_ACCOUNT_STATUS_ACTIVE, "the same limit again (idempotent)").GetOverdraftLimit() != "50.00" {
		fail("the overdraft limit reads %q after setting it again", a.GetOverdraftLimit())
	}
	_, err = w.SetOverdraftLimit(ctx, account, "50.00", "EUR")
	expectRejected(err, precondition, wallet.ReasonCurrencyMismatch, "", "a limit in another currency")
	_, err = w.SetOverdraftLimit(ctx, issuer, "50.00", "USD")
	expectRejected(err, precondition, wallet.ReasonOverdraftUnlimited, "", "a limit on an allow_negative_balance account")
	must(move(account, sink, "60.00"), "45.00 below zero, within the limit")
	expectRejected(move(account, sink, "5.01"), precondition, wallet.ReasonInsufficientFunds, "", "beyond the overdraft limit")
	expectState(walletv1.AccountStatus_ACCOUNT_STATUS_ACTIVE, "-45.00", "50.00", "the overdrawn account")

	_, err = w.CloseAccount(ctx, account)
	expectRejected(err, precondition, wallet.ReasonAccountNotEmpty, "", "closing an account in debt")
	must(move(issuer, account, "45.00"), "bring the account to zero")
	a, err = closeWhenSettled(ctx, w, account)
	if expectStatus(a, err, walletv1.AccountStatus_ACCOUNT_STATUS_CLOSED, "close").GetBalance() != "0.00" {
		fail("the closed account's balance is %s", a.GetBalance())
	}
	a, err = w.CloseAccount(ctx, account)
	expectStatus(a, err, walletv1.AccountStatus_ACCOUNT_STATUS_CLOSED, "close again (idempotent)")
	expectState(walletv1.AccountStatus_ACCOUNT_STATUS_CLOSED, "0.00", "50.00", "the closed account")
	expectRejected(move(issuer, account, "1.00"), precondition, wallet.ReasonAccountClosed, "", "a transfer to a closed account")
	expectRejected(move(account, sink, "1.00"), precondition, wallet.ReasonAccountClosed, "", "a transfer from a closed account")
	_, err = w.UnfreezeAccount(ctx, account)
	expectRejected(err, precondition, wallet.ReasonAccountClosed, "", "unfreezing a closed account")
	_, err = w.FreezeAccount(ctx, prefix+"nobody")
	expectRejected(err, codes.NotFound, wallet.ReasonAccountNotFound, "account_id", "freezing an unknown account")
	got, err := w.GetAccount(ctx, sink)
	must(err, "get the sink")
	if got.GetAccount().GetBalance() != "65.00" {
		fail("the sink has %s, not 65.00", got.GetAccount().GetBalance())
	}
	checks++
	fmt.Println("go live checks: account lifecycle: freeze, unfreeze, overdraft limit and close as documented")
}

// rawStatusDecodes: straight from the generated stub, grpc-go's status and genproto's
// errdetails, without the SDK's helpers.
func rawStatusDecodes(endpoint, issuer, alice string) {
	conn, err := grpc.Dial(endpoint, grpc.WithInsecure())
	must(err, "dial")
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = walletv1.NewWalletServiceClient(conn).Transfer(ctx, &walletv1.TransferRequest{
		TransactionId: wallet.NewTransactionID(), FromAccount: issuer, ToAccount: alice, Amount: "abc", Currency: "USD",
	})
	st, ok := status.FromError(err)
	if err == nil || !ok || st.Code() != codes.InvalidArgument {
		fail("raw: amount 'abc': %v", err)
	}
	var info *errdetails.ErrorInfo
	var bad *errdetails.BadRequest
	for _, d := range st.Details() {
		switch m := d.(type) {
		case *errdetails.ErrorInfo:
			info = m
		case *errdetails.BadRequest:
			bad = m
		}
	}
	if info == nil || info.Reason != wallet.ReasonInvalidAmount || info.Domain != wallet.ErrorDomain {
		fail("raw: ErrorInfo %v", info)
	}
	if bad == nil || len(bad.FieldViolations) != 1 || bad.FieldViolations[0].Field != "amount" {
		fail("raw: BadRequest %v", bad)
	}
	checks++
}

// concurrentTransfers: 200 concurrent Transfer calls on one client: valid ones, invalid
// amounts, insufficient funds, replays of earlier ids (same parameters: the original
// outcome) and reuses of them (other parameters: TRANSACTION_ID_REUSED). Each gets exactly
// its own outcome, the balances are exact, and sending all 200 again moves nothing twice.
func concurrentTransfers(ctx context.Context, w *wallet.WalletClient, prefix string) {
	issuer := prefix + "pipe-issuer"
	var payers, payees []string
	for j := 0; j < 4; j++ {
		payers = append(payers, fmt.Sprintf("%spipe-payer-%d", prefix, j))
		payees = append(payees, fmt.Sprintf("%spipe-payee-%d", prefix, j))
	}
	expected := map[string]*big.Rat{}
	add := func(account, amount string) { expected[account].Add(expected[account], decimal(amount)) }
	_, err := w.OpenAccount(ctx, wallet.OpenAccountParams{AccountID: issuer, Currency: "USD", AllowNegativeBalance: true})
	must(err, "open the issuer")
	for _, account := range append(append([]string{}, payers...), payees...) {
		_, err := w.OpenAccount(ctx, wallet.OpenAccountParams{AccountID: account, Currency: "USD"})
		must(err, "open "+account)
		expected[account] = new(big.Rat)
	}
	for _, payer := range payers {
		_, err := w.Transfer(ctx, wallet.TransferParams{TransactionID: wallet.NewTransactionID(), From: issuer, To: payer, Amount: "50.00", Currency: "USD"})
		must(err, "fund "+payer)
		add(payer, "50.00")
	}
	type earlierTransfer struct{ id, token string }
	var earlier []earlierTransfer
	for i := 0; i < 10; i++ {
		id := wallet.NewTransactionID()
		done, err := w.Transfer(ctx, wallet.TransferParams{TransactionID: id, From: issuer, To: payees[0], Amount: "2.00", Currency: "USD"})
		must(err, "an earlier transfer")
		earlier = append(earlier, earlierTransfer{id, done.ConsistencyToken})
		add(payees[0], "2.00")
	}

	type testCase struct {
		params wallet.TransferParams
		want   string // "success", "replay" or a reason
		token  string // for "replay": the original outcome's token
	}
	var cases []testCase
	for i := 0; i < 200; i++ {
		j := i % 4
		p := wallet.TransferParams{TransactionID: wallet.NewTransactionID(), Currency: "USD"}
		switch i % 5 {
		case 0:
			p.From, p.To, p.Amount = issuer, payees[j], "1.00"
			add(payees[j], "1.00")
			cases = append(cases, testCase{p, "success", ""})
		case 1:
			p.From, p.To, p.Amount = issuer, payees[j], "1.005"
			cases = append(cases, testCase{p, wallet.ReasonInvalidAmount, ""})
		case 2:
			p.From, p.To, p.Amount = payers[j], payees[j], "100.00"
			cases = append(cases, testCase{p, wallet.ReasonInsufficientFunds, ""})
		case 3:
			p.From, p.To, p.Amount = payers[j], payees[j], "0.50"
			add(payers[j], "-0.50")
			add(payees[j], "0.50")
			cases = append(cases, testCase{p, "success", ""})
		default:
			e := earlier[(i/5)%10]
			p.TransactionID, p.From, p.To = e.id, issuer, payees[0]
			if (i/5)%2 == 0 {
				p.Amount = "2.00"
				cases = append(cases, testCase{p, "replay", e.token})
			} else {
				p.Amount = "3.00"
				cases = append(cases, testCase{p, wallet.ReasonTransactionIDReused, ""})
			}
		}
	}
	type outcome struct {
		response *walletv1.TransferResponse
		err      error
	}
	runAll := func() []outcome {
		out := make([]outcome, len(cases))
		var wg sync.WaitGroup
		for i := range cases {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				out[i].response, out[i].err = w.Transfer(ctx, cases[i].params)
			}(i)
		}
		wg.Wait()
		return out
	}
	checkBalances := func() {
		for account, want := range expected {
			got, err := w.GetAccount(ctx, account)
			must(err, "get "+account)
			if decimal(got.GetAccount().GetBalance()).Cmp(want) != 0 {
				fail("%s: %s != %s", account, got.GetAccount().GetBalance(), want.FloatString(2))
			}
		}
	}
	first := runAll()
	tokens := map[string]string{}
	for i, c := range cases {
		got := first[i]
		where := fmt.Sprintf("%+v expected %s", c.params, c.want)
		switch c.want {
		case "success", "replay":
			if got.err != nil || got.response.GetStatus() != "success" || got.response.GetTransactionId() != c.params.TransactionID {
				fail("%s, got %v %v", where, got.response, got.err)
			}
			if c.want == "replay" && got.response.GetConsistencyToken() != c.token {
				fail("%s: a replay got another outcome", where)
			}
			tokens[c.params.TransactionID] = got.response.GetConsistencyToken()
		default:
			var rejected *wallet.Rejected
			if !errors.As(got.err, &rejected) || rejected.Reason != c.want {
				fail("%s, got %v", where, got.err)
			}
			field := ""
			if c.want == wallet.ReasonInvalidAmount {
				field = "amount"
			}
			if rejected.Field != field {
				fail("%s: field %q, not %q", where, rejected.Field, field)
			}
		}
	}
	checkBalances()
	// Everything again, with the same ids: the same outcomes, and no money moves twice.
	second := runAll()
	for i, c := range cases {
		if first[i].err == nil {
			if second[i].err != nil || second[i].response.GetConsistencyToken() != tokens[c.params.TransactionID] {
				fail("%+v: again: %v %v", c.params, second[i].response, second[i].err)
			}
		} else if wallet.ReasonOf(second[i].err) != wallet.ReasonOf(first[i].err) {
			fail("%+v: again: %v, first %v", c.params, second[i].err, first[i].err)
		}
	}
	checkBalances()
	fmt.Println("go live checks: 200 concurrent transfers, twice: own outcomes, exact balances")
	checks += 3
}

// otherWrappers: TransferBatch, SubmitTransfers, OpenAccounts, GetTransfer, ListTransfers,
// GetBalanceAt, WatchTransfer and GetClusterStatus each answer as documented.
func otherWrappers(ctx context.Context, w *wallet.WalletClient, q *wallet.QueryClient, prefix, issuer, alice string) {
	bob, carol := prefix+"bob", prefix+"carol"
	opened, errs := w.OpenAccounts(ctx, []wallet.OpenAccountParams{
		{AccountID: bob, Currency: "USD"}, {AccountID: carol, Currency: "USD"}, {AccountID: "bad id", Currency: "USD"},
	})
	if errs[0] != nil || errs[1] != nil || opened[0].GetAccountId() != bob || opened[1].GetAccountId() != carol {
		fail("OpenAccounts: %v %v", opened, errs)
	}
	expectRejected(errs[2], codes.InvalidArgument, wallet.ReasonInvalidAccountID, "account_id", "OpenAccounts with a bad id")

	batch := []wallet.TransferParams{
		{TransactionID: wallet.NewTransactionID(), From: issuer, To: bob, Amount: "5.00", Currency: "USD"},
		{TransactionID: wallet.NewTransactionID(), From: issuer, To: carol, Amount: "7.00", Currency: "USD"},
		{TransactionID: wallet.NewTransactionID(), From: bob, To: carol, Amount: "50.00", Currency: "USD"},
	}
	for round := 0; round < 2; round++ { // the second time: the same ids, the same outcomes
		outcomes, err := w.TransferBatch(ctx, batch)
		must(err, "TransferBatch")
		if outcomes[0].Err != nil || outcomes[1].Err != nil {
			fail("TransferBatch: %v %v", outcomes[0].Err, outcomes[1].Err)
		}
		expectRejected(outcomes[2].Err, codes.FailedPrecondition, wallet.ReasonInsufficientFunds, "", "TransferBatch item")
	}
	_, err := w.TransferBatch(ctx, nil)
	expectRejected(err, codes.InvalidArgument, wallet.ReasonInvalidBatchSize, "transfers", "empty TransferBatch")

	// SubmitTransfers, sent to the leader of bob's partition (known from the calls above).
	stream, err := w.SubmitTransfers(ctx, w.Leader(bob))
	must(err, "SubmitTransfers")
	sent := map[string]wallet.TransferParams{}
	for i := 0; i < 5; i++ {
		p := wallet.TransferParams{TransactionID: wallet.NewTransactionID(), From: bob, To: alice, Amount: "0.10", Currency: "USD"}
		sent[p.TransactionID] = p
		must(stream.Send(p), "SubmitTransfers send")
	}
	must(stream.CloseSend(), "SubmitTransfers close")
	moved := 0
	for {
		result, err := stream.Recv()
		if err == io.EOF {
			break
		}
		must(err, "SubmitTransfers recv")
		p, ok := sent[result.GetTransactionId()]
		if !ok {
			fail("SubmitTransfers: an unknown id %s", result.GetTransactionId())
		}
		if err := wallet.ResultError(result.GetStatus(), result.GetError()); err != nil {
			var indefinite *wallet.Indefinite
			if !errors.As(err, &indefinite) {
				fail("SubmitTransfers: %v", err)
			}
			_, err = w.Transfer(ctx, p) // another node leads it: the unary path, same id
			must(err, "SubmitTransfers fallback")
		}
		delete(sent, result.GetTransactionId())
		moved++
	}
	if moved != 5 {
		fail("SubmitTransfers: %d results for 5 transfers", moved)
	}
	checks += 2

	last := batch[1]
	transfer, err := w.GetTransfer(ctx, last.TransactionID)
	must(err, "GetTransfer")
	if transfer.GetAmount() != "7.00" || transfer.GetToAccount() != carol {
		fail("GetTransfer: %v", transfer)
	}
	tw := q.WatchTransfer(ctx, last.TransactionID)
	var final *walletv1.TransferUpdate
	for {
		update, err := tw.Recv()
		if err == io.EOF {
			break
		}
		must(err, "WatchTransfer")
		final = update
	}
	// status is the state in wallet.v1.TransferStatus; the deprecated state is still filled.
	if final == nil || !final.GetIsFinal() || final.GetStatus() != walletv1.TransferStatus_TRANSFER_STATUS_COMPLETED ||
		final.GetState() != walletv1.TransferState_TRANSFER_STATE_COMPLETED {
		fail("WatchTransfer ended with %v", final)
	}
	balance, err := q.GetBalance(ctx, carol, "")
	must(err, "GetBalance")
	history, err := q.ListTransfers(ctx, wallet.ListTransfersParams{AccountID: carol})
	must(err, "ListTransfers")
	if len(history.GetEntries()) != 1 || history.GetEntries()[0].GetTransactionId() != last.TransactionID {
		fail("ListTransfers: %v", history.GetEntries())
	}
	at, err := q.GetBalanceAt(ctx, carol, wallet.BalanceAt{Position: history.GetEntries()[0].GetPosition()})
	must(err, "GetBalanceAt")
	if at.GetBalance() != "7.00" || balance.GetBalance().GetBalance() != "7.00" {
		fail("GetBalanceAt %s, GetBalance %s", at.GetBalance(), balance.GetBalance().GetBalance())
	}
	_, err = q.ListTransfers(ctx, wallet.ListTransfersParams{AccountID: carol, PageSize: 1 << 30})
	expectRejected(err, codes.InvalidArgument, wallet.ReasonPageSizeTooLarge, "page_size", "huge page")
	cluster, err := w.GetClusterStatus(ctx, "", false)
	must(err, "GetClusterStatus")
	if len(cluster.GetPartitions()) == 0 || len(cluster.GetNodes()) == 0 {
		fail("GetClusterStatus: %v", cluster)
	}
	checks += 3
}
