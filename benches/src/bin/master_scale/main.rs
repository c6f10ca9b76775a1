//! `master_scale`: the master process alone as its index grows.
//!
//! 1. starts `mooncake_master` (or uses `--master`/`--master-pid`) and mounts synthetic
//!    segments (descriptors only: the master never touches value bytes);
//! 2. preloads objects (20-byte keys, one replica) with batched put start/end up to
//!    each of `--sizes`, printing progress, and at each size times single-key put
//!    start+end, exist and get-replica-list (p50/p99, master CPU per call) and records
//!    the master's resident memory per object next to its `master_index_memory_bytes`;
//! 3. churn: segments mount and unmount while put pairs run;
//! 4. placement: mounts `--placement-segments` more segments and times put pairs again.
//!
//! Everything is on loopback; one connection per role, calls back to back, so a
//! latency is one round trip plus the master's work.

mod ops;
mod proc;

use clap::Parser;
use mooncake_benches::cpu::{cpu_time, per_op_us};
use mooncake_common::size::parse_size;
use ops::{connect, time_op, Client, Op, Segments};
use proc::MasterProc;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    name = "master_scale",
    about = "The master's latency and memory as its index grows"
)]
struct Args {
    /// The master binary to start (default: mooncake_master next to this binary).
    #[arg(long)]
    master_bin: Option<String>,
    /// Extra flag for the started master (repeatable), e.g. --master-flag=--index_memory_limit=0
    #[arg(long, allow_hyphen_values = true)]
    master_flag: Vec<String>,
    /// host:port of a running master instead (needs --master-pid).
    #[arg(long, requires = "master_pid")]
    master: Option<String>,
    #[arg(long)]
    master_pid: Option<u32>,
    /// Its admin port, host:port (for the index-memory gauge).
    #[arg(long)]
    master_metrics: Option<String>,
    /// Index sizes to measure at, ascending, comma-separated.
    #[arg(long, default_value = "100000,1000000,10000000", value_delimiter = ',')]
    sizes: Vec<u64>,
    /// Synthetic segments holding the preloaded objects.
    #[arg(long, default_value_t = 8)]
    segments: usize,
    /// Size of each (32 GiB gets the allocator's full 2M-node table).
    #[arg(long, default_value = "32gb")]
    segment_size: String,
    /// Object size.
    #[arg(long, default_value = "4kb")]
    value_size: String,
    /// Keys per BatchPutStart/BatchPutEnd while preloading.
    #[arg(long, default_value_t = 1024)]
    batch: usize,
    /// Concurrent preloading connections.
    #[arg(long, default_value_t = 2)]
    loaders: usize,
    /// Seconds of each timed single-key op at each size.
    #[arg(long, default_value_t = 3.0)]
    op_secs: f64,
    /// At most this many calls per timed op.
    #[arg(long, default_value_t = 20_000)]
    op_max: usize,
    /// Seconds of put pairs while segments mount and unmount (0 = skip).
    #[arg(long, default_value_t = 10.0)]
    churn_secs: f64,
    /// Segments mounted for the placement measurement (0 = skip).
    #[arg(long, default_value_t = 1000)]
    placement_segments: usize,
    /// Size of each of those (and of the churning segments).
    #[arg(long, default_value = "64mb")]
    small_segment_size: String,
    /// Seconds between progress lines while preloading.
    #[arg(long, default_value_t = 5.0)]
    progress_secs: f64,
}

fn size_arg(flag: &str, v: &str) -> Result<u64, String> {
    parse_size(flag, v).map_err(|e| e.to_string())
}

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("master_scale: {e}");
            ExitCode::FAILURE
        }
    }
}

fn start(args: &Args) -> Result<MasterProc, String> {
    if let (Some(addr), Some(pid)) = (&args.master, args.master_pid) {
        return Ok(MasterProc::existing(addr, pid, args.master_metrics.clone()));
    }
    let bin = match &args.master_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("mooncake_master")
            .to_string_lossy()
            .into_owned(),
    };
    MasterProc::spawn(&bin, &args.master_flag)
}

/// One row of the size table.
struct Row {
    objects: u64,
    rss_per_object: f64,
    gauge_per_object: Option<f64>,
    ops: Vec<(Op, String, Option<f64>)>,
}

async fn run(args: Args) -> Result<(), String> {
    let seg_size = size_arg("--segment-size", &args.segment_size)?;
    let small = size_arg("--small-segment-size", &args.small_segment_size)?;
    let value = size_arg("--value-size", &args.value_size)?;
    if args.sizes.is_empty() || args.sizes.windows(2).any(|w| w[0] >= w[1]) {
        return Err("--sizes must be ascending, e.g. 100000,1000000".into());
    }
    let m = start(&args)?;
    println!("master {} (pid {})", m.addr, m.pid);
    let mut c = connect(&m.addr).await?;
    let segs = Segments::new(&c);
    for i in 0..args.segments {
        segs.mount(&mut c, &format!("scale-{i}:1"), seg_size)
            .await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss0 = m.rss().ok_or("cannot read the master's VmRSS")?;
    let gauge0 = m.gauge("master_index_memory_bytes");
    println!(
        "{} segments of {} mounted; master RSS {:.1} MB before any object",
        args.segments,
        args.segment_size,
        mb(rss0)
    );
    let mut rows = Vec::new();
    let mut loaded = 0u64;
    let mut fresh = 1u64 << 40; // keys the timed puts write, far above the preload
    for &target in &args.sizes {
        preload(&args, &m, loaded, target, value).await?;
        loaded = target;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss = m.rss().unwrap_or(0);
        // A scrape computes the stats by walking the index: time it too.
        let scrape = Instant::now();
        let gauge = m.gauge("master_index_memory_bytes");
        let scrape = scrape.elapsed();
        let mut row = Row {
            objects: target,
            rss_per_object: rss.saturating_sub(rss0) as f64 / target as f64,
            gauge_per_object: gauge
                .map(|g| g.saturating_sub(gauge0.unwrap_or(0)) as f64 / target as f64),
            ops: Vec::new(),
        };
        println!(
            "at {target} objects: master RSS {:.1} MB ({:.0} B/object), index gauge {} (/metrics scrape {:.1} ms)",
            mb(rss),
            row.rss_per_object,
            row.gauge_per_object
                .map_or("n/a".into(), |g| format!("{g:.0} B/object")),
            scrape.as_secs_f64() * 1e3
        );
        for op in [Op::PutPair, Op::Exist, Op::GetReplicaList] {
            let before = cpu_time(m.pid);
            let mut t = time_op(
                &mut c,
                op,
                args.op_secs,
                args.op_max,
                target,
                &mut fresh,
                value,
            )
            .await?;
            let n = t.samples.len() as u64;
            let cpu = per_op_us(before, cpu_time(m.pid), n);
            let s = t.samples.summary().ok_or("no samples")?;
            println!(
                "  {:<17} {s}, failed {}, master CPU {}",
                op.name(),
                t.failed,
                cpu.map_or("n/a".into(), |c| format!("{c:.1} µs/call"))
            );
            row.ops
                .push((op, format!("{:.0} / {:.0}", us(s.p50), us(s.p99)), cpu));
        }
        rows.push(row);
    }
    print_table(&rows);
    if args.churn_secs > 0.0 {
        churn(&args, &m, &mut c, &segs, small, value, &mut fresh).await?;
    }
    if args.placement_segments > 0 {
        placement(&args, &m, &mut c, &segs, small, value, &mut fresh).await?;
    }
    Ok(())
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Preloads keys `from..to` over `--loaders` connections, printing progress.
async fn preload(
    args: &Args,
    m: &MasterProc,
    from: u64,
    to: u64,
    value: u64,
) -> Result<(), String> {
    let done = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let cpu0 = cpu_time(m.pid);
    let per = (to - from).div_ceil(args.loaders as u64);
    let mut tasks = Vec::new();
    for l in 0..args.loaders as u64 {
        let range = (from + l * per, (from + (l + 1) * per).min(to));
        let (addr, batch, done) = (m.addr.clone(), args.batch, done.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = connect(&addr).await?;
            ops::put_range(&mut c, range, batch, value, &done).await
        }));
    }
    let total = to - from;
    let mut next = Instant::now() + Duration::from_secs_f64(args.progress_secs);
    while !tasks.iter().all(|t| t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if Instant::now() >= next {
            next += Duration::from_secs_f64(args.progress_secs);
            let d = done.load(Ordering::Relaxed);
            println!(
                "  preload {}/{total} ({:.0}/s), master RSS {:.1} MB",
                d,
                d as f64 / t0.elapsed().as_secs_f64(),
                mb(m.rss().unwrap_or(0))
            );
        }
    }
    let mut failed = 0;
    for t in tasks {
        failed += t.await.map_err(|e| e.to_string())??;
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "  preloaded {from}..{to} in {secs:.1} s ({:.0} objects/s, master CPU {} per object), {failed} failed",
        total as f64 / secs,
        per_op_us(cpu0, cpu_time(m.pid), total).map_or("n/a".into(), |c| format!("{c:.2} µs"))
    );
    if failed > 0 {
        return Err(format!("{failed} preload puts failed"));
    }
    Ok(())
}

fn print_table(rows: &[Row]) {
    println!("\n| objects | RSS/object | gauge/object | put start+end p50/p99 µs (CPU) | exist p50/p99 µs (CPU) | get replica list p50/p99 µs (CPU) |");
    println!("|---:|---:|---:|---|---|---|");
    for r in rows {
        let cell = |i: usize| {
            r.ops.get(i).map_or(String::new(), |(_, l, c)| {
                format!("{l} ({})", c.map_or("n/a".into(), |c| format!("{c:.1}")))
            })
        };
        println!(
            "| {} | {:.0} B | {} | {} | {} | {} |",
            r.objects,
            r.rss_per_object,
            r.gauge_per_object
                .map_or("n/a".into(), |g| format!("{g:.0} B")),
            cell(0),
            cell(1),
            cell(2)
        );
    }
    println!();
}

/// Put pairs on one connection while another mounts a fresh segment and unmounts the
/// oldest churning one, over and over (8 churning segments live at a time).
async fn churn(
    args: &Args,
    m: &MasterProc,
    c: &mut Client,
    segs: &Segments,
    small: u64,
    value: u64,
    fresh: &mut u64,
) -> Result<(), String> {
    println!(
        "churn: put pairs for {:.0} s while segments mount and unmount",
        args.churn_secs
    );
    let mut admin = connect(&m.addr).await?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let halt = stop.clone();
    let churner = async move {
        let (mut mounts, mut unmounts, mut dropped) = (Vec::new(), Vec::new(), 0u64);
        let mut n = 0u64;
        while !halt.load(Ordering::Relaxed) {
            mounts.push(
                segs.mount(&mut admin, &format!("churn-{n}:1"), small)
                    .await?,
            );
            n += 1;
            if n > 8 {
                if let Some((t, d)) = segs.unmount_oldest(&mut admin, "churn-").await? {
                    unmounts.push(t);
                    dropped += d;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        while let Some((t, d)) = segs.unmount_oldest(&mut admin, "churn-").await? {
            unmounts.push(t);
            dropped += d;
        }
        Ok::<_, String>((mounts, unmounts, dropped))
    };
    let before = cpu_time(m.pid);
    let load = async {
        let r = time_op(c, Op::PutPair, args.churn_secs, usize::MAX, 0, fresh, value).await;
        stop.store(true, Ordering::Relaxed);
        r
    };
    let (put, churned) = tokio::join!(load, churner);
    let (mut put, (mounts, unmounts, dropped)) = (put?, churned?);
    let n = put.samples.len() as u64;
    let s = put.samples.summary().ok_or("no samples")?;
    let avg = |v: &[Duration]| v.iter().map(|d| us(*d)).sum::<f64>() / v.len().max(1) as f64;
    let max = |v: &[Duration]| v.iter().map(|d| us(*d)).fold(0.0, f64::max);
    println!(
        "  put start+end under churn: {s}, failed {} (a put placed on a segment that left meanwhile fails)",
        put.failed
    );
    println!(
        "  {} mounts (mean {:.0} µs, max {:.0} µs), {} unmounts (mean {:.0} µs, max {:.0} µs), {dropped} objects dropped with their segments; master CPU {} per put pair",
        mounts.len(),
        avg(&mounts),
        max(&mounts),
        unmounts.len(),
        avg(&unmounts),
        max(&unmounts),
        per_op_us(before, cpu_time(m.pid), n).map_or("n/a".into(), |c| format!("{c:.1} µs"))
    );
    Ok(())
}

/// Mounts `--placement-segments` small segments, then times put pairs again.
async fn placement(
    args: &Args,
    m: &MasterProc,
    c: &mut Client,
    segs: &Segments,
    small: u64,
    value: u64,
    fresh: &mut u64,
) -> Result<(), String> {
    let t = Instant::now();
    for i in 0..args.placement_segments {
        segs.mount(c, &format!("place-{i}:1"), small).await?;
    }
    let total = segs.ids.lock().unwrap().len();
    println!(
        "placement: mounted {} more segments in {:.1} s ({total} in all)",
        args.placement_segments,
        t.elapsed().as_secs_f64()
    );
    let before = cpu_time(m.pid);
    let mut r = time_op(c, Op::PutPair, args.op_secs, args.op_max, 0, fresh, value).await?;
    let n = r.samples.len() as u64;
    let s = r.samples.summary().ok_or("no samples")?;
    println!(
        "  put start+end with {total} segments: {s}, failed {}, master CPU {}",
        r.failed,
        per_op_us(before, cpu_time(m.pid), n).map_or("n/a".into(), |c| format!("{c:.1} µs/pair"))
    );
    Ok(())
}
