#!/usr/bin/env python3
"""The median over runs of each (workload, size) for each implementation, as a markdown
table: ``python3 benches/compare/summarize.py results.jsonl [more.jsonl ...]``."""

import json
import statistics
import sys
from collections import defaultdict


def main(paths):
    rows = defaultdict(lambda: defaultdict(list))
    impls = []
    for path in paths:
        with open(path) as f:
            for line in f:
                try:
                    o = json.loads(line)
                except ValueError:
                    continue
                if o.get("workload") in (None, "setup"):
                    continue
                impl = o.get("impl", "?")
                if impl not in impls:
                    impls.append(impl)
                rows[(o["workload"], o.get("size", 0))][impl].append(o)
    if not rows:
        print("summarize: no results", file=sys.stderr)
        return 1
    head = ["workload", "size"] + [f"{i} {m}" for i in impls for m in ("ops/s", "p50 us", "p99 us")]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for (workload, size), by_impl in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        cells = [workload, str(size)]
        for i in impls:
            got = by_impl.get(i, [])
            for m in ("ops_per_s", "p50_us", "p99_us"):
                vals = [o[m] for o in got if o.get(m) is not None]
                cells.append(f"{statistics.median(vals):.1f}" if vals else "-")
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
