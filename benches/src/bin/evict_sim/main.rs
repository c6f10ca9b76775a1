//! Replays a FAST'25-format KV-cache trace (JSONL, one request per line, `hash_ids` =
//! its 512-token prefix blocks) through the master's own code, in-process, the way a
//! store client drives it: per request `batch_exist` on all blocks, a batched replica
//! lookup of the longest present prefix, then `batch_write_start` + end of the
//! missing rest, one 16 KiB object per block in one segment. The eviction round runs
//! where the live master's worker runs it (woken by the write that crossed the high
//! watermark), so the figures are the live store's, not a model's. Beside each
//! policy it prints Belady (offline, knowing the future) and an unlimited pool.
//!
//! ```text
//! cargo run --release -p mooncake-benches --bin evict_sim -- \
//!     benches/traces/synthetic_trace.jsonl.gz benches/traces/conversation_trace.jsonl.gz \
//!     [--pool-mib 72] [--block 16384] [--sweep 0.5,1,2,4] [--svg docs/benchmarks/eviction.svg]
//! ```

mod belady;
mod svg;

use mooncake_common::SegmentDesc;
use mooncake_master::config::MasterConfig;
use mooncake_master::eviction::PolicyKind;
use mooncake_master::master::{Master, WriteKind};
use std::io::Read;
use std::time::{Duration, Instant};

/// One trace: its name and the block ids of each request.
pub struct Trace {
    pub name: String,
    pub requests: Vec<Vec<u64>>,
}

fn load(path: &str) -> Result<Trace, String> {
    let mut text = String::new();
    if path.ends_with(".gz") {
        let out = std::process::Command::new("gzip")
            .args(["-dc", path])
            .output()
            .map_err(|e| format!("{path}: cannot run gzip: {e}"))?;
        if !out.status.success() {
            return Err(format!("{path}: gzip failed"));
        }
        text = String::from_utf8(out.stdout).map_err(|_| format!("{path}: not UTF-8"))?;
    } else {
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_string(&mut text))
            .map_err(|e| format!("{path}: {e}"))?;
    }
    let mut requests = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = line
            .find("\"hash_ids\"")
            .ok_or_else(|| format!("{path}:{}: no hash_ids", n + 1))?;
        let rest = &line[at..];
        let (open, close) = match (rest.find('['), rest.find(']')) {
            (Some(o), Some(c)) if o < c => (o, c),
            _ => return Err(format!("{path}:{}: hash_ids is not a list", n + 1)),
        };
        let ids: Result<Vec<u64>, _> = rest[open + 1..close]
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect();
        requests.push(ids.map_err(|e| format!("{path}:{}: bad block id: {e}", n + 1))?);
    }
    let name = std::path::Path::new(path)
        .file_name()
        .map(|f| f.to_string_lossy().replace(".jsonl", "").replace(".gz", ""))
        .unwrap_or_default();
    Ok(Trace { name, requests })
}

/// The replay's settings.
#[derive(Clone, Copy)]
pub struct Setup {
    pub pool: u64,
    pub block: u64,
    pub high_watermark: f64,
    pub ratio: f64,
}

/// Prefix hit ratio of `trace` through a master with `policy`.
fn replay(trace: &Trace, policy: PolicyKind, s: Setup) -> f64 {
    let m = Master::new(MasterConfig {
        eviction_policy: policy,
        eviction_high_watermark_ratio: s.high_watermark,
        eviction_ratio: s.ratio,
        // No read guards: the replay runs far faster than a live client, so a guard
        // measured in milliseconds would cover far more of the pool than it does live.
        default_kv_lease_ttl: Duration::ZERO,
        ..Default::default()
    });
    let desc = SegmentDesc {
        name: "pool".into(),
        owner: "store".into(),
        size: s.pool,
        base: 0x1000_0000,
        protocol: "tcp".into(),
        transport_endpoint: "127.0.0.1:1".into(),
        ..Default::default()
    };
    m.mount_segment("store", desc).expect("mount");
    let rc = Default::default();
    let (mut refs, mut hits) = (0u64, 0u64);
    for r in &trace.requests {
        let keys: Vec<String> = r.iter().map(|h| format!("blk-{h}")).collect();
        refs += keys.len() as u64;
        let ex = m.batch_exist(&keys);
        let n = ex.iter().take_while(|e| matches!(e, Ok(true))).count();
        let mut got = n;
        if n > 0 {
            let lists = m.batch_get_replica_list(&keys[..n]);
            got = lists.iter().take_while(|l| l.is_ok()).count();
        }
        hits += got as u64;
        let miss = &keys[got..];
        if miss.is_empty() {
            continue;
        }
        let sizes = vec![s.block; miss.len()];
        let started = m.batch_write_start(WriteKind::Put, "client", miss, &sizes, &rc);
        // The worker's round, woken by a write over the watermark, runs while the
        // client copies its bytes.
        m.run_eviction();
        let (ok_keys, ids): (Vec<&String>, Vec<u64>) = miss
            .iter()
            .zip(&started)
            .filter_map(|(k, r)| r.as_ref().ok().map(|w| (k, w.put_id)))
            .unzip();
        m.batch_write_finish("client", &ok_keys, &ids, false);
    }
    hits as f64 / refs.max(1) as f64
}

fn main() {
    let mut traces = Vec::new();
    let mut setup = Setup {
        pool: 72 << 20,
        block: 16 << 10,
        high_watermark: MasterConfig::default().eviction_high_watermark_ratio,
        ratio: MasterConfig::default().eviction_ratio,
    };
    let mut sweep: Vec<f64> = Vec::new();
    let mut svg_path = None;
    let mut args = std::env::args().skip(1);
    let fail = |m: String| -> ! {
        eprintln!("evict_sim: {m}");
        std::process::exit(2)
    };
    while let Some(a) = args.next() {
        let mut val = |name: &str| {
            args.next()
                .unwrap_or_else(|| fail(format!("{name} needs a value")))
        };
        match a.as_str() {
            "--pool-mib" => {
                setup.pool = val(&a)
                    .parse::<u64>()
                    .unwrap_or_else(|e| fail(format!("--pool-mib: {e}")))
                    << 20
            }
            "--block" => {
                setup.block = val(&a)
                    .parse()
                    .unwrap_or_else(|e| fail(format!("--block: {e}")))
            }
            "--sweep" => {
                sweep = val(&a)
                    .split(',')
                    .map(|x| {
                        x.trim()
                            .parse::<f64>()
                            .unwrap_or_else(|e| fail(format!("--sweep: {e}")))
                    })
                    .collect()
            }
            "--svg" => svg_path = Some(val(&a)),
            "-h" | "--help" => {
                println!("usage: evict_sim TRACE.jsonl[.gz]... [--pool-mib 72] [--block 16384] [--sweep 0.5,1,2,4] [--svg out.svg]");
                return;
            }
            p if p.starts_with('-') => fail(format!("unknown option {p}")),
            p => traces.push(load(p).unwrap_or_else(|e| fail(e))),
        }
    }
    if traces.is_empty() {
        fail("give at least one trace (benches/traces/*.jsonl.gz)".into());
    }
    let blocks = setup.pool / setup.block;
    println!(
        "pool {} MiB = {} blocks of {} B; rounds at {} of the pool free {} of it (the master's defaults)",
        setup.pool >> 20,
        blocks,
        setup.block,
        setup.high_watermark,
        setup.ratio
    );
    println!("| trace | policy | prefix hit ratio | Belady | unlimited |");
    println!("|---|---|---|---|---|");
    let kept = (blocks as f64 * setup.high_watermark) as usize;
    for t in &traces {
        let opt = belady::hit_ratio(&t.requests, kept);
        let unl = belady::hit_ratio(&t.requests, usize::MAX);
        for p in PolicyKind::ALL {
            let t0 = Instant::now();
            let h = replay(t, p, setup);
            println!(
                "| {} | {} | {:.4} | {:.4} | {:.4} |   ({:.1} s)",
                t.name,
                p.as_str(),
                h,
                opt,
                unl,
                t0.elapsed().as_secs_f64()
            );
        }
    }
    if sweep.is_empty() {
        return;
    }
    let mut charts = Vec::new();
    for t in &traces {
        let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        for p in PolicyKind::ALL {
            series.push((p.as_str().into(), Vec::new()));
        }
        series.push(("belady".into(), Vec::new()));
        for &x in &sweep {
            let s = Setup {
                pool: ((setup.pool as f64 * x) as u64 / setup.block).max(1) * setup.block,
                ..setup
            };
            let mut row = Vec::new();
            for (i, p) in PolicyKind::ALL.iter().enumerate() {
                let h = replay(t, *p, s);
                series[i].1.push((x, h));
                row.push(format!("{} {h:.4}", p.as_str()));
            }
            let b = belady::hit_ratio(
                &t.requests,
                ((s.pool / s.block) as f64 * s.high_watermark) as usize,
            );
            series.last_mut().unwrap().1.push((x, b));
            println!("{} x{x}: {}, belady {b:.4}", t.name, row.join(", "));
        }
        charts.push(svg::Chart {
            title: t.name.clone(),
            unlimited: belady::hit_ratio(&t.requests, usize::MAX),
            series,
        });
    }
    if let Some(p) = svg_path {
        let cmd = format!(
            "evict_sim {}",
            std::env::args().skip(1).collect::<Vec<_>>().join(" ")
        );
        std::fs::write(&p, svg::render(&charts, setup.pool >> 20, &cmd))
            .unwrap_or_else(|e| fail(format!("{p}: {e}")));
        println!("wrote {p}");
    }
}
