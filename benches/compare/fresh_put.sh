#!/usr/bin/env bash
# Our master and two fresh stores on loopback (TCP only: MOONCAKE_DISABLE_SHM=1), then
# fresh_put.py against them; once per setting of the stores' MOONCAKE_WARM_AHEAD in
# WARM (default "0 256mb"), ROUNDS times alternating, each run on a fresh topology after
# IDLE seconds (a store usually starts well before its first put). Processes are
# stopped by PID, and the stores' segment files are removed.
#
#   benches/compare/fresh_put.sh                       # needs target/release and target/venv
#   ROUNDS=4 WARM="0 256mb 1gb" benches/compare/fresh_put.sh
#
# Knobs: BIN, VENV, ROUNDS (3), WARM, IDLE (2), SEGMENT (4gb), OUT, and fresh_put.py's
# flags in ARGS (e.g. ARGS="--budget 268435456").
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${BIN:-$ROOT/target/release}
VENV=${VENV:-$ROOT/target/venv}
ROUNDS=${ROUNDS:-3} WARM=${WARM:-"0 256mb"} IDLE=${IDLE:-2} SEGMENT=${SEGMENT:-4gb}
OUT=${OUT:-$ROOT/target/fresh_put/$(date +%Y%m%d-%H%M%S)}
RPC=${RPC:-50351} META=${META:-18580} METRICS=${METRICS:-19503} PORT0=${PORT0:-18681}
export MOONCAKE_DISABLE_SHM=1
mkdir -p "$OUT/logs"
# The segment files go in memory (tmpfs), as a store's do by default: a directory under
# OUT is on a disk filesystem, where the kernel would write the segment back to disk.
SHM=$(mktemp -d "${TMPDIR_SHM:-/dev/shm}/mc-fresh-put-XXXXXX")
PIDS=()
stop_all() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -TERM "${PIDS[$i]}" 2>/dev/null || true; done
  for i in "${PIDS[@]:-}"; do [ -n "$i" ] && wait "$i" 2>/dev/null || true; done
  PIDS=()
  rm -f "$SHM"/mooncake-seg-* "$OUT"/*.ready
}
trap 'stop_all; rm -rf "$SHM"' EXIT
for ((r = 1; r <= ROUNDS; r++)); do
  for w in $WARM; do
    tag=$r-warm$w
    "$BIN/mooncake_master" --rpc_address 127.0.0.1 --rpc_port "$RPC" --enable_http_metadata_server=true \
      --http_metadata_server_host 127.0.0.1 --http_metadata_server_port "$META" \
      --metrics_port "$METRICS" >"$OUT/logs/$tag-master.log" 2>&1 &
    PIDS+=($!)
    for ((i = 0; i < 2; i++)); do
      MOONCAKE_MASTER=127.0.0.1:$RPC MOONCAKE_TE_META_DATA_SERVER=http://127.0.0.1:$META/metadata \
        MOONCAKE_GLOBAL_SEGMENT_SIZE=$SEGMENT MOONCAKE_LOCAL_BUFFER_SIZE=0 MOONCAKE_PROTOCOL=tcp \
        MOONCAKE_LOCAL_HOSTNAME=127.0.0.1 MOONCAKE_READY_FILE=$OUT/store$i.ready \
        MOONCAKE_SHM_DIR=$SHM MOONCAKE_WARM_AHEAD=$w \
        "$BIN/mooncake_store" --port $((PORT0 + i)) --http_host 127.0.0.1 >"$OUT/logs/$tag-store$i.log" 2>&1 &
      PIDS+=($!)
    done
    for ((i = 0; i < 300; i++)); do [ -f "$OUT/store0.ready" ] && [ -f "$OUT/store1.ready" ] && break; sleep 0.1; done
    [ -f "$OUT/store0.ready" ] && [ -f "$OUT/store1.ready" ] || { echo "stores did not mount ($OUT/logs)" >&2; exit 1; }
    sleep "$IDLE"
    # shellcheck disable=SC2086
    "$VENV/bin/python" "$HERE/fresh_put.py" --master "127.0.0.1:$RPC" \
      --metadata "http://127.0.0.1:$META/metadata" --label "warm_ahead=$w round=$r" ${ARGS:-} \
      | tee -a "$OUT/results.jsonl"
    stop_all
  done
done
echo "results in $OUT/results.jsonl" >&2
