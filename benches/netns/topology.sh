#!/usr/bin/env bash
# A cross-host topology on one machine: every role in its own network namespace, each
# joined by a veth pair to one switch (in its own namespace). The switch is the kernel's
# bridge; with --delay it is `netns_switch` (benches/src/bin), a user-space switch that
# holds each frame for the delay, because kernels without the netem qdisc (this one:
# CONFIG_NET_SCH_NETEM unset) cannot delay packets in tc. DELAY_MODE=netem uses netem on
# every host's link instead where the kernel has it. --rate is `tc tbf` on every host.
#
#   topology.sh up [--stores N] [--delay 50us] [--rate 10gbit]
#   topology.sh down
#   topology.sh exec HOST command...       # HOST: master, store1..N, client
#   topology.sh addr HOST                  # the host's address
#
# Addresses: master 10.77.0.1, storeK 10.77.0.(10+K), client 10.77.0.100 (/24). Nothing
# leaves the namespaces: the bridge has no uplink and the root namespace has no address
# on it. A "hop" is one host-to-host crossing: the delay is applied once on the sender's
# egress, so a round trip between two hosts costs 2 × delay plus the kernel's own time.
# Needs root (ip netns, tc). NETNS_PREFIX (default mcx) keeps parallel topologies apart.
set -euo pipefail
P=${NETNS_PREFIX:-mcx}
NET=10.77.0

hosts() { # the namespaces that exist for this prefix, switch excluded
  ip netns list | awk '{print $1}' | grep "^$P-" | grep -v "^$P-sw$" | sed "s/^$P-//" || true
}

addr() {
  case $1 in
    master) echo "$NET.1" ;;
    client) echo "$NET.100" ;;
    store[0-9]*) echo "$NET.$((10 + ${1#store}))" ;;
    *) echo "topology: unknown host '$1' (master, storeN, client)" >&2; return 2 ;;
  esac
}

down() {
  local h
  if [ -s "$PIDFILE" ]; then kill "$(cat "$PIDFILE")" 2>/dev/null || true; rm -f "$PIDFILE"; fi
  for h in $(hosts); do ip netns del "$P-$h" 2>/dev/null || true; done
  ip netns del "$P-sw" 2>/dev/null || true
}

BIN=${BIN:-$(cd "$(dirname "$0")/../.." && pwd)/target/release}
PIDFILE=/run/$P-switch.pid

up() {
  local stores=2 delay=0us rate=""
  while [ $# -gt 0 ]; do
    case $1 in
      --stores) stores=$2; shift 2 ;;
      --delay) delay=$2; shift 2 ;;
      --rate) rate=$2; shift 2 ;;
      *) echo "topology up: unknown option '$1' (--stores N, --delay D, --rate R)" >&2; return 2 ;;
    esac
  done
  [[ $stores =~ ^[0-9]+$ ]] && [ "$stores" -ge 1 ] && [ "$stores" -le 80 ] \
    || { echo "topology up: --stores must be 1..80, got '$stores'" >&2; return 2; }
  [[ $delay =~ ^([0-9]+)us$ ]] || { echo "topology up: --delay must be microseconds like 50us, got '$delay'" >&2; return 2; }
  local micros=${BASH_REMATCH[1]} mode=bridge
  if [ "$micros" -gt 0 ]; then mode=${DELAY_MODE:-switch}; fi
  case $mode in bridge|switch|netem) ;; *) echo "topology up: DELAY_MODE must be switch or netem" >&2; return 2 ;; esac
  if [ "$mode" = switch ] && [ ! -x "$BIN/netns_switch" ]; then
    echo "topology up: $BIN/netns_switch is missing (cargo build --release -p mooncake-benches)" >&2; return 2
  fi
  down
  ip netns add "$P-sw"
  ip -n "$P-sw" link set lo up
  [ "$mode" = switch ] || { ip -n "$P-sw" link add br0 type bridge; ip -n "$P-sw" link set br0 up; }
  local h i list=(master client) ports=()
  for ((i = 1; i <= stores; i++)); do list+=("store$i"); done
  for h in "${list[@]}"; do
    local ns=$P-$h port="p-$h"
    ip netns add "$ns"
    ip link add eth0 netns "$ns" type veth peer name "$port" netns "$P-sw"
    if [ "$mode" = switch ]; then ip -n "$P-sw" link set "$port" up; else ip -n "$P-sw" link set "$port" master br0 up; fi
    ports+=("$port")
    ip -n "$ns" addr add "$(addr "$h")/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    if [ "$mode" = netem ]; then
      # limit: enough queue for a full window at the delay (the default, 1000 packets,
      # drops bulk transfers at tens of Gbit/s and looks like a slow store).
      # shellcheck disable=SC2086
      ip netns exec "$ns" tc qdisc add dev eth0 root netem delay "$delay" ${rate:+rate $rate} limit 200000
    elif [ -n "$rate" ]; then
      # burst: at least one 64 KiB segmentation-offload frame, or nothing passes.
      ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate "$rate" burst 1mb latency 20ms
    fi
  done
  if [ "$mode" = switch ]; then
    ip netns exec "$P-sw" "$BIN/netns_switch" --delay-us "$micros" "${ports[@]}" </dev/null >/run/$P-switch.log 2>&1 &
    echo $! >"$PIDFILE"
    disown
    sleep 0.3
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { echo "topology up: netns_switch did not start:" >&2; cat /run/$P-switch.log >&2; return 1; }
  fi
  echo "topology $P: master $(addr master), client $(addr client), $stores stores; delay $delay per hop ($mode)${rate:+, rate $rate}"
}

case ${1:-} in
  up) shift; up "$@" ;;
  down) down ;;
  exec) shift; h=${1:?host}; shift; exec ip netns exec "$P-$h" "$@" ;;
  addr) addr "${2:?host}" ;;
  *) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
