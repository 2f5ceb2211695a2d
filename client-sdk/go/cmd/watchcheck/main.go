// Command watchcheck is the watch that survives a read node's kill -9 (test.sh watch, from
// client-sdk/test-sdks.sh): it watches one account's balance, prints "ready" once the
// snapshot arrived, then the sequence of each update, and exits 0 once it has seen -updates
// updates after the snapshot whose sequences follow it strictly consecutively (no gap, no
// repeat); 1 otherwise or after -deadline. The watch resumes by itself while the harness
// kills and restarts the read node.
//
//	watchcheck --read HOST:PORT[,...] --account ID [--updates 6] [--deadline 120s]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"wallet.ledger/client-sdk/go/wallet"
)

func main() {
	read := flag.String("read", "", "read endpoints, comma-separated")
	account := flag.String("account", "", "the account to watch")
	updates := flag.Int("updates", 6, "updates to see after the snapshot")
	deadline := flag.Duration("deadline", 120*time.Second, "give up after this long")
	flag.Parse()
	if *read == "" || *account == "" {
		flag.Usage()
		os.Exit(2)
	}
	os.Exit(run(strings.Split(*read, ","), *account, *updates, *deadline))
}

func run(endpoints []string, account string, updates int, deadline time.Duration) int {
	query, err := wallet.NewQueryClient(endpoints)
	if err != nil {
		fmt.Fprintln(os.Stderr, "watch:", err)
		return 1
	}
	defer query.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	watch := query.WatchBalances(ctx, []string{account}, nil)
	defer watch.Close()
	var last uint64
	first, seen := true, 0
	for {
		update, err := watch.Recv()
		if err != nil {
			fmt.Fprintf(os.Stderr, "watch ended after %d of %d updates: %v\n", seen, updates, err)
			return 1
		}
		sequence := update.GetBalance().GetSequence()
		if first {
			if !update.GetSnapshot() {
				fmt.Fprintf(os.Stderr, "first update #%d is not a snapshot\n", sequence)
				return 1
			}
			fmt.Println("ready")
			first = false
		} else {
			fmt.Println(sequence)
			if sequence != last+1 {
				fmt.Fprintf(os.Stderr, "sequence %d after %d: a gap or a repeat\n", sequence, last)
				return 1
			}
			seen++
			if seen == updates {
				fmt.Fprintf(os.Stderr, "watch: %d updates after the snapshot, consecutive\n", seen)
				return 0
			}
		}
		last = sequence
	}
}
