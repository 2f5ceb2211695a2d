package wallet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"wallet.ledger/client-sdk/go/walletv1"
)

// serve runs services on a real loopback socket until the test ends.
func serve(t *testing.T, register func(*grpc.Server)) (string, *grpc.Server) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := grpc.NewServer()
	register(server)
	go func() { _ = server.Serve(lis) }()
	t.Cleanup(server.Stop)
	return lis.Addr().String(), server
}

// fakeQuery is a read node whose account "a" has the changes 1..last (0 is the snapshot).
// Each WatchBalances call runs script[call] (the last one once they run out): it sends the
// updates from `from` (or after the resume sequence when from < 0) up to `until`, then ends
// the stream with `end` (nil: it stays open until the client goes).
type fakeQuery struct {
	walletv1.UnimplementedQueryServiceServer
	last   uint64
	mu     sync.Mutex
	script []step
	calls  []*walletv1.WatchBalancesRequest
}

type step struct {
	from  int64
	until uint64
	end   error
	// stop, if set, is called instead of ending the stream with `end` (e.g. a server's Stop).
	stop func()
}

func update(account string, sequence uint64) *walletv1.BalanceUpdate {
	return &walletv1.BalanceUpdate{
		Snapshot: sequence == 0,
		Balance:  &walletv1.Balance{AccountId: account, Balance: fmt.Sprintf("%d.00", sequence), Sequence: sequence},
		Delta:    "1.00",
	}
}

func (f *fakeQuery) WatchBalances(request *walletv1.WatchBalancesRequest, stream walletv1.QueryService_WatchBalancesServer) error {
	f.mu.Lock()
	f.calls = append(f.calls, request)
	s := f.script[len(f.script)-1]
	if len(f.calls) <= len(f.script) {
		s = f.script[len(f.calls)-1]
	}
	f.mu.Unlock()
	if len(request.AccountIds) == 0 {
		return statusError(codes.InvalidArgument, ReasonInvalidAccountID, "account_ids", nil)
	}
	from := uint64(s.from)
	if s.from < 0 {
		from = 0
		if after, ok := request.ResumeAfterSequence["a"]; ok {
			from = after + 1
		}
	}
	for sequence := from; sequence <= s.until && sequence <= f.last; sequence++ {
		if err := stream.Send(update("a", sequence)); err != nil {
			return err
		}
	}
	if s.stop != nil {
		time.Sleep(20 * time.Millisecond) // let the updates leave first
		go s.stop()
		<-stream.Context().Done()
		return nil
	}
	if s.end != nil {
		return s.end
	}
	<-stream.Context().Done()
	return nil
}

func (f *fakeQuery) requests() []*walletv1.WatchBalancesRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*walletv1.WatchBalancesRequest(nil), f.calls...)
}

// collect reads n updates of the watch, failing the test after a timeout.
func collect(t *testing.T, w *BalanceWatch, n int) []uint64 {
	t.Helper()
	got := make(chan []uint64, 1)
	errs := make(chan error, 1)
	go func() {
		var sequences []uint64
		for len(sequences) < n {
			u, err := w.Recv()
			if err != nil {
				errs <- err
				return
			}
			sequences = append(sequences, u.GetBalance().GetSequence())
		}
		got <- sequences
	}()
	select {
	case s := <-got:
		return s
	case err := <-errs:
		t.Fatalf("watch failed: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("watch timed out")
	}
	return nil
}

func expectSequence(t *testing.T, got []uint64, last uint64) {
	t.Helper()
	if uint64(len(got)) != last+1 {
		t.Fatalf("got %v, want 0..%d", got, last)
	}
	for i, s := range got {
		if s != uint64(i) {
			t.Fatalf("got %v, want 0..%d: a gap or a repeat", got, last)
		}
	}
}

func TestWatchResumesAfterTheStreamDropsWithoutRepeats(t *testing.T) {
	// The first stream breaks after #3; the second one (a node that ignores the resume
	// sequence) starts over from #0, then is cut off for lagging after #6; the third
	// honours the resume sequence.
	fake := &fakeQuery{last: 9, script: []step{
		{from: 0, until: 3, end: status.Error(codes.Unavailable, "connection reset")},
		{from: 0, until: 6, end: statusError(codes.Aborted, ReasonWatchLagged, "", nil)},
		{from: -1, until: 9},
	}}
	address, _ := serve(t, func(s *grpc.Server) { walletv1.RegisterQueryServiceServer(s, fake) })
	client, err := NewQueryClient([]string{address})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	w := client.WatchBalances(context.Background(), []string{"a"}, nil)
	defer w.Close()
	expectSequence(t, collect(t, w, 10), 9)
	calls := fake.requests()
	if len(calls) != 3 {
		t.Fatalf("%d WatchBalances calls", len(calls))
	}
	if len(calls[0].ResumeAfterSequence) != 0 || calls[1].ResumeAfterSequence["a"] != 3 || calls[2].ResumeAfterSequence["a"] != 6 {
		t.Fatalf("resume sequences: %v, %v, %v", calls[0].ResumeAfterSequence, calls[1].ResumeAfterSequence, calls[2].ResumeAfterSequence)
	}
	if got := w.LastSequences()["a"]; got != 9 {
		t.Fatalf("LastSequences: %d", got)
	}
}

func TestWatchFailsOverToTheNextReadNode(t *testing.T) {
	second := &fakeQuery{last: 9, script: []step{{from: -1, until: 9}}}
	first := &fakeQuery{last: 9}
	firstAddress, firstServer := serve(t, func(s *grpc.Server) { walletv1.RegisterQueryServiceServer(s, first) })
	// The first read node dies (its server stops, connections closed) after #4.
	first.script = []step{{from: 0, until: 4, stop: firstServer.Stop}}
	secondAddress, _ := serve(t, func(s *grpc.Server) { walletv1.RegisterQueryServiceServer(s, second) })
	client, err := NewQueryClient([]string{firstAddress, secondAddress})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	w := client.WatchBalances(context.Background(), []string{"a"}, nil)
	defer w.Close()
	expectSequence(t, collect(t, w, 10), 9)
	calls := second.requests()
	if len(calls) != 1 || calls[0].ResumeAfterSequence["a"] != 4 {
		t.Fatalf("the second node was asked %v", calls)
	}
}

func TestWatchEndsOnDefiniteErrorsAndClose(t *testing.T) {
	fake := &fakeQuery{last: 2, script: []step{{from: 0, until: 2}}}
	address, _ := serve(t, func(s *grpc.Server) { walletv1.RegisterQueryServiceServer(s, fake) })
	client, err := NewQueryClient([]string{address})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	_, err = client.WatchBalances(context.Background(), nil, nil).Recv()
	var rejected *Rejected
	if !errors.As(err, &rejected) || rejected.Reason != ReasonInvalidAccountID || rejected.Field != "account_ids" {
		t.Fatalf("empty watch: %v", err)
	}
	w := client.WatchBalances(context.Background(), []string{"a"}, map[string]uint64{"a": 0})
	if got := collect(t, w, 2); got[0] != 1 || got[1] != 2 {
		t.Fatalf("resumed after #0: %v", got)
	}
	go func() { time.Sleep(50 * time.Millisecond); w.Close() }()
	if _, err := w.Recv(); !errors.Is(err, ErrWatchClosed) {
		t.Fatalf("after Close: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	w = client.WatchBalances(ctx, []string{"a"}, nil)
	collect(t, w, 3)
	if _, err := w.Recv(); !errors.Is(err, context.DeadlineExceeded) || ReasonOf(err) != ReasonDeadlineExceeded {
		t.Fatalf("after the deadline: %v", err)
	}
}

// fakeWallet is a write node: a follower (leader set) answers NOT_LEADER with the
// leader's address; the leader fails the first `flaky` transfers with UNAVAILABLE.
type fakeWallet struct {
	walletv1.UnimplementedWalletServiceServer
	leader string
	mu     sync.Mutex
	flaky  int
	ids    []string
	tokens []string
	// noForward: the NoForwardMetadataKey values of each call ("" when absent).
	noForward []string
}

func (f *fakeWallet) Transfer(ctx context.Context, r *walletv1.TransferRequest) (*walletv1.TransferResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ids = append(f.ids, r.TransactionId)
	md, _ := metadata.FromIncomingContext(ctx)
	f.tokens = append(f.tokens, md.Get(AuthorizationMetadataKey)...)
	f.noForward = append(f.noForward, strings.Join(md.Get(NoForwardMetadataKey), ","))
	if f.leader != "" {
		return nil, notLeader(f.leader)
	}
	if f.flaky > 0 {
		f.flaky--
		return nil, unavailable(ReasonOutcomeUnknown, 0)
	}
	if r.Amount == "100.00" {
		return nil, statusError(codes.FailedPrecondition, ReasonInsufficientFunds, "", nil)
	}
	return &walletv1.TransferResponse{Status: "success", TransactionId: r.TransactionId, ConsistencyToken: "v1.0.1"}, nil
}

func TestTransferFollowsTheLeaderAndRetriesWithTheSameID(t *testing.T) {
	leader := &fakeWallet{flaky: 1}
	leaderAddress, _ := serve(t, func(s *grpc.Server) { walletv1.RegisterWalletServiceServer(s, leader) })
	follower := &fakeWallet{leader: "http://" + leaderAddress}
	followerAddress, _ := serve(t, func(s *grpc.Server) { walletv1.RegisterWalletServiceServer(s, follower) })
	policy := quickPolicy()
	client, err := NewWalletClient([]string{followerAddress, leaderAddress}, WithRetryPolicy(policy), WithToken("secret"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	id := NewTransactionID()
	response, err := client.Transfer(context.Background(), TransferParams{TransactionID: id, From: "x", To: "y", Amount: "1.00", Currency: "USD"})
	if err != nil || response.TransactionId != id {
		t.Fatalf("%v %v", response, err)
	}
	// follower (NOT_LEADER) -> leader (UNAVAILABLE) -> follower (rotated, NOT_LEADER) -> leader.
	if len(follower.ids) != 2 || len(leader.ids) != 2 {
		t.Fatalf("follower saw %d, leader %d", len(follower.ids), len(leader.ids))
	}
	for _, seen := range append(follower.ids, leader.ids...) {
		if seen != id {
			t.Fatalf("a retry sent %s, not %s", seen, id)
		}
	}
	for _, token := range append(follower.tokens, leader.tokens...) {
		if token != "Bearer secret" {
			t.Fatalf("authorization %q", token)
		}
	}
	if len(follower.tokens) != 2 || len(leader.tokens) != 2 {
		t.Fatalf("the token was not sent on every call: %v %v", follower.tokens, leader.tokens)
	}
	if client.Leader("x") != leaderAddress {
		t.Fatalf("leader of x: %q", client.Leader("x"))
	}
	// Known now: the next transfer from x goes straight to the leader; a rejection is not retried.
	_, err = client.Transfer(context.Background(), TransferParams{TransactionID: NewTransactionID(), From: "x", To: "y", Amount: "100.00", Currency: "USD"})
	if ReasonOf(err) != ReasonInsufficientFunds || len(follower.ids) != 2 || len(leader.ids) != 3 {
		t.Fatalf("%v; follower saw %d, leader %d", err, len(follower.ids), len(leader.ids))
	}
}

func TestWritesAskNotToBeForwardedOnlyGivenSeveralEndpoints(t *testing.T) {
	leader := &fakeWallet{}
	leaderAddress, _ := serve(t, func(s *grpc.Server) { walletv1.RegisterWalletServiceServer(s, leader) })
	follower := &fakeWallet{leader: "http://" + leaderAddress}
	followerAddress, _ := serve(t, func(s *grpc.Server) { walletv1.RegisterWalletServiceServer(s, follower) })
	transfer := func(endpoints ...string) {
		t.Helper()
		client, err := NewWalletClient(endpoints, WithRetryPolicy(quickPolicy()), WithToken("secret"))
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		if _, err := client.Transfer(context.Background(), TransferParams{TransactionID: NewTransactionID(), From: "x", To: "y", Amount: "1.00", Currency: "USD"}); err != nil {
			t.Fatal(err)
		}
	}
	// Every write node: the client routes by itself (follower's hint, then the leader).
	transfer(followerAddress, leaderAddress)
	if len(follower.noForward) != 1 || len(leader.noForward) != 1 {
		t.Fatalf("follower saw %d, leader %d", len(follower.noForward), len(leader.noForward))
	}
	for _, value := range append(follower.noForward, leader.noForward...) {
		if value != NoForwardMetadataValue {
			t.Fatalf("%s: %q, want %q", NoForwardMetadataKey, value, NoForwardMetadataValue)
		}
	}
	// One address (here spelt twice): the nodes forward, so nothing is sent.
	transfer(leaderAddress, "http://"+leaderAddress+"/")
	if len(leader.noForward) != 2 || leader.noForward[1] != "" {
		t.Fatalf("one endpoint sent %s: %q", NoForwardMetadataKey, leader.noForward)
	}
	if len(leader.tokens) != 2 || leader.tokens[1] != "Bearer secret" {
		t.Fatalf("the token alongside: %q", leader.tokens)
	}
}

// fakeTransfers is a read node whose WatchTransfer breaks after version 2 the first time
// and sends every version (1 to 3, the final one) the second time.
type fakeTransfers struct {
	walletv1.UnimplementedQueryServiceServer
	mu    sync.Mutex
	calls int
}

func (f *fakeTransfers) WatchTransfer(r *walletv1.WatchTransferRequest, stream walletv1.QueryService_WatchTransferServer) error {
	f.mu.Lock()
	f.calls++
	call := f.calls
	f.mu.Unlock()
	for version := uint32(1); version <= 3; version++ {
		if call == 1 && version == 3 {
			return status.Error(codes.Unavailable, "going away")
		}
		state, status := walletv1.TransferState_TRANSFER_STATE_IN_FLIGHT, walletv1.TransferStatus_TRANSFER_STATUS_IN_FLIGHT
		if version == 3 {
			state, status = walletv1.TransferState_TRANSFER_STATE_COMPLETED, walletv1.TransferStatus_TRANSFER_STATUS_COMPLETED
		}
		update := &walletv1.TransferUpdate{TransactionId: r.TransactionId, Version: version, State: state, Status: status, IsFinal: version == 3}
		if err := stream.Send(update); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeTransfers) GetBalance(ctx context.Context, r *walletv1.GetBalanceRequest) (*walletv1.GetBalanceResponse, error) {
	return &walletv1.GetBalanceResponse{Balance: &walletv1.Balance{AccountId: r.AccountId, Balance: "1.00"}}, nil
}

func TestTransferWatchResumesByVersionAndQueriesFailOver(t *testing.T) {
	fake := &fakeTransfers{}
	address, _ := serve(t, func(s *grpc.Server) { walletv1.RegisterQueryServiceServer(s, fake) })
	client, err := NewQueryClient([]string{"127.0.0.1:1", address}, WithRetryPolicy(quickPolicy()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	balance, err := client.GetBalance(context.Background(), "a", "")
	if err != nil || balance.GetBalance().GetBalance() != "1.00" {
		t.Fatalf("past a dead read node: %v %v", balance, err)
	}
	w := client.WatchTransfer(context.Background(), "t")
	var versions []uint32
	for {
		update, err := w.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		versions = append(versions, update.GetVersion())
	}
	if len(versions) != 3 || versions[0] != 1 || versions[1] != 2 || versions[2] != 3 {
		t.Fatalf("versions %v", versions)
	}
}
