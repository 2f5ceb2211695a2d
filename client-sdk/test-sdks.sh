#!/usr/bin/env bash
# Tests the generated SDKs (client-sdk/python, client-sdk/typescript, client-sdk/go,
# client-sdk/java) against a live cluster: checks the committed generated code is what
# generate.sh makes, runs each SDK's unit tests (Python: also mypy --strict, and `pip install`
# into fresh venvs with protobuf 5, 6 and 7: client-sdk/python/check-install.sh), starts 3
# write nodes and a read node (the binaries of the cargo build, on free loopback ports, data in
# a temporary directory), then runs each SDK's example (asserting the balances it reports)
# twice, given every write node (the client routes by leader hints and asks the nodes not to
# forward) and given one write node only (a follower for most partitions: the nodes forward
# each write to its leader), and its live checks (documented error details, retries; Python:
# 200 concurrent transfers, transparently pipelined down one SubmitTransfers stream per node).
# Last, for each language, a watch that survives a read node's kill -9 (watch_survives_kill):
# the language's watch program watches a fresh account and prints `ready` once the snapshot
# arrived, then each update's sequence; 3 transfers go into the account (through the Python
# SDK: client-sdk/python/tests/watch_feed.py), the read node is killed with SIGKILL and
# restarted with the same command line on the same port and data directory, 3 more transfers
# go in, and the program must exit 0 having seen sequences 1..6 exactly once, in order (the
# SDK's watch resumed by itself from the last sequence it delivered). The programs:
# client-sdk/python/tests/watch_check.py, client-sdk/typescript/test/watch-check.ts,
# client-sdk/go/cmd/watchcheck and client-sdk/java/.../checks/WatchCheck.java.
# TypeScript also runs its browser check (client-sdk/typescript/test/browser-check.ts): the
# live-balance page (client-sdk/typescript/web/, gRPC-web through the SDK's browser entry
# point) served on a fifth free port, whose origin every node is started with
# (--grpc-web-origin), opened in headless Chromium (Debian's chromium, installed when missing;
# puppeteer-core from npm drives it), must show each of two transfers' new balance within 1 s.
# The cluster is stopped on exit, whatever happens. Called by scripts/test after the cargo
# tests.
#
# Go and Java each bring one script, client-sdk/<language>/test.sh, with five commands: `check`
# (toolchain, generated code up to date, build, unit tests), `example --write E,E,E --read R`
# (runs the example, whose last line is the summary checked below), `live --write E,E,E
# --read R` (the live checks), `watch --read R --account ID --updates N --deadline D` (the
# watch program of the kill -9 check) and `secured --write E --certs DIR --server-name N` (TLS
# and tokens, the tokens in WALLET_TOKEN and WALLET_READ_TOKEN).
# WALLET_BIN_DIR=dir runs the node binaries found there instead of building them with cargo.
#
#   client-sdk/test-sdks.sh [python] [typescript] [go] [java]     (default: all four)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
languages=("$@")
((${#languages[@]})) || languages=(python typescript go java)
started=$(date +%s)

log() { echo "test-sdks: $*" >&2; }
for tool in python3 node npm; do
  command -v "$tool" >/dev/null 2>&1 || { log "$tool is needed (python3 with venv; Node.js 20+ with npm)"; exit 1; }
done

# --- the node binaries, where scripts/dev finds them ----------------------------------------
if [[ -n ${WALLET_BIN_DIR:-} ]]; then
  write_bin="$WALLET_BIN_DIR/wallet-write-node"
  read_bin="$WALLET_BIN_DIR/wallet-read-node"
else
  target_dir=$(cargo metadata --format-version 1 --no-deps 2>/dev/null \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' 2>/dev/null || echo target)
  write_bin="$target_dir/debug/wallet-write-node"
  read_bin="$target_dir/debug/wallet-read-node"
  # A no-op after scripts/test's workspace build (same features: WALLET_CARGO_FEATURES, which
  # scripts/test sets); builds them when run on its own.
  cargo build --locked --quiet ${WALLET_CARGO_FEATURES:+--features "$WALLET_CARGO_FEATURES"} \
    --bin wallet-write-node --bin wallet-read-node
fi

# The Python SDK's virtualenv also serves the health checks below.
. client-sdk/python/venv.sh
python_venv=$(python_sdk_venv)

# --- generated code is up to date -----------------------------------------------------------
for language in "${languages[@]}"; do
  case $language in
    python) generated=client-sdk/python/src/wallet_ledger/_proto ;;
    typescript) generated=client-sdk/typescript/src/gen ;;
    go | java) continue ;; # checked by its own test.sh check
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
      (cd client-sdk/python && PYTHONPATH=src GRPC_VERBOSITY=ERROR "$python_venv/bin/python" -m unittest discover -s tests -q \
        && "$python_venv/bin/mypy" >&2 \
        && "$python_venv/bin/mypy" --strict examples/transfer_and_watch.py examples/throughput.py \
          tests/watch_check.py tests/watch_feed.py >&2 \
        && ./check-install.sh)
      ;;
    typescript)
      (cd client-sdk/typescript && { [[ -d node_modules ]] && npm ls --silent >/dev/null 2>&1 || npm install --no-audit --no-fund --no-save --loglevel=error; } \
        && npm run --silent build && npm run --silent test:unit)
      # The browser check's Chromium (Debian's; puppeteer-core downloads no browser).
      command -v chromium >/dev/null 2>&1 || scripts/apt-install "test-sdks" chromium
      ;;
    go | java)
      "client-sdk/$language/test.sh" check
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

# Five free ports below Linux's ephemeral range (so no outgoing connection takes one between
# the check and the bind), spread by process id like the Rust test harness: 3 write nodes, the
# read node, and the page of the TypeScript browser check (its origin may call every node
# with gRPC-web: --grpc-web-origin).
read -r -a ports <<<"$(python3 - "$$" <<'PY'
import socket, sys
port, found = 20000 + (int(sys.argv[1]) % 600) * 20, []
while len(found) < 5 and port < 32768:
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
((${#ports[@]} == 5)) || { log "no free ports"; exit 1; }
peers="1=127.0.0.1:${ports[0]},2=127.0.0.1:${ports[1]},3=127.0.0.1:${ports[2]}"
write_endpoints="127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
read_endpoint="127.0.0.1:${ports[3]}"
web_port=${ports[4]}
web_origin="http://127.0.0.1:$web_port"
export RUST_LOG=${RUST_LOG:-info,h2=warn,tower=warn}
for id in 1 2 3; do
  "$write_bin" --node-id "$id" --listen "127.0.0.1:${ports[id - 1]}" --peers "$peers" \
    --data-dir "$data_dir/node-$id" --partitions 4 --metrics-listen off --grpc-web-origin "$web_origin" \
    >"$data_dir/node-$id.log" 2>&1 &
  pids+=($!)
done
# The read node; start_read_node again restarts it on the same port and data directory (the
# kill -9 watch check below), its pid kept in `pids` too so that cleanup stops it.
start_read_node() {
  "$read_bin" --listen "$read_endpoint" --write-nodes "$write_endpoints" \
    --data-dir "$data_dir/read-node" --metrics-listen off --grpc-web-origin "$web_origin" \
    >>"$data_dir/read-node.log" 2>&1 &
  read_pid=$!
  pids+=("$read_pid")
}
start_read_node

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
# One write endpoint only, as through a Kubernetes Service or a port-forward: node 2, a follower
# for most partitions, so the nodes forward each write to its leader (the SDK, given one
# endpoint, does not ask them not to).
one_write_endpoint="127.0.0.1:${ports[1]}"

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

# The TypeScript package as a user gets it: `npm pack` (its prepack builds dist/), the tarball
# installed into an empty project (with typescript and @types/node, from the npm cache when
# they are there), a consumer compiled with `tsc --strict` against the installed types only,
# then run against the cluster (one transfer and its retry).
typescript_consumer() {
  local sdk=client-sdk/typescript consumer="$data_dir/ts-consumer" tarball typescript types_node
  mkdir -p "$consumer"
  cp "$sdk"/consumer/{package.json,index.ts,tsconfig.json} "$consumer"/
  (cd "$sdk" && npm pack --silent --pack-destination "$consumer" >/dev/null)
  tarball=$(ls "$consumer"/wallet-ledger-client-*.tgz)
  typescript=$(node -p 'require("./client-sdk/typescript/package.json").devDependencies.typescript')
  types_node=$(node -p 'require("./client-sdk/typescript/package.json").devDependencies["@types/node"]')
  (cd "$consumer" \
    && npm install --prefer-offline --no-audit --no-fund --loglevel=error \
      "$tarball" "typescript@$typescript" "@types/node@$types_node" >&2 \
    && node_modules/.bin/tsc --strict -p . \
    && node index.js "$write_endpoints") | tee -a /dev/stderr | python3 -c '
import json, sys
result = json.loads(sys.stdin.read().strip().splitlines()[-1])
assert result == {"status": "success", "balance": "12.34", "transfers": 2}, result
print("test-sdks: typescript: npm pack tarball installs, compiles with tsc --strict and moves money", file=sys.stderr)
'
}

# A secured write node of its own for an SDK's TLS and token checks (one node, on a free port
# `offset` above the cluster's five): `walletctl dev-certs` certificates naming only wallet.test
# (dialled as 127.0.0.1, so the server name override is needed), client certificates
# required (mTLS), and a tokens file with a full token and a read-only one (random, hashed as
# security/src/tokens.rs expects). Sets secured_port, secured_certs, secured_token and
# secured_read_token; returns 1 (after saying so) if walletctl is not built.
secured_node() {
  local name=$1 offset=$2 dir="$data_dir/$1-secured" walletctl
  walletctl="$(dirname "$write_bin")/walletctl"
  if [[ ! -x $walletctl ]]; then
    log "$name: SKIPPED the TLS and token checks: $walletctl is not built (cargo build --bin walletctl)"
    return 1
  fi
  secured_port=$(python3 - "${ports[4]}" "$offset" <<'PY'
import socket, sys
port = int(sys.argv[1]) + int(sys.argv[2])
while port < 32768:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            print(port)
            break
        except OSError:
            port += 1
PY
)
  mkdir -p "$dir"
  secured_certs=$dir/certs
  "$walletctl" dev-certs --out "$secured_certs" --host wallet.test >/dev/null
  secured_token=$(python3 -c 'import secrets; print("check_" + secrets.token_hex(32))')
  secured_read_token=$(python3 -c 'import secrets; print("check_" + secrets.token_hex(32))')
  cat >"$dir/tokens.toml" <<EOF
[[token]]
name = "$name-check"
sha256 = "$(printf %s "$secured_token" | sha256sum | cut -d' ' -f1)"
scopes = ["admin", "issue", "transfer", "read"]

[[token]]
name = "$name-check-reader"
sha256 = "$(printf %s "$secured_read_token" | sha256sum | cut -d' ' -f1)"
scopes = ["read"]
EOF
  "$write_bin" --node-id 1 --listen "127.0.0.1:$secured_port" --peers "1=127.0.0.1:$secured_port" \
    --data-dir "$dir/node" --partitions 2 --metrics-listen off \
    --tls-cert "$secured_certs/node.crt" --tls-key "$secured_certs/node.key" --peer-ca "$secured_certs/ca.crt" \
    --tls-client-ca "$secured_certs/ca.crt" --tokens-file "$dir/tokens.toml" >"$data_dir/$name-secured-node.log" 2>&1 &
  pids+=($!)
}

# The live-balance page in headless Chromium (client-sdk/typescript/test/browser-check.ts):
# served on web_port (the origin the nodes allow), two transfers, each shown within 1 s.
typescript_browser() {
  (cd client-sdk/typescript && NODE_NO_WARNINGS=1 node dist/test/browser-check.js \
    --write "$write_endpoints" --read "$read_endpoint" --port "$web_port" --chromium "$(command -v chromium)") \
    | tee -a /dev/stderr | python3 -c '
import json, sys
result = json.loads(sys.stdin.read().strip().splitlines()[-1])
assert result["status"] == "success" and result["balance"] == "13.25", result
assert all(ms <= 1000 for ms in result["latency_ms"]), result
print("test-sdks: typescript: the browser page (gRPC-web) showed each new balance within 1 s: %s ms" % result["latency_ms"], file=sys.stderr)
'
}

typescript_secured() {
  secured_node typescript 1 || return 0
  (cd client-sdk/typescript && WALLET_TOKEN=$secured_token WALLET_READ_TOKEN=$secured_read_token NODE_NO_WARNINGS=1 \
    node dist/test/secured-check.js --write "127.0.0.1:$secured_port" --certs "$secured_certs" --server-name wallet.test)
}

# Go and Java: their test.sh's `secured` command against a secured node of their own.
sdk_secured() {
  local language=$1 offset
  case $language in go) offset=20 ;; java) offset=30 ;; esac
  secured_node "$language" "$offset" || return 0
  WALLET_TOKEN=$secured_token WALLET_READ_TOKEN=$secured_read_token \
    "client-sdk/$language/test.sh" secured --write "127.0.0.1:$secured_port" --certs "$secured_certs" --server-name wallet.test
}

python_secured() {
  secured_node python 10 || return 0
  (cd client-sdk/python && export WALLET_TOKEN=$secured_token WALLET_READ_TOKEN=$secured_read_token PYTHONPATH=src GRPC_VERBOSITY=ERROR \
    && "$python_venv/bin/python" tests/secured_check.py --write "127.0.0.1:$secured_port" --certs "$secured_certs" --server-name wallet.test)
}

# A watch that survives a read node's kill -9: the language's watch program (Python and
# TypeScript: tests/watch_check.*; Go and Java: `test.sh watch`) watches a fresh account and
# prints `ready` once the snapshot arrived, then each update's sequence. Meanwhile 3 transfers
# go into the account, the read node is killed with SIGKILL and restarted on the same port and
# data directory (start_read_node), 3 more transfers go in, and the program must exit 0: it
# saw all 6 updates exactly once, sequences 1..6 in order, having resumed by itself.
watch_updates=6
watch_survives_kill() {
  local language=$1 account out err pid waited=0 status=0 feed
  account="watch-$language-$(python3 -c 'import uuid; print(uuid.uuid4().hex[:12])')"
  out="$data_dir/watch-$language.out"
  err="$data_dir/watch-$language.err"
  feed=("$python_venv/bin/python" client-sdk/python/tests/watch_feed.py)
  PYTHONPATH=client-sdk/python/src GRPC_VERBOSITY=ERROR "${feed[@]}" open --write "$write_endpoints" --read "$read_endpoint" --account "$account"
  case $language in
    python)
      PYTHONPATH=client-sdk/python/src GRPC_VERBOSITY=ERROR "$python_venv/bin/python" client-sdk/python/tests/watch_check.py \
        --read "$read_endpoint" --account "$account" --updates "$watch_updates" --deadline 120 >"$out" 2>"$err" &
      ;;
    typescript)
      node client-sdk/typescript/dist/test/watch-check.js \
        --read "$read_endpoint" --account "$account" --updates "$watch_updates" --deadline 120 >"$out" 2>"$err" &
      ;;
    go)
      client-sdk/go/test.sh watch --read "$read_endpoint" --account "$account" --updates "$watch_updates" --deadline 120s >"$out" 2>"$err" &
      ;;
    java)
      client-sdk/java/test.sh watch --read "$read_endpoint" --account "$account" --updates "$watch_updates" --deadline 120 >"$out" 2>"$err" &
      ;;
  esac
  pid=$!
  pids+=("$pid")
  until grep -qx ready "$out" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null || ((waited >= 1200)); then
      cat "$err" >&2
      log "$language: the watch program did not get its snapshot"
      return 1
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  PYTHONPATH=client-sdk/python/src GRPC_VERBOSITY=ERROR "${feed[@]}" pay --write "$write_endpoints" --account "$account" --count 3
  kill -9 "$read_pid"
  wait "$read_pid" 2>/dev/null || true
  log "$language: read node killed (SIGKILL) after 3 transfers; restarting it on $read_endpoint"
  start_read_node
  PYTHONPATH=client-sdk/python/src GRPC_VERBOSITY=ERROR "${feed[@]}" pay --write "$write_endpoints" --account "$account" --count 3
  wait "$pid" || status=$?
  cat "$err" >&2
  if ((status != 0)); then
    log "$language: the watch program failed (exit $status); it printed: $(tr '\n' ' ' <"$out")"
    return 1
  fi
  python3 - "$out" "$watch_updates" <<'PY' || { log "$language: the watch did not see every update exactly once"; return 1; }
import sys
lines = open(sys.argv[1]).read().split()
expected = ["ready"] + [str(n) for n in range(1, int(sys.argv[2]) + 1)]
assert lines == expected, (lines, expected)
PY
  log "$language: the watch saw every update exactly once across the read node's kill -9 and restart"
}

for language in "${languages[@]}"; do
  case $language in
    python)
      (cd client-sdk/python && export PYTHONPATH=src \
        && "$python_venv/bin/python" examples/transfer_and_watch.py --write "$write_endpoints" --read "$read_endpoint" | tee -a /dev/stderr | assert_summary python \
        && log "python: the example through one endpoint (the nodes forward)" \
        && "$python_venv/bin/python" examples/transfer_and_watch.py --write "$one_write_endpoint" --read "$read_endpoint" | tee -a /dev/stderr | assert_summary python \
        && "$python_venv/bin/python" tests/live_check.py --write "$write_endpoints" --read "$read_endpoint")
      python_secured
      watch_survives_kill python
      ;;
    typescript)
      (cd client-sdk/typescript \
        && node dist/examples/transfer-and-watch.js --write "$write_endpoints" --read "$read_endpoint" | tee -a /dev/stderr | assert_summary typescript \
        && log "typescript: the example through one endpoint (the nodes forward)" \
        && node dist/examples/transfer-and-watch.js --write "$one_write_endpoint" --read "$read_endpoint" | tee -a /dev/stderr | assert_summary typescript \
        && node dist/test/live-check.js --write "$write_endpoints" --read "$read_endpoint")
      typescript_browser
      typescript_consumer
      typescript_secured
      watch_survives_kill typescript
      ;;
    go | java)
      "client-sdk/$language/test.sh" example --write "$write_endpoints" --read "$read_endpoint" \
        | tee -a /dev/stderr | assert_summary "$language"
      log "$language: the example through one endpoint (the nodes forward)"
      "client-sdk/$language/test.sh" example --write "$one_write_endpoint" --read "$read_endpoint" \
        | tee -a /dev/stderr | assert_summary "$language"
      "client-sdk/$language/test.sh" live --write "$write_endpoints" --read "$read_endpoint"
      sdk_secured "$language"
      watch_survives_kill "$language"
      ;;
  esac
done
log "passed in $(($(date +%s) - started))s"
