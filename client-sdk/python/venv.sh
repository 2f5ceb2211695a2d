# Sourced by generate.sh, check-install.sh and client-sdk/test-sdks.sh.
#
#   python_sdk_venv [REQUIREMENTS_FILE...]
#
# prints the path of a virtualenv with the given requirement files installed (default:
# requirements.txt, the development venv), cached under /var/tmp keyed by a hash of the
# files and the Python version, and made if missing, so reruns are fast.
python_sdk_venv() {
  local here key venv name args=() file
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  (($#)) || set -- "$here/requirements.txt"
  name=$(basename "$1" .txt)
  key=$( (cat "$@"; python3 --version) | sha256sum | cut -c1-12)
  venv="${WALLET_TOOLS_DIR:-/var/tmp/wallet-tools}/python-sdk-$name-$key"
  if [[ ! -x $venv/bin/python ]] || [[ ! -f $venv/.complete ]]; then
    echo "python sdk: creating $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    for file in "$@"; do args+=(-r "$file"); done
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${args[@]}" >&2
    touch "$venv/.complete"
  fi
  echo "$venv"
}
