#!/usr/bin/env bash
# Regenerates the Python code of the wallet.v1 contract from ../../proto into src/ with
# grpcio-tools (which bundles protoc; pinned in requirements.txt, so the output is
# reproducible). The google.rpc error details come from googleapis-common-protos at run time.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
proto="$here/../../proto"
. "$here/venv.sh"
venv=$(python_sdk_venv)

out="$here/src"
rm -rf "$out/wallet"
mkdir -p "$out/wallet/v1"
(cd "$proto" && "$venv/bin/python" -m grpc_tools.protoc -I . \
  --python_out="$out" --grpc_python_out="$out" --pyi_out="$out" \
  wallet/v1/wallet.proto wallet/v1/cluster.proto wallet/v1/event_log.proto wallet/v1/query.proto)
printf '"""Generated from proto/wallet (package wallet). Do not edit: run generate.sh."""\n' >"$out/wallet/__init__.py"
printf '"""Generated from proto/wallet/v1 (package wallet.v1). Do not edit: run generate.sh."""\n' >"$out/wallet/v1/__init__.py"
echo "python sdk: generated $(find "$out/wallet" -name '*.py*' | wc -l) files in $out/wallet"
