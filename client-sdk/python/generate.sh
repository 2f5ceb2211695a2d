#!/usr/bin/env bash
# Regenerates the Python code of the wallet.v1 contract from ../../proto into
# src/wallet_ledger/_proto/ (package wallet_ledger._proto.wallet.v1) with grpcio-tools, which
# bundles protoc. The generator is pinned exactly in requirements-generate.txt, so the output
# is reproducible, and is old enough (protobuf 5.27 gencode) for every supported protobuf
# runtime (5, 6 and 7). The google.rpc error details come from googleapis-common-protos.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
proto="$here/../../proto"
. "$here/venv.sh"
venv=$(python_sdk_venv "$here/requirements-generate.txt")

out="$here/src/wallet_ledger/_proto"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$proto" && "$venv/bin/python" -m grpc_tools.protoc -I . \
  --python_out="$work" --grpc_python_out="$work" --pyi_out="$work" \
  wallet/v1/wallet.proto wallet/v1/cluster.proto wallet/v1/event_log.proto wallet/v1/query.proto \
  wallet/v1/errors.proto)
# protoc writes absolute imports of the proto package (`from wallet.v1 import ...`); nested
# inside wallet_ledger they must name the full path.
sed -i 's/^from wallet\.v1 import /from wallet_ledger._proto.wallet.v1 import /' "$work"/wallet/v1/*.py "$work"/wallet/v1/*.pyi
if grep -rn '^\(from\|import\) wallet\.' "$work" >&2; then
  echo "python sdk: generated code has imports generate.sh does not rewrite" >&2
  exit 1
fi
rm -rf "$out"
mkdir -p "$out/wallet/v1"
cp "$work"/wallet/v1/* "$out/wallet/v1/"
printf '"""Generated from proto/ by generate.sh. Do not edit."""\n' >"$out/__init__.py"
printf '"""Generated from proto/wallet (package wallet). Do not edit: run generate.sh."""\n' >"$out/wallet/__init__.py"
printf '"""Generated from proto/wallet/v1 (package wallet.v1). Do not edit: run generate.sh."""\n' >"$out/wallet/v1/__init__.py"
echo "python sdk: generated $(find "$out" -name '*.py*' | wc -l) files in $out"
