package wallet

import (
	"context"
	"errors"
	"io"
	"reflect"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"wallet.ledger/client-sdk/go/walletv1"
)

// fakeAnnotations is a write node that records the reference and metadata of every transfer
// and hold it is sent (how it came: unary, batch, stream, authorize) and answers success;
// GetTransfer answers the last one under the id, as a COMPLETED transfer.
type fakeAnnotations struct {
	walletv1.UnimplementedWalletServiceServer
	mu   sync.Mutex
	seen []annotated
}

type annotated struct {
	how, id, reference string
	metadata           map[string]string
	from, to, amount   string
}

func (f *fakeAnnotations) record(how string, r interface {
	GetTransactionId() string
	GetReference() string
	GetMetadata() map[string]string
	GetFromAccount() string
	GetToAccount() string
	GetAmount() string
}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, annotated{how, r.GetTransactionId(), r.GetReference(), r.GetMetadata(), r.GetFromAccount(), r.GetToAccount(), r.GetAmount()})
}

func (f *fakeAnnotations) Transfer(ctx context.Context, r *walletv1.TransferRequest) (*walletv1.TransferResponse, error) {
	f.record("unary", r)
	return &walletv1.TransferResponse{Status: "success", TransactionId: r.TransactionId, ConsistencyToken: "u"}, nil
}

func (f *fakeAnnotations) TransferBatch(ctx context.Context, r *walletv1.TransferBatchRequest) (*walletv1.TransferBatchResponse, error) {
	response := &walletv1.TransferBatchResponse{}
	for _, t := range r.Transfers {
		f.record("batch", t)
		response.Results = append(response.Results, &walletv1.TransferResult{TransactionId: t.TransactionId, Status: "success", ConsistencyToken: "b"})
	}
	return response, nil
}

func (f *fakeAnnotations) SubmitTransfers(stream walletv1.WalletService_SubmitTransfersServer) error {
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		f.record("stream", r)
		if err := stream.Send(&walletv1.TransferResult{TransactionId: r.TransactionId, Status: "success", ConsistencyToken: "s"}); err != nil {
			return err
		}
	}
}

func (f *fakeAnnotations) AuthorizeTransfer(ctx context.Context, r *walletv1.AuthorizeTransferRequest) (*walletv1.HoldResponse, error) {
	f.record("authorize", r)
	return &walletv1.HoldResponse{Transfer: &walletv1.Transfer{TransactionId: r.TransactionId,
		Status: walletv1.TransferStatus_TRANSFER_STATUS_PENDING, Reference: r.Reference, Metadata: r.Metadata}}, nil
}

func (f *fakeAnnotations) GetTransfer(ctx context.Context, r *walletv1.GetTransferRequest) (*walletv1.GetTransferResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.seen) - 1; i >= 0; i-- {
		if s := f.seen[i]; s.id == r.TransactionId {
			return &walletv1.GetTransferResponse{Transfer: &walletv1.Transfer{TransactionId: s.id, FromAccount: s.from,
				ToAccount: s.to, Amount: s.amount, Status: walletv1.TransferStatus_TRANSFER_STATUS_COMPLETED,
				Reference: s.reference, Metadata: s.metadata}}, nil
		}
	}
	return nil, status.Error(codes.NotFound, "no such transfer")
}

func (f *fakeAnnotations) recorded() []annotated {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]annotated(nil), f.seen...)
}

func annotationsClient(t *testing.T) (*WalletClient, *fakeAnnotations) {
	t.Helper()
	node := &fakeAnnotations{}
	address, _ := serve(t, func(s *grpc.Server) { walletv1.RegisterWalletServiceServer(s, node) })
	client, err := NewWalletClient([]string{address}, WithRetryPolicy(quickPolicy()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client, node
}

// annotation: what was recorded, without the accounts and amount.
func annotation(a annotated) [3]any { return [3]any{a.how, a.reference, a.metadata} }

func TestTransferSendsReferenceAndMetadataAndGetTransferReturnsThem(t *testing.T) {
	client, node := annotationsClient(t)
	ctx := context.Background()
	metadata := map[string]string{"channel": "sdk-go", "note": "ünïcode ✓"}
	p := TransferParams{TransactionID: NewTransactionID(), From: "a", To: "b", Amount: "1.00", Currency: "USD",
		Reference: "order-42", Metadata: metadata}
	if _, err := client.Transfer(ctx, p); err != nil {
		t.Fatal(err)
	}
	metadata["channel"] = "changed after the call" // the request had its own copy
	plain := TransferParams{TransactionID: NewTransactionID(), From: "a", To: "b", Amount: "1.00", Currency: "USD"}
	if _, err := client.Transfer(ctx, plain); err != nil {
		t.Fatal(err)
	}
	seen := node.recorded()
	want := map[string]string{"channel": "sdk-go", "note": "ünïcode ✓"}
	if len(seen) != 2 || !reflect.DeepEqual(annotation(seen[0]), [3]any{"unary", "order-42", want}) ||
		seen[1].reference != "" || len(seen[1].metadata) != 0 {
		t.Fatalf("sent %+v", seen)
	}
	got, err := client.GetTransfer(ctx, p.TransactionID)
	if err != nil || got.GetReference() != "order-42" || !reflect.DeepEqual(got.GetMetadata(), want) {
		t.Fatalf("GetTransfer: %v %v", got, err)
	}
}

func TestBatchStreamAndHoldCarryEachItemsAnnotations(t *testing.T) {
	client, node := annotationsClient(t)
	ctx := context.Background()
	outcomes, err := client.TransferBatch(ctx, []TransferParams{
		{TransactionID: "t1", From: "a", To: "b", Amount: "1.00", Currency: "USD", Reference: "r1", Metadata: map[string]string{"k": "v1"}},
		{TransactionID: "t2", From: "a", To: "b", Amount: "2.00", Currency: "USD", Reference: "r2"},
	})
	if err != nil || len(outcomes) != 2 || outcomes[0].Err != nil || outcomes[1].Err != nil {
		t.Fatalf("%v %v", outcomes, err)
	}
	stream, err := client.SubmitTransfers(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(TransferParams{TransactionID: "s1", From: "a", To: "b", Amount: "1.00", Currency: "USD",
		Reference: "r3", Metadata: map[string]string{"k": "v3"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	held, err := client.AuthorizeTransfer(ctx, AuthorizeParams{TransactionID: "h1", From: "a", To: "b", Amount: "5.00",
		Currency: "USD", Timeout: time.Minute, Reference: "inv-7", Metadata: map[string]string{"channel": "pos"}})
	if err != nil || held.GetTransfer().GetReference() != "inv-7" || held.GetTransfer().GetMetadata()["channel"] != "pos" {
		t.Fatalf("%v %v", held, err)
	}
	want := []annotated{
		{how: "batch", reference: "r1", metadata: map[string]string{"k": "v1"}},
		{how: "batch", reference: "r2"},
		{how: "stream", reference: "r3", metadata: map[string]string{"k": "v3"}},
		{how: "authorize", reference: "inv-7", metadata: map[string]string{"channel": "pos"}},
	}
	seen := node.recorded()
	if len(seen) != len(want) {
		t.Fatalf("sent %+v", seen)
	}
	for i, w := range want {
		// No metadata and an empty map are the same on the wire.
		if seen[i].how != w.how || seen[i].reference != w.reference || len(seen[i].metadata) != len(w.metadata) ||
			len(w.metadata) > 0 && !reflect.DeepEqual(seen[i].metadata, w.metadata) {
			t.Fatalf("item %d: sent %+v, want %+v", i, seen[i], w)
		}
	}
}

// fakeAnnotatedReads is a read node whose WatchTransfer sends one final update and whose
// ListTransfers one entry, each with a status, reference and metadata.
type fakeAnnotatedReads struct {
	walletv1.UnimplementedQueryServiceServer
}

func (fakeAnnotatedReads) WatchTransfer(r *walletv1.WatchTransferRequest, stream walletv1.QueryService_WatchTransferServer) error {
	return stream.Send(&walletv1.TransferUpdate{TransactionId: r.TransactionId, Version: 1, IsFinal: true,
		State: walletv1.TransferState_TRANSFER_STATE_COMPLETED, Status: walletv1.TransferStatus_TRANSFER_STATUS_COMPLETED,
		Reference: "order-9", Metadata: map[string]string{"channel": "web"}})
}

func (fakeAnnotatedReads) ListTransfers(ctx context.Context, r *walletv1.ListTransfersRequest) (*walletv1.ListTransfersResponse, error) {
	return &walletv1.ListTransfersResponse{Entries: []*walletv1.HistoryEntry{{TransactionId: "t1", Sequence: 1,
		Reference: "order-9", Metadata: map[string]string{"channel": "web"}}}}, nil
}

func TestWatchTransferAndListTransfersExposeStatusAndAnnotations(t *testing.T) {
	address, _ := serve(t, func(s *grpc.Server) { walletv1.RegisterQueryServiceServer(s, fakeAnnotatedReads{}) })
	client, err := NewQueryClient([]string{address}, WithRetryPolicy(quickPolicy()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	update, err := client.WatchTransfer(context.Background(), "t1").Recv()
	if err != nil || update.GetStatus() != walletv1.TransferStatus_TRANSFER_STATUS_COMPLETED ||
		update.GetReference() != "order-9" || update.GetMetadata()["channel"] != "web" {
		t.Fatalf("%v %v", update, err)
	}
	page, err := client.ListTransfers(context.Background(), ListTransfersParams{AccountID: "a"})
	if err != nil || len(page.GetEntries()) != 1 || page.GetEntries()[0].GetReference() != "order-9" ||
		page.GetEntries()[0].GetMetadata()["channel"] != "web" {
		t.Fatalf("%v %v", page, err)
	}
}

// fakeAccounts is a write node that records every OpenAccountRequest (how it came: "unary"
// OpenAccount, "stream" OpenAccounts) and answers the account as asked, reference and metadata
// included; GetAccount answers the last one opened under the id. OpenAccounts answers the ids
// in unavailable "unavailable", for the client to retry them alone.
type fakeAccounts struct {
	walletv1.UnimplementedWalletServiceServer
	unavailable map[string]bool
	mu          sync.Mutex
	opened      []openedAccount
}

type openedAccount struct {
	how     string
	request *walletv1.OpenAccountRequest
}

func accountOf(r *walletv1.OpenAccountRequest) *walletv1.Account {
	return &walletv1.Account{AccountId: r.AccountId, Currency: r.Currency, AllowNegativeBalance: r.AllowNegativeBalance,
		Balance: "0.00", Status: walletv1.AccountStatus_ACCOUNT_STATUS_ACTIVE, Reference: r.Reference, Metadata: r.Metadata}
}

func (f *fakeAccounts) record(how string, r *walletv1.OpenAccountRequest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opened = append(f.opened, openedAccount{how, r})
}

func (f *fakeAccounts) recorded() []openedAccount {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]openedAccount(nil), f.opened...)
}

func (f *fakeAccounts) OpenAccount(ctx context.Context, r *walletv1.OpenAccountRequest) (*walletv1.OpenAccountResponse, error) {
	f.record("unary", r)
	return &walletv1.OpenAccountResponse{Account: accountOf(r)}, nil
}

func (f *fakeAccounts) OpenAccounts(stream walletv1.WalletService_OpenAccountsServer) error {
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		result := &walletv1.OpenAccountResult{AccountId: r.AccountId, Status: "unavailable"}
		if !f.unavailable[r.AccountId] {
			f.record("stream", r)
			result = &walletv1.OpenAccountResult{AccountId: r.AccountId, Status: "success", Account: accountOf(r)}
		}
		if err := stream.Send(result); err != nil {
			return err
		}
	}
}

func (f *fakeAccounts) GetAccount(ctx context.Context, r *walletv1.GetAccountRequest) (*walletv1.GetAccountResponse, error) {
	opened := f.recorded()
	for i := len(opened) - 1; i >= 0; i-- {
		if opened[i].request.AccountId == r.AccountId {
			return &walletv1.GetAccountResponse{Account: accountOf(opened[i].request), Position: "p"}, nil
		}
	}
	return nil, status.Error(codes.NotFound, "no such account")
}

// accountAnnotations: how an account request came, its id, reference and metadata (nil for none).
func accountAnnotations(o openedAccount) [4]any {
	metadata := o.request.GetMetadata()
	if len(metadata) == 0 {
		metadata = nil
	}
	return [4]any{o.how, o.request.GetAccountId(), o.request.GetReference(), metadata}
}

func hasAnnotations(t *testing.T, what string, m interface {
	GetReference() string
	GetMetadata() map[string]string
}, reference string, metadata map[string]string) {
	t.Helper()
	if m.GetReference() != reference || len(m.GetMetadata()) != len(metadata) ||
		len(metadata) > 0 && !reflect.DeepEqual(m.GetMetadata(), metadata) {
		t.Fatalf("%s: reference %q metadata %v, want %q %v", what, m.GetReference(), m.GetMetadata(), reference, metadata)
	}
}

func TestOpenAccountSendsReferenceAndMetadataAndTheAccountCarriesThem(t *testing.T) {
	node := &fakeAccounts{}
	address, _ := serve(t, func(s *grpc.Server) { walletv1.RegisterWalletServiceServer(s, node) })
	client, err := NewWalletClient([]string{address}, WithRetryPolicy(quickPolicy()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx := context.Background()
	metadata := map[string]string{"tier": "gold", "region": "eu"}
	opened, err := client.OpenAccount(ctx, OpenAccountParams{AccountID: "cust", Currency: "USD", Reference: "cust-42", Metadata: metadata})
	if err != nil {
		t.Fatal(err)
	}
	metadata["tier"] = "changed after the call" // the request had its own copy
	want := map[string]string{"tier": "gold", "region": "eu"}
	plain, err := client.OpenAccount(ctx, OpenAccountParams{AccountID: "plain", Currency: "USD", AllowNegativeBalance: true})
	if err != nil {
		t.Fatal(err)
	}
	seen := node.recorded()
	if len(seen) != 2 || !reflect.DeepEqual(accountAnnotations(seen[0]), [4]any{"unary", "cust", "cust-42", want}) ||
		!reflect.DeepEqual(accountAnnotations(seen[1]), [4]any{"unary", "plain", "", map[string]string(nil)}) || !seen[1].request.AllowNegativeBalance {
		t.Fatalf("sent %+v", seen)
	}
	hasAnnotations(t, "OpenAccount", opened, "cust-42", want)
	hasAnnotations(t, "OpenAccount without", plain, "", nil)
	got, err := client.GetAccount(ctx, "cust")
	if err != nil {
		t.Fatal(err)
	}
	hasAnnotations(t, "GetAccount", got.GetAccount(), "cust-42", want)
}

func TestOpenAccountsItemsCarryTheirOwnAlsoWhenRetriedAlone(t *testing.T) {
	node := &fakeAccounts{unavailable: map[string]bool{"elsewhere": true}}
	address, _ := serve(t, func(s *grpc.Server) { walletv1.RegisterWalletServiceServer(s, node) })
	client, err := NewWalletClient([]string{address}, WithRetryPolicy(quickPolicy()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	opened, errs := client.OpenAccounts(context.Background(), []OpenAccountParams{
		{AccountID: "a1", Currency: "USD", Reference: "r1", Metadata: map[string]string{"k": "v1"}},
		{AccountID: "elsewhere", Currency: "EUR", Reference: "r2", Metadata: map[string]string{"k": "v2"}},
		{AccountID: "a3", Currency: "USD"},
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("item %d: %v", i, err)
		}
	}
	want := [][4]any{
		{"stream", "a1", "r1", map[string]string{"k": "v1"}},
		{"stream", "a3", "", map[string]string(nil)},
		{"unary", "elsewhere", "r2", map[string]string{"k": "v2"}},
	}
	seen := node.recorded()
	if len(seen) != len(want) {
		t.Fatalf("sent %+v", seen)
	}
	for i, w := range want {
		if got := accountAnnotations(seen[i]); !reflect.DeepEqual(got, w) {
			t.Fatalf("request %d: %v, want %v", i, got, w)
		}
	}
	hasAnnotations(t, "a1", opened[0], "r1", map[string]string{"k": "v1"})
	hasAnnotations(t, "elsewhere", opened[1], "r2", map[string]string{"k": "v2"})
	hasAnnotations(t, "a3", opened[2], "", nil)
	if opened[1].GetAccountId() != "elsewhere" || opened[1].GetCurrency() != "EUR" {
		t.Fatalf("elsewhere: %v", opened[1])
	}
}

// fakeAnnotatedBalances is a read node whose GetBalance answers the balances given (NOT_FOUND
// for others) and whose WatchBalances sends each account's snapshot, then stays open.
type fakeAnnotatedBalances struct {
	walletv1.UnimplementedQueryServiceServer
	balances map[string]*walletv1.Balance
	mu       sync.Mutex
	asked    [][2]string // account id, consistency token of each GetBalance
}

func (f *fakeAnnotatedBalances) GetBalance(ctx context.Context, r *walletv1.GetBalanceRequest) (*walletv1.GetBalanceResponse, error) {
	f.mu.Lock()
	f.asked = append(f.asked, [2]string{r.AccountId, r.ConsistencyToken})
	f.mu.Unlock()
	if b, ok := f.balances[r.AccountId]; ok {
		return &walletv1.GetBalanceResponse{Balance: b, Position: "v1.0.1"}, nil
	}
	return nil, status.Error(codes.NotFound, "no such account")
}

func (f *fakeAnnotatedBalances) WatchBalances(r *walletv1.WatchBalancesRequest, stream walletv1.QueryService_WatchBalancesServer) error {
	for _, id := range r.AccountIds {
		if err := stream.Send(&walletv1.BalanceUpdate{Snapshot: true, Balance: f.balances[id], Position: "v1.0.1"}); err != nil {
			return err
		}
	}
	<-stream.Context().Done()
	return nil
}

func TestTheReadNodesBalancesCarryTheAccountsReferenceAndMetadata(t *testing.T) {
	metadata := map[string]string{"tier": "gold", "region": "eu"}
	node := &fakeAnnotatedBalances{balances: map[string]*walletv1.Balance{
		"cust":  {AccountId: "cust", Currency: "USD", Balance: "1.00", Sequence: 1, Reference: "cust-42", Metadata: metadata},
		"plain": {AccountId: "plain", Currency: "USD", Balance: "0.00", Sequence: 1},
	}}
	address, _ := serve(t, func(s *grpc.Server) { walletv1.RegisterQueryServiceServer(s, node) })
	client, err := NewQueryClient([]string{address}, WithRetryPolicy(quickPolicy()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := client.GetBalance(ctx, "cust", "tok")
	if err != nil {
		t.Fatal(err)
	}
	hasAnnotations(t, "GetBalance", got.GetBalance(), "cust-42", metadata)
	bare, err := client.GetBalance(ctx, "plain", "")
	if err != nil {
		t.Fatal(err)
	}
	hasAnnotations(t, "GetBalance without", bare.GetBalance(), "", nil)
	if want := [][2]string{{"cust", "tok"}, {"plain", ""}}; !reflect.DeepEqual(node.asked, want) {
		t.Fatalf("asked %v, want %v", node.asked, want)
	}
	watch := client.WatchBalances(ctx, []string{"cust"}, nil)
	defer watch.Close()
	snapshot, err := watch.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if !snapshot.GetSnapshot() || snapshot.GetBalance().GetAccountId() != "cust" {
		t.Fatalf("snapshot %v", snapshot)
	}
	hasAnnotations(t, "WatchBalances", snapshot.GetBalance(), "cust-42", metadata)
}
