#!/usr/bin/env bash
# Container test: the image from docker/build.sh runs the manifest's roles.
# A master and three store containers (host network, loopback ports, the manifest's
# commands and environment with POD_IP/service names mapped to 127.0.0.1) form a
# 3-segment pool; a mooncake_cli container puts and gets replicated objects; `docker kill`
# of a store loses none; `docker stop` of another unmounts its segment promptly.
# Prints the image size and the start-up time (container start -> store mounted).
#
# dockerd is started without a bridge or iptables (loopback only). When no Docker engine
# can run on the machine the test says SKIPPED and exits 0; set
# MOONCAKE_REQUIRE_CONTAINERS=1 to make that a failure.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
LOG=$ROOT/target/containers; mkdir -p "$LOG"
say() { echo "[containers] $*"; }
skip() { if [ "${MOONCAKE_REQUIRE_CONTAINERS:-0}" = 1 ]; then say "FAIL: $*"; exit 1; fi; say "SKIPPED: $*"; exit 0; }
fail() { say "FAIL: $*"; exit 1; }
wait_port() { local i; for ((i=0;i<$2*10;i++)); do (echo >/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }

if ! command -v dockerd >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null 2>&1 || skip "cannot install docker.io"
fi
started=""
if ! docker info >/dev/null 2>&1; then
  dockerd --bridge=none --iptables=false --ip-masq=false >"$LOG/dockerd.log" 2>&1 & started=$!
  for i in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || skip "dockerd does not start here: $(tail -1 "$LOG/dockerd.log")"
fi
cleanup() {
  docker rm -f $(docker ps -aq --filter label=mooncake-test) >/dev/null 2>&1
  [ -n "$started" ] && kill "$started" 2>/dev/null
}
trap cleanup EXIT

say "building the image"
timeout 1500 docker/build.sh >"$LOG/build.log" 2>&1 || fail "docker/build.sh: $(tail -3 "$LOG/build.log")"
size=$(docker image inspect mooncake:local --format '{{.Size}}')

# (Below the kernel's ephemeral range: see the script.)
read -r rpc meta met sp1 sp2 sp3 <<<"$(python3 "$ROOT/scripts/free_ports.py" 6)"
[ -n "$sp3" ] || fail "could not find six free loopback ports"
STORE_PORTS=("$sp1" "$sp2" "$sp3")
# A container that exits at once leaves its reason in its log: show it.
died() { fail "$1: $(docker logs "$2" 2>&1 | tail -3)"; }
RUN() { docker run -d --label mooncake-test --network host "$@"; }
# The manifest's master command, POD_IP -> 127.0.0.1 and its ports -> free ones.
M=$(RUN -e POD_IP=127.0.0.1 -e MOONCAKE_HEALTH_URL=http://127.0.0.1:$met/health mooncake:local sh -c \
  "exec mooncake_master --rpc_address \$POD_IP --rpc_port $rpc --http_metadata_server_host \$POD_IP --http_metadata_server_port $meta --metrics_port $met --client_ttl=2") \
  || fail "master container did not start"
wait_port "$rpc" 30 || died "master container not listening" "$M"
cap() { curl -s "http://127.0.0.1:$met/metrics" | awk '/^master_total_capacity_bytes/ {print int($2)}'; }

S=(); t0=$(date +%s.%N)
for i in 1 2 3; do
  p=${STORE_PORTS[$((i-1))]}
  S+=($(RUN -e POD_IP=127.0.0.1 -e MOONCAKE_MASTER=127.0.0.1:$rpc -e MOONCAKE_TE_META_DATA_SERVER=http://127.0.0.1:$meta/metadata \
    -e MOONCAKE_GLOBAL_SEGMENT_SIZE=128mb -e MOONCAKE_LOCAL_BUFFER_SIZE=4194304 -e MOONCAKE_PROTOCOL=tcp -e MOONCAKE_DEVICE= \
    -e MOONCAKE_LOCAL_HOSTNAME=127.0.0.1 -e MOONCAKE_HEALTH_URL=http://127.0.0.1:$p/health \
    mooncake:local sh -c "exec python -m mooncake.mooncake_store_service --port $p"))
done
for i in $(seq 1 150); do [ "$(cap)" = "$((3*128*1024*1024))" ] && break; sleep 0.1; done
startup=$(python3 -c "import time;print('%.2f' % (time.time()-$t0))")
ok=0; total=0
check() { total=$((total+1)); if eval "$2"; then ok=$((ok+1)); else say "  missing: $1"; fi; }
check "3 store containers mounted" '[ "$(cap)" = "$((3*128*1024*1024))" ]'
CLI() { docker run --rm --label mooncake-test --network host mooncake:local mooncake_cli --master 127.0.0.1:$rpc "$@"; }
# docs/kubernetes.md steps 5 and 6, as `kubectl logs` / `kubectl exec` would run them.
# (grep without -q in these pipelines: -q stops reading at the first match, the writer
# then dies of SIGPIPE, and pipefail turns a match into a failure.)
check "the master's Storage line in its container log" 'docker logs "$M" 2>&1 | grep -E "Storage: .* \| Keys: [0-9]+" >/dev/null'
check "mooncake_cli segments inside the master's container" \
  '[ "$(docker exec "$M" mooncake_cli --master 127.0.0.1:$rpc segments | tail -n +2 | wc -l)" = 3 ]'
check "mooncake_cli stats inside the master's container" \
  'docker exec "$M" mooncake_cli --master 127.0.0.1:$rpc stats | grep -E "^segments: +3$" >/dev/null'
check "put of a stored key is kept (exit 3)" \
  'CLI put dup --value a >/dev/null 2>&1; CLI put dup --value b >/dev/null 2>&1; [ $? = 3 ] && [ "$(CLI get dup 2>/dev/null)" = a ]'
check "curl of the master's /metrics (step 11)" 'curl -s "http://127.0.0.1:$met/metrics" | grep "^master_segment_count 3" >/dev/null'
n=0; for k in $(seq 1 20); do CLI put "c-$k" --value "value-$k" --replicas 2 >/dev/null 2>&1 && n=$((n+1)); done
check "20 replicated puts from a CLI container" '[ $n = 20 ]'
docker kill "${S[0]}" >/dev/null
r=0; for k in $(seq 1 20); do [ "$(CLI get "c-$k" 2>/dev/null)" = "value-$k" ] && r=$((r+1)); done
check "all 20 readable after docker kill of a store" '[ $r = 20 ]'
docker stop -t 10 "${S[1]}" >/dev/null; sleep 1.5
check "docker stop unmounts the segment" '[ "$(cap)" = "$((128*1024*1024))" ]'
say "image mooncake:local $((size/1024/1024)) MiB; 3 store containers started -> mounted in ${startup} s"
say "$ok/$total checks"
[ $ok -eq $total ]
