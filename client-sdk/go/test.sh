#!/usr/bin/env bash
# The Go SDK's side of client-sdk/test-sdks.sh (see there):
#
#   client-sdk/go/test.sh check                                  toolchain, generated code up
#                                                                to date, gofmt, vet, build, unit tests
#   client-sdk/go/test.sh example --write E1,E2,E3 --read R      the example (last line: JSON summary)
#   client-sdk/go/test.sh live --write E1,E2,E3 --read R         the live checks
#   client-sdk/go/test.sh watch --read R --account ID [--updates N] [--deadline D]
#                                                                the watch that survives a read
#                                                                node's kill -9 (cmd/watchcheck)
#   client-sdk/go/test.sh secured --write HOST:PORT --certs DIR --server-name NAME
#                                                                TLS and tokens (WALLET_TOKEN,
#                                                                WALLET_READ_TOKEN)
#
# Offline by design: Go modules are never downloaded. The toolchain and the libraries are
# Debian packages (installed with apt-get when missing, with sudo when not root), and the
# build runs in GOPATH mode (GO111MODULE=off) against /usr/share/gocode/src, where the
# golang-*-dev packages put their sources. This checkout's client-sdk/go is linked into a
# private GOPATH as wallet.ledger/client-sdk/go. GOPATH, GOCACHE and the binaries live in
# /var/tmp/wallet-go-<hash of this checkout's path> (WALLET_GO_WORK overrides it), never in
# the source tree.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
import_path=wallet.ledger/client-sdk/go

log() { echo "go sdk: $*" >&2; }

# --- toolchain ------------------------------------------------------------------------------
# golang-github-golang-protobuf-1-5-dev is named explicitly: golang-google-grpc-dev accepts
# the 1.3 API too, which cannot marshal protoc-gen-go 1.28 messages.
# libprotobuf-dev brings the well-known types' .proto files (google/protobuf/duration.proto,
# timestamp.proto, imported by wallet.proto) into /usr/include, where generate.sh points protoc.
packages=(golang-go protobuf-compiler libprotobuf-dev protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev
  golang-google-protobuf-dev golang-google-genproto-dev golang-github-golang-protobuf-1-5-dev)

apt_install() { "$here/../../scripts/apt-install" "go sdk" "$@"; }

ensure_toolchain() {
  local missing=() package
  command -v dpkg-query >/dev/null 2>&1 || { log "needs a Debian-based system (dpkg, apt-get)"; exit 1; }
  for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
  done
  ((${#missing[@]} == 0)) || apt_install "${missing[@]}"
  local version
  version=$(go env GOVERSION 2>/dev/null || true)
  case $version in
    go1.1[0-8] | go1.1[0-8].* | go1.[0-9] | go1.[0-9].*)
      log "needs Go 1.19 or newer, found $version"; exit 1 ;;
  esac
}

# --- a private GOPATH holding this checkout ---------------------------------------------------
work=${WALLET_GO_WORK:-/var/tmp/wallet-go-$(printf %s "$here" | sha256sum | cut -c1-12)}
setup_gopath() {
  mkdir -p "$work/gopath/src/$(dirname "$import_path")" "$work/cache" "$work/bin"
  ln -sfn "$here" "$work/gopath/src/$import_path"
  export GO111MODULE=off GOPATH="$work/gopath:/usr/share/gocode" GOCACHE="$work/cache" GOFLAGS= CGO_ENABLED=0
  cd "$work/gopath/src/$import_path"
}

build() { # $1: package under client-sdk/go, $2: binary name
  go build -o "$work/bin/$2" "./$1"
}

command=${1:-}
[[ -n $command ]] || { sed -n '2,13p' "$0" >&2; exit 2; }
shift
ensure_toolchain
setup_gopath

case $command in
  check)
    # Generated code is what generate.sh makes now.
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    "$here/generate.sh" "$tmp" 2>/dev/null
    if ! diff -r "$tmp/walletv1" "$here/walletv1" >&2; then
      log "walletv1/ differs from what generate.sh makes: run client-sdk/go/generate.sh and commit"
      exit 1
    fi
    log "generated code is up to date"
    unformatted=$(gofmt -l wallet cmd examples)
    if [[ -n $unformatted ]]; then
      log "not gofmt'ed: $unformatted"
      exit 1
    fi
    go vet ./...
    go build ./...
    go test -count=1 ./...
    log "check passed (gofmt, vet, build, unit tests)"
    ;;
  example)
    build examples/transfer_and_watch transfer_and_watch
    exec "$work/bin/transfer_and_watch" "$@"
    ;;
  live)
    build cmd/livecheck livecheck
    exec "$work/bin/livecheck" "$@"
    ;;
  watch)
    build cmd/watchcheck watchcheck
    exec "$work/bin/watchcheck" "$@"
    ;;
  secured)
    build cmd/securedcheck securedcheck
    exec "$work/bin/securedcheck" "$@"
    ;;
  *)
    log "unknown command $command (check, example, live, watch, secured)"
    exit 2
    ;;
esac
