package wallet

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"wallet.ledger/client-sdk/go/walletv1"
)

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// fakeLegs is a write node's TransferLegs: a follower (leader set) answers NOT_LEADER with the
// leader's address; otherwise `answer` decides (nil: success under the request's id). Every
// request is recorded, with its NoForwardMetadataKey value.
type fakeLegs struct {
	walletv1.UnimplementedWalletServiceServer
	leader    string
	answer    func(call int, r *walletv1.TransferLegsRequest) (*walletv1.TransferResponse, error)
	mu        sync.Mutex
	requests  []*walletv1.TransferLegsRequest
	noForward []string
}

func (f *fakeLegs) TransferLegs(ctx context.Context, r *walletv1.TransferLegsRequest) (*walletv1.TransferResponse, error) {
	f.mu.Lock()
	f.requests = append(f.requests, r)
	md, _ := metadata.FromIncomingContext(ctx)
	f.noForward = append(f.noForward, strings.Join(md.Get(NoForwardMetadataKey), ","))
	call := len(f.requests)
	f.mu.Unlock()
	if f.leader != "" {
		return nil, notLeader(f.leader)
	}
	if f.answer != nil {
		return f.answer(call, r)
	}
	return &walletv1.TransferResponse{Status: "success", TransactionId: r.TransactionId, ConsistencyToken: "legs"}, nil
}

func (f *fakeLegs) seen() []*walletv1.TransferLegsRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*walletv1.TransferLegsRequest(nil), f.requests...)
}

func legsClient(t *testing.T, nodes ...*fakeLegs) (*WalletClient, []string) {
	t.Helper()
	var addresses []string
	for _, node := range nodes {
		address, _ := serve(t, func(s *grpc.Server) { walletv1.RegisterWalletServiceServer(s, node) })
		addresses = append(addresses, address)
	}
	client, err := NewWalletClient(addresses, WithRetryPolicy(quickPolicy()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client, addresses
}

var testLegs = []TransferLeg{
	{From: "alice", To: "bob", Amount: "30.00", Currency: "USD"},
	{From: "alice", To: "carol", Amount: "20.00", Currency: "USD"},
	{From: "bob", To: "dave", Amount: "10.5", Currency: "USD"},
}

func TestTransferLegsSendsTheLegsInOrderToTheLeaderOfTheFirstSource(t *testing.T) {
	leader := &fakeLegs{}
	follower := &fakeLegs{}
	client, addresses := legsClient(t, follower, leader)
	follower.leader = "http://" + addresses[1]
	ctx := context.Background()
	id := NewTransactionID()
	md := map[string]string{"channel": "sdk-go", "note": "ünïcode ✓"}
	done, err := client.TransferLegs(ctx, TransferLegsParams{TransactionID: id, Legs: testLegs, Reference: "order-7", Metadata: md})
	if err != nil || done.GetStatus() != "success" || done.GetTransactionId() != id || done.GetConsistencyToken() != "legs" || done.GetReplayed() {
		t.Fatalf("%v %v", done, err)
	}
	md["note"] = "changed afterwards"
	if client.Leader("alice") != addresses[1] {
		t.Fatalf("leader of alice: %q", client.Leader("alice"))
	}
	if _, err := client.TransferLegs(ctx, TransferLegsParams{TransactionID: NewTransactionID(), Legs: testLegs[:1]}); err != nil {
		t.Fatal(err)
	}
	if len(follower.seen()) != 1 || len(leader.seen()) != 2 {
		t.Fatalf("follower saw %d, leader %d", len(follower.seen()), len(leader.seen()))
	}
	want := &walletv1.TransferLegsRequest{
		TransactionId: id,
		Legs: []*walletv1.TransferLeg{
			{FromAccount: "alice", ToAccount: "bob", Amount: "30.00", Currency: "USD"},
			{FromAccount: "alice", ToAccount: "carol", Amount: "20.00", Currency: "USD"},
			{FromAccount: "bob", ToAccount: "dave", Amount: "10.5", Currency: "USD"},
		},
		Reference: "order-7",
		Metadata:  map[string]string{"channel": "sdk-go", "note": "ünïcode ✓"},
	}
	if got := leader.seen()[0]; !proto.Equal(got, want) {
		t.Fatalf("sent %v, want %v", got, want)
	}
	if got := follower.seen()[0]; !proto.Equal(got, want) {
		t.Fatalf("the redirected attempt sent %v", got)
	}
	if plain := leader.seen()[1]; plain.Reference != "" || len(plain.Metadata) != 0 || len(plain.Legs) != 1 {
		t.Fatalf("sent %v", plain)
	}
	for _, value := range append(follower.noForward, leader.noForward...) {
		if value != NoForwardMetadataValue {
			t.Fatalf("%s: %q, want %q", NoForwardMetadataKey, value, NoForwardMetadataValue)
		}
	}
}

func TestTransferLegsMakesAUUIDAndKeepsItOnEveryRetry(t *testing.T) {
	node := &fakeLegs{answer: func(call int, r *walletv1.TransferLegsRequest) (*walletv1.TransferResponse, error) {
		if call <= 2 {
			return nil, unavailable(ReasonOutcomeUnknown, 0)
		}
		return &walletv1.TransferResponse{Status: "success", TransactionId: r.TransactionId, ConsistencyToken: "legs", Replayed: true}, nil
	}}
	client, _ := legsClient(t, node)
	done, err := client.TransferLegs(context.Background(), TransferLegsParams{Legs: testLegs, Reference: "r"})
	if err != nil {
		t.Fatal(err)
	}
	sent := node.seen()
	if len(sent) != 3 {
		t.Fatalf("%d attempts, want 3", len(sent))
	}
	if !uuidV4.MatchString(sent[0].TransactionId) || done.GetTransactionId() != sent[0].TransactionId || !done.GetReplayed() {
		t.Fatalf("id %q, response %v", sent[0].TransactionId, done)
	}
	for _, r := range sent[1:] {
		if !proto.Equal(r, sent[0]) {
			t.Fatalf("a retry sent %v, the first attempt %v", r, sent[0])
		}
	}
	// Two calls without an id get two ids; a given one is sent as it is.
	other := &fakeLegs{}
	client, _ = legsClient(t, other)
	for _, id := range []string{"", "", "mine"} {
		if _, err := client.TransferLegs(context.Background(), TransferLegsParams{TransactionID: id, Legs: testLegs}); err != nil {
			t.Fatal(err)
		}
	}
	ids := other.seen()
	if ids[0].TransactionId == ids[1].TransactionId || ids[2].TransactionId != "mine" {
		t.Fatalf("ids %q %q %q", ids[0].TransactionId, ids[1].TransactionId, ids[2].TransactionId)
	}
}

func TestTransferLegsUnknownOutcomeCarriesTheGeneratedID(t *testing.T) {
	node := &fakeLegs{answer: func(int, *walletv1.TransferLegsRequest) (*walletv1.TransferResponse, error) {
		return nil, unavailable(ReasonOutcomeUnknown, 0)
	}}
	client, _ := legsClient(t, node)
	_, err := client.TransferLegs(context.Background(), TransferLegsParams{Legs: testLegs})
	var indefinite *Indefinite
	if !errors.As(err, &indefinite) || indefinite.Reason != ReasonOutcomeUnknown {
		t.Fatalf("%v", err)
	}
	sent := node.seen()
	if len(sent) != quickPolicy().AttemptsMax || indefinite.TransactionID != sent[0].TransactionId || !uuidV4.MatchString(indefinite.TransactionID) {
		t.Fatalf("%d attempts, error's id %q, sent %q", len(sent), indefinite.TransactionID, sent[0].TransactionId)
	}
}

func TestTransferLegsRefusalNamesItsLegAndIsNotRetried(t *testing.T) {
	reason, leg := ReasonInsufficientFunds, "2"
	node := &fakeLegs{answer: func(int, *walletv1.TransferLegsRequest) (*walletv1.TransferResponse, error) {
		var md map[string]string
		if leg != "-" {
			md = map[string]string{MetadataLeg: leg}
		}
		return nil, statusError(codes.FailedPrecondition, reason, "", md)
	}}
	client, _ := legsClient(t, node)
	ctx := context.Background()
	_, err := client.TransferLegs(ctx, TransferLegsParams{Legs: testLegs})
	var rejected *Rejected
	if !errors.As(err, &rejected) || rejected.Code != codes.FailedPrecondition || rejected.Reason != ReasonInsufficientFunds {
		t.Fatalf("%v", err)
	}
	if index, ok := rejected.Leg(); !ok || index != 2 || rejected.Details.Metadata[MetadataLeg] != "2" {
		t.Fatalf("leg %d %v, metadata %v", index, ok, rejected.Details.Metadata)
	}
	if index, ok := LegOf(err); !ok || index != 2 {
		t.Fatalf("LegOf: %d %v", index, ok)
	}
	if rejected.TransactionID != node.seen()[0].TransactionId || len(node.seen()) != 1 {
		t.Fatalf("id %q, %d attempts", rejected.TransactionID, len(node.seen()))
	}
	reason, leg = ReasonRepeatedLeg, "-"
	_, err = client.TransferLegs(ctx, TransferLegsParams{TransactionID: "t", Legs: []TransferLeg{testLegs[0], testLegs[0]}})
	if !errors.As(err, &rejected) || rejected.Reason != ReasonRepeatedLeg || rejected.TransactionID != "t" {
		t.Fatalf("%#v", err)
	}
	if _, ok := LegOf(err); ok || len(node.seen()) != 2 {
		t.Fatalf("a leg without metadata, or retried: %d attempts", len(node.seen()))
	}
	reason = ReasonInsufficientFunds
	for value, want := range map[string]int{"0": 0, "17": 17, "": -1, "-1": -1, "x": -1, "1x": -1} {
		leg = value
		_, err = client.TransferLegs(ctx, TransferLegsParams{Legs: testLegs})
		index, ok := LegOf(err)
		if (want < 0 && ok) || (want >= 0 && (!ok || index != want)) {
			t.Fatalf("leg %q: %d %v", value, index, ok)
		}
	}
	if _, ok := LegOf(errors.New("other")); ok {
		t.Fatal("a leg of a foreign error")
	}
}
