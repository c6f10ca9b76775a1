#!/usr/bin/env bash
# What authentication costs (docs/security.md, "What authentication costs"): a local
# cluster (master + one store, loopback) started twice per round, without and with
# --auth_token_file, the same workloads run against each, runs alternated, then a
# side-by-side table of the medians and their ratio.
#
# Paths: "tcp" forces every byte through the store's data port (MOONCAKE_DISABLE_SHM=1,
# where the data-port handshake applies); "shm" is the default same-host path (the
# client maps the store's segment and copies with memcpy; only the master calls are
# authenticated there).
#
# Drivers (DRIVERS, space-separated):
#   kvbench  benches/compare/kvbench.py with our wheel: 4 KiB put and get (one at a
#            time, ops/s) and batch_put_from / batch_get_into of 32 x 512 KiB (GB/s)
#   kv_ops   target/release/kv_ops (the Rust client): 4 KiB put and get, put_batch /
#            get_batch of 32 x 512 KiB; also the CPU time per operation of the client,
#            master and store together ("<workload> cpu" rows), which a loaded host
#            disturbs far less than throughput
#
# With a token file, the store proves the cluster token and the client the token of
# tenant CLIENT_TENANT (default alpha: its keys are namespaced at the master, the most
# work authentication adds per call; CLIENT_TENANT=cluster measures the cluster token).
#
#   benches/security/auth_cost.sh                   # 3 rounds, both paths, both drivers
#   RUNS=5 PHASE=4 PATHS=tcp DRIVERS=kv_ops benches/security/auth_cost.sh
#   benches/security/auth_cost.sh --summarize target/auth-cost/<time>/results.jsonl ...
#
# Needs the release binaries (cargo build --release --workspace --bins) and, for
# kvbench, our wheel in VENV (pip install crates/mooncake-py). Every process is
# stopped by its PID; the segment directory is removed at the end.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

summarize() {
  python3 - "$@" <<'PY'
import json, statistics, sys
from collections import defaultdict
runs = defaultdict(list)   # (driver, path, workload, auth) -> [value]
loads = []
for path in sys.argv[1:]:
    for line in open(path):
        try:
            o = json.loads(line)
        except ValueError:
            continue
        if "load" in o:
            loads.append(o["load"])
        if "value" in o:
            runs[(o["driver"], o["path"], o["workload"], o["auth"])].append(o["value"])
if not runs:
    sys.exit("auth_cost: no results")
v_big = lambda w: False
units = {"put_4k": "ops/s", "get_4k": "ops/s"}
units.update({w: "CPU µs/op" for (_, _, w, _) in runs if w.endswith(" cpu")})
print("| driver | path | workload | unit | no token (runs) | token (runs) | median ratio |")
print("|---|---|---|---|---|---|---|")
keys = sorted({k[:3] for k in runs})
for d, p, w in keys:
    off, on = runs.get((d, p, w, "off"), []), runs.get((d, p, w, "on"), [])
    fmt = (lambda v: f"{v:,.0f}") if units.get(w) == "ops/s" else (lambda v: f"{v:.2f}") if w not in units or v_big(w) else (lambda v: f"{v:.1f}")
    cell = lambda vs: (", ".join(fmt(v) for v in vs) + f" (median {fmt(statistics.median(vs))})") if vs else "-"
    ratio = f"{statistics.median(on) / statistics.median(off):.3f}" if off and on and statistics.median(off) else "-"
    print(f"| {d} | {p} | {w} | {units.get(w, 'GB/s')} | {cell(off)} | {cell(on)} | {ratio} |")
proofs = defaultdict(lambda: [0, 0])
for path in sys.argv[1:]:
    for line in open(path):
        try:
            o = json.loads(line)
        except ValueError:
            continue
        if "verify_proofs" in o and o["auth"] == "on":
            proofs[o["path"]][0] += o["verify_proofs"]
            proofs[o["path"]][1] += o["master_requests"]
for p, (v, t) in sorted(proofs.items()):
    print(f"\npath {p}, with a token: {v} data connections proved to the store, {t} master calls")
if loads:
    print(f"\nload average (1 min) at the runs' starts: {min(loads):.1f} to {max(loads):.1f}")
PY
}

if [ "${1:-}" = "--summarize" ]; then
  shift
  summarize "$@"
  exit
fi

BIN=${BIN:-$ROOT/target/release}
VENV=${VENV:-$ROOT/target/venv}
RUNS=${RUNS:-3}
PHASE=${PHASE:-3}
PATHS=${PATHS:-tcp shm}
DRIVERS=${DRIVERS:-kvbench kv_ops}
CLIENT_TENANT=${CLIENT_TENANT:-alpha}
SEGMENT=${SEGMENT:-2gb}
OUT=${OUT:-$ROOT/target/auth-cost/$(date +%Y%m%d-%H%M%S)}
RPC=${RPC:-50361} META=${META:-18390} METRICS=${METRICS:-19313} STORE_PORT=${STORE_PORT:-18491}
for b in mooncake_master mooncake_store; do
  [ -x "$BIN/$b" ] || { echo "auth_cost: $BIN/$b is missing (cargo build --release --workspace --bins)" >&2; exit 2; }
done
case " $DRIVERS " in *" kv_ops "*)
  [ -x "$BIN/kv_ops" ] || { echo "auth_cost: $BIN/kv_ops is missing (cargo build --release -p mooncake-benches)" >&2; exit 2; } ;;
esac
case " $DRIVERS " in *" kvbench "*)
  "$VENV/bin/python" -c "import mooncake.store" 2>/dev/null \
    || { echo "auth_cost: no mooncake wheel in $VENV (pip install crates/mooncake-py), or set DRIVERS=kv_ops" >&2; exit 2; } ;;
esac
SHM=/dev/shm/mc-auth-cost-$$
PIDS=()
mkdir -p "$OUT/logs" "$SHM"
say() { echo "[auth-cost $(date +%T)] $*" >&2; }

# Newest first (the store leaves before its master), each given 5 s to exit.
stop_all() {
  local i p
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    p=${PIDS[$i]}
    kill -TERM "$p" 2>/dev/null || continue
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  PIDS=()
}
trap 'stop_all; rm -rf "$SHM"' EXIT

wait_tcp() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

printf 'cluster:tok-auth-cost-cluster-0123456789\nalpha:tok-auth-cost-alpha-0123456789\n' >"$OUT/tokens"
printf 'tok-auth-cost-cluster-0123456789\n' >"$OUT/cluster.token"
if [ "$CLIENT_TENANT" = cluster ]; then
  cp "$OUT/cluster.token" "$OUT/client.token"
else
  printf 'tok-auth-cost-alpha-0123456789\n' >"$OUT/client.token"
fi

# One JSON line per measurement: {"driver","path","workload","auth","run","value"}.
record() { # driver path auth run
  python3 -c '
import json, sys
d, p, a, r = sys.argv[1:5]
for line in sys.stdin:
    try: o = json.loads(line)
    except ValueError: continue
    if d == "kvbench":
        w = {"put": "put_4k", "get": "get_4k"}.get(o.get("workload"), o.get("workload"))
        if w in ("put_4k", "get_4k"): v = o.get("ops_per_s")
        elif w in ("batch_put_from", "batch_get_into"): v = o.get("gb_per_s")
        else: continue
        if o.get("errors"): print("auth-cost:", d, w, o.get("errors"), "errors", file=sys.stderr)
    else:
        w = o.get("phase")
        if w in ("put_4k", "get_4k"): v = o.get("ops_per_s")
        else: v = o.get("mib_per_s", 0) * (1 << 20) / 1e9
        if "client_cpu_us" in o:
            cpu = o["client_cpu_us"] + o["server_cpu_us"]
            print(json.dumps({"driver": d, "path": p, "workload": w + " cpu", "auth": a, "run": int(r), "value": cpu}), flush=True)
    print(json.dumps({"driver": d, "path": p, "workload": w, "auth": a, "run": int(r), "value": v}), flush=True)
' "$@"
}

run_one() { # path auth(off|on) run
  local path=$1 auth=$2 run=$3 tag=$1-$2-$3 load
  local master_auth=() store_env=() client_env=()
  if [ "$auth" = on ]; then
    master_auth=(--auth_token_file="$OUT/tokens")
    store_env=(MOONCAKE_AUTH_TOKEN_FILE="$OUT/cluster.token")
    client_env=(MOONCAKE_AUTH_TOKEN_FILE="$OUT/client.token")
  fi
  [ "$path" = tcp ] && client_env+=(MOONCAKE_DISABLE_SHM=1)
  # A fresh segment file per run: every run faults in its memory alike.
  mkdir -p "$SHM/$tag"
  load=$(cut -d' ' -f1 /proc/loadavg)
  echo "{\"run\": $run, \"path\": \"$path\", \"auth\": \"$auth\", \"load\": $load}" >>"$OUT/results.jsonl"
  "$BIN/mooncake_master" --rpc_address 127.0.0.1 --rpc_port "$RPC" --enable_http_metadata_server=true \
    --http_metadata_server_host 127.0.0.1 --http_metadata_server_port "$META" --metrics_port "$METRICS" \
    "${master_auth[@]}" >"$OUT/logs/$tag-master.log" 2>&1 &
  PIDS+=($!)
  wait_tcp "$RPC" 30 || { say "master did not start"; return 1; }
  env "${store_env[@]}" MOONCAKE_MASTER=127.0.0.1:$RPC \
    MOONCAKE_TE_META_DATA_SERVER=http://127.0.0.1:$META/metadata \
    MOONCAKE_GLOBAL_SEGMENT_SIZE=$SEGMENT MOONCAKE_LOCAL_BUFFER_SIZE=0 MOONCAKE_PROTOCOL=tcp \
    MOONCAKE_LOCAL_HOSTNAME=127.0.0.1 MOONCAKE_READY_FILE="$OUT/$tag.ready" MOONCAKE_SHM_DIR="$SHM/$tag" \
    RUST_LOG=info,mooncake_transfer::tcp::server=debug \
    "$BIN/mooncake_store" --port "$STORE_PORT" --http_host 127.0.0.1 >"$OUT/logs/$tag-store.log" 2>&1 &
  PIDS+=($!)
  for ((w = 0; w < 600; w++)); do [ -f "$OUT/$tag.ready" ] && break; sleep 0.1; done
  [ -f "$OUT/$tag.ready" ] || { say "store did not mount"; return 1; }
  for d in $DRIVERS; do
    case $d in
      kvbench)
        env "${client_env[@]}" MOONCAKE_SHM_DIR="$SHM" "$VENV/bin/python" "$ROOT/benches/compare/kvbench.py" \
          --impl "$tag" --master "127.0.0.1:$RPC" --metadata "http://127.0.0.1:$META/metadata" \
          --workloads single,batch --sizes 4k --phase-seconds "$PHASE" --budget "${BUDGET:-1gb}" \
          2>"$OUT/logs/$tag-kvbench.log" | record kvbench "$path" "$auth" "$run" | tee -a "$OUT/results.jsonl" >&2
        ;;
      kv_ops)
        env "${client_env[@]}" MOONCAKE_SHM_DIR="$SHM" KV_OPS_CPU_PIDS="${PIDS[0]},${PIDS[1]}" "$BIN/kv_ops" "127.0.0.1:$RPC" \
          "http://127.0.0.1:$META/metadata" "$PHASE" 2>"$OUT/logs/$tag-kv_ops.log" \
          | record kv_ops "$path" "$auth" "$run" | tee -a "$OUT/results.jsonl" >&2
        ;;
      *) say "unknown driver $d"; return 1 ;;
    esac
  done
  # How many data connections the store authenticated (each one proof, checked with
  # one master call) against the master calls made: per connection, not per operation.
  local proved
  proved=$(grep -c "data connection authenticated" "$OUT/logs/$tag-store.log" || true)
  curl -s "http://127.0.0.1:$METRICS/metrics" | python3 -c '
import json, sys
total = sum(int(float(l.split()[-1])) for l in sys.stdin if l.startswith("master_requests_total{"))
print(json.dumps({"run": int(sys.argv[1]), "path": sys.argv[2], "auth": sys.argv[3],
                  "master_requests": total, "verify_proofs": int(sys.argv[4] or 0)}))' \
    "$run" "$path" "$auth" "$proved" >>"$OUT/results.jsonl" || true
  stop_all
  rm -rf "${SHM:?}/$tag"
}

for ((run = 1; run <= RUNS; run++)); do
  for path in $PATHS; do
    # Alternate which setting goes first, so a drift in the host's load does not
    # always favour the same one.
    order="off on"
    [ $((run % 2)) -eq 0 ] && order="on off"
    for auth in $order; do
      say "run $run: path $path, auth $auth (load $(cut -d' ' -f1-3 /proc/loadavg))"
      run_one "$path" "$auth" "$run" || { stop_all; rm -rf "${SHM:?}/$path-$auth-$run"; }
    done
  done
done
say "results in $OUT/results.jsonl"
summarize "$OUT/results.jsonl"
