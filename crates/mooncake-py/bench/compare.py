#!/usr/bin/env python3
"""Side-by-side table and plot of two kvbench result files (ours vs the reference).

usage: compare.py OURS.jsonl REF.jsonl [--plot out.png]

Takes the median over runs of each (workload, size, threads, mode), prints a markdown
table with the ratio ours/ref of the headline metric (GB/s for data workloads, keys/s
for batch_is_exist, ops/s otherwise; p50 latency for 4 KiB ops), and optionally draws
the ratios as a bar chart (needs matplotlib).
"""
import json
import statistics
import sys


def load(path):
    groups = {}
    for line in open(path):
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        if r.get("workload", "").startswith("_") or r.get("workload") == "setup":
            continue
        key = (r["workload"], r.get("size", 0), r.get("threads", 1), r.get("mode", ""))
        groups.setdefault(key, []).append(r)
    return {k: {f: statistics.median([x[f] for x in v if x.get(f) is not None] or [0])
                for f in ("ops_per_s", "gb_per_s", "p50_us", "p99_us", "errors")}
            for k, v in groups.items()}


def label(key):
    w, size, threads, mode = key
    s = f"{size // 1024} KiB" if size < (1 << 20) else f"{size >> 20} MiB"
    if w.startswith("batch_is_exist") or w == "is_exist":
        s = "1024 keys" if w.startswith("batch") else "1 key"
    conc = f" {threads}x{mode}" if threads and threads > 1 else ""
    return f"{w} {s}{conc}"


def metric(key):
    w = key[0]
    if w.startswith("batch_is_exist"):
        return "ops_per_s", "keys/s"
    if w == "is_exist" or key[1] <= 4096 and w in ("put", "get"):
        return "ops_per_s", "ops/s"
    return "gb_per_s", "GB/s"


def main(argv):
    ours, ref = load(argv[0]), load(argv[1])
    plot = argv[argv.index("--plot") + 1] if "--plot" in argv else None
    rows = []
    print("| workload | metric | ours | reference | ours / ref | p50 µs ours | p50 µs ref |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for key in ours:
        if key not in ref:
            continue
        f, unit = metric(key)
        a, b = ours[key][f], ref[key][f]
        ratio = a / b if b else float("nan")
        rows.append((label(key), ratio))
        fmt = (lambda v: f"{v:,.0f}") if unit != "GB/s" else (lambda v: f"{v:.2f}")
        print(f"| {label(key)} | {unit} | {fmt(a)} | {fmt(b)} | {ratio:.2f}x | "
              f"{ours[key]['p50_us']:,.0f} | {ref[key]['p50_us']:,.0f} |")
    if plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(8, 6), dpi=80)
        names = [r[0] for r in rows][::-1]
        vals = [r[1] for r in rows][::-1]
        ax.barh(names, vals, color=["#2a7" if v >= 1 else "#c43" for v in vals])
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("ours / reference (headline metric; >1 is better)")
        ax.set_title("mooncake-rs Python client vs reference v0.3.13, loopback TCP")
        ax.tick_params(axis="y", labelsize=8)
        fig.tight_layout()
        fig.savefig(plot)


if __name__ == "__main__":
    main(sys.argv[1:])
