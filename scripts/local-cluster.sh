#!/usr/bin/env bash
# A local Mooncake cluster on loopback: one master (with the embedded HTTP metadata
# server) and one store daemon, then a demo put/get through mooncake_cli. Prints where
# everything listens and waits; Ctrl-C stops it all.
#
# Usage: scripts/local-cluster.sh [--no-wait] [--segment SIZE] [--rpc-port P]
#        [--metrics-port P] [--metadata-port P] [--store-port P] [--debug]
#   --no-wait   run the demo, then stop everything and exit (used by tests)
#   --segment   store segment size (default 256mb)
#   ports       default: free ports picked at start
#   --debug     use (and build) target/debug instead of target/release
# Environment: MOONCAKE_CLUSTER_DIR (logs and state; default target/local-cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

WAIT=1; SEGMENT=256mb; PROFILE=release
RPC_PORT=""; METRICS_PORT=""; META_PORT=""; STORE_PORT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --no-wait) WAIT=0 ;;
    --segment) SEGMENT=$2; shift ;;
    --rpc-port) RPC_PORT=$2; shift ;;
    --metrics-port) METRICS_PORT=$2; shift ;;
    --metadata-port) META_PORT=$2; shift ;;
    --store-port) STORE_PORT=$2; shift ;;
    --debug) PROFILE=debug ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "local-cluster: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

BIN=$ROOT/target/$PROFILE
need_build=0
for b in mooncake_master mooncake_store mooncake_cli; do [ -x "$BIN/$b" ] || need_build=1; done
if [ $need_build = 1 ]; then
  echo "building ($PROFILE)..."
  flag=--release; [ $PROFILE = debug ] && flag=
  cargo build $flag -p mooncake-master -p mooncake-store -p mooncake-cli
fi

wait_port() { local i; for ((i=0;i<$2*10;i++)); do (echo >/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }
# (Below the kernel's ephemeral range: see the script.)
read -r P1 P2 P3 P4 <<<"$(python3 "$ROOT/scripts/free_ports.py" 4)"
RPC_PORT=${RPC_PORT:-$P1}; METRICS_PORT=${METRICS_PORT:-$P2}
META_PORT=${META_PORT:-$P3}; STORE_PORT=${STORE_PORT:-$P4}

DIR=${MOONCAKE_CLUSTER_DIR:-$ROOT/target/local-cluster}
mkdir -p "$DIR"
# The store's segment file: a store keeps it when stopped, for its next run (a restart
# in place gets its objects back). This demo cluster has no next run, so its file goes
# in a directory of its own that stop() removes, or the memory would stay in /dev/shm.
SHM_OWN=""
if [ -z "${MOONCAKE_SHM_DIR:-}" ]; then
  SHM_BASE=/dev/shm; [ -d "$SHM_BASE" ] || SHM_BASE=$DIR
  SHM_OWN=$SHM_BASE/mooncake-local-cluster-$$; mkdir -p "$SHM_OWN"
fi
PIDS=()
stop() {
  trap - INT TERM EXIT
  echo; echo "stopping..."
  # Store first (it leaves the master on SIGTERM), then the master.
  for ((i=${#PIDS[@]}-1; i>=0; i--)); do kill -TERM "${PIDS[$i]}" 2>/dev/null || true; wait "${PIDS[$i]}" 2>/dev/null || true; done
  [ -z "$SHM_OWN" ] || rm -rf "$SHM_OWN"
}
trap stop EXIT
# Ctrl-C is a request to stop, and stopping cleanly is success.
trap 'exit 0' INT TERM

setsid "$BIN/mooncake_master" --rpc_address 127.0.0.1 --rpc_port "$RPC_PORT" \
  --metrics_host 127.0.0.1 --metrics_port "$METRICS_PORT" \
  --enable_http_metadata_server --http_metadata_server_host 127.0.0.1 \
  --http_metadata_server_port "$META_PORT" >"$DIR/master.log" 2>&1 &
# (Each daemon runs in its own session, below too: a terminal's Ctrl-C reaches only
# this script, which stops the store before the master, so the store's unmount finds
# its master.)
PIDS+=($!)
wait_port "$RPC_PORT" 20 || { echo "master did not start; see $DIR/master.log" >&2; tail -5 "$DIR/master.log" >&2; exit 1; }

READY=$DIR/store.ready; rm -f "$READY"
MOONCAKE_MASTER=127.0.0.1:$RPC_PORT \
MOONCAKE_TE_META_DATA_SERVER=http://127.0.0.1:$META_PORT/metadata \
MOONCAKE_GLOBAL_SEGMENT_SIZE=$SEGMENT MOONCAKE_LOCAL_BUFFER_SIZE=0 MOONCAKE_PROTOCOL=tcp \
MOONCAKE_LOCAL_HOSTNAME=127.0.0.1 MOONCAKE_READY_FILE=$READY MOONCAKE_SHM_DIR=${MOONCAKE_SHM_DIR:-$SHM_OWN} \
  setsid "$BIN/mooncake_store" --port "$STORE_PORT" --http_host 127.0.0.1 >"$DIR/store.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do [ -f "$READY" ] && break; sleep 0.1; done
[ -f "$READY" ] || { echo "store did not mount; see $DIR/store.log" >&2; tail -5 "$DIR/store.log" >&2; exit 1; }

CLI=("$BIN/mooncake_cli" --master "127.0.0.1:$RPC_PORT")
echo "demo: put/get through mooncake_cli"
"${CLI[@]}" put demo-key --value "hello from mooncake-rs"
got=$("${CLI[@]}" get demo-key)
echo "  get demo-key -> $got"
[ "$got" = "hello from mooncake-rs" ] || { echo "demo get returned the wrong value" >&2; exit 1; }
"${CLI[@]}" segments

cat <<INFO

Mooncake cluster is up (logs in $DIR):
  master RPC       127.0.0.1:$RPC_PORT      (MOONCAKE_MASTER=127.0.0.1:$RPC_PORT)
  admin port       http://127.0.0.1:$METRICS_PORT/metrics  (/health, /get_all_segments, /query_key?key=)
  metadata server  http://127.0.0.1:$META_PORT/metadata
  store REST       http://127.0.0.1:$STORE_PORT/health    (/api/put, /api/get/{key}, ...)
  CLI              ${CLI[*]} stats
INFO

if [ $WAIT = 1 ]; then
  echo "Ctrl-C stops everything."
  while :; do
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null || { echo "process $p exited; stopping"; exit 1; }; done
    sleep 1
  done
fi
echo "demo done (--no-wait)"
