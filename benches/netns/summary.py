#!/usr/bin/env python3
"""Tables (and a plot) from one cross-host run of benches/netns/run.sh.

usage: summary.py OUT_DIR [--plot out.png]

For each link profile: the link's limits measured in that run (4 KiB TCP round trip,
iperf3 with 2 streams), then per workload ours and the reference side by side, their
ratio, and how each compares with the link: a small get's p50 in round trips, a batch's
GB/s as a share of iperf3's. The plot draws, per profile, the ratio ours/reference of
each headline figure (needs matplotlib).
"""
import json
import statistics
import sys
from collections import defaultdict

# (workload, size): headline metric. p50 for the small single-key calls (latency is
# what an engine waits for), GB/s for data, ops/s otherwise.
HEADLINE = {
    ("get", 4096): "p50_us", ("put", 4096): "p50_us",
    ("get", 1048576): "gb_per_s", ("put", 1048576): "gb_per_s",
    ("batch_get_into", 32 * 524288): "gb_per_s", ("batch_put_from", 32 * 524288): "gb_per_s",
}


def label(w, size):
    """Batches are recorded with the bytes of the whole batch (32 keys of 512 KiB)."""
    return f"{w} 32×512 KiB" if w.startswith("batch") else f"{w} {size >> 10} KiB"


def load(out):
    limits = {}
    for line in open(f"{out}/limits.jsonl"):
        o = json.loads(line)
        limits[o["profile"]] = o
    runs = defaultdict(list)
    for line in open(f"{out}/results.jsonl"):
        o = json.loads(line)
        if o.get("workload") in (None, "setup") or str(o.get("workload")).startswith("_"):
            continue
        key = (o["profile"], o["impl"], o["workload"], o.get("size", 0))
        runs[key].append(o)
    med = {k: {f: statistics.median(x.get(f) or 0 for x in v) for f in ("p50_us", "gb_per_s", "ops_per_s", "errors")}
           for k, v in runs.items()}
    return limits, med


def fmt(metric, v):
    return f"{v:.0f} µs" if metric == "p50_us" else f"{v:.2f} GB/s" if metric == "gb_per_s" else f"{v:.0f}/s"


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    plot = sys.argv[sys.argv.index("--plot") + 1] if "--plot" in sys.argv else None
    limits, med = load(out)
    ratios = defaultdict(dict)
    for profile, lim in limits.items():
        rtt = lim["rtt_4k"]["p50_us"]
        link = lim["iperf3_gbit_s"] / 8
        print(f"\n### {profile}: 4 KiB TCP round trip {rtt:.0f} µs p50, iperf3 (2 streams) {link:.2f} GB/s\n")
        print("| workload | ours | reference | ours/ref | ours vs link | ref vs link |")
        print("|---|---|---|---|---|---|")
        for (w, size), metric in HEADLINE.items():
            o = med.get((profile, "ours", w, size))
            r = med.get((profile, "ref", w, size))
            if not o and not r:
                continue
            ov = o[metric] if o else None
            rv = r[metric] if r else None
            if ov and rv:
                ratio = rv / ov if metric == "p50_us" else ov / rv
                ratios[profile][label(w, size)] = ratio
                ratio_s = f"{ratio:.2f}×"
            else:
                ratio_s = "–"

            def vs_link(v):
                if not v:
                    return "–"
                if metric == "p50_us":
                    return f"{v / rtt:.2f} RTT"
                if metric == "gb_per_s":
                    return f"{100 * v / link:.0f}%"
                return "–"
            print(f"| {label(w, size)} | {fmt(metric, ov) if ov else '–'} | {fmt(metric, rv) if rv else '–'} "
                  f"| {ratio_s} | {vs_link(ov)} | {vs_link(rv)} |")
    if plot and ratios:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        names = sorted({n for r in ratios.values() for n in r})
        fig, ax = plt.subplots(figsize=(9, 4))
        width = 0.8 / len(ratios)
        for i, (profile, r) in enumerate(ratios.items()):
            ax.bar([j + i * width for j in range(len(names))], [r.get(n, 0) for n in names], width, label=profile)
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))], names, rotation=20, ha="right")
        ax.set_ylabel("ours / reference (higher is better)")
        ax.set_title("Cross-host (network namespaces): ours vs the reference per link profile")
        ax.legend()
        fig.tight_layout()
        fig.savefig(plot, dpi=110)
        print(f"\nplot: {plot}")


if __name__ == "__main__":
    main()
