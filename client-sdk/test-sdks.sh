#!/usr/bin/env bash
# Tests the generated SDKs (client-sdk/python, client-sdk/typescript) against a live
# cluster: checks the committed generated code is what generate.sh makes, runs each SDK's
# unit tests, starts 3 write nodes and a read node (the binaries of the cargo build, on free
# loopback ports, data in a temporary directory), then runs each SDK's example (asserting the
# balances it reports) and its live checks (documented error details, retries). The cluster
# is stopped on exit, whatever happens. Called by scripts/test after the cargo tests.
#
#   client-sdk/test-sdks.sh [python] [typescript]     (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
languages=("$@")
((${#languages[@]})) || languages=(python typescript)
started=$(date +%s)

log() { echo "test-sdks: $*" >&2; }
for tool in python3 node npm; do
  command -v "$tool" >/dev/null 2>&1 || { log "$tool is needed (python3 with venv; Node.js 20+ with npm)"; exit 1; }
done

# --- the node binaries, where scripts/dev finds them ----------------------------------------
target_dir=$(cargo metadata --format-version 1 --no-deps 2>/dev/null \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' 2>/dev/null || echo target)
write_bin="$target_dir/debug/wallet-write-node"
read_bin="$target_dir/debug/wallet-read-node"
# A no-op after scripts/test's workspace build (same features: WALLET_CARGO_FEATURES, which
# scripts/test sets); builds them when run on its own.
cargo build --locked --quiet ${WALLET_CARGO_FEATURES:+--features "$WALLET_CARGO_FEATURES"} \
  --bin wallet-write-node --bin wallet-read-node

# The Python SDK's virtualenv also serves the health checks below.
. client-sdk/python/venv.sh
python_venv=$(python_sdk_venv)

# --- generated code is up to date -----------------------------------------------------------
for language in "${languages[@]}"; do
  case $language in
    python) generated=client-sdk/python/src/wallet ;;
    typescript) generated=client-sdk/typescript/src/gen ;;
    *) log "unknown language $language"; exit 2 ;;
  esac
  "client-sdk/$language/generate.sh" >/dev/null
  # Against the index, so staged output counts as committed; untracked files are a change.
  untracked=$(git ls-files --others --exclude-standard -- "$generated")
  if ! git diff --exit-code --stat -- "$generated" >&2 || [[ -n $untracked ]]; then
    [[ -z $untracked ]] || echo "untracked: $untracked" >&2
    log "$generated differs from what client-sdk/$language/generate.sh makes: run it and commit"
    exit 1
  fi
  log "$language: generated code is up to date"
done

# --- unit tests and builds (no cluster needed) ------------------------------------------------
for language in "${languages[@]}"; do
  case $language in
    python)
      (cd client-sdk/python && PYTHONPATH=src "$python_venv/bin/python" -m unittest discover -s tests -q)
      ;;
    typescript)
      (cd client-sdk/typescript && { [[ -d node_modules ]] && npm ls --silent >/dev/null 2>&1 || npm install --no-audit --no-fund --no-save --loglevel=error; } \
        && npm run --silent build && npm run --silent test:unit)
      ;;
  esac
  log "$language: unit tests passed"
done

# --- a cluster on free ports --------------------------------------------------------------------
data_dir=$(mktemp -d "${TMPDIR:-/tmp}/wallet-sdk-test.XXXXXX")
pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if ((status != 0)); then
    for log_file in "$data_dir"/*.log; do
      [[ -f $log_file ]] && { echo "--- $log_file (tail)" >&2; tail -n 20 "$log_file" >&2; }
    done
  fi
  rm -rf "$data_dir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Four free ports below Linux's ephemeral range (so no outgoing connection takes one between
# the check and the bind), spread by process id like the Rust test harness.
read -r -a ports <<<"$(python3 - "$$" <<'PY'
import socket, sys
port, found = 20000 + (int(sys.argv[1]) % 600) * 20, []
while len(found) < 4 and port < 32768:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            found.append(port)
        except OSError:
            pass
    port += 1
print(*found)
PY
)"
((${#ports[@]} == 4)) || { log "no free ports"; exit 1; }
peers="1=127.0.0.1:${ports[0]},2=127.0.0.1:${ports[1]},3=127.0.0.1:${ports[2]}"
write_endpoints="127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
read_endpoint="127.0.0.1:${ports[3]}"
export RUST_LOG=${RUST_LOG:-info,h2=warn,tower=warn}
for id in 1 2 3; do
  "$write_bin" --node-id "$id" --listen "127.0.0.1:${ports[id - 1]}" --peers "$peers" \
    --data-dir "$data_dir/node-$id" --partitions 4 --metrics-listen off >"$data_dir/node-$id.log" 2>&1 &
  pids+=($!)
done
"$read_bin" --listen "$read_endpoint" --write-nodes "$write_endpoints" \
  --data-dir "$data_dir/read-node" --metrics-listen off >"$data_dir/read-node.log" 2>&1 &
pids+=($!)

# Ready = every write node SERVING wallet.v1.WalletService (every partition has a leader)
# and the read node SERVING wallet.v1.QueryService, over the standard health protocol.
"$python_venv/bin/python" - "$write_endpoints" "$read_endpoint" <<'PY' || { log "cluster not healthy in time"; exit 1; }
import sys, time
import grpc

def check(endpoint: str, service: str) -> bool:
    """grpc.health.v1.Health/Check, with the two tiny messages encoded by hand."""
    request = b"\x0a" + bytes([len(service)]) + service.encode()  # service = 1
    with grpc.insecure_channel(endpoint) as channel:
        call = channel.unary_unary("/grpc.health.v1.Health/Check")
        try:
            return call(request, timeout=1) == b"\x08\x01"  # status = SERVING
        except grpc.RpcError:
            return False

targets = [(e, "wallet.v1.WalletService") for e in sys.argv[1].split(",")]
targets.append((sys.argv[2], "wallet.v1.QueryService"))
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    if all(check(*t) for t in targets):
        sys.exit(0)
    time.sleep(0.2)
sys.exit(1)
PY
log "cluster healthy: write $write_endpoints, read $read_endpoint"

# --- each SDK against the cluster ----------------------------------------------------------------
assert_summary() {  # $1: language, stdin: the example's output
  python3 -c '
import json, sys
language, lines = sys.argv[1], sys.stdin.read().strip().splitlines()
summary = json.loads(lines[-1])
expected = {"alice": "69.75", "bob": "30.25"}
assert summary["authoritative"] == expected, summary
assert summary["projected"] == expected, summary
assert summary["retry_same_outcome"] is True, summary
alice = [w for w in summary["watched"] if w.startswith("alice ")]
bob = [w for w in summary["watched"] if w.startswith("bob ")]
assert alice == ["alice #0 snapshot -> 0.00", "alice #1 change 100.00 -> 100.00",
                 "alice #2 change -30.25 -> 69.75"], alice
assert bob == ["bob #0 snapshot -> 0.00", "bob #1 change 30.25 -> 30.25"], bob
print(f"test-sdks: {language}: example balances and watched updates as expected", file=sys.stderr)
' "$1"
}

for language in "${languages[@]}"; do
  case $language in
    python)
      (cd client-sdk/python && export PYTHONPATH=src \
        && "$python_venv/bin/python" examples/transfer_and_watch.py --write "$write_endpoints" --read "$read_endpoint" | tee -a /dev/stderr | assert_summary python \
        && "$python_venv/bin/python" tests/live_check.py --write "$write_endpoints" --read "$read_endpoint")
      ;;
    typescript)
      (cd client-sdk/typescript \
        && node dist/examples/transfer-and-watch.js --write "$write_endpoints" --read "$read_endpoint" | tee -a /dev/stderr | assert_summary typescript \
        && node dist/test/live-check.js --write "$write_endpoints" --read "$read_endpoint")
      ;;
  esac
done
log "passed in $(($(date +%s) - started))s"
