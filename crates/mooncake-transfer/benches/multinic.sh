#!/usr/bin/env bash
# Two-link striping benchmark: two network namespaces joined by two veth pairs, both
# links shaped by tc to the same rate; compares one large transfer striped over both
# links with the same transfer on one link. Needs root, ip, tc and a release build of
# transfer_bench. Namespaces are removed on exit.
#
#   crates/mooncake-transfer/benches/multinic.sh [RATE=1gbit] [SECONDS=4] [OP=write]
set -euo pipefail
RATE=${1:-1gbit}; SECS=${2:-4}; OP=${3:-write}
TB=${TB:-$(cd "$(dirname "$0")/../../.." && pwd)/target/release/transfer_bench}
[ -x "$TB" ] || { echo "build first: cargo build --release -p mooncake-transfer"; exit 1; }
A=mcbench-a-$$; B=mcbench-b-$$; TPID=
cleanup() { [ -n "$TPID" ] && kill "$TPID" 2>/dev/null; ip netns del $A 2>/dev/null; ip netns del $B 2>/dev/null; true; }
trap cleanup EXIT
ip netns add $A; ip netns add $B
ip -n $A link set lo up; ip -n $B link set lo up
for i in 0 1; do
  ip link add mba$i-$$ netns $A type veth peer name mbb$i-$$ netns $B
  ip -n $A addr add 10.202.$((i+1)).1/24 dev mba$i-$$; ip -n $B addr add 10.202.$((i+1)).2/24 dev mbb$i-$$
  ip -n $A link set mba$i-$$ up; ip -n $B link set mbb$i-$$ up
  # shape both directions of both links to the same rate
  ip netns exec $A tc qdisc add dev mba$i-$$ root tbf rate $RATE burst 256kb latency 100ms
  ip netns exec $B tc qdisc add dev mbb$i-$$ root tbf rate $RATE burst 256kb latency 100ms
done
out=$(mktemp); ip netns exec $B "$TB" --mode target --listen 0.0.0.0:0 --segment-size 512mb >"$out" 2>&1 & TPID=$!
for _ in $(seq 100); do grep -q endpoints= "$out" && break; sleep 0.1; done
ep=$(sed -n 's/.*endpoints=//p' "$out" | tr ',' '\n' | grep '^10.202.1.2:')
run() { ip netns exec $A "$TB" --mode initiator --target "$ep" --devices "$1" --op $OP --block-size 64mb --batch 1 --duration "$SECS" | tail -1; }
one=$(run 10.202.1.1); two=$(run 10.202.1.1,10.202.2.1)
g() { python3 -c "import json,sys;print(json.loads(sys.argv[1])['gb_per_s'])" "$1"; }
echo "single link: $one"
echo "both links:  $two"
python3 -c "import sys;a,b=float(sys.argv[1]),float(sys.argv[2]);print(f'rate={sys.argv[3]} op={sys.argv[4]} single={a:.3f} GB/s striped={b:.3f} GB/s ratio={b/a:.2f}x')" "$(g "$one")" "$(g "$two")" "$RATE" "$OP"
