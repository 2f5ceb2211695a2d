// Opens three accounts, funds one, pays another, retries that payment with the same
// transaction id (it is not paid twice), and watches both balances change on a read node.
//
//	go run ./examples/transfer_and_watch \
//	    --write 127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053 --read 127.0.0.1:50061
//
// (from client-sdk/go, see README.md: `./test.sh example --write ... --read ...`). The last
// line printed is a JSON summary (the SDK tests check it).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"wallet.ledger/client-sdk/go/wallet"
	"wallet.ledger/client-sdk/go/walletv1"
)

const watchWait = 20 * time.Second

// waitKnown: a read node learns an account once it has folded its opening: wait (bounded).
func waitKnown(ctx context.Context, query *wallet.QueryClient, accountID string) error {
	deadline := time.Now().Add(watchWait)
	for {
		_, err := query.GetBalance(ctx, accountID, "")
		var rejected *wallet.Rejected
		if err == nil {
			return nil
		}
		if !errors.As(err, &rejected) || rejected.Reason != wallet.ReasonAccountNotFound || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func randomPrefix() string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return "go-" + hex.EncodeToString(b[:]) + "-"
}

type event struct {
	update *walletv1.BalanceUpdate
	err    error
}

func run() error {
	write := flag.String("write", "127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053", "write nodes, comma-separated")
	read := flag.String("read", "127.0.0.1:50061", "read nodes, comma-separated")
	prefix := flag.String("prefix", randomPrefix(), "account id prefix")
	flag.Parse()
	issuer, alice, bob := *prefix+"issuer", *prefix+"alice", *prefix+"bob"
	ctx := context.Background()

	walletClient, err := wallet.NewWalletClient(strings.Split(*write, ","))
	if err != nil {
		return err
	}
	defer walletClient.Close()
	query, err := wallet.NewQueryClient(strings.Split(*read, ","))
	if err != nil {
		return err
	}
	defer query.Close()

	if _, err := walletClient.OpenAccount(ctx, wallet.OpenAccountParams{AccountID: issuer, Currency: "USD", AllowNegativeBalance: true}); err != nil {
		return err
	}
	for _, account := range []string{alice, bob} {
		if _, err := walletClient.OpenAccount(ctx, wallet.OpenAccountParams{AccountID: account, Currency: "USD"}); err != nil {
			return err
		}
	}
	for _, account := range []string{alice, bob} {
		if err := waitKnown(ctx, query, account); err != nil {
			return err
		}
	}

	// Watch first: the current balances arrive, then every change as it is applied.
	watchCtx, stopWatch := context.WithTimeout(ctx, 2*watchWait)
	defer stopWatch()
	watch := query.WatchBalances(watchCtx, []string{alice, bob}, nil)
	updates := make(chan event, 64)
	go func() {
		for {
			update, err := watch.Recv()
			if err != nil {
				if !errors.Is(err, wallet.ErrWatchClosed) {
					updates <- event{err: err}
				}
				return
			}
			updates <- event{update: update}
		}
	}()

	watched := []string{}
	latest := map[string]string{}
	timeout := time.After(watchWait)
	next := func() error {
		var e event
		select {
		case e = <-updates:
		case <-timeout:
			return fmt.Errorf("the watch did not show the final balances in %s (latest %v)", watchWait, latest)
		}
		if e.err != nil {
			return e.err
		}
		balance := e.update.GetBalance()
		latest[balance.GetAccountId()] = balance.GetBalance()
		kind := "snapshot"
		if !e.update.GetSnapshot() {
			kind = "change " + e.update.GetDelta()
		}
		name := strings.TrimPrefix(balance.GetAccountId(), *prefix)
		watched = append(watched, fmt.Sprintf("%s #%d %s -> %s", name, balance.GetSequence(), kind, balance.GetBalance()))
		fmt.Printf("watch: %s\n", watched[len(watched)-1])
		return nil
	}
	// The watch is live once both snapshots came: only then move money, so that every
	// change shows up as a change.
	for latest[alice] == "" || latest[bob] == "" {
		if err := next(); err != nil {
			return err
		}
	}

	if _, err := walletClient.Transfer(ctx, wallet.TransferParams{
		TransactionID: wallet.NewTransactionID(), From: issuer, To: alice, Amount: "100.00", Currency: "USD",
	}); err != nil {
		return err
	}
	payment := wallet.TransferParams{
		TransactionID: wallet.NewTransactionID(), From: alice, To: bob, Amount: "30.25", Currency: "USD",
	}
	paid, err := walletClient.Transfer(ctx, payment)
	if err != nil {
		return err
	}
	// A retry (say, after a timeout) reuses the id and gets the original outcome back.
	again, err := walletClient.Transfer(ctx, payment)
	if err != nil {
		return err
	}
	if again.TransactionId != payment.TransactionID || paid.TransactionId != payment.TransactionID {
		return fmt.Errorf("transaction ids differ: %s %s %s", paid.TransactionId, again.TransactionId, payment.TransactionID)
	}

	// Every update read so far, until both accounts show their final balances.
	for latest[alice] != "69.75" || latest[bob] != "30.25" {
		if err := next(); err != nil {
			return err
		}
	}
	watch.Close()

	// Read-your-writes: the token names the payment's log positions.
	projected := map[string]string{}
	authoritative := map[string]string{}
	for _, pair := range [][2]string{{"alice", alice}, {"bob", bob}} {
		balance, err := query.GetBalance(ctx, pair[1], paid.ConsistencyToken)
		if err != nil {
			return err
		}
		projected[pair[0]] = balance.GetBalance().GetBalance()
		account, err := walletClient.GetAccount(ctx, pair[1])
		if err != nil {
			return err
		}
		authoritative[pair[0]] = account.GetAccount().GetBalance()
	}
	out := json.NewEncoder(os.Stdout)
	out.SetEscapeHTML(false)
	return out.Encode(struct {
		Authoritative    map[string]string `json:"authoritative"`
		Projected        map[string]string `json:"projected"`
		Watched          []string          `json:"watched"`
		RetrySameOutcome bool              `json:"retry_same_outcome"`
	}{authoritative, projected, watched, again.ConsistencyToken == paid.ConsistencyToken})
}

func main() {
	log.SetFlags(0)
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "transfer_and_watch: %v\n", err)
		os.Exit(1)
	}
}
