"""Batched read of 64 x 1 MiB objects that live only in the SSD tier: 128 objects are
put into a store with 32 MiB of DRAM (so the first 64 were evicted to the tier), then
one batch_get_into of those 64, bytes compared; cold = after dropping the page cache
(when allowed), warm = right after. A get of an object still in DRAM first opens the
connections, so that no figure includes their setup. ROUNDS (default 3) cold/warm
pairs. Env: MC_MASTER, MC_METADATA."""
import ctypes, os, sys, time, subprocess
from mooncake.store import MooncakeDistributedStore
N, SZ = 64, 1 << 20
s = MooncakeDistributedStore()
assert s.setup("127.0.0.1", os.environ["MC_METADATA"], 0, 256 << 20, "tcp", "", os.environ["MC_MASTER"]) == 0
buf = ctypes.create_string_buffer(N * SZ); base = ctypes.addressof(buf)
assert s.register_buffer(base, N * SZ) == 0
vals = [os.urandom(SZ) for _ in range(2 * N)]
for i, v in enumerate(vals):
    rc = s.put(f"r-{i}", v)
    assert rc == 0, (i, rc)
time.sleep(2)
keys = [f"r-{i}" for i in range(N)]
def run(label):
    t0 = time.perf_counter()
    got = s.batch_get_into(keys, [base + i * SZ for i in range(N)], [SZ] * N)
    dt = time.perf_counter() - t0
    assert all(g == SZ for g in got), got[:4]
    assert all(buf.raw[i * SZ:(i + 1) * SZ] == vals[i] for i in range(N))
    print(f"{label}: {N} MiB in {dt*1000:.1f} ms = {N/dt:.0f} MiB/s")
assert s.get(f"r-{2 * N - 1}") == vals[2 * N - 1]  # in DRAM: opens the connections
for _ in range(int(os.environ.get("ROUNDS", "3"))):
    dropped = subprocess.run(["sh", "-c", "sync; echo 3 > /proc/sys/vm/drop_caches"], capture_output=True).returncode == 0
    run("cold" if dropped else "first (page cache not droppable here)")
    run("warm")
