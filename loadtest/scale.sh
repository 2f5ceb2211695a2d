#!/usr/bin/env bash
# The engine at scale (the engine issue's 10M-account targets; BENCHMARKS.md "10M accounts").
# Not a test: it prints. On a fresh dev cluster it
#   1. opens and funds ACCOUNTS accounts through the bulk streams (OpenAccounts, then
#      SubmitTransfers), waits (30 minutes at most) until the read node has folded all of it,
#      and runs 10 s of streamed transfers among all of them (setup time, throughput,
#      verification);
#   2. reports each node's RSS, three status calls with state digests, and the data size;
#   3. stops the cluster (SIGTERM), starts it again on the same data and times the write nodes
#      to SERVING (`walletctl health`) and the whole cluster to ready;
# while sampling every write node's longest store-loop round once a second throughout
# (`wallet_store_round_longest_seconds`; snapshots are taken while the accounts are opened).
#
#   loadtest/scale.sh BIN_DIR [ACCOUNTS]   # BIN_DIR: walletctl, wallet-loadtest and the node
#                                          # binaries; ACCOUNTS: 10000000
set -euo pipefail
B=$1
N=${2:-10000000}
D=/var/tmp/scale-$(basename "$B")
# shellcheck source=loadtest/dev-cluster.sh
source "$(dirname "$0")/dev-cluster.sh"

# Write node i serves metrics on gRPC port + 1000 (50051..50053 -> 51051..51053).
sample_rounds() {
    while :; do
        for port in 51051 51052 51053; do
            curl -s --max-time 1 "127.0.0.1:$port/metrics" |
                awk -v t="$(date +%s)" -v p="$port" \
                    '/^wallet_store_round_longest_seconds/ {print t, p, $2}' || true
        done
        sleep 1
    done
}
sample_rounds >>"$D/rounds" &
SAMPLER=$!
trap 'kill $SAMPLER 2>/dev/null; kill -TERM $DEV 2>/dev/null; wait $DEV 2>/dev/null || true' EXIT

rss() {
    for pid in $(pgrep -P "$DEV" -f 'wallet-(write|read)-node'); do
        printf '%s=%s MiB ' "$(tr '\0' ' ' <"/proc/$pid/cmdline" | grep -o 'node-[0-9]\|read-node' | head -1)" \
            "$(($(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status") / 1024))"
    done
    echo
}

longest_round() {
    sort -k3 -g "$D/rounds" | tail -1 | awk '{printf "%.1f ms (node port %s, %ds after start)\n", $3 * 1000, $2, $1 - '"$STARTED"'}'
}

STARTED=$(date +%s)
echo "1. $N accounts: open, fund, 10 s of streamed transfers among all of them"
RUST_LOG=loadtest=info "$B/wallet-loadtest" --target wallet --api stream --clients 8 --in-flight 512 --accounts "$N" \
    --duration 10s --settle-after-setup 30m --no-progress --format json --run-id "scale$RANDOM" \
    >"$D/load.json" 2>"$D/load.err" || echo "load generator failed: $(tail -3 "$D/load.err")"
grep -o '"setup_s": [0-9.]*\|"transfers_per_second": [0-9.]*\|"passed": [a-z]*' "$D/load.json" | head -3
grep -o 'read node caught up with setup.*' "$D/load.err" || true
echo "   took $(($(date +%s) - STARTED)) s; longest store round so far: $(longest_round)"

echo "2. RSS: $(rss)"
for _ in 1 2 3; do
    started=$(date +%s%N)
    "$B/walletctl" cluster status >/dev/null
    echo "   status with digests: $((($(date +%s%N) - started) / 1000000)) ms"
    sleep 1.2
done
echo "   data: $(du -sh "$D/data" | cut -f1)"
echo "   longest store round: $(longest_round)"

echo "3. restart"
kill -TERM $DEV
wait $DEV || true
sleep 1
"$B/walletctl" dev --data-dir "$D/data" >"$D/dev-restart.log" 2>&1 &
DEV=$!
started=$(date +%s%N)
# Waits (10 minutes at most) until the command succeeds; prints the time since `started`.
wait_for() {
    for _ in $(seq 1 3000); do
        if "$@" >/dev/null 2>&1; then
            echo "$((($(date +%s%N) - started) / 1000000)) ms"
            return
        fi
        sleep 0.2
    done
    echo "not within 10 minutes"
}
echo "   write nodes SERVING after $(wait_for "$B/walletctl" health)"
echo "   whole cluster ready after $(wait_for grep -q 'cluster ready' "$D/dev-restart.log")"
echo "   RSS after restart: $(rss)"
