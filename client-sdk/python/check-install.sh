#!/usr/bin/env bash
# Installs the package as a user would (`pip install client-sdk/python`) into fresh
# virtualenvs, one per supported protobuf major (install-check/protobuf{5,6,7}.txt are the
# constraints), then checks that it imports, that `pip check` is happy, and that the unit
# tests pass against the installed copy (not src/). Each venv is cached under /var/tmp, keyed
# by a hash of pyproject.toml, its constraints file and the Python version, so a rerun only
# reinstalls the package itself (--no-deps); a change of the dependencies makes a fresh one.
#
#   client-sdk/python/check-install.sh [5] [6] [7]     (default: all three)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
majors=("$@")
((${#majors[@]})) || majors=(5 6 7)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Built from a copy: setuptools writes build/ and *.egg-info next to the sources it builds.
mkdir -p "$work/src-copy"
cp -r "$here/pyproject.toml" "$here/README.md" "$here/src" "$work/src-copy/"
find "$work/src-copy" -name __pycache__ -prune -exec rm -rf {} +

for major in "${majors[@]}"; do
  constraints="$here/install-check/protobuf$major.txt"
  [[ -f $constraints ]] || { echo "check-install: no $constraints" >&2; exit 2; }
  key=$( (cat "$here/pyproject.toml" "$constraints"; python3 --version) | sha256sum | cut -c1-12)
  venv="${WALLET_TOOLS_DIR:-/var/tmp/wallet-tools}/python-sdk-install-protobuf$major-$key"
  if [[ ! -x $venv/bin/python ]] || [[ ! -f $venv/.complete ]]; then
    echo "check-install: creating $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check -c "$constraints" "$work/src-copy" >&2
    touch "$venv/.complete"
  else
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --force-reinstall "$work/src-copy" >&2
  fi
  "$venv/bin/pip" check --disable-pip-version-check >/dev/null
  versions=$(cd "$work" && "$venv/bin/python" -W error::DeprecationWarning -c '
import google.protobuf, grpc, wallet_ledger, wallet_ledger._proto.wallet.v1.wallet_pb2_grpc
assert "site-packages" in wallet_ledger.__file__, wallet_ledger.__file__
import importlib.resources as r
assert r.files("wallet_ledger").joinpath("py.typed").is_file(), "py.typed is missing"
assert r.files("wallet_ledger._proto.wallet.v1").joinpath("wallet_pb2.pyi").is_file(), "stubs are missing"
print(f"wallet-ledger-client {wallet_ledger.__version__}, protobuf {google.protobuf.__version__}, grpcio {grpc.__version__}")')
  case ${versions#*protobuf } in "$major".*) ;; *) echo "check-install: expected protobuf $major: $versions" >&2; exit 1 ;; esac
  (cd "$here" && GRPC_VERBOSITY=ERROR "$venv/bin/python" -m unittest discover -s tests -q 2>&1 | tail -n 3 | tr "\n" " " >&2; echo >&2) \
    || { echo "check-install: unit tests failed with $versions" >&2; exit 1; }
  echo "check-install: installed and tested: $versions" >&2
done
