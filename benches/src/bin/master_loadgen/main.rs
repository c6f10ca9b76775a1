//! `master_loadgen`: drives a master over its control-plane protocol (framed, or gRPC
//! with `--protocol grpc`) and reports what it measured.
//!
//! 1. mounts synthetic segments (descriptors only; owners heartbeat),
//! 2. batch exist: writes `--batch` keys, then times `BatchExist` of all of them,
//!    back to back, for `--exist-secs` (goal: p50 <= 350 µs for 1024 keys),
//! 3. put pairs: `--clients` connections x `--depth` loops of PutStart+PutEnd on fresh
//!    keys for `--put-secs` (goal: >= 20k pairs/s from 4 clients),
//! 4. removes what it wrote and unmounts.
//!
//! Without `--master` it starts a master in this process on 127.0.0.1:0 (handy, but it
//! then shares the CPU with the load; pass `--master` to measure a separate process).

mod exist;
mod put;
mod setup;

use clap::Parser;
use mooncake_benches::cpu::{cpu_time, per_op_us};
use mooncake_common::size::parse_size;
use mooncake_proto::RemoveAllRequest;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "master_loadgen",
    about = "Load generator for the Mooncake master (gRPC)"
)]
struct Args {
    /// host:port of a running master; omitted = start one in this process.
    #[arg(long)]
    master: Option<String>,
    /// Synthetic segments to mount (each its own owner).
    #[arg(long, default_value_t = 4)]
    segments: usize,
    /// Size of each synthetic segment (base-1024 units).
    #[arg(long, default_value = "4gb")]
    segment_size: String,
    /// Keys per BatchExist.
    #[arg(long, default_value_t = 1024)]
    batch: usize,
    /// Seconds of batch exists.
    #[arg(long, default_value_t = 5.0)]
    exist_secs: f64,
    /// Concurrent clients (connections) in the put phase.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Put loops per client (in-flight pairs per connection).
    #[arg(long, default_value_t = 1)]
    depth: usize,
    /// Seconds of put pairs.
    #[arg(long, default_value_t = 10.0)]
    put_secs: f64,
    /// Object size the puts allocate.
    #[arg(long, default_value = "4kb")]
    value_size: String,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 1.0)]
    progress_secs: f64,
    /// Runtime threads of the load generator (1 = a single-threaded runtime, which
    /// avoids cross-thread wake-ups and leaves more CPU to the master).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Pid of the `--master` process, to report its CPU time per operation.
    #[arg(long)]
    master_pid: Option<u32>,
    /// Heartbeat round trips timed first, as the floor of a gRPC call here.
    #[arg(long, default_value_t = 2000)]
    baseline_calls: usize,
    /// Control-plane protocol: `framed` (what the client uses by default) or `grpc`
    /// (HTTP/2).
    #[arg(long, default_value = "framed")]
    protocol: mooncake_client::transport::Protocol,
    /// A token file to prove on every connection (a master with `--auth_token_file`):
    /// measures what authentication costs.
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
}

fn secs(flag: &str, v: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v).map_err(|_| format!("invalid --{flag}: {v}"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("master_loadgen: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("master_loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let segment_size = parse_size("--segment_size", &args.segment_size).map_err(|e| e.0)?;
    let value_size = parse_size("--value_size", &args.value_size).map_err(|e| e.0)?;
    let every = secs("progress_secs", args.progress_secs)?;
    if args.batch == 0 || args.clients == 0 || args.depth == 0 || args.segments == 0 {
        return Err("--batch, --clients, --depth and --segments must be positive".into());
    }

    let mut local = None;
    let addr = match &args.master {
        Some(a) => a.clone(),
        None => {
            let cfg = mooncake_master::config::MasterConfig {
                rpc_address: "127.0.0.1".into(),
                rpc_port: 0,
                metrics_host: "127.0.0.1".into(),
                metrics_port: 0,
                enable_metric_reporting: false,
                ..Default::default()
            };
            let m = mooncake_master::app::start(cfg)
                .await
                .map_err(|e| e.to_string())?;
            let a = m.rpc_addr.to_string();
            local = Some(m);
            a
        }
    };
    println!(
        "master_loadgen: master {addr}{}, {} segments of {}",
        if local.is_some() { " (in-process)" } else { "" },
        args.segments,
        mooncake_common::size::format_size(segment_size)
    );
    let _ = setup::PROTOCOL.set(args.protocol);
    if let Some(f) = &args.token_file {
        let c = mooncake_common::auth::Credential::from_file(f).map_err(|e| e.0)?;
        let _ = setup::AUTH.set(mooncake_client::auth::ClientAuth::new(c, None));
        println!("master_loadgen: proving the token of {}", f.display());
    }
    println!("master_loadgen: protocol {:?}", args.protocol);
    let mut c = setup::connect(&addr).await?;
    let segments = setup::Segments::mount(&mut c, args.segments, segment_size).await?;

    let base = setup::baseline(&mut c, args.baseline_calls).await?;
    println!("baseline: heartbeat round trip {base}");

    let keys: Vec<String> = (0..args.batch)
        .map(|i| format!("lg{}-exist-{i:06}", std::process::id()))
        .collect();
    exist::populate(&mut c, &keys, value_size).await?;
    println!(
        "batch exist: {} keys per call, {} s",
        args.batch, args.exist_secs
    );
    let me = std::process::id();
    // In-process, the master's CPU is this process's: report it as one figure.
    let master_pid = if local.is_some() {
        None
    } else {
        args.master_pid
    };
    let cpu = |pid: Option<u32>| pid.and_then(cpu_time);
    let (m0, l0) = (cpu(master_pid), cpu(Some(me)));
    let ex = exist::run(&mut c, &keys, secs("exist_secs", args.exist_secs)?, every).await?;
    let (m1, l1) = (cpu(master_pid), cpu(Some(me)));
    let exist_cpu = Cpu::new(m0, m1, l0, l1, ex.count as u64);
    let exist_rate = 1.0 / ex.mean.as_secs_f64();

    println!(
        "put start+end: {} clients x {} in flight, {} per object, {} s",
        args.clients, args.depth, args.value_size, args.put_secs
    );
    let (m0, l0) = (cpu(master_pid), cpu(Some(me)));
    let puts = put::run(
        &addr,
        args.clients,
        args.depth,
        value_size,
        secs("put_secs", args.put_secs)?,
        every,
    )
    .await?;
    let (m1, l1) = (cpu(master_pid), cpu(Some(me)));
    let put_cpu = Cpu::new(m0, m1, l0, l1, puts.pairs);

    let removed = c
        .remove_all(RemoveAllRequest { force: true })
        .await
        .map(|r| r.into_inner().count)
        .unwrap_or(-1);
    segments.unmount(&mut c).await;
    if let Some(m) = local {
        m.stop().await;
    }

    println!("\n== results ==");
    println!("baseline heartbeat {base}");
    println!(
        "batch_exist keys={} {ex} ({exist_rate:.0} batches/s, {:.2} M keys/s)  goal p50 <= 350µs: {}",
        args.batch,
        exist_rate * args.batch as f64 / 1e6,
        verdict(ex.p50 <= Duration::from_micros(350))
    );
    match &puts.latency {
        Some(l) => println!(
            "put_pairs clients={} depth={} pairs={} in {:.2}s = {:.0} pairs/s; pair {l}  goal >= 20000/s: {}",
            args.clients,
            args.depth,
            puts.pairs,
            puts.elapsed.as_secs_f64(),
            puts.rate(),
            verdict(puts.rate() >= 20_000.0)
        ),
        None => println!("put_pairs: none succeeded"),
    }
    println!("batch_exist CPU per batch: {exist_cpu}");
    println!("put_pairs CPU per pair: {put_cpu}");
    if !puts.errors.is_empty() {
        println!("put failures by code: {:?}", puts.errors);
    }
    println!("cleanup: removed {removed} objects");
    Ok(())
}

/// CPU per operation of the master and of this load generator.
struct Cpu {
    master_us: Option<f64>,
    loadgen_us: Option<f64>,
}

impl Cpu {
    fn new(
        m0: Option<Duration>,
        m1: Option<Duration>,
        l0: Option<Duration>,
        l1: Option<Duration>,
        ops: u64,
    ) -> Self {
        Self {
            master_us: per_op_us(m0, m1, ops),
            loadgen_us: per_op_us(l0, l1, ops),
        }
    }
}

impl std::fmt::Display for Cpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.master_us {
            Some(m) => write!(f, "master {m:.1}µs, ")?,
            None => write!(f, "master n/a (give --master-pid), ")?,
        }
        match self.loadgen_us {
            Some(l) => write!(f, "loadgen process {l:.1}µs"),
            None => write!(f, "loadgen n/a"),
        }
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}
