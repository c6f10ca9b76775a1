#!/usr/bin/env bash
# What TLS on the data port costs (docs/security.md, "TLS"): a master and one store
# on loopback, the load driver (benches/compare/kvbench.py) as a pure client forced
# onto the data port (MOONCAKE_DISABLE_SHM=1), with and without MOONCAKE_TRANSFER_TLS=1,
# runs alternated. The master serves TLS in both settings (the data port's TLS needs
# the MOONCAKE_TLS_* files, which also put the client's master calls on TLS), so the
# two columns differ only in the data port.
#
#   benches/security/data_tls.sh                  # 3 runs of each
#   RUNS=5 PHASE=4 benches/security/data_tls.sh
#   python3 benches/compare/summarize.py target/data-tls/<time>/results.jsonl
#
# Needs the release binaries (cargo build --release -p mooncake-master -p mooncake-store)
# and our wheel in VENV (pip install crates/mooncake-py). Every process is stopped by PID.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${BIN:-$ROOT/target/release}
VENV=${VENV:-$ROOT/target/venv}
RUNS=${RUNS:-3}
PHASE=${PHASE:-3}
SEGMENT=${SEGMENT:-2gb}
OUT=${OUT:-$ROOT/target/data-tls/$(date +%Y%m%d-%H%M%S)}
RPC=${RPC:-50251} META=${META:-18380} METRICS=${METRICS:-19303} STORE_PORT=${STORE_PORT:-18481}
PIDS=()
mkdir -p "$OUT/logs"
say() { echo "[data-tls $(date +%T)] $*" >&2; }

stop_all() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -TERM "${PIDS[$i]}" 2>/dev/null || true; done
  sleep 1
  for i in "${PIDS[@]:-}"; do [ -n "$i" ] && kill -KILL "$i" 2>/dev/null || true; done
  PIDS=()
}
trap stop_all EXIT

wait_tcp() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$OUT/key.pem" -out "$OUT/cert.pem" -days 2 \
  -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null
export MOONCAKE_TLS_CA_FILE=$OUT/cert.pem MOONCAKE_TLS_CERT_FILE=$OUT/cert.pem MOONCAKE_TLS_KEY_FILE=$OUT/key.pem

run_one() { # tls(0|1) run
  local tls=$1 tag=tls$1-$2
  "$BIN/mooncake_master" --rpc_address 127.0.0.1 --rpc_port "$RPC" --enable_http_metadata_server=true \
    --http_metadata_server_host 127.0.0.1 --http_metadata_server_port "$META" --metrics_port "$METRICS" \
    --tls_cert_file "$OUT/cert.pem" --tls_key_file "$OUT/key.pem" >"$OUT/logs/$tag-master.log" 2>&1 &
  PIDS+=($!)
  wait_tcp "$RPC" 30 || { say "master did not start"; return 1; }
  MOONCAKE_TRANSFER_TLS=$tls MOONCAKE_MASTER=127.0.0.1:$RPC \
    MOONCAKE_TE_META_DATA_SERVER=https://127.0.0.1:$META/metadata \
    MOONCAKE_GLOBAL_SEGMENT_SIZE=$SEGMENT MOONCAKE_LOCAL_BUFFER_SIZE=0 MOONCAKE_PROTOCOL=tcp \
    MOONCAKE_LOCAL_HOSTNAME=127.0.0.1 MOONCAKE_READY_FILE=$OUT/$tag.ready \
    "$BIN/mooncake_store" --port "$STORE_PORT" --http_host 127.0.0.1 >"$OUT/logs/$tag-store.log" 2>&1 &
  PIDS+=($!)
  for ((w = 0; w < 600; w++)); do [ -f "$OUT/$tag.ready" ] && break; sleep 0.1; done
  [ -f "$OUT/$tag.ready" ] || { say "store did not mount"; return 1; }
  MOONCAKE_TRANSFER_TLS=$tls MOONCAKE_DISABLE_SHM=1 "$VENV/bin/python" "$ROOT/benches/compare/kvbench.py" \
    --impl "tls$tls" --master "127.0.0.1:$RPC" --metadata "https://127.0.0.1:$META/metadata" \
    --workloads single,batch --sizes 4k --phase-seconds "$PHASE" --budget "${BUDGET:-1gb}" 2>"$OUT/logs/$tag-driver.log" \
    | python3 -c 'import json,sys
for line in sys.stdin:
    try: o = json.loads(line)
    except ValueError: continue
    o["run"] = int(sys.argv[1]); print(json.dumps(o), flush=True)' "$2" | tee -a "$OUT/results.jsonl" >&2
  stop_all
}

for ((run = 1; run <= RUNS; run++)); do
  for tls in 0 1; do
    say "run $run: MOONCAKE_TRANSFER_TLS=$tls"
    run_one "$tls" "$run" || stop_all
  done
done
say "results in $OUT/results.jsonl"
