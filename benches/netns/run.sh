#!/usr/bin/env bash
# The cross-host benchmark: master, stores and the client each in its own network
# namespace (topology.sh), for each link profile and each implementation, one after
# the other on the same links:
#   1. the link's limits, measured in the same run: one TCP round trip of 4 KiB
#      (tcp_rtt, native) and the bulk rate (iperf3, 2 streams), client -> store1;
#   2. the load driver in the client namespace against that implementation.
#
#   benches/netns/run.sh                       # every profile, ours and the reference
#   PROFILES="same-rack" IMPLS=ours benches/netns/run.sh
#
# Profiles (one-way delay per host-to-host hop): bridge (0), same-rack (50us),
# cross-rack (200us); RATE=10gbit adds a rate limit on every host. Results go to
# OUT (default target/netns/<time>/): results.jsonl (one line per driver result, with
# "profile" and "impl" added) and limits.jsonl; benches/netns/summary.py makes the table
# and the plot. Needs root, iperf3, the release build (cargo build --release
# --workspace --bins), our wheel in VENV_OURS and the reference wheel in VENV_REF
# (benches/compare/setup_ref.sh installs it).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${BIN:-$ROOT/target/release}
export BIN
T=$HERE/topology.sh
PROFILES=${PROFILES:-"bridge same-rack cross-rack"}
IMPLS=${IMPLS:-"ours ref"}
NSTORES=${NSTORES:-2}
STORE_SEGMENT=${STORE_SEGMENT:-2gb}
VENV_OURS=${VENV_OURS:-$ROOT/target/venv}
VENV_REF=${VENV_REF:-$ROOT/target/venv-ref}
DRIVER=${DRIVER:-$ROOT/benches/compare/kvbench.py}
OUT=${OUT:-$ROOT/target/netns/$(date +%Y%m%d-%H%M%S)}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-600}
mkdir -p "$OUT/logs"
# Our stores keep their segment files when stopped (for a restart); these runs have
# none, so the files go in a directory removed at the end.
SHM=/dev/shm/mooncake-netns-$$
mkdir -p "$SHM"
M=$($T addr master); C=$($T addr client)
RPC=50051 META=8080 METRICS=9003
PIDS=()

say() { echo "[netns $(date +%T)] $*" >&2; }
need() { [ -e "$1" ] || { echo "netns run: $1 is missing ($2)" >&2; exit 2; }; }
need "$BIN/mooncake_master" "cargo build --release --workspace --bins"
need "$BIN/tcp_rtt" "cargo build --release -p mooncake-benches"
need "$DRIVER" "the load driver"
command -v iperf3 >/dev/null || { echo "netns run: iperf3 is missing (apt-get install iperf3)" >&2; exit 2; }
for impl in $IMPLS; do
  case $impl in
    ours) need "$VENV_OURS/bin/python" "a venv with our wheel: pip install crates/mooncake-py" ;;
    ref) need "$VENV_REF/bin/mooncake_master" "the reference wheel: benches/compare/setup_ref.sh" ;;
    *) echo "netns run: IMPLS takes ours and ref, got '$impl'" >&2; exit 2 ;;
  esac
done

stop_all() {
  local p
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
  sleep 1
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true; done
  PIDS=()
}
trap 'stop_all; $T down; rm -rf "$SHM"' EXIT

wait_tcp() { # host port seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    $T exec client bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

profile_args() {
  case $1 in
    bridge) echo "--delay 0us" ;;
    same-rack) echo "--delay 50us" ;;
    cross-rack) echo "--delay 200us" ;;
    *) echo "netns run: unknown profile '$1' (bridge, same-rack, cross-rack)" >&2; return 2 ;;
  esac
}

limits() { # profile
  $T exec store1 "$BIN/tcp_rtt" serve "$($T addr store1):7001" 2>/dev/null &
  PIDS+=($!)
  $T exec store1 iperf3 -s -p 7002 >/dev/null 2>&1 &
  PIDS+=($!)
  wait_tcp "$($T addr store1)" 7001 10 && wait_tcp "$($T addr store1)" 7002 10
  local rtt gbps
  rtt=$($T exec client "$BIN/tcp_rtt" ping "$($T addr store1):7001" 4096 5000)
  gbps=$($T exec client iperf3 -c "$($T addr store1)" -p 7002 -t 4 -P 2 -J \
    | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9, 2))')
  echo "{\"profile\": \"$1\", \"rtt_4k\": $rtt, \"iperf3_gbit_s\": $gbps}" | tee -a "$OUT/limits.jsonl" >&2
  stop_all
}

start_ours() {
  $T exec master "$BIN/mooncake_master" --rpc_address "$M" --rpc_port $RPC \
    --http_metadata_server_host "$M" --http_metadata_server_port $META --metrics_port $METRICS \
    >"$OUT/logs/$1-ours-master.log" 2>&1 &
  PIDS+=($!)
  wait_tcp "$M" $RPC 30 || { say "our master did not start"; return 1; }
  local i
  for ((i = 1; i <= NSTORES; i++)); do
    $T exec "store$i" env MOONCAKE_MASTER="$M:$RPC" MOONCAKE_TE_META_DATA_SERVER="http://$M:$META/metadata" \
      MOONCAKE_GLOBAL_SEGMENT_SIZE="$STORE_SEGMENT" MOONCAKE_LOCAL_BUFFER_SIZE=0 MOONCAKE_PROTOCOL=tcp \
      MOONCAKE_LOCAL_HOSTNAME="$($T addr "store$i")" MOONCAKE_DISABLE_SHM=1 MOONCAKE_SHM_DIR="$SHM" \
      "$BIN/mooncake_store" --port 8081 >"$OUT/logs/$1-ours-store$i.log" 2>&1 &
    PIDS+=($!)
    wait_tcp "$($T addr "store$i")" 8081 60 || { say "our store $i did not start"; return 1; }
  done
}

start_ref() {
  $T exec master "$VENV_REF/bin/mooncake_master" --rpc_address "$M" --rpc_port $RPC \
    --enable_http_metadata_server=true --http_metadata_server_host "$M" \
    --http_metadata_server_port $META --metrics_port $METRICS >"$OUT/logs/$1-ref-master.log" 2>&1 &
  PIDS+=($!)
  wait_tcp "$M" $RPC 30 || { say "reference master did not start"; return 1; }
  local i
  for ((i = 1; i <= NSTORES; i++)); do
    cat >"$OUT/store$i.json" <<EOF
{"local_hostname": "$($T addr "store$i")", "metadata_server": "http://$M:$META/metadata",
 "global_segment_size": "$STORE_SEGMENT", "local_buffer_size": "16mb", "protocol": "tcp",
 "device_name": "", "master_server_address": "$M:$RPC"}
EOF
    $T exec "store$i" "$VENV_REF/bin/python" -m mooncake.mooncake_store_service \
      --config "$OUT/store$i.json" --port 8081 >"$OUT/logs/$1-ref-store$i.log" 2>&1 &
    PIDS+=($!)
    wait_tcp "$($T addr "store$i")" 8081 60 || { say "reference store $i did not start"; return 1; }
  done
}

for profile in $PROFILES; do
  # shellcheck disable=SC2046
  $T up --stores "$NSTORES" $(profile_args "$profile") ${RATE:+--rate $RATE} >&2
  limits "$profile"
  for impl in $IMPLS; do
    say "$profile: $impl"
    "start_$impl" "$profile"
    py=$VENV_OURS/bin/python; [ "$impl" = ref ] && py=$VENV_REF/bin/python
    timeout "$BENCH_TIMEOUT" "$T" exec client env KVB_IMPL="$impl" KVB_MASTER="$M:$RPC" \
      KVB_METADATA="http://$M:$META/metadata" KVB_HOSTNAME="$C" MOONCAKE_DISABLE_SHM=1 \
      "$py" "$DRIVER" 2>"$OUT/logs/$profile-$impl-driver.log" \
      | python3 -c 'import json,sys
for line in sys.stdin:
    try: o = json.loads(line)
    except ValueError: continue
    o["profile"] = sys.argv[1]; print(json.dumps(o), flush=True)' "$profile" | tee -a "$OUT/results.jsonl" >&2 \
      || say "$profile/$impl: the driver failed (see $OUT/logs/$profile-$impl-driver.log)"
    stop_all
  done
  $T down
done
say "results in $OUT (python3 $HERE/summary.py $OUT)"
