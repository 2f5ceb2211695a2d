package wallet

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"wallet.ledger/client-sdk/go/walletv1"
)

// fakeHolds is a write node's hold calls: a follower (leader set) answers NOT_LEADER with the
// leader's address; otherwise each call answers the hold, or `refuse` (a reason) as
// FAILED_PRECONDITION. Every request is recorded, with its NoForwardMetadataKey value.
type fakeHolds struct {
	walletv1.UnimplementedWalletServiceServer
	leader    string
	refuse    string
	mu        sync.Mutex
	requests  []any
	noForward []string
}

func (f *fakeHolds) answer(ctx context.Context, r any, id, from string) (*walletv1.HoldResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r)
	md, _ := metadata.FromIncomingContext(ctx)
	f.noForward = append(f.noForward, strings.Join(md.Get(NoForwardMetadataKey), ","))
	if f.leader != "" {
		return nil, notLeader(f.leader)
	}
	if f.refuse != "" {
		return nil, statusError(codes.FailedPrecondition, f.refuse, "", nil)
	}
	return &walletv1.HoldResponse{
		Transfer: &walletv1.Transfer{TransactionId: id, FromAccount: from, Status: walletv1.TransferStatus_TRANSFER_STATUS_PENDING,
			Hold: &walletv1.HoldInfo{}},
		Replayed: len(f.requests) > 3,
	}, nil
}

func (f *fakeHolds) AuthorizeTransfer(ctx context.Context, r *walletv1.AuthorizeTransferRequest) (*walletv1.HoldResponse, error) {
	return f.answer(ctx, r, r.TransactionId, r.FromAccount)
}

func (f *fakeHolds) CaptureTransfer(ctx context.Context, r *walletv1.CaptureTransferRequest) (*walletv1.HoldResponse, error) {
	return f.answer(ctx, r, r.TransactionId, r.FromAccount)
}

func (f *fakeHolds) VoidTransfer(ctx context.Context, r *walletv1.VoidTransferRequest) (*walletv1.HoldResponse, error) {
	return f.answer(ctx, r, r.TransactionId, r.FromAccount)
}

func TestHoldCallsCarryTheFieldsAndFollowTheLeaderOfFrom(t *testing.T) {
	leader := &fakeHolds{}
	leaderAddress, _ := serve(t, func(s *grpc.Server) { walletv1.RegisterWalletServiceServer(s, leader) })
	follower := &fakeHolds{leader: "http://" + leaderAddress}
	followerAddress, _ := serve(t, func(s *grpc.Server) { walletv1.RegisterWalletServiceServer(s, follower) })
	client, err := NewWalletClient([]string{followerAddress, leaderAddress}, WithRetryPolicy(quickPolicy()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx := context.Background()
	id := NewTransactionID()
	held, err := client.AuthorizeTransfer(ctx, AuthorizeParams{TransactionID: id, From: "x", To: "y", Amount: "10.00", Currency: "USD", Timeout: 90 * time.Second})
	if err != nil || held.GetTransfer().GetTransactionId() != id || held.GetReplayed() ||
		held.GetTransfer().GetStatus() != walletv1.TransferStatus_TRANSFER_STATUS_PENDING {
		t.Fatalf("%v %v", held, err)
	}
	if client.Leader("x") != leaderAddress {
		t.Fatalf("leader of x: %q", client.Leader("x"))
	}
	if _, err := client.CaptureTransfer(ctx, CaptureParams{TransactionID: id, From: "x", Amount: "4.00"}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CaptureTransfer(ctx, CaptureParams{TransactionID: id, From: "x"}); err != nil {
		t.Fatal(err)
	}
	voided, err := client.VoidTransfer(ctx, id, "x")
	if err != nil || !voided.GetReplayed() {
		t.Fatalf("replayed not passed on: %v %v", voided, err)
	}
	if len(follower.requests) != 1 || len(leader.requests) != 4 {
		t.Fatalf("follower saw %d, leader %d", len(follower.requests), len(leader.requests))
	}
	authorize := leader.requests[0].(*walletv1.AuthorizeTransferRequest)
	if authorize.TransactionId != id || authorize.FromAccount != "x" || authorize.ToAccount != "y" ||
		authorize.Amount != "10.00" || authorize.Currency != "USD" || authorize.GetTimeout().AsDuration() != 90*time.Second {
		t.Fatalf("authorize sent %v", authorize)
	}
	if c := leader.requests[1].(*walletv1.CaptureTransferRequest); c.TransactionId != id || c.FromAccount != "x" || c.Amount != "4.00" {
		t.Fatalf("capture sent %v", c)
	}
	if c := leader.requests[2].(*walletv1.CaptureTransferRequest); c.Amount != "" {
		t.Fatalf("a whole capture sent amount %q", c.Amount)
	}
	if v := leader.requests[3].(*walletv1.VoidTransferRequest); v.TransactionId != id || v.FromAccount != "x" {
		t.Fatalf("void sent %v", v)
	}
	for _, value := range append(follower.noForward, leader.noForward...) {
		if value != NoForwardMetadataValue {
			t.Fatalf("%s: %q, want %q", NoForwardMetadataKey, value, NoForwardMetadataValue)
		}
	}
}

func TestHoldExpiredSurfacesAsItsReason(t *testing.T) {
	node := &fakeHolds{refuse: ReasonHoldExpired}
	address, _ := serve(t, func(s *grpc.Server) { walletv1.RegisterWalletServiceServer(s, node) })
	client, err := NewWalletClient([]string{address}, WithRetryPolicy(quickPolicy()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	_, err = client.CaptureTransfer(context.Background(), CaptureParams{TransactionID: NewTransactionID(), From: "x", Amount: "1.00"})
	var rejected *Rejected
	if ReasonOf(err) != ReasonHoldExpired || ReasonHoldExpired != "HOLD_EXPIRED" || !errors.As(err, &rejected) {
		t.Fatalf("%v (reason %q)", err, ReasonOf(err))
	}
	if len(node.requests) != 1 {
		t.Fatalf("a definite refusal was retried: %d calls", len(node.requests))
	}
}
