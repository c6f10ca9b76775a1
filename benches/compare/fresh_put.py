#!/usr/bin/env python3
"""Batched puts into a fresh store, then gets of the same keys: what a store's first
writes into its segment cost (docs/benchmarks/cross-host.md, "Batched put on the TCP
path"). ``batch_put_from`` of ``--keys`` fresh keys x ``--page`` bytes from one
registered buffer until ``--budget`` bytes are written or ``--seconds`` pass, then
``batch_get_into`` of those keys round-robin for ``--seconds``; the first batch read back
is compared with what was written. One JSON line per phase on stdout (``gb_per_s``,
``p50_ms``, ``n``); the get is the reference point, as it reads pages that exist.
With ``--single``, plain ``put`` / ``get`` of one ``--page``-sized object per call
instead (what the load driver's 1 MiB put does), where one slow put in twenty shows
in ``p99_ms`` and ``slow`` (calls over three times the median).
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
    p.add_argument("--single", action="store_true",
                   help="put/get one object of --page bytes per call")
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
        p50 = lat[len(lat) // 2]
        print(json.dumps({"label": a.label, "phase": phase, "n": len(lat), "errors": errors,
                          "gb_per_s": round(nbytes / elapsed / 1e9, 3),
                          "p50_ms": round(p50 * 1e3, 3),
                          "p99_ms": round(lat[int(0.99 * (len(lat) - 1))] * 1e3, 3),
                          "slow": sum(1 for x in lat if x > 3 * p50)}), flush=True)

    if a.single:
        single(a, s, emit)
        s.close()
        return

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


def single(a, s, emit):
    value = os.urandom(a.page)
    written, lat, errors = [], [], 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < a.seconds and len(written) * a.page < a.budget:
        key = f"fresh-{os.getpid()}-{len(written)}"
        t = time.perf_counter()
        rc = s.put(key, value)
        lat.append(time.perf_counter() - t)
        errors += rc != 0
        written.append(key)
    emit("put", lat, time.perf_counter() - t0, len(lat) * a.page, errors)
    lat, errors = [], 0
    t0 = time.perf_counter()
    while written and time.perf_counter() - t0 < a.seconds and len(lat) < len(written):
        key = written[len(lat)]
        t = time.perf_counter()
        v = s.get(key)
        lat.append(time.perf_counter() - t)
        errors += len(v) != a.page or (len(lat) == 1 and bytes(v) != value)
    emit("get", lat, time.perf_counter() - t0, len(lat) * a.page, errors)


if __name__ == "__main__":
    main()
