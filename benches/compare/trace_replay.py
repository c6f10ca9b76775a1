#!/usr/bin/env python3
"""Replays a KV-cache trace through any ``MooncakeDistributedStore`` implementation.

The trace is JSON lines (optionally gzipped), one request per line, in the format of
the public Mooncake traces: ``hash_ids`` lists the request's prompt as prefix blocks
(equal ids = equal prefix). For each request the replayer does what a prefix cache
does: ``batch_is_exist`` over the blocks, ``batch_get_into`` of the longest stored
prefix, then ``batch_put_from`` of the blocks after it (the KV an engine would have
recomputed). One JSON line at the end: prefix hit ratio, failed gets and puts, time.

    python benches/compare/trace_replay.py benches/traces/synthetic_trace.jsonl.gz

Settings: ``--master`` / ``RT_MASTER``, ``--metadata`` / ``RT_METADATA``,
``--hostname`` / ``RT_HOSTNAME``, ``--block`` / ``RT_BLOCK`` (bytes per block,
16384), ``--limit`` / ``RT_LIMIT`` (requests, 0 = all), ``--impl`` / ``RT_IMPL``.
"""

import argparse
import ctypes
import gzip
import json
import os
import sys
import time

from mooncake.store import MooncakeDistributedStore


def read_trace(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv=None):
    e = os.environ.get
    p = argparse.ArgumentParser(description="replay a KV-cache trace")
    p.add_argument("trace")
    p.add_argument("--master", default=e("RT_MASTER", "127.0.0.1:50051"))
    p.add_argument("--metadata", default=e("RT_METADATA", "http://127.0.0.1:8080/metadata"))
    p.add_argument("--hostname", default=e("RT_HOSTNAME", "127.0.0.1"))
    p.add_argument("--block", type=int, default=int(e("RT_BLOCK", "16384")))
    p.add_argument("--limit", type=int, default=int(e("RT_LIMIT", "0")))
    p.add_argument("--impl", default=e("RT_IMPL", "?"))
    a = p.parse_args(argv)
    reqs = read_trace(a.trace)
    if a.limit:
        reqs = reqs[: a.limit]
    if not reqs:
        print("trace_replay: the trace has no requests", file=sys.stderr)
        return 2
    store = MooncakeDistributedStore()
    rc = store.setup(a.hostname, a.metadata, 0, 64 << 20, "tcp", "", a.master)
    if rc != 0:
        print(f"trace_replay: setup against {a.master} returned {rc}", file=sys.stderr)
        return 1
    most = max(len(r["hash_ids"]) for r in reqs)
    buf = ctypes.create_string_buffer(most * a.block)
    base = ctypes.addressof(buf)
    if store.register_buffer(base, most * a.block) != 0:
        print("trace_replay: register_buffer failed", file=sys.stderr)
        return 1
    blocks = hits = get_fail = put_fail = 0
    t0 = time.perf_counter()
    for r in reqs:
        keys = [f"blk-{h}" for h in r["hash_ids"]]
        blocks += len(keys)
        present = store.batch_is_exist(keys)
        stored = 0
        while stored < len(keys) and present[stored] == 1:
            stored += 1
        if stored:
            got = store.batch_get_into(keys[:stored], [base + i * a.block for i in range(stored)],
                                       [a.block] * stored)
            ok = next((i for i, g in enumerate(got) if g != a.block), stored)
            get_fail += stored - ok
            stored = ok
        hits += stored
        missing = keys[stored:]
        if missing:
            ptrs = [base + (stored + i) * a.block for i in range(len(missing))]
            codes = store.batch_put_from(missing, ptrs, [a.block] * len(missing))
            put_fail += sum(1 for c in codes if c != 0)
    wall = time.perf_counter() - t0
    print(json.dumps({
        "impl": a.impl, "trace": os.path.basename(a.trace), "requests": len(reqs),
        "block_bytes": a.block, "blocks": blocks, "prefix_hit_ratio": round(hits / blocks, 4),
        "get_fail": get_fail, "put_fail": put_fail, "wall_s": round(wall, 2),
        "blocks_per_s": round(blocks / wall, 1),
    }), flush=True)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
