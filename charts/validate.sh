#!/usr/bin/env bash
# Offline validation of charts/wallet and the Dockerfile: no helm binary, no cluster, no
# Docker engine. Lints the chart (strict), renders it, validates every manifest against the
# Kubernetes API schemas, checks its structure and its values.schema.json, checks the
# Dockerfile, validates the monitoring objects against the Prometheus Operator CRD schemas and
# the alert rules with promtool, and runs the `helm test` pod's commands against a local
# cluster started from the rendered configuration (needs the binaries: `cargo build --bins`
# first).
# Arguments go to pytest (e.g. -k schema).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() { scripts/apt-install validate "$@"; }

command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
# promtool (Debian's prometheus package) checks and unit-tests the chart's PrometheusRule.
command -v promtool >/dev/null 2>&1 || apt_install --no-install-recommends prometheus

# One venv per set of pinned requirements, kept across runs (helm-python-sdk is ~85 MB).
requirements=charts/tests/requirements.txt
venv="/var/tmp/wallet-chart-venv-$(sha256sum <"$requirements" | cut -c1-12)"
if [[ ! -f "$venv/.complete" ]]; then
  echo "validate: creating $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$requirements"
  touch "$venv/.complete"
fi

# The binaries the loopback test runs: the cargo target directory's debug profile, as
# scripts/dev finds it.
if [[ -z "${WALLET_BIN_DIR:-}" ]]; then
  target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  export WALLET_BIN_DIR="$target_dir/debug"
fi

# No __pycache__ or .pytest_cache in the work tree.
export PYTHONDONTWRITEBYTECODE=1
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider charts/tests "$@"
