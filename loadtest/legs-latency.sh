#!/usr/bin/env bash
# Sequential latency of one client's TransferLegs calls within one partition and across two,
# through the Python SDK: starts a 3-node, 4-partition write cluster on free loopback ports
# (data in a temporary directory, removed on exit), then runs loadtest/legs-latency.py, which
# sends 4 rounds of 100 two-leg sets of each shape, alternating, and prints p50, p99 and the
# mean of each (the first 20 of each dropped as warm-up).
#
#   loadtest/legs-latency.sh [BIN_DIR]     (default: the cargo target's debug binaries, built)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -n ${1:-} ]]; then
  bin=$1
else
  target_dir=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  bin="$target_dir/debug"
  cargo build --locked --quiet --bin wallet-write-node
fi
. client-sdk/python/venv.sh
python_venv=$(python_sdk_venv)
ports=($(python3 - <<'PY'
import socket
found = []
for _ in range(3):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); found.append(s.getsockname()[1]); s.close()
print(*found)
PY
))
dir=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
peers="1=127.0.0.1:${ports[0]},2=127.0.0.1:${ports[1]},3=127.0.0.1:${ports[2]}"
for id in 1 2 3; do
  RUST_LOG=warn "$bin/wallet-write-node" --node-id "$id" --listen "127.0.0.1:${ports[id - 1]}" \
    --peers "$peers" --data-dir "$dir/node-$id" --partitions 4 --metrics-listen off \
    >"$dir/node-$id.log" 2>&1 &
  pids+=($!)
done
sleep 4
PYTHONPATH=client-sdk/python/src GRPC_VERBOSITY=ERROR "$python_venv/bin/python" loadtest/legs-latency.py \
  "127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
