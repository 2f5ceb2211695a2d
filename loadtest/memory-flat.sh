#!/usr/bin/env bash
# Whether write-node memory stays flat while a warm cluster applies further transfers
# (BENCHMARKS.md, "Records on disk"; the engine issue's RSS target). Not a test: it prints
# each write node's VmRSS after the warm-up and after each of two rounds of further
# transfers.
#
#   loadtest/memory-flat.sh BIN_DIR [ACCOUNTS] [FURTHER]   # BIN_DIR: walletctl,
#       # wallet-loadtest and the node binaries; ACCOUNTS: 100000; FURTHER: 300000
set -euo pipefail
B=$1
N=${2:-100000}
FURTHER=${3:-300000}
D=/var/tmp/memory-flat-$(basename "$B")
# shellcheck source=loadtest/dev-cluster.sh
source "$(dirname "$0")/dev-cluster.sh"

rss() {
    local total=0
    for pid in $(pgrep -P "$DEV" -f wallet-write-node); do
        kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
        printf '%s ' "$((kb / 1024)) MiB"
        total=$((total + kb))
    done
    echo "(sum $((total / 1024)) MiB)"
}

load() { # run-id, accounts, transfers
    "$B/wallet-loadtest" --target wallet --api stream --clients 8 --in-flight 512 \
        --accounts "$2" -n "$3" --duration 10m --no-progress --format json --no-verify \
        --run-id "$1$RANDOM" >"$D/$1.json" 2>"$D/$1.err"
    grep -o '"transfers_per_second": [0-9.]*' "$D/$1.json" | head -1
}

echo "warm-up: $N accounts, $FURTHER transfers"
load warm "$N" "$FURTHER"
sleep 3
echo "write-node RSS after the warm-up: $(rss)"
# Twice: memtables and caches fill up to their bounds in the first round, so the second
# shows whether anything still grows with the number of transfers.
for round in 1 2; do
    echo "further $round: $FURTHER transfers between 1000 new accounts"
    load "further$round" 1000 "$FURTHER"
    sleep 3
    echo "write-node RSS after further round $round: $(rss)"
done
