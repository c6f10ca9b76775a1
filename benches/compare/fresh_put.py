#!/usr/bin/env python3
"""Batched puts into a fresh store, then gets of the same keys: what a store's first
writes into its segment cost (docs/benchmarks/cross-host.md, "Batched put on the TCP
path"). ``batch_put_from`` of ``--keys`` fresh keys x ``--page`` bytes from one
registered buffer until ``--budget`` bytes are written or ``--seconds`` pass, then
``batch_get_into`` of those keys round-robin for ``--seconds``; the first batch read back
is compared with what was written. One JSON line per phase on stdout (``gb_per_s``,
``p50_ms``, ``n``); the get is the reference point, as it reads pages that exist.
Uses only the public API, so it runs against either implementation.
"""

import argparse
import ctypes
import json
import mmap
import os
import time

from mooncake.store import MooncakeDistributedStore


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--master", default="127.0.0.1:50051")
    p.add_argument("--metadata", default="http://127.0.0.1:8080/metadata")
    p.add_argument("--keys", type=int, default=32)
    p.add_argument("--page", type=int, default=512 << 10)
    p.add_argument("--budget", type=int, default=1536 << 20)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--label", default="")
    a = p.parse_args()
    s = MooncakeDistributedStore()
    rc = s.setup("127.0.0.1", a.metadata, 0, 64 << 20, "tcp", "", a.master)
    if rc != 0:
        raise SystemExit(f"setup returned {rc}")
    nk, page = a.keys, a.page
    src, dst = mmap.mmap(-1, nk * page), mmap.mmap(-1, nk * page)
    src[:] = os.urandom(nk * page)
    addr = [ctypes.addressof(ctypes.c_char.from_buffer(m)) for m in (src, dst)]
    for x in addr:
        if s.register_buffer(x, nk * page) != 0:
            raise SystemExit("register_buffer failed")
    sizes = [page] * nk

    def emit(phase, lat, elapsed, nbytes, errors):
        lat = sorted(lat) or [0.0]
        print(json.dumps({"label": a.label, "phase": phase, "n": len(lat), "errors": errors,
                          "gb_per_s": round(nbytes / elapsed / 1e9, 3),
                          "p50_ms": round(lat[len(lat) // 2] * 1e3, 2)}), flush=True)

    written, lat, errors = [], [], 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < a.seconds and len(written) * page < a.budget:
        keys = [f"fresh-{os.getpid()}-{len(written) + j}" for j in range(nk)]
        ptrs = [addr[0] + j * page for j in range(nk)]
        t = time.perf_counter()
        r = s.batch_put_from(keys, ptrs, sizes)
        lat.append(time.perf_counter() - t)
        errors += sum(1 for c in r if c != 0)
        written.extend(keys)
    emit("batch_put_from", lat, time.perf_counter() - t0, len(lat) * nk * page, errors)

    rounds, lat, errors = len(written) // nk, [], 0
    t0 = time.perf_counter()
    while rounds and time.perf_counter() - t0 < a.seconds:
        i = len(lat) % rounds
        keys = written[i * nk:(i + 1) * nk]
        ptrs = [addr[1] + j * page for j in range(nk)]
        t = time.perf_counter()
        r = s.batch_get_into(keys, ptrs, sizes)
        lat.append(time.perf_counter() - t)
        errors += sum(1 for c in r if c != page)
        if len(lat) == 1 and dst[:] != src[:]:
            errors += 1
    emit("batch_get_into", lat, time.perf_counter() - t0, len(lat) * nk * page, errors)
    s.close()


if __name__ == "__main__":
    main()
