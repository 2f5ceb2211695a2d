# Sourced by generate.sh and test.sh: prints the path of a virtualenv with requirements.txt
# installed, cached under /var/tmp (keyed by the requirements' hash) and made if missing.
python_sdk_venv() {
  local here key venv
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  key=$( (cat "$here/requirements.txt"; python3 --version) | sha256sum | cut -c1-12)
  venv="${WALLET_TOOLS_DIR:-/var/tmp/wallet-tools}/python-sdk-$key"
  if [[ ! -x $venv/bin/python ]] || [[ ! -f $venv/.complete ]]; then
    echo "python sdk: creating $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
    touch "$venv/.complete"
  fi
  echo "$venv"
}
