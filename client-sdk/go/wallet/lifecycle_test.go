package wallet

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"wallet.ledger/client-sdk/go/walletv1"
)

// fakeLifecycle is a write node's account lifecycle calls: a follower (leader set) answers
// NOT_LEADER with the leader's address; otherwise each call answers the account with the
// status the call gives it, or `refuse` (a reason) as FAILED_PRECONDITION. Every request is
// recorded, with its NoForwardMetadataKey value.
type fakeLifecycle struct {
	walletv1.UnimplementedWalletServiceServer
	leader    string
	refuse    string
	mu        sync.Mutex
	requests  []any
	noForward []string
}

func (f *fakeLifecycle) answer(ctx context.Context, r any, id string, status walletv1.AccountStatus, limit string) (*walletv1.Account, error) {
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
	return &walletv1.Account{AccountId: id, Currency: "USD", Balance: "0.00", Status: status, OverdraftLimit: limit}, nil
}

func (f *fakeLifecycle) FreezeAccount(ctx context.Context, r *walletv1.FreezeAccountRequest) (*walletv1.FreezeAccountResponse, error) {
	a, err := f.answer(ctx, r, r.AccountId, walletv1.AccountStatus_ACCOUNT_STATUS_FROZEN, "0.00")
	return &walletv1.FreezeAccountResponse{Account: a}, err
}

func (f *fakeLifecycle) UnfreezeAccount(ctx context.Context, r *walletv1.UnfreezeAccountRequest) (*walletv1.UnfreezeAccountResponse, error) {
	a, err := f.answer(ctx, r, r.AccountId, walletv1.AccountStatus_ACCOUNT_STATUS_ACTIVE, "0.00")
	return &walletv1.UnfreezeAccountResponse{Account: a}, err
}

func (f *fakeLifecycle) CloseAccount(ctx context.Context, r *walletv1.CloseAccountRequest) (*walletv1.CloseAccountResponse, error) {
	a, err := f.answer(ctx, r, r.AccountId, walletv1.AccountStatus_ACCOUNT_STATUS_CLOSED, "0.00")
	return &walletv1.CloseAccountResponse{Account: a}, err
}

func (f *fakeLifecycle) SetOverdraftLimit(ctx context.Context, r *walletv1.SetOverdraftLimitRequest) (*walletv1.SetOverdraftLimitResponse, error) {
	a, err := f.answer(ctx, r, r.AccountId, walletv1.AccountStatus_ACCOUNT_STATUS_ACTIVE, r.OverdraftLimit)
	return &walletv1.SetOverdraftLimitResponse{Account: a}, err
}

func TestLifecycleCallsCarryTheFieldsAndFollowTheLeaderOfTheAccount(t *testing.T) {
	leader := &fakeLifecycle{}
	leaderAddress, _ := serve(t, func(s *grpc.Server) { walletv1.RegisterWalletServiceServer(s, leader) })
	follower := &fakeLifecycle{leader: "http://" + leaderAddress}
	followerAddress, _ := serve(t, func(s *grpc.Server) { walletv1.RegisterWalletServiceServer(s, follower) })
	client, err := NewWalletClient([]string{followerAddress, leaderAddress}, WithRetryPolicy(quickPolicy()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx := context.Background()
	frozen, err := client.FreezeAccount(ctx, "x")
	if err != nil || frozen.GetAccountId() != "x" || frozen.GetStatus() != walletv1.AccountStatus_ACCOUNT_STATUS_FROZEN {
		t.Fatalf("%v %v", frozen, err)
	}
	if client.Leader("x") != leaderAddress {
		t.Fatalf("leader of x: %q", client.Leader("x"))
	}
	if a, err := client.UnfreezeAccount(ctx, "x"); err != nil || a.GetStatus() != walletv1.AccountStatus_ACCOUNT_STATUS_ACTIVE {
		t.Fatalf("%v %v", a, err)
	}
	if a, err := client.SetOverdraftLimit(ctx, "x", "50.00", "USD"); err != nil || a.GetOverdraftLimit() != "50.00" {
		t.Fatalf("%v %v", a, err)
	}
	if a, err := client.CloseAccount(ctx, "x"); err != nil || a.GetStatus() != walletv1.AccountStatus_ACCOUNT_STATUS_CLOSED {
		t.Fatalf("%v %v", a, err)
	}
	if len(follower.requests) != 1 || len(leader.requests) != 4 {
		t.Fatalf("follower saw %d, leader %d", len(follower.requests), len(leader.requests))
	}
	if r := leader.requests[0].(*walletv1.FreezeAccountRequest); r.AccountId != "x" {
		t.Fatalf("freeze sent %v", r)
	}
	if r := leader.requests[1].(*walletv1.UnfreezeAccountRequest); r.AccountId != "x" {
		t.Fatalf("unfreeze sent %v", r)
	}
	if r := leader.requests[2].(*walletv1.SetOverdraftLimitRequest); r.AccountId != "x" || r.OverdraftLimit != "50.00" || r.Currency != "USD" {
		t.Fatalf("set overdraft limit sent %v", r)
	}
	if r := leader.requests[3].(*walletv1.CloseAccountRequest); r.AccountId != "x" {
		t.Fatalf("close sent %v", r)
	}
	for _, value := range append(follower.noForward, leader.noForward...) {
		if value != NoForwardMetadataValue {
			t.Fatalf("%s: %q, want %q", NoForwardMetadataKey, value, NoForwardMetadataValue)
		}
	}
}

func TestAccountNotEmptySurfacesAsItsReason(t *testing.T) {
	node := &fakeLifecycle{refuse: ReasonAccountNotEmpty}
	address, _ := serve(t, func(s *grpc.Server) { walletv1.RegisterWalletServiceServer(s, node) })
	client, err := NewWalletClient([]string{address}, WithRetryPolicy(quickPolicy()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	account, err := client.CloseAccount(context.Background(), "x")
	var rejected *Rejected
	if account != nil || ReasonOf(err) != ReasonAccountNotEmpty || ReasonAccountNotEmpty != "ACCOUNT_NOT_EMPTY" ||
		!errors.As(err, &rejected) || rejected.Code != codes.FailedPrecondition {
		t.Fatalf("%v %v (reason %q)", account, err, ReasonOf(err))
	}
	if len(node.requests) != 1 {
		t.Fatalf("a definite refusal was retried: %d calls", len(node.requests))
	}
}
