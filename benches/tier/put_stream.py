"""Puts N objects of 1 MiB one after another through ``MooncakeDistributedStore.put``,
then reads each back; prints the put rate, the failed puts and how many objects are
readable afterwards. Run it against a store whose DRAM holds a fraction of N MiB to
see whether the SSD tier's writes (persist after put, or demotion on eviction) keep
up with the puts.

    python benches/tier/put_stream.py MASTER_ADDR METADATA_URL [N] [--puts-only]

``--puts-only`` skips the read-back, so that the CPU a daemon spent during the run
(``/proc/<pid>/stat``) is what the puts and the tier's writes cost.
"""
import os
import sys
import time

from mooncake.store import MooncakeDistributedStore


def main():
    args = [a for a in sys.argv[1:] if a != "--puts-only"]
    puts_only = len(args) < len(sys.argv) - 1
    master, meta = args[0], args[1]
    n = int(args[2]) if len(args) > 2 else 300
    s = MooncakeDistributedStore()
    rc = s.setup("127.0.0.1", meta, 0, 64 << 20, "tcp", "", master)
    if rc != 0:
        sys.exit(f"setup failed: {rc}")
    v = os.urandom(1 << 20)
    fail = 0
    t0 = time.time()
    for i in range(n):
        if s.put(f"obj-{i}", v) != 0:
            fail += 1
    dt = time.time() - t0
    line = f"puts {n} x 1 MiB in {dt:.2f} s = {n / dt:.0f} puts/s; failed {fail}"
    if not puts_only:
        ok = sum(1 for i in range(n) if s.get(f"obj-{i}") == v)
        line += f"; readable afterwards {ok}"
    print(line)


if __name__ == "__main__":
    main()
