#!/usr/bin/env bash
# Regenerates the Go code of the wallet.v1 contract from ../../proto into walletv1/ (package
# walletv1, import path wallet.ledger/client-sdk/go/walletv1) with Debian's protoc,
# protoc-gen-go and protoc-gen-go-grpc. The .proto files carry no go_package option (buf
# breaking refuses a changed file option): the import path is given here with M flags.
# The google.rpc error details come from google.golang.org/genproto (Debian's
# golang-google-genproto-dev), so nothing under proto/vendor is generated. The well-known
# types wallet.proto imports (google/protobuf/duration.proto, timestamp.proto) are read from
# /usr/include (Debian's libprotobuf-dev); their go_package options name
# google.golang.org/protobuf/types/known/{durationpb,timestamppb} (golang-google-protobuf-dev).
#
#   ./generate.sh [OUT_DIR]     (default: this directory; test.sh check passes a temp dir)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
proto="$here/../../proto"
out="${1:-$here}"
module=wallet.ledger/client-sdk/go
files=(wallet/v1/wallet.proto wallet/v1/query.proto wallet/v1/cluster.proto wallet/v1/event_log.proto wallet/v1/errors.proto)
maps=()
for file in "${files[@]}"; do maps+=("M$file=$module/walletv1;walletv1"); done
go_opts=$(IFS=,; echo "module=$module,${maps[*]}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
wkt=/usr/include
[[ -f $wkt/google/protobuf/duration.proto ]] || { echo "go sdk: $wkt/google/protobuf/duration.proto missing: install libprotobuf-dev" >&2; exit 1; }
(cd "$proto" && protoc -I . -I "$wkt" \
  --go_out="$work" --go_opt="$go_opts" \
  --go-grpc_out="$work" --go-grpc_opt="$go_opts" \
  "${files[@]}")
rm -rf "$out/walletv1"
mkdir -p "$out/walletv1"
cp "$work"/walletv1/*.go "$out/walletv1/"
echo "go sdk: generated $(ls "$out/walletv1" | wc -l) files in $out/walletv1" >&2
