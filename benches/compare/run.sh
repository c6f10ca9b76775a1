#!/usr/bin/env bash
# Runs the load driver (kvbench.py) or the trace replayer against ours and the reference
# on loopback, the same topology for both: a master with its embedded HTTP metadata
# server, NSTORES stores that only contribute memory, and the driver as a pure client
# (no segment of its own). Each implementation gets a fresh topology per run; every
# process is stopped by PID.
#
#   benches/compare/setup_ref.sh                   # once: the reference wheel in target/venv-ref
#   benches/compare/run.sh                         # kvbench, ours then the reference, 1 run each
#   RUNS=3 IMPLS=ours benches/compare/run.sh
#   DRIVER=trace TRACE=benches/traces/synthetic_trace.jsonl.gz benches/compare/run.sh
#   python3 benches/compare/summarize.py target/compare/<time>/results.jsonl
#
# Needs: the release build (cargo build --release --workspace --bins), our wheel in
# VENV_OURS (pip install crates/mooncake-py), the reference in VENV_REF.
# Knobs: IMPLS ("ours ref"), RUNS (1), NSTORES (2), STORE_SEGMENT (4gb), DRIVER
# (kvbench | trace), TRACE, OUT, and every KVB_* / RT_* setting of the drivers.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${BIN:-$ROOT/target/release}
IMPLS=${IMPLS:-"ours ref"}
RUNS=${RUNS:-1}
NSTORES=${NSTORES:-2}
STORE_SEGMENT=${STORE_SEGMENT:-4gb}
VENV_OURS=${VENV_OURS:-$ROOT/target/venv}
VENV_REF=${VENV_REF:-$ROOT/target/venv-ref}
DRIVER=${DRIVER:-kvbench}
TRACE=${TRACE:-$ROOT/benches/traces/synthetic_trace.jsonl.gz}
OUT=${OUT:-$ROOT/target/compare/$(date +%Y%m%d-%H%M%S)}
RPC=${RPC:-50151} META=${META:-18180} METRICS=${METRICS:-19103} STORE_PORT0=${STORE_PORT0:-18281}
PIDS=()
mkdir -p "$OUT/logs"

say() { echo "[compare $(date +%T)] $*" >&2; }
fail() { echo "compare: $*" >&2; exit 2; }
[ -x "$BIN/mooncake_master" ] || fail "$BIN/mooncake_master is missing (cargo build --release --workspace --bins)"
for impl in $IMPLS; do
  case $impl in
    ours) [ -x "$VENV_OURS/bin/python" ] || fail "no venv with our wheel at $VENV_OURS (pip install crates/mooncake-py)" ;;
    ref) [ -x "$VENV_REF/bin/mooncake_master" ] || fail "no reference wheel at $VENV_REF (benches/compare/setup_ref.sh)" ;;
    *) fail "IMPLS takes ours and ref, got '$impl'" ;;
  esac
done
case $DRIVER in
  kvbench) ;;
  trace) [ -f "$TRACE" ] || fail "no trace at $TRACE (set TRACE)" ;;
  *) fail "DRIVER is kvbench or trace, got '$DRIVER'" ;;
esac

stop_all() {
  local p
  # stores first, the master last (reverse start order)
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -TERM "${PIDS[$i]}" 2>/dev/null || true; done
  sleep 1
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true; done
  PIDS=()
}
# Our stores keep their segment files when stopped (for a restart); these runs have
# none, so the files go in a directory of this run, removed at the end (our clients
# look for same-host segments there too).
SHM_RUN=$(mktemp -d "${TMPDIR_SHM:-/dev/shm}/mc-compare-XXXXXX")
export MOONCAKE_SHM_DIR=$SHM_RUN
trap 'stop_all; rm -rf "$SHM_RUN"' EXIT

wait_tcp() { # port seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

start() { # impl run
  local impl=$1 tag=$1-$2 master i port
  if [ "$impl" = ours ]; then master=$BIN/mooncake_master; else master=$VENV_REF/bin/mooncake_master; fi
  "$master" --rpc_address 127.0.0.1 --rpc_port "$RPC" --enable_http_metadata_server=true \
    --http_metadata_server_host 127.0.0.1 --http_metadata_server_port "$META" \
    --metrics_port "$METRICS" >"$OUT/logs/$tag-master.log" 2>&1 &
  PIDS+=($!)
  wait_tcp "$RPC" 30 || { say "$impl master did not start (see $OUT/logs/$tag-master.log)"; return 1; }
  for ((i = 0; i < NSTORES; i++)); do
    port=$((STORE_PORT0 + i))
    if [ "$impl" = ours ]; then
      MOONCAKE_MASTER=127.0.0.1:$RPC MOONCAKE_TE_META_DATA_SERVER=http://127.0.0.1:$META/metadata \
        MOONCAKE_GLOBAL_SEGMENT_SIZE=$STORE_SEGMENT MOONCAKE_LOCAL_BUFFER_SIZE=0 MOONCAKE_PROTOCOL=tcp \
        MOONCAKE_LOCAL_HOSTNAME=127.0.0.1 MOONCAKE_READY_FILE=$OUT/$tag-store$i.ready \
        "$BIN/mooncake_store" --port "$port" --http_host 127.0.0.1 >"$OUT/logs/$tag-store$i.log" 2>&1 &
      PIDS+=($!)
      for ((w = 0; w < 600; w++)); do [ -f "$OUT/$tag-store$i.ready" ] && break; sleep 0.1; done
      [ -f "$OUT/$tag-store$i.ready" ] || { say "our store $i did not mount"; return 1; }
    else
      cat >"$OUT/$tag-store$i.json" <<JSON
{"local_hostname": "127.0.0.1", "metadata_server": "http://127.0.0.1:$META/metadata",
 "global_segment_size": "$STORE_SEGMENT", "local_buffer_size": "16mb", "protocol": "tcp",
 "device_name": "", "master_server_address": "127.0.0.1:$RPC"}
JSON
      "$VENV_REF/bin/python" -m mooncake.mooncake_store_service --config "$OUT/$tag-store$i.json" \
        --port "$port" >"$OUT/logs/$tag-store$i.log" 2>&1 &
      PIDS+=($!)
      wait_tcp "$port" 60 || { say "reference store $i did not start"; return 1; }
      sleep "${REF_STORE_SETTLE:-3}" # the reference has no ready file: give the mount time
    fi
  done
}

for ((run = 1; run <= RUNS; run++)); do
  for impl in $IMPLS; do
    say "run $run: $impl"
    start "$impl" "$run" || { stop_all; continue; }
    py=$VENV_OURS/bin/python; [ "$impl" = ref ] && py=$VENV_REF/bin/python
    if [ "$DRIVER" = kvbench ]; then
      cmd=("$py" "$HERE/kvbench.py" --impl "$impl" --master "127.0.0.1:$RPC" \
        --metadata "http://127.0.0.1:$META/metadata")
    else
      cmd=("$py" "$HERE/trace_replay.py" "$TRACE" --impl "$impl" --master "127.0.0.1:$RPC" \
        --metadata "http://127.0.0.1:$META/metadata")
    fi
    "${cmd[@]}" 2>"$OUT/logs/$impl-$run-driver.log" \
      | python3 -c 'import json,sys
for line in sys.stdin:
    try: o = json.loads(line)
    except ValueError: continue
    o["run"] = int(sys.argv[1]); print(json.dumps(o), flush=True)' "$run" | tee -a "$OUT/results.jsonl" >&2 \
      || say "run $run/$impl: the driver failed (see $OUT/logs/$impl-$run-driver.log)"
    stop_all
  done
done
say "results in $OUT/results.jsonl (python3 $HERE/summarize.py $OUT/results.jsonl)"
