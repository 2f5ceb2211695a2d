#!/usr/bin/env bash
# Side by side on this machine: the wallet (a fresh `walletctl dev` cluster: 3 write nodes
# with fsync'd RocksDB + a read node) and PostgreSQL (fsync=on, synchronous_commit=on) doing
# the same seeded transfers with the same number of clients for the same time. Installs and
# starts a local PostgreSQL if there is none (apt-get), with its data under $WORK.
#
# Ends with one line `ratio: X` = wallet transfers/s / PostgreSQL transfers/s.
#
#   loadtest/compare.sh                          # 32 clients, 10 s, 100k accounts, unary API
#   API=stream CLIENTS=8 loadtest/compare.sh     # the wallet through SubmitTransfers streams
#   API=both loadtest/compare.sh                 # unary, then streams (STREAM_CLIENTS, default
#                                                # 8), against one PostgreSQL run: prints
#                                                # `ratio stream: Y`, then `ratio: X` (unary)
#   loadtest/compare.sh --zipf 1.0               # extra flags go to both runs
#
# Settings (environment): SEED, DURATION, CLIENTS, ACCOUNTS, CROSS (cross-partition share),
# API (unary|stream|both, wallet side only), STREAM_CLIENTS (streams when API=both), WORK (scratch directory), PG_PORT, BIN (a folder
# holding walletctl, wallet-loadtest and the node binaries, e.g. an earlier build kept for a
# before/after comparison; unset: build this checkout's).
set -euo pipefail

SEED=${SEED:-1}
DURATION=${DURATION:-10s}
CLIENTS=${CLIENTS:-32}
ACCOUNTS=${ACCOUNTS:-100000}
CROSS=${CROSS:-0.5}
API=${API:-unary}
WORK=${WORK:-/var/tmp/wallet-compare}
PG_PORT=${PG_PORT:-54329}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$WORK"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if [ -z "${BIN:-}" ]; then
    echo "== building the binaries" >&2
    (cd "$ROOT" && cargo build -q --bins)
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug
fi

# --- PostgreSQL -------------------------------------------------------------------------
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
    echo "== installing PostgreSQL (apt-get)" >&2
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
PG_DATA=$WORK/pg
# PostgreSQL refuses to run as root: as root, run it as the `postgres` user.
if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir "$WORK" postgres
    chown postgres "$WORK"
    pg() { runuser -u postgres -- "$@"; }
else
    pg() { "$@"; }
fi
if [ ! -f "$PG_DATA/PG_VERSION" ]; then
    echo "== initdb $PG_DATA" >&2
    pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust >/dev/null
fi
PG_STARTED=0
if ! pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
    echo "== starting PostgreSQL on 127.0.0.1:$PG_PORT (fsync=on, synchronous_commit=on)" >&2
    pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$WORK/pg.log" -w start -o \
        "-p $PG_PORT -k $WORK -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c full_page_writes=on -c max_connections=300 -c shared_buffers=512MB" >/dev/null
    PG_STARTED=1
fi

# --- wallet dev cluster -----------------------------------------------------------------
for port in 50051 50052 50053 50061; do
    if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
        echo "port $port is in use: stop the other wallet cluster first" >&2
        exit 1
    fi
done
WALLET_DATA=$WORK/wallet-$(date +%s)
echo "== starting a fresh dev cluster in $WALLET_DATA" >&2
"$BIN/walletctl" dev --data-dir "$WALLET_DATA" >"$WORK/dev.log" 2>&1 &
DEV_PID=$!

cleanup() {
    kill -TERM "$DEV_PID" 2>/dev/null && wait "$DEV_PID" 2>/dev/null || true
    rm -rf "$WALLET_DATA"
    if [ "$PG_STARTED" -eq 1 ]; then
        pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast stop >/dev/null || true
    fi
}
trap cleanup EXIT

COMMON=(--seed "$SEED" --duration "$DURATION" --accounts "$ACCOUNTS" --cross-share "$CROSS"
    --format json --no-progress)

# The wallet runs: "unary" or "stream", or both, each with its own report.
case $API in
    both) APIS=(stream unary) ;;
    unary | stream) APIS=("$API") ;;
    *) echo "API must be unary, stream or both, not $API" >&2; exit 2 ;;
esac
STREAM_CLIENTS=${STREAM_CLIENTS:-8}
set +e
WALLET_STATUS=0
for api in "${APIS[@]}"; do
    clients=$CLIENTS
    [ "$API" = both ] && [ "$api" = stream ] && clients=$STREAM_CLIENTS
    echo "== wallet: $api API, $clients clients, $DURATION" >&2
    "$BIN/wallet-loadtest" --target wallet --api "$api" "${COMMON[@]}" --clients "$clients" \
        --run-id "cmp${SEED}${api}" --html "$WORK/wallet-$api.html" "$@" >"$WORK/wallet-$api.json" \
        || WALLET_STATUS=$?
done
echo "== PostgreSQL: $CLIENTS connections, $DURATION" >&2
"$BIN/wallet-loadtest" --target postgres --read-endpoint none \
    --postgres "host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres" \
    "${COMMON[@]}" --clients "$CLIENTS" --run-id "cmp$SEED" --html "$WORK/postgres.html" "$@" \
    >"$WORK/postgres.json"
PG_STATUS=$?
set -e

rate() { sed -n 's/^  "transfers_per_second": \([0-9.eE+-]*\),$/\1/p' "$1"; }
p99() { grep -m1 '"p99_ms"' "$1" | sed 's/.*: \([0-9.]*\).*/\1/'; }
passed() { grep -q '"passed": true' "$1" && echo passed || echo FAILED; }
P=$(rate "$WORK/postgres.json")
for api in "${APIS[@]}"; do
    report=$WORK/wallet-$api.json
    echo "wallet ($api): $(rate "$report") transfers/s, p99 $(p99 "$report") ms, verification $(passed "$report") (report $report, $WORK/wallet-$api.html)"
done
echo "postgresql: ${P:-?} transfers/s, p99 $(p99 "$WORK/postgres.json") ms, verification $(passed "$WORK/postgres.json") (report $WORK/postgres.json, $WORK/postgres.html)"
for api in "${APIS[@]}"; do
    W=$(rate "$WORK/wallet-$api.json")
    if [ "$WALLET_STATUS" -ne 0 ] || [ "$PG_STATUS" -ne 0 ] || [ -z "$W" ] || [ -z "$P" ]; then
        echo "a run failed (wallet exit $WALLET_STATUS, postgres exit $PG_STATUS)" >&2
        exit 1
    fi
    label="ratio"
    [ "$API" = both ] && [ "$api" = stream ] && label="ratio stream"
    awk -v w="$W" -v p="$P" -v label="$label" 'BEGIN { printf "%s: %.2f\n", label, w / p }'
done
