package wallet

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"wallet.ledger/client-sdk/go/walletv1"
)

// Watch resumption backoff (the Rust SDK's): doubles from the minimum after each failed
// reconnection, back to the minimum after an update arrives.
const (
	WatchResumeBackoffMin = 100 * time.Millisecond
	WatchResumeBackoffMax = 2 * time.Second
)

// QueryClient is the read API of one or more read nodes (all fold the same log, so any
// will do: unary calls move to the next one when a node is unreachable, watches resume on
// any of them). Safe for concurrent use; Close it when done.
type QueryClient struct {
	channels *channels
	policy   RetryPolicy
	// preferred is the index of the endpoint that answered last.
	preferred atomic.Int64
}

// NewQueryClient makes a client of the given read nodes; options as for NewWalletClient
// (a token needs the read scope).
func NewQueryClient(endpoints []string, opts ...Option) (*QueryClient, error) {
	ch, policy, err := newChannels(endpoints, opts, false)
	if err != nil {
		return nil, err
	}
	return &QueryClient{channels: ch, policy: policy}, nil
}

// Close closes every connection; calls and watches in flight fail.
func (c *QueryClient) Close() error { return c.channels.close() }

// Endpoints are the configured endpoints (host:port, duplicates removed).
func (c *QueryClient) Endpoints() []string { return append([]string(nil), c.channels.endpoints...) }

func (c *QueryClient) endpoint(offset int) string {
	n := len(c.channels.endpoints)
	return c.channels.endpoints[(int(c.preferred.Load())+offset)%n]
}

func (c *QueryClient) stub(endpoint string) (walletv1.QueryServiceClient, error) {
	conn, err := c.channels.get(endpoint)
	if err != nil {
		return nil, err
	}
	return walletv1.NewQueryServiceClient(conn), nil
}

func queryCall[T any](ctx context.Context, c *QueryClient,
	send func(ctx context.Context, stub walletv1.QueryServiceClient) (T, error)) (T, error) {
	result, endpoint, err := callWithRetry(ctx, c.channels.endpoints, c.policy, c.endpoint(0),
		func(ctx context.Context, endpoint string) (T, error) {
			stub, err := c.stub(endpoint)
			if err != nil {
				var zero T
				return zero, err
			}
			return send(ctx, stub)
		})
	if err == nil {
		for i, e := range c.channels.endpoints {
			if e == endpoint {
				c.preferred.Store(int64(i))
			}
		}
	}
	return result, err
}

// GetBalance is the projected balance. With a consistency token from the write API
// (TransferResponse.ConsistencyToken) the read node first waits until it has applied that
// position: read-your-writes. "" for no token.
func (c *QueryClient) GetBalance(ctx context.Context, accountID, consistencyToken string) (*walletv1.GetBalanceResponse, error) {
	request := &walletv1.GetBalanceRequest{AccountId: accountID, ConsistencyToken: consistencyToken}
	return queryCall(ctx, c, func(ctx context.Context, s walletv1.QueryServiceClient) (*walletv1.GetBalanceResponse, error) {
		return s.GetBalance(ctx, request)
	})
}

// ListTransfersParams pages through an account's balance changes, newest first.
type ListTransfersParams struct {
	AccountID string
	// PageToken from a previous response's NextPageToken; "" for the newest entries.
	PageToken string
	// PageSize 0 is the read node's default.
	PageSize uint32
}

// ListTransfers is one page of the account's balance changes (one per transfer that moved
// its money), newest first.
func (c *QueryClient) ListTransfers(ctx context.Context, p ListTransfersParams) (*walletv1.ListTransfersResponse, error) {
	request := &walletv1.ListTransfersRequest{AccountId: p.AccountID, PageToken: p.PageToken, PageSize: p.PageSize}
	return queryCall(ctx, c, func(ctx context.Context, s walletv1.QueryServiceClient) (*walletv1.ListTransfersResponse, error) {
		return s.ListTransfers(ctx, request)
	})
}

// BalanceAt is a point in an account's past: a Position token of its partition (the
// balance right after that log entry) or, when Position is "", TimestampMs (milliseconds
// since the Unix epoch: the balance after the last change at or before it).
type BalanceAt struct {
	Position    string
	TimestampMs uint64
}

// GetBalanceAt is the account as of a past log position or time.
func (c *QueryClient) GetBalanceAt(ctx context.Context, accountID string, at BalanceAt) (*walletv1.Balance, error) {
	request := &walletv1.GetBalanceAtRequest{AccountId: accountID}
	if at.Position != "" {
		request.Point = &walletv1.GetBalanceAtRequest_Position{Position: at.Position}
	} else {
		request.Point = &walletv1.GetBalanceAtRequest_TimestampMs{TimestampMs: at.TimestampMs}
	}
	response, err := queryCall(ctx, c, func(ctx context.Context, s walletv1.QueryServiceClient) (*walletv1.GetBalanceAtResponse, error) {
		return s.GetBalanceAt(ctx, request)
	})
	if err != nil {
		return nil, err
	}
	return response.GetBalance(), nil
}

// GetClusterStatus asks a read node what it knows about the cluster; the first configured
// one that answers when endpoint is "".
func (c *QueryClient) GetClusterStatus(ctx context.Context, endpoint string, includeStateDigest bool) (*walletv1.GetClusterStatusResponse, error) {
	return clusterStatus(ctx, c.channels, c.policy, endpoint, includeStateDigest)
}

// resumableWatch: failures after which the same watch may succeed later or on another read
// node (unreachable or restarting, cut off for lagging, at its stream limit, timed out).
func resumableWatch(err error) bool {
	if err == io.EOF {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.Aborted, codes.ResourceExhausted, codes.DeadlineExceeded, codes.Canceled, codes.Unknown:
		return true
	}
	return false
}

// ErrWatchClosed is what Recv returns after Close.
var ErrWatchClosed = errors.New("wallet: the watch is closed")

// watch is what BalanceWatch and TransferWatch share: the stream in use, which read node
// it is on, and the reconnection backoff.
type watch struct {
	client  *QueryClient
	ctx     context.Context
	cancel  context.CancelFunc
	mu      sync.Mutex
	closed  bool
	attempt int
	backoff time.Duration
	// streamCancel ends the current stream (nil when there is none).
	streamCancel context.CancelFunc
	err          error
}

func newWatch(ctx context.Context, c *QueryClient) watch {
	ctx, cancel := context.WithCancel(ctx)
	return watch{client: c, ctx: ctx, cancel: cancel, backoff: WatchResumeBackoffMin}
}

// Close ends the watch; a Recv in progress or later returns ErrWatchClosed.
func (w *watch) Close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.cancel()
}

// stopped is the terminal error when the watch's context ended (nil while it runs).
func (w *watch) stopped() error {
	if w.ctx.Err() == nil {
		return nil
	}
	w.mu.Lock()
	closed := w.closed
	w.mu.Unlock()
	if closed {
		return ErrWatchClosed
	}
	return contextError(w.ctx.Err())
}

// interrupted handles a failed stream: nil to reconnect (after the backoff, on the next
// read node), else the terminal error.
func (w *watch) interrupted(err error) error {
	if w.streamCancel != nil {
		w.streamCancel()
		w.streamCancel = nil
	}
	if stop := w.stopped(); stop != nil {
		return stop
	}
	if !resumableWatch(err) {
		return Classify(err)
	}
	w.attempt++
	timer := time.NewTimer(FullJitter(0, w.backoff, w.backoff) + w.backoff/2)
	defer timer.Stop()
	select {
	case <-w.ctx.Done():
		return w.stopped()
	case <-timer.C:
	}
	if w.backoff *= 2; w.backoff > WatchResumeBackoffMax {
		w.backoff = WatchResumeBackoffMax
	}
	return nil
}

// open makes the stream context for the next connection and the stub of the node to use.
func (w *watch) open() (context.Context, walletv1.QueryServiceClient, error) {
	stub, err := w.client.stub(w.client.endpoint(w.attempt))
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(w.ctx)
	w.streamCancel = cancel
	return ctx, stub, nil
}

// BalanceWatch is a running WatchBalances: every account's current balance (or, when
// resumed, the changes after the given sequence), then every change, per account in
// sequence order with no gap and no duplicate. It survives read-node restarts, failover
// between the read nodes configured and being cut off for lagging (WATCH_LAGGED): it
// reconnects and resumes each account after the last sequence it delivered. Recv is not
// safe for concurrent use; Close may be called from any goroutine.
type BalanceWatch struct {
	watch
	accounts []string
	last     map[string]uint64
	stream   walletv1.QueryService_WatchBalancesClient
}

// WatchBalances starts watching accountIDs (the stream opens on the first Recv).
// resumeAfter (account id -> last sequence already seen; may be nil) resumes those accounts
// with the changes after that sequence instead of a snapshot.
func (c *QueryClient) WatchBalances(ctx context.Context, accountIDs []string, resumeAfter map[string]uint64) *BalanceWatch {
	w := &BalanceWatch{watch: newWatch(ctx, c), accounts: append([]string(nil), accountIDs...), last: map[string]uint64{}}
	for k, v := range resumeAfter {
		w.last[k] = v
	}
	return w
}

// LastSequences is, per account, the sequence of the last update delivered (or given to
// resume from): what a later WatchBalances needs to resume.
func (w *BalanceWatch) LastSequences() map[string]uint64 {
	out := make(map[string]uint64, len(w.last))
	for k, v := range w.last {
		out[k] = v
	}
	return out
}

// Recv is the next update. It returns an error only when the watch cannot go on: a
// *Rejected (e.g. ACCOUNT_NOT_FOUND), the context's end (an *Indefinite CANCELLED or
// DEADLINE_EXCEEDED), or ErrWatchClosed after Close.
func (w *BalanceWatch) Recv() (*walletv1.BalanceUpdate, error) {
	for {
		if w.err != nil {
			return nil, w.err
		}
		if stop := w.stopped(); stop != nil {
			w.err = stop
			continue
		}
		if w.stream == nil {
			ctx, stub, err := w.open()
			if err != nil {
				w.err = err
				continue
			}
			request := &walletv1.WatchBalancesRequest{AccountIds: w.accounts, ResumeAfterSequence: w.LastSequences()}
			stream, err := stub.WatchBalances(ctx, request)
			if err != nil {
				w.err = w.interrupted(err)
				continue
			}
			w.stream = stream
		}
		update, err := w.stream.Recv()
		if err != nil {
			w.stream = nil
			w.err = w.interrupted(err)
			continue
		}
		w.backoff = WatchResumeBackoffMin
		balance := update.GetBalance()
		if balance == nil {
			continue
		}
		if seen, ok := w.last[balance.GetAccountId()]; ok && balance.GetSequence() <= seen {
			continue // delivered before a reconnection: never twice
		}
		w.last[balance.GetAccountId()] = balance.GetSequence()
		return update, nil
	}
}

// TransferWatch is a running WatchTransfer: the transfer's state, then every change until a
// final one, then io.EOF. It reconnects after a failure and delivers only versions newer
// than the last one delivered (a state that came and went while disconnected is skipped;
// the final state always arrives).
type TransferWatch struct {
	watch
	transactionID string
	lastVersion   uint32
	done          bool
	stream        walletv1.QueryService_WatchTransferClient
}

// WatchTransfer starts watching a transfer (the stream opens on the first Recv). An id the
// read node does not know yet is waited for (bounded by the node).
func (c *QueryClient) WatchTransfer(ctx context.Context, transactionID string) *TransferWatch {
	return &TransferWatch{watch: newWatch(ctx, c), transactionID: transactionID}
}

// Recv is the next state; io.EOF after the final one.
func (w *TransferWatch) Recv() (*walletv1.TransferUpdate, error) {
	for {
		if w.done {
			return nil, io.EOF
		}
		if w.err != nil {
			return nil, w.err
		}
		if stop := w.stopped(); stop != nil {
			w.err = stop
			continue
		}
		if w.stream == nil {
			ctx, stub, err := w.open()
			if err != nil {
				w.err = err
				continue
			}
			stream, err := stub.WatchTransfer(ctx, &walletv1.WatchTransferRequest{TransactionId: w.transactionID})
			if err != nil {
				w.err = w.interrupted(err)
				continue
			}
			w.stream = stream
		}
		update, err := w.stream.Recv()
		if err != nil {
			w.stream = nil
			w.err = w.interrupted(err)
			continue
		}
		w.backoff = WatchResumeBackoffMin
		if update.GetVersion() <= w.lastVersion {
			continue
		}
		w.lastVersion = update.GetVersion()
		if update.GetIsFinal() {
			w.done = true
			w.Close()
		}
		return update, nil
	}
}
