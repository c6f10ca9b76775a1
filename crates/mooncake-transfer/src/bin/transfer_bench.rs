//! `transfer_bench`: the tool operators use to check a link.
//!
//! ```text
//! transfer_bench --mode target --listen HOST:PORT --segment-size 1gb
//! transfer_bench --mode initiator --target HOST:PORT --op write|read \
//!     --block-size 4mb --batch 32 --duration 4 [--threads N]
//! ```
//! The target serves one registered segment. The initiator asks it for its descriptor
//! (P2PHANDSHAKE), then keeps `--threads` loops each issuing batches of `--batch`
//! requests of `--block-size` bytes for `--duration` seconds. It prints one progress
//! line per second and a final JSON line:
//! `{"op","block_size","batch","threads","gb_per_s","p50_us","p99_us",...}` where the
//! latencies are those of whole batches (with `--batch 1`, a request's round trip).

use clap::Parser;
use mooncake_common::size::parse_size;
use mooncake_transfer::tcp::describe::describe;
use mooncake_transfer::{Opcode, TransferConfig, TransferEngine, TransferRequest};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Debug, Clone)]
#[command(about = "Measure transfer-engine throughput and latency between two engines")]
struct Args {
    /// `target` (serve a segment) or `initiator` (drive transfers against one).
    #[arg(long)]
    mode: String,
    /// Target: HOST:PORT the data listener binds (0.0.0.0 advertises every NIC).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Target: bytes of registered memory.
    #[arg(long, default_value = "1gb")]
    segment_size: String,
    /// Initiator: HOST:PORT of the target.
    #[arg(long)]
    target: Option<String>,
    /// Initiator: read or write.
    #[arg(long, default_value = "write")]
    op: String,
    #[arg(long, default_value = "4mb")]
    block_size: String,
    /// Requests per batch.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 4.0)]
    duration: f64,
    /// Concurrent batch loops.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Local NICs (names or IPs, comma-separated; "" = discover).
    #[arg(long, default_value = "")]
    devices: String,
    /// Connections per (local NIC, remote endpoint).
    #[arg(long)]
    conns: Option<usize>,
    #[arg(long)]
    slice_size: Option<String>,
    /// Attach and verify CRC32C on every payload.
    #[arg(long)]
    crc: bool,
    /// Runtime worker threads (default: CPU count).
    #[arg(long)]
    workers: Option<usize>,
}

fn main() {
    let args = Args::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(w) = args.workers {
        rt.worker_threads(w.max(1));
    }
    let rt = rt.enable_all().build().expect("tokio runtime");
    let result = rt.block_on(async {
        match args.mode.as_str() {
            "target" => target(&args).await,
            "initiator" => initiator(&args).await,
            other => Err(format!("--mode must be target or initiator, not {other:?}")),
        }
    });
    if let Err(e) = result {
        eprintln!("transfer_bench: {e}");
        std::process::exit(2);
    }
}

fn config(args: &Args, bind: &str, port: u16) -> Result<TransferConfig, String> {
    let mut cfg = TransferConfig::new(bind);
    cfg.bind_ip = bind.to_string();
    cfg.port = port;
    cfg.devices = args.devices.clone();
    cfg.tcp.crc = args.crc;
    if let Some(c) = args.conns {
        cfg.tcp.conns_per_path = c;
    }
    if let Some(s) = &args.slice_size {
        cfg.tcp.slice_size = parse_size("--slice-size", s).map_err(|e| e.0)? as usize;
    }
    Ok(cfg)
}

async fn target(args: &Args) -> Result<(), String> {
    let addr: std::net::SocketAddr = args
        .listen
        .parse()
        .map_err(|_| format!("--listen {:?} is not IP:PORT", args.listen))?;
    let size = parse_size("--segment-size", &args.segment_size).map_err(|e| e.0)? as usize;
    let cfg = config(args, &addr.ip().to_string(), addr.port())?;
    // Fault the pages in first so the measurement does not pay for first touch, and
    // so the segment is registered by the time the listener accepts.
    let mut segment = vec![1u8; size];
    let engine = TransferEngine::start(cfg)
        .await
        .map_err(|e| e.to_string())?;
    unsafe { engine.register_memory(segment.as_mut_ptr() as usize, size) }
        .map_err(|e| e.to_string())?;
    let endpoints: Vec<String> = engine
        .descriptor()
        .endpoints
        .into_iter()
        .map(|e| e.addr)
        .collect();
    println!(
        "target ready: segment={} bytes={size} addr={:#x} endpoints={}",
        engine.segment_name(),
        segment.as_ptr() as usize,
        endpoints.join(",")
    );
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    engine.shutdown().await;
    drop(segment);
    Ok(())
}

struct Shared {
    bytes: AtomicU64,
    ops: AtomicU64,
}

async fn initiator(args: &Args) -> Result<(), String> {
    let target = args
        .target
        .clone()
        .ok_or("--target HOST:PORT is required")?;
    let op = match args.op.as_str() {
        "read" => Opcode::Read,
        "write" => Opcode::Write,
        o => return Err(format!("--op must be read or write, not {o:?}")),
    };
    let block = parse_size("--block-size", &args.block_size).map_err(|e| e.0)? as usize;
    if block == 0 || args.batch == 0 || args.threads == 0 {
        return Err("--block-size, --batch and --threads must be > 0".into());
    }
    let engine = TransferEngine::start(config(args, "127.0.0.1", 0)?)
        .await
        .map_err(|e| e.to_string())?;
    // The target may still be registering its segment: ask again for a few seconds.
    let mut desc = describe(&target, Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    for _ in 0..100 {
        if !desc.buffers.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        desc = describe(&target, Duration::from_secs(5))
            .await
            .map_err(|e| e.to_string())?;
    }
    let buf = desc
        .buffers
        .first()
        .ok_or("the target has no registered memory")?
        .clone();
    let window = block as u64 * args.batch as u64;
    let slots = (buf.length / window.max(1)).max(1);
    if buf.length < window.min(buf.length.max(block as u64)) || buf.length < block as u64 {
        return Err(format!(
            "target segment ({} bytes) is smaller than one block",
            buf.length
        ));
    }
    let shared = Arc::new(Shared {
        bytes: AtomicU64::new(0),
        ops: AtomicU64::new(0),
    });
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
    let start = Instant::now();
    let progress = tokio::spawn(progress(shared.clone(), start));
    let mut tasks = Vec::new();
    for t in 0..args.threads {
        let (engine, shared, name) = (engine.clone(), shared.clone(), desc.name.clone());
        let endpoint = target.clone();
        let (batch, base, len) = (args.batch, buf.addr, buf.length);
        tasks.push(tokio::spawn(async move {
            let mut local = vec![7u8; block * batch];
            let mut lat = Vec::new();
            let mut round = t as u64;
            while Instant::now() < deadline {
                let win = base + (round % slots) * window.min(len);
                let reqs: Vec<TransferRequest> = (0..batch)
                    .map(|i| TransferRequest {
                        opcode: op,
                        local_addr: local.as_mut_ptr() as usize + i * block,
                        length: block,
                        target: name.clone(),
                        target_endpoint: Some(endpoint.clone()),
                        remote_addr: (win + (i * block) as u64).min(base + len - block as u64),
                    })
                    .collect();
                let t0 = Instant::now();
                let res = unsafe { engine.transfer(&reqs).await };
                lat.push(t0.elapsed().as_nanos() as u64);
                if let Some(Err(e)) = res.into_iter().find(|r| r.is_err()) {
                    return Err(e.to_string());
                }
                shared.bytes.fetch_add((block * batch) as u64, Relaxed);
                shared.ops.fetch_add(batch as u64, Relaxed);
                round += 1;
            }
            drop(local);
            Ok(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.map_err(|e| e.to_string())??);
    }
    let secs = start.elapsed().as_secs_f64();
    progress.abort();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let bytes = shared.bytes.load(Relaxed);
    let m = engine.metrics();
    println!(
        "{{\"op\":\"{}\",\"block_size\":{block},\"batch\":{},\"threads\":{},\"gb_per_s\":{:.3},\"p50_us\":{:.1},\"p99_us\":{:.1},\"bytes\":{bytes},\"seconds\":{secs:.3},\"ops\":{},\"retries\":{},\"connections\":{}}}",
        args.op,
        args.batch,
        args.threads,
        bytes as f64 / secs / 1e9,
        pct(0.5),
        pct(0.99),
        shared.ops.load(Relaxed),
        m.slices_retried,
        m.connections_opened,
    );
    Ok(())
}

async fn progress(shared: Arc<Shared>, start: Instant) {
    let mut last = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let b = shared.bytes.load(Relaxed);
        println!(
            "progress: t={:.0}s {:.3} GB/s ops={}",
            start.elapsed().as_secs_f64(),
            (b - last) as f64 / 1e9,
            shared.ops.load(Relaxed)
        );
        last = b;
    }
}
