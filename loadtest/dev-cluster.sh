# Sourced by the benchmark scripts: starts `walletctl dev` from the binaries in $B with its
# data in $D (fresh), stops it on exit, and waits until the cluster answers. Sets DEV (pid).
# DEV_ARGS: extra `walletctl dev` flags (e.g. "--partitions 1").
rm -rf "$D"
mkdir -p "$D"
"$B/walletctl" dev --data-dir "$D/data" ${DEV_ARGS:-} >"$D/dev.log" 2>&1 &
DEV=$!
trap 'kill -TERM $DEV 2>/dev/null; wait $DEV 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do "$B/walletctl" cluster status >/dev/null 2>&1 && break; sleep 0.5; done
