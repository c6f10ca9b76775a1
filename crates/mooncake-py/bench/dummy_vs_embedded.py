#!/usr/bin/env python3
"""Dummy (setup_dummy against a standalone mooncake_client) vs embedded (setup) on the
same workload: SGLang's page traffic, batch_put_from / batch_get_into of N pages from
host memory, then batch_remove, repeated (after two unmeasured warm-up rounds).

Starts its own master and mooncake_client on free loopback ports from
``$MOONCAKE_BIN_DIR`` (default ``target/release``). Both modes use a
MooncakeHostMemAllocator pool (the embedded store registers it; the dummy hands it to
the real client), and the memory that holds the objects is the same in both: one
segment of --segment bytes, the standalone client's in dummy mode, the embedded
store's own in embedded mode.

usage: dummy_vs_embedded.py [--pages 64] [--page-kib 1024] [--rounds 20] [--segment-mb 1024]
Prints one JSON line per (mode, op) with GB/s and per-batch latency percentiles, and
the latency of single small calls (is_exist, get of 4 KiB).
"""
import argparse
import ctypes
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from mooncake.store import MooncakeDistributedStore, MooncakeHostMemAllocator

REPO = Path(__file__).resolve().parents[3]
BIN = Path(os.environ.get("MOONCAKE_BIN_DIR", REPO / "target" / "release"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    sys.exit(f"port {port} did not open")


def run(store, mode, base, pages, page, rounds, warmup=2):
    """Each round puts `pages` new keys from the pool, reads them back into it, and
    removes them, so every round writes the same (already faulted-in) segment memory:
    the figures are the steady state, not the segment's first touch."""
    ptrs = [base + i * page for i in range(pages)]
    lat = {"batch_put_from": [], "batch_get_into": []}
    for r in range(warmup + rounds):
        keys = [f"{mode}-{r}-{i}" for i in range(pages)]
        t0 = time.perf_counter()
        res = store.batch_put_from(keys, ptrs, [page] * pages)
        t1 = time.perf_counter()
        if res != [0] * pages:
            sys.exit(f"{mode} batch_put_from failed: {res[:4]}")
        res = store.batch_get_into(keys, ptrs, [page] * pages)
        t2 = time.perf_counter()
        if res != [page] * pages:
            sys.exit(f"{mode} batch_get_into failed: {res[:4]}")
        if store.batch_remove(keys, force=True) != [0] * pages:
            sys.exit(f"{mode} batch_remove failed")
        if r >= warmup:
            lat["batch_put_from"].append(t1 - t0)
            lat["batch_get_into"].append(t2 - t1)
    out = []
    for op, l in lat.items():
        l.sort()
        out.append({
            "mode": mode, "op": op, "pages": pages, "page_bytes": page, "rounds": rounds,
            "gb_per_s": round(pages * page * rounds / sum(l) / 1e9, 3),
            "p50_ms": round(statistics.median(l) * 1e3, 2),
            "p90_ms": round(l[int(0.9 * (len(l) - 1))] * 1e3, 2),
        })
    return out


def small_ops(store, mode, n=2000):
    """One small call at a time: where the dummy's extra hop is all there is."""
    key = f"{mode}-small"
    value = b"v" * 4096
    if store.put(key, value) != 0:
        sys.exit(f"{mode} put failed")
    out = []
    for op, call in (("is_exist", lambda: store.is_exist(key) == 1),
                     ("get 4 KiB", lambda: store.get(key) == value)):
        lat = []
        for _ in range(n):
            t0 = time.perf_counter()
            ok = call()
            lat.append(time.perf_counter() - t0)
            if not ok:
                sys.exit(f"{mode} {op} failed")
        lat.sort()
        out.append({"mode": mode, "op": op, "calls": n,
                    "p50_us": round(statistics.median(lat) * 1e6, 1),
                    "p99_us": round(lat[int(0.99 * (n - 1))] * 1e6, 1)})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=64)
    ap.add_argument("--page-kib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--segment-mb", type=int, default=2048)
    a = ap.parse_args()
    page = a.page_kib << 10
    with tempfile.TemporaryDirectory() as d:
        rpc, meta, cport = free_port(), free_port(), free_port()
        procs = []
        try:
            m = subprocess.Popen([str(BIN / "mooncake_master"), "--rpc_address", "127.0.0.1",
                                  "--rpc_port", str(rpc), "--metrics_port", str(free_port()),
                                  "--enable_http_metadata_server",
                                  "--http_metadata_server_host", "127.0.0.1",
                                  "--http_metadata_server_port", str(meta)],
                                 stdout=open(f"{d}/m.log", "w"), stderr=subprocess.STDOUT)
            procs.append(m)
            wait_port(rpc, m)
            wait_port(meta, m)
            metadata = f"http://127.0.0.1:{meta}/metadata"
            alloc = MooncakeHostMemAllocator()
            base = alloc.alloc(a.pages * page)
            ctypes.memset(base, 0x5A, a.pages * page)
            results = []
            # Embedded: the store holds the segment itself.
            e = MooncakeDistributedStore()
            assert e.setup("127.0.0.1", metadata, a.segment_mb << 20, 0, "tcp", "",
                           f"127.0.0.1:{rpc}") == 0
            assert e.register_buffer(base, a.pages * page) == 0
            results += run(e, "embedded-" + uuid.uuid4().hex[:6], base, a.pages, page, a.rounds)
            results += small_ops(e, "embedded-" + uuid.uuid4().hex[:6])
            e.close()
            # Dummy: a standalone mooncake_client holds the same-sized segment.
            c = subprocess.Popen([str(BIN / "mooncake_client"),
                                  f"--master_server_address=127.0.0.1:{rpc}",
                                  "--host=127.0.0.1", f"--port={cport}",
                                  f"--global_segment_size={a.segment_mb} MB",
                                  f"--metadata_server={metadata}", "--threads=2"],
                                 stdout=open(f"{d}/c.log", "w"), stderr=subprocess.STDOUT)
            procs.append(c)
            wait_port(cport, c)
            du = MooncakeDistributedStore()
            assert du.setup_dummy(a.pages * page, 0, f"127.0.0.1:{cport}") == 0
            results += run(du, "dummy-" + uuid.uuid4().hex[:6], base, a.pages, page, a.rounds)
            results += small_ops(du, "dummy-" + uuid.uuid4().hex[:6])
            du.close()
            for r in results:
                r["mode"] = r["mode"].split("-")[0]
                print(json.dumps(r))
        finally:
            for p in reversed(procs):
                p.terminate()
                p.wait(timeout=10)


if __name__ == "__main__":
    main()
