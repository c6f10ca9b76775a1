#!/usr/bin/env python3
"""How much master memory and CPU one small object costs.

    python benches/compare/scale_probe.py <master pid> <master host:port> <metadata url> [N]

One client with its own segment (``--segment``, 1.04 GB) puts N (500,000) objects of
1 KiB under 20-byte keys with ``batch_put_from``, in batches of 256, and prints one
JSON line: the master's RSS growth per object (from ``/proc/<pid>/status``, so the
master runs on this machine), objects per second, and CPU per object for the master
(``/proc/<pid>/stat``) and for this client. Works with our wheel and the reference's.
Read the master's ``/metrics`` afterwards (``master_key_count``,
``master_evicted_objects_total``) to see how many objects it kept: RSS per object is
only meaningful when none were evicted.
"""

import argparse
import ctypes
import json
import os
import resource
import sys
import time

from mooncake.store import MooncakeDistributedStore

TICK = os.sysconf("SC_CLK_TCK")


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def main(argv=None):
    p = argparse.ArgumentParser(description="master memory and CPU per small object")
    p.add_argument("pid", type=int)
    p.add_argument("master")
    p.add_argument("metadata")
    p.add_argument("count", type=int, nargs="?", default=500_000)
    p.add_argument("--value", type=int, default=1024)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--segment", type=int, default=1_040_000_000)
    p.add_argument("--hostname", default=os.environ.get("SP_HOSTNAME", "127.0.0.1"))
    a = p.parse_args(argv)
    store = MooncakeDistributedStore()
    rc = store.setup(a.hostname, a.metadata, a.segment, 64 << 20, "tcp", "", a.master)
    if rc != 0:
        print(f"scale_probe: setup against {a.master} returned {rc}", file=sys.stderr)
        return 1
    buf = ctypes.create_string_buffer(a.batch * a.value)
    base = ctypes.addressof(buf)
    if store.register_buffer(base, a.batch * a.value) != 0:
        print("scale_probe: register_buffer failed", file=sys.stderr)
        return 1
    ptrs = [base + i * a.value for i in range(a.batch)]
    rss0, mcpu0 = rss(a.pid), cpu_s(a.pid)
    me0 = resource.getrusage(resource.RUSAGE_SELF)
    failed = 0
    t0 = time.perf_counter()
    for start in range(0, a.count, a.batch):
        n = min(a.batch, a.count - start)
        keys = [f"sp-{i:017d}" for i in range(start, start + n)]  # 20 bytes
        codes = store.batch_put_from(keys, ptrs[:n], [a.value] * n)
        failed += sum(1 for c in codes if c != 0)
    wall = time.perf_counter() - t0
    me1 = resource.getrusage(resource.RUSAGE_SELF)
    grown, mcpu = rss(a.pid) - rss0, cpu_s(a.pid) - mcpu0
    ccpu = (me1.ru_utime - me0.ru_utime) + (me1.ru_stime - me0.ru_stime)
    print(json.dumps({
        "objects": a.count, "failed": failed, "value_bytes": a.value,
        "master_rss_before": rss0, "master_rss_growth": grown,
        "bytes_per_object": round(grown / a.count, 1),
        "objects_per_s": round(a.count / wall, 1),
        "master_cpu_us_per_object": round(mcpu / a.count * 1e6, 2),
        "client_cpu_us_per_object": round(ccpu / a.count * 1e6, 2),
        "wall_s": round(wall, 2),
    }), flush=True)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
