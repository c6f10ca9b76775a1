# Fresh client process: setup, then N x (allocate 1 MiB, put); prints latency stats.
# usage: python first_puts.py MASTER_HOST:PORT [N]   (docs/benchmarks/client.md)
import os, sys, time
from mooncake.store import MooncakeDistributedStore
master = sys.argv[1]; n = int(sys.argv[2]) if len(sys.argv) > 2 else 64
s = MooncakeDistributedStore()
t0 = time.perf_counter()
rc = s.setup("127.0.0.1", "P2PHANDSHAKE", 0, 64 << 20, "tcp", "", master)
assert rc == 0, rc
t1 = time.perf_counter()
lat = []
tag = os.getpid()
for i in range(n):
    a = time.perf_counter()
    v = os.urandom(16) * (1 << 16)  # fresh 1 MiB allocation each time (mmap'd by malloc)
    r = s.put(f"fp-{tag}-{i}", v)
    lat.append(time.perf_counter() - a)
    assert r == 0, r
t2 = time.perf_counter()
lat_ms = sorted(x * 1e3 for x in lat)
print(f"setup {1e3*(t1-t0):.0f} ms; {n} x 1MiB alloc+put: total {1e3*(t2-t1):.0f} ms, "
      f"first {lat[0]*1e3:.1f} ms, p50 {lat_ms[n//2]:.2f} ms, max {lat_ms[-1]:.1f} ms")
s.remove_by_regex(f"^fp-{tag}-", True)
s.close()
