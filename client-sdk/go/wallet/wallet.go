// Package wallet is the Go client of the wallet ledger: a WalletClient for the write nodes
// (wallet.v1.WalletService, routed to each account's partition leader) and a QueryClient
// for the read nodes (wallet.v1.QueryService), with retries that keep the transaction id,
// typed errors (*Rejected: definite; *Indefinite: outcome unknown), TLS and bearer tokens,
// and balance watches that resume by themselves. The generated messages and stubs are in
// package walletv1.
package wallet

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"wallet.ledger/client-sdk/go/walletv1"
)

// leaderCacheMax: routing keys (accounts) whose last known leader is remembered.
const leaderCacheMax = 4096

// NewTransactionID is a fresh idempotency key: a random (version 4) UUID in canonical form.
// Make one per intended transfer and keep it for every retry.
func NewTransactionID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("wallet: crypto/rand failed: %v", err))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// TransferParams is one transfer. TransactionID (from NewTransactionID) is the idempotency
// key; Amount is a decimal string in the currency's major unit ("12.34").
//
// Reference and Metadata are optional (empty: none): the caller's own reference (an order or
// invoice number) and string key/value pairs, stored with the transfer and returned by
// GetTransfer (Transfer), WatchTransfer (TransferUpdate) and ListTransfers (HistoryEntry).
// They are part of the request: a retry must repeat them (the same id with another reference
// or metadata is a *Rejected ReasonTransactionIDReused). The node checks their limits (a
// *Rejected INVALID_ARGUMENT): a reference of at most 128 bytes without control characters
// (ReasonInvalidReference); at most 16 metadata entries, keys of 1 to 64 characters from
// [A-Za-z0-9_.:-], values of at most 512 bytes without control characters, at most 4096
// bytes in all (ReasonInvalidMetadata).
type TransferParams struct {
	TransactionID string
	From          string
	To            string
	Amount        string
	Currency      string
	Reference     string
	Metadata      map[string]string
}

func (p TransferParams) request() *walletv1.TransferRequest {
	return &walletv1.TransferRequest{
		TransactionId: p.TransactionID,
		FromAccount:   p.From,
		ToAccount:     p.To,
		Amount:        p.Amount,
		Currency:      p.Currency,
		Reference:     p.Reference,
		Metadata:      copyMetadata(p.Metadata),
	}
}

// copyMetadata: the request's own copy (nil for none), so that a caller changing its map
// while the call is retried changes nothing that is sent.
func copyMetadata(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// AuthorizeParams is one hold to authorize: a transfer's fields plus Timeout, how long the
// hold lasts from its authorization (whole milliseconds, 1 ms to 30 days; otherwise the node
// refuses it, ReasonHoldTimeoutOutOfRange). TransactionID names the hold in CaptureTransfer
// and VoidTransfer. Reference and Metadata are optional, as in TransferParams: the hold keeps
// them.
type AuthorizeParams struct {
	TransactionID string
	From          string
	To            string
	Amount        string
	Currency      string
	Timeout       time.Duration
	Reference     string
	Metadata      map[string]string
}

func (p AuthorizeParams) request() *walletv1.AuthorizeTransferRequest {
	return &walletv1.AuthorizeTransferRequest{
		TransactionId: p.TransactionID,
		FromAccount:   p.From,
		ToAccount:     p.To,
		Amount:        p.Amount,
		Currency:      p.Currency,
		Timeout:       durationpb.New(p.Timeout),
		Reference:     p.Reference,
		Metadata:      copyMetadata(p.Metadata),
	}
}

// TransferLeg is one leg of a multi-leg transfer (TransferLegs): move Amount (a decimal string
// in the currency's major unit, "12.34") of Currency from account From to account To. Every
// leg of a set has the same currency.
type TransferLeg struct {
	From     string
	To       string
	Amount   string
	Currency string
}

// TransferLegsParams is one multi-leg transfer: 1 to 64 Legs, applied in this order, no two
// with the same From and To, under one TransactionID (the idempotency key, shared with
// transfers and holds; "" makes TransferLegs generate one with NewTransactionID, returned as
// the response's TransactionId and, on failure, as the error's TransactionID). Reference and
// Metadata are optional, one of each for the whole set, as in TransferParams.
type TransferLegsParams struct {
	TransactionID string
	Legs          []TransferLeg
	Reference     string
	Metadata      map[string]string
}

func (p TransferLegsParams) request() *walletv1.TransferLegsRequest {
	legs := make([]*walletv1.TransferLeg, len(p.Legs))
	for i, leg := range p.Legs {
		legs[i] = &walletv1.TransferLeg{FromAccount: leg.From, ToAccount: leg.To, Amount: leg.Amount, Currency: leg.Currency}
	}
	return &walletv1.TransferLegsRequest{
		TransactionId: p.TransactionID,
		Legs:          legs,
		Reference:     p.Reference,
		Metadata:      copyMetadata(p.Metadata),
	}
}

// CaptureParams captures the hold TransactionID of account From: Amount (a decimal string,
// at most the held amount), or all of it when Amount is empty.
type CaptureParams struct {
	TransactionID string
	From          string
	Amount        string
}

// OpenAccountParams is one account to open. AllowNegativeBalance is for issuer/settlement
// accounts that fund the others.
//
// Reference and Metadata are optional (empty: none): the caller's own reference for the
// account (a customer number) and string key/value pairs, set when the account is opened and
// never changed, returned by every read of it (Account from OpenAccount and GetAccount; the
// read node's Balance from GetBalance, WatchBalances and GetBalanceAt). They are among the
// parameters compared when the account exists already: another reference or other metadata
// is a *Rejected ALREADY_EXISTS ReasonAccountExistsWithOtherParameters, like another
// currency. Their limits are TransferParams' (ReasonInvalidReference, ReasonInvalidMetadata:
// no account is opened).
type OpenAccountParams struct {
	AccountID            string
	Currency             string
	AllowNegativeBalance bool
	Reference            string
	Metadata             map[string]string
}

func (p OpenAccountParams) request() *walletv1.OpenAccountRequest {
	return &walletv1.OpenAccountRequest{
		AccountId:            p.AccountID,
		Currency:             p.Currency,
		AllowNegativeBalance: p.AllowNegativeBalance,
		Reference:            p.Reference,
		Metadata:             copyMetadata(p.Metadata),
	}
}

// WalletClient is the write API with routing and retries. Writes go to the account's
// partition leader, learnt from NOT_LEADER hints; calls whose outcome is unknown are retried
// with the same request (the same transaction id) under the RetryPolicy. Safe for
// concurrent use; Close it when done.
type WalletClient struct {
	channels *channels
	policy   RetryPolicy
	mu       sync.Mutex
	leaders  map[string]string
}

// NewWalletClient makes a client of the given write nodes (host:port, http://host:port, or
// with WithTLS https://host:port; a comma-separated list works too). Connections are made
// lazily, so this fails only on an unusable configuration (a *ConfigError).
func NewWalletClient(endpoints []string, opts ...Option) (*WalletClient, error) {
	ch, policy, err := newChannels(endpoints, opts, true)
	if err != nil {
		return nil, err
	}
	return &WalletClient{channels: ch, policy: policy, leaders: map[string]string{}}, nil
}

// Close closes every connection; calls in flight fail.
func (c *WalletClient) Close() error { return c.channels.close() }

// Endpoints are the configured endpoints (host:port, duplicates removed), in routing order.
func (c *WalletClient) Endpoints() []string { return append([]string(nil), c.channels.endpoints...) }

// RetryPolicy is the client's policy.
func (c *WalletClient) RetryPolicy() RetryPolicy { return c.policy }

// Leader is the node last seen leading routingKey's (an account's) partition, or "".
func (c *WalletClient) Leader(routingKey string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leaders[routingKey]
}

func (c *WalletClient) remember(routingKey, endpoint string) {
	if routingKey == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.leaders) >= leaderCacheMax {
		c.leaders = map[string]string{}
	}
	c.leaders[routingKey] = endpoint
}

func (c *WalletClient) stub(endpoint string) (walletv1.WalletServiceClient, error) {
	conn, err := c.channels.get(endpoint)
	if err != nil {
		return nil, err
	}
	return walletv1.NewWalletServiceClient(conn), nil
}

// call runs one unary call under the retry loop, first at routingKey's known leader.
func call[T any](ctx context.Context, c *WalletClient, routingKey string,
	send func(ctx context.Context, stub walletv1.WalletServiceClient) (T, error)) (T, error) {
	first := ""
	if routingKey != "" {
		first = c.Leader(routingKey)
	}
	result, endpoint, err := callWithRetry(ctx, c.channels.endpoints, c.policy, first,
		func(ctx context.Context, endpoint string) (T, error) {
			stub, err := c.stub(endpoint)
			if err != nil {
				var zero T
				return zero, err
			}
			return send(ctx, stub)
		})
	if err == nil {
		c.remember(routingKey, endpoint)
	}
	return result, err
}

// OpenAccount opens a single-currency account; the same call again is a no-op success,
// with other parameters (reference and metadata included) it is a *Rejected ALREADY_EXISTS
// ReasonAccountExistsWithOtherParameters.
func (c *WalletClient) OpenAccount(ctx context.Context, p OpenAccountParams) (*walletv1.Account, error) {
	request := p.request()
	response, err := call(ctx, c, p.AccountID, func(ctx context.Context, s walletv1.WalletServiceClient) (*walletv1.OpenAccountResponse, error) {
		return s.OpenAccount(ctx, request)
	})
	if err != nil {
		return nil, err
	}
	return response.GetAccount(), nil
}

// Transfer moves p.Amount and answers once the transfer is final. Every automatic retry
// sends the same TransactionID, and so should yours after an *Indefinite error: a retry
// returns the original outcome and never pays twice. Rejections are *Rejected errors.
func (c *WalletClient) Transfer(ctx context.Context, p TransferParams) (*walletv1.TransferResponse, error) {
	request := p.request()
	return call(ctx, c, p.From, func(ctx context.Context, s walletv1.WalletServiceClient) (*walletv1.TransferResponse, error) {
		return s.Transfer(ctx, request)
	})
}

// TransferLegs makes a multi-leg transfer: its legs move money all together or not at all,
// and it answers once the set is final, like Transfer (Status "success", TransactionId,
// ConsistencyToken, Replayed). A refusal moves nothing.
//
// An empty p.TransactionID is replaced by a fresh one (NewTransactionID). Every automatic
// retry sends the same request, id included, and so should yours after an *Indefinite error
// (its TransactionID field has the id): the same id and legs answer the original outcome
// (Replayed); the same id with other legs (or a transfer or hold under it) is a *Rejected
// ALREADY_EXISTS ReasonTransactionIDReused.
//
// Routed to the leader of the partition of the first leg's From and retried like Transfer
// (unary: the same request again). Refusals are *Rejected errors; a refusal of one leg (e.g.
// FAILED_PRECONDITION ReasonInsufficientFunds, or INVALID_ARGUMENT ReasonInvalidAmount with
// Field "legs") names the index of the first leg refused, 0-based: Rejected.Leg
// (LegOf, ErrorInfo metadata MetadataLeg). The whole set is refused as INVALID_ARGUMENT (Field
// "legs") ReasonLegsOutOfRange (no legs, more than 64), ReasonRepeatedLeg (two legs with the
// same From and To: merge them) or ReasonMixedCurrencies.
//
// A set may span partitions. It is applied all or none, step by step: every partition's part
// is checked and its debits taken first, then the home partition (that of the first leg's
// From) decides, then every part is resolved; the answer comes once every part is. A refusal
// by any part refuses the whole set with that part's reason and Leg, and nothing moves
// anywhere. The ConsistencyToken names a position in every partition the set touches (a
// retry's may name other ones than the first answer's). Nodes before 0.3, which did not move
// sets across partitions, refuse such a set as FAILED_PRECONDITION ReasonLegsSpanPartitions.
func (c *WalletClient) TransferLegs(ctx context.Context, p TransferLegsParams) (*walletv1.TransferResponse, error) {
	if p.TransactionID == "" {
		p.TransactionID = NewTransactionID()
	}
	request := p.request()
	key := ""
	if len(p.Legs) > 0 {
		key = p.Legs[0].From
	}
	response, err := call(ctx, c, key, func(ctx context.Context, s walletv1.WalletServiceClient) (*walletv1.TransferResponse, error) {
		return s.TransferLegs(ctx, request)
	})
	if err != nil {
		return nil, withTransactionID(err, p.TransactionID)
	}
	return response, nil
}

// AuthorizeTransfer holds p.Amount on p.From for p.Timeout: the account's available amount
// drops, its balance does not, until the hold is captured (CaptureTransfer), voided
// (VoidTransfer) or expires. It answers the hold (response.Transfer, status PENDING, its
// Hold.ExpiresAt) and response.Replayed. Routed and retried as Transfer (same
// TransactionID: a retry answers the original hold); refusals are *Rejected errors.
func (c *WalletClient) AuthorizeTransfer(ctx context.Context, p AuthorizeParams) (*walletv1.HoldResponse, error) {
	request := p.request()
	return call(ctx, c, p.From, func(ctx context.Context, s walletv1.WalletServiceClient) (*walletv1.HoldResponse, error) {
		return s.AuthorizeTransfer(ctx, request)
	})
}

// CaptureTransfer moves p.Amount (empty: all of it) of the hold p.TransactionID from its
// account p.From to its target and releases the rest, exactly once (a retry with the same
// amount answers the capture, Replayed). Refusals are *Rejected errors: ReasonHoldNotFound,
// ReasonCaptureExceedsHold, ReasonHoldAlreadyCaptured, ReasonHoldAlreadyVoided,
// ReasonHoldExpired, ...
func (c *WalletClient) CaptureTransfer(ctx context.Context, p CaptureParams) (*walletv1.HoldResponse, error) {
	request := &walletv1.CaptureTransferRequest{TransactionId: p.TransactionID, FromAccount: p.From, Amount: p.Amount}
	return call(ctx, c, p.From, func(ctx context.Context, s walletv1.WalletServiceClient) (*walletv1.HoldResponse, error) {
		return s.CaptureTransfer(ctx, request)
	})
}

// VoidTransfer releases the pending hold transactionID of account from (status VOIDED); a
// retry answers the void (Replayed). A *Rejected ReasonHoldAlreadyCaptured after a capture,
// ReasonHoldExpired after the expiry, ...
func (c *WalletClient) VoidTransfer(ctx context.Context, transactionID, from string) (*walletv1.HoldResponse, error) {
	request := &walletv1.VoidTransferRequest{TransactionId: transactionID, FromAccount: from}
	return call(ctx, c, from, func(ctx context.Context, s walletv1.WalletServiceClient) (*walletv1.HoldResponse, error) {
		return s.VoidTransfer(ctx, request)
	})
}

// FreezeAccount freezes accountID: until unfrozen it neither sends nor receives (a transfer
// from or to it, a hold from it, a capture touching it are *Rejected ReasonAccountFrozen). It
// answers the account after the change (Status ACCOUNT_STATUS_FROZEN). Idempotent by effect
// (freezing a frozen account answers it unchanged), so it is routed to the leader of the
// account's partition and retried like OpenAccount. A *Rejected ReasonAccountNotFound or
// ReasonAccountClosed; needs the admin scope when the nodes check tokens.
func (c *WalletClient) FreezeAccount(ctx context.Context, accountID string) (*walletv1.Account, error) {
	request := &walletv1.FreezeAccountRequest{AccountId: accountID}
	response, err := call(ctx, c, accountID, func(ctx context.Context, s walletv1.WalletServiceClient) (*walletv1.FreezeAccountResponse, error) {
		return s.FreezeAccount(ctx, request)
	})
	if err != nil {
		return nil, err
	}
	return response.GetAccount(), nil
}

// UnfreezeAccount unfreezes accountID (Status back to ACCOUNT_STATUS_ACTIVE). Idempotent,
// routed and retried like FreezeAccount.
func (c *WalletClient) UnfreezeAccount(ctx context.Context, accountID string) (*walletv1.Account, error) {
	request := &walletv1.UnfreezeAccountRequest{AccountId: accountID}
	response, err := call(ctx, c, accountID, func(ctx context.Context, s walletv1.WalletServiceClient) (*walletv1.UnfreezeAccountResponse, error) {
		return s.UnfreezeAccount(ctx, request)
	})
	if err != nil {
		return nil, err
	}
	return response.GetAccount(), nil
}

// CloseAccount closes accountID for good (Status ACCOUNT_STATUS_CLOSED): afterwards it neither
// sends nor receives (ReasonAccountClosed) and stays readable. Only at a zero balance (else a
// *Rejected ReasonAccountNotEmpty), with no pending hold from it (ReasonAccountHasPendingHolds)
// and no cross-partition transfer from it in flight (ReasonAccountHasTransfersInFlight: call
// again shortly). Idempotent, routed and retried like FreezeAccount.
func (c *WalletClient) CloseAccount(ctx context.Context, accountID string) (*walletv1.Account, error) {
	request := &walletv1.CloseAccountRequest{AccountId: accountID}
	response, err := call(ctx, c, accountID, func(ctx context.Context, s walletv1.WalletServiceClient) (*walletv1.CloseAccountResponse, error) {
		return s.CloseAccount(ctx, request)
	})
	if err != nil {
		return nil, err
	}
	return response.GetAccount(), nil
}

// SetOverdraftLimit sets how far below zero the ordinary account accountID may go: limit is a
// decimal string in currency, the account's ("50.00"; "0" for none, the default). A transfer
// or hold is then a *Rejected ReasonInsufficientFunds only beyond Available plus the limit.
// It answers the account (OverdraftLimit set). A *Rejected ReasonOverdraftUnlimited for an
// account opened with AllowNegativeBalance, ReasonCurrencyMismatch for another currency,
// ReasonInvalidAmount / ReasonAmountOutOfRange for a bad limit. Idempotent, routed and
// retried like FreezeAccount.
func (c *WalletClient) SetOverdraftLimit(ctx context.Context, accountID, limit, currency string) (*walletv1.Account, error) {
	request := &walletv1.SetOverdraftLimitRequest{AccountId: accountID, OverdraftLimit: limit, Currency: currency}
	response, err := call(ctx, c, accountID, func(ctx context.Context, s walletv1.WalletServiceClient) (*walletv1.SetOverdraftLimitResponse, error) {
		return s.SetOverdraftLimit(ctx, request)
	})
	if err != nil {
		return nil, err
	}
	return response.GetAccount(), nil
}

// GetAccount is the authoritative account, read linearizably, with the position it reflects.
func (c *WalletClient) GetAccount(ctx context.Context, accountID string) (*walletv1.GetAccountResponse, error) {
	request := &walletv1.GetAccountRequest{AccountId: accountID}
	return call(ctx, c, accountID, func(ctx context.Context, s walletv1.WalletServiceClient) (*walletv1.GetAccountResponse, error) {
		return s.GetAccount(ctx, request)
	})
}

// GetTransfer is a transfer's status and outcome; a *Rejected NOT_FOUND (TRANSFER_NOT_FOUND)
// if the id is unknown.
func (c *WalletClient) GetTransfer(ctx context.Context, transactionID string) (*walletv1.Transfer, error) {
	request := &walletv1.GetTransferRequest{TransactionId: transactionID}
	response, err := call(ctx, c, "", func(ctx context.Context, s walletv1.WalletServiceClient) (*walletv1.GetTransferResponse, error) {
		return s.GetTransfer(ctx, request)
	})
	if err != nil {
		return nil, err
	}
	return response.GetTransfer(), nil
}

// TransferOutcome is the outcome of one transfer of a batch: Response on success, Err (a
// *Rejected, or an *Indefinite if even the retries left it unknown) otherwise.
type TransferOutcome struct {
	Params   TransferParams
	Response *walletv1.TransferResponse
	Err      error
}

// TransferBatch decides 1 to 1,024 transfers in one TransferBatch call (each on its own, as
// Transfer would: a batch is not atomic) and answers one outcome per transfer, in order.
// The batch goes to the known leader of its first item's source (the whole call is retried
// with the same ids when its outcome is unknown); items answered "unavailable" (their
// source partition is led elsewhere) then go through Transfer's retry loop, same id.
// The error is non-nil only when the batch as a whole failed (e.g. INVALID_BATCH_SIZE).
func (c *WalletClient) TransferBatch(ctx context.Context, transfers []TransferParams) ([]TransferOutcome, error) {
	request := &walletv1.TransferBatchRequest{}
	for _, p := range transfers {
		request.Transfers = append(request.Transfers, p.request())
	}
	key := ""
	if len(transfers) > 0 {
		key = transfers[0].From
	}
	response, err := call(ctx, c, key, func(ctx context.Context, s walletv1.WalletServiceClient) (*walletv1.TransferBatchResponse, error) {
		return s.TransferBatch(ctx, request)
	})
	if err != nil {
		return nil, err
	}
	results := response.GetResults()
	if len(results) != len(transfers) {
		return nil, &Indefinite{Code: codes.Internal, Reason: "MALFORMED_RESPONSE",
			Message: fmt.Sprintf("%d results for %d transfers", len(results), len(transfers))}
	}
	outcomes := make([]TransferOutcome, len(transfers))
	var wg sync.WaitGroup
	for i, result := range results {
		outcomes[i].Params = transfers[i]
		switch result.GetStatus() {
		case "success":
			outcomes[i].Response = &walletv1.TransferResponse{Status: "success",
				TransactionId: result.GetTransactionId(), ConsistencyToken: result.GetConsistencyToken(),
				Replayed: result.GetReplayed()}
		case "unavailable":
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				outcomes[i].Response, outcomes[i].Err = c.Transfer(ctx, transfers[i])
			}(i)
		default:
			outcomes[i].Err = TransferResultError(result)
		}
	}
	wg.Wait()
	return outcomes, nil
}

// SubmitTransfers opens a SubmitTransfers stream (the high-throughput path) to endpoint, or
// to the first endpoint when it is "". Results arrive as transfers become final, in any
// order; items another node leads come back "unavailable" (NOT_LEADER): send those through
// Transfer. Cancel ctx or call CloseSend and drain Recv to end it. The stream is not
// retried: ResultError decodes each result's error.
func (c *WalletClient) SubmitTransfers(ctx context.Context, endpoint string) (*TransferStream, error) {
	if endpoint == "" {
		endpoint = c.channels.endpoints[0]
	}
	stub, err := c.stub(endpoint)
	if err != nil {
		return nil, err
	}
	stream, err := stub.SubmitTransfers(ctx)
	if err != nil {
		return nil, Classify(err)
	}
	return &TransferStream{stream: stream}, nil
}

// TransferStream is an open SubmitTransfers stream.
type TransferStream struct {
	stream walletv1.WalletService_SubmitTransfersClient
}

// Send queues one transfer. io.EOF means the node ended the stream: Recv has its status.
func (s *TransferStream) Send(p TransferParams) error {
	if err := s.stream.Send(p.request()); err != nil {
		if err == io.EOF {
			return io.EOF
		}
		return Classify(err)
	}
	return nil
}

// CloseSend says no more transfers follow; the results still come.
func (s *TransferStream) CloseSend() error { return s.stream.CloseSend() }

// Recv is the next result; io.EOF once the node ended the stream normally.
func (s *TransferStream) Recv() (*walletv1.TransferResult, error) {
	result, err := s.stream.Recv()
	if err == io.EOF {
		return nil, io.EOF
	}
	if err != nil {
		return nil, Classify(err)
	}
	return result, nil
}

// OpenAccounts opens many accounts through one OpenAccounts stream and answers one result
// per account, in order: nil for an open account, else its error. Items the stream answers
// "unavailable" (another node leads their partition, or the stream broke) go through
// OpenAccount's retry loop; reopening an open account with the same parameters is safe.
// Each item carries its own Reference and Metadata.
func (c *WalletClient) OpenAccounts(ctx context.Context, accounts []OpenAccountParams) ([]*walletv1.Account, []error) {
	opened := make([]*walletv1.Account, len(accounts))
	errs := make([]error, len(accounts))
	pending := map[string][]int{}
	for i, p := range accounts {
		pending[p.AccountID] = append(pending[p.AccountID], i)
	}
	endpoint := c.channels.endpoints[0]
	if len(accounts) > 0 {
		if leader := c.Leader(accounts[0].AccountID); leader != "" {
			endpoint = leader
		}
	}
	if stub, err := c.stub(endpoint); err == nil {
		streamCtx, cancel := context.WithTimeout(ctx, c.policy.TotalDeadline)
		stream, err := stub.OpenAccounts(streamCtx)
		if err == nil {
			go func() {
				for _, p := range accounts {
					if stream.Send(p.request()) != nil {
						return
					}
				}
				_ = stream.CloseSend()
			}()
			for {
				result, err := stream.Recv()
				if err != nil {
					break
				}
				indexes := pending[result.GetAccountId()]
				if len(indexes) == 0 || result.GetStatus() == "unavailable" {
					continue
				}
				i := indexes[0]
				pending[result.GetAccountId()] = indexes[1:]
				if result.GetStatus() == "success" {
					opened[i] = result.GetAccount()
					c.remember(result.GetAccountId(), endpoint)
				} else {
					errs[i] = ResultError(result.GetStatus(), result.GetError())
				}
			}
		}
		cancel()
	}
	var wg sync.WaitGroup
	for _, indexes := range pending {
		for _, i := range indexes {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				opened[i], errs[i] = c.OpenAccount(ctx, accounts[i])
			}(i)
		}
	}
	wg.Wait()
	return opened, errs
}

// GetClusterStatus asks a write node what it knows about the cluster (ClusterService); the
// first configured node that answers when endpoint is "". includeStateDigest hashes every
// partition's state (costly; needs the admin scope on a secured node).
func (c *WalletClient) GetClusterStatus(ctx context.Context, endpoint string, includeStateDigest bool) (*walletv1.GetClusterStatusResponse, error) {
	return clusterStatus(ctx, c.channels, c.policy, endpoint, includeStateDigest)
}

func clusterStatus(ctx context.Context, ch *channels, policy RetryPolicy, endpoint string, digest bool) (*walletv1.GetClusterStatusResponse, error) {
	endpoints := ch.endpoints
	if endpoint != "" {
		normalized, err := NormalizeEndpoint(endpoint, ch.useTLS)
		if err != nil {
			return nil, err
		}
		endpoints = []string{normalized}
	}
	request := &walletv1.GetClusterStatusRequest{IncludeStateDigest: digest}
	response, _, err := callWithRetry(ctx, endpoints, policy, "",
		func(ctx context.Context, endpoint string) (*walletv1.GetClusterStatusResponse, error) {
			conn, err := ch.get(endpoint)
			if err != nil {
				return nil, err
			}
			return walletv1.NewClusterServiceClient(conn).GetClusterStatus(ctx, request)
		})
	return response, err
}
