#!/usr/bin/env bash
# Regenerates the TypeScript code of the wallet.v1 contract (and the vendored google.rpc
# error details) from ../../proto into src/gen/ with buf and ts-proto, both pinned in
# package-lock.json, so the output is reproducible. Installs them (npm install, from the lock) if missing.
set -euo pipefail
cd "$(dirname "$0")"
if [[ ! -x node_modules/.bin/protoc-gen-ts_proto ]] || [[ ! -x node_modules/.bin/buf ]]; then
  # `npm install` from the lock: npm 11's `npm ci` rejects this lock file because it omits
  # @bufbuild/buf's binaries for other platforms (optional dependencies).
  npm install --no-audit --no-fund --no-save --loglevel=error
fi
rm -rf src/gen
node_modules/.bin/buf generate ../../proto --template buf.gen.yaml \
  --path ../../proto/wallet/v1 --path ../../proto/vendor/google/rpc/status.proto \
  --path ../../proto/vendor/google/rpc/error_details.proto
echo "typescript sdk: generated $(find src/gen -name '*.ts' | wc -l) files in src/gen"
