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

use mooncake_common::auth::{Credential, TokenSet};
use mooncake_common::size::parse_size;
use mooncake_transfer::tcp::auth::{DataAuth, LocalVerifier};
use mooncake_transfer::tcp::describe::describe;
use mooncake_transfer::{Opcode, TransferConfig, TransferEngine, TransferRequest};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

const USAGE: &str = "Measure transfer-engine throughput and latency between two engines

Usage: transfer_bench --mode <target|initiator> [options]   (also --name=value)
  --mode <M>            target (serve a segment) or initiator (drive transfers against one)
  --listen <HOST:PORT>  target: address the data listener binds; 0.0.0.0 advertises every NIC [default: 127.0.0.1:0]
  --segment-size <S>    target: bytes of registered memory [default: 1gb]
  --target <HOST:PORT>  initiator: the target
  --op <OP>             initiator: read or write [default: write]
  --block-size <S>      bytes per request [default: 4mb]
  --batch <N>           requests per batch [default: 32]
  --duration <SECS>     seconds to run [default: 4]
  --threads <N>         concurrent batch loops [default: 1]
  --devices <LIST>      local NICs (names or IPs, comma-separated; empty = discover) [default: \"\"]
  --conns <N>           connections per (local NIC, remote endpoint)
  --slice-size <S>      slice size
  --crc                 attach and verify CRC32C on every payload
  --auth-token-file <F> authentication on the data port: the target accepts the file's tokens
                        (`token` or `tenant:token` lines), the initiator proves its first token
  --workers <N>         runtime worker threads [default: CPU count]
  -h, --help            print this help
";

#[derive(Debug, Clone)]
struct Args {
    mode: String,
    listen: String,
    segment_size: String,
    target: Option<String>,
    op: String,
    block_size: String,
    batch: usize,
    duration: f64,
    threads: usize,
    devices: String,
    conns: Option<usize>,
    slice_size: Option<String>,
    crc: bool,
    workers: Option<usize>,
    auth_token_file: Option<String>,
}

impl Args {
    /// Parses the flags above (`--name value` or `--name=value`); `Ok(None)` for
    /// `--help`. The library stays free of an argument-parsing dependency.
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
        let mut a = Args {
            mode: String::new(),
            listen: "127.0.0.1:0".into(),
            segment_size: "1gb".into(),
            target: None,
            op: "write".into(),
            block_size: "4mb".into(),
            batch: 32,
            duration: 4.0,
            threads: 1,
            devices: String::new(),
            conns: None,
            slice_size: None,
            crc: false,
            workers: None,
            auth_token_file: None,
        };
        fn num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, String> {
            v.trim()
                .parse()
                .map_err(|_| format!("invalid value {v:?} for --{name}"))
        }
        let mut it = args.into_iter();
        let mut mode_set = false;
        while let Some(arg) = it.next() {
            if arg == "-h" || arg == "--help" {
                return Ok(None);
            }
            let Some(flag) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument {arg:?}"));
            };
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (flag, None),
            };
            if name == "crc" {
                a.crc = match inline.as_deref() {
                    None | Some("true") => true,
                    Some("false") => false,
                    Some(v) => return Err(format!("invalid value {v:?} for --crc")),
                };
                continue;
            }
            let known = [
                "mode",
                "listen",
                "segment-size",
                "target",
                "op",
                "block-size",
                "batch",
                "duration",
                "threads",
                "devices",
                "conns",
                "slice-size",
                "workers",
                "auth-token-file",
            ];
            if !known.contains(&name) {
                return Err(format!("unknown flag --{name}"));
            }
            let v = match inline.or_else(|| it.next()) {
                Some(v) => v,
                None => return Err(format!("--{name} needs a value")),
            };
            match name {
                "mode" => {
                    a.mode = v;
                    mode_set = true;
                }
                "listen" => a.listen = v,
                "segment-size" => a.segment_size = v,
                "target" => a.target = Some(v),
                "op" => a.op = v,
                "block-size" => a.block_size = v,
                "batch" => a.batch = num(name, &v)?,
                "duration" => a.duration = num(name, &v)?,
                "threads" => a.threads = num(name, &v)?,
                "devices" => a.devices = v,
                "conns" => a.conns = Some(num(name, &v)?),
                "slice-size" => a.slice_size = Some(v),
                "auth-token-file" => a.auth_token_file = Some(v),
                _ => a.workers = Some(num(name, &v)?),
            }
        }
        if !mode_set {
            return Err("--mode is required (target or initiator)".into());
        }
        if Duration::try_from_secs_f64(a.duration).is_err() {
            return Err(format!("invalid value {} for --duration", a.duration));
        }
        Ok(Some(a))
    }
}

fn main() {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("transfer_bench: {e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
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
    if let Some(f) = &args.auth_token_file {
        let path = std::path::Path::new(f);
        let tokens = TokenSet::load(path).map_err(|e| e.0)?;
        let cred = Credential::from_file(path).map_err(|e| e.0)?;
        cfg.auth = DataAuth::new(cred, Arc::new(LocalVerifier(tokens)));
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
    let cfg = config(args, "127.0.0.1", 0)?;
    let cred = cfg.auth.credential.clone();
    let engine = TransferEngine::start(cfg)
        .await
        .map_err(|e| e.to_string())?;
    // The target may still be registering its segment: ask again for a few seconds.
    let mut desc = describe(&target, Duration::from_secs(5), cred.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    for _ in 0..100 {
        if !desc.buffers.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        desc = describe(&target, Duration::from_secs(5), cred.as_ref())
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
                        grant: None,
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

#[cfg(test)]
mod tests {
    use super::Args;

    fn parse(line: &str) -> Result<Option<Args>, String> {
        Args::parse(line.split_whitespace().map(String::from))
    }

    #[test]
    fn flags_in_both_forms_and_defaults() {
        let a =
            parse("--mode initiator --target 127.0.0.1:9 --op=read --batch 1 --crc --duration=0.5")
                .unwrap()
                .unwrap();
        assert_eq!(a.mode, "initiator");
        assert_eq!(a.target.as_deref(), Some("127.0.0.1:9"));
        assert_eq!(a.op, "read");
        assert_eq!(a.batch, 1);
        assert!(a.crc);
        assert_eq!(a.duration, 0.5);
        assert_eq!(a.block_size, "4mb");
        assert_eq!(a.threads, 1);
        assert!(parse("--help").unwrap().is_none());
    }

    #[test]
    fn bad_input_is_named() {
        assert!(parse("--op read").unwrap_err().contains("--mode"));
        assert!(parse("--mode target --batch x")
            .unwrap_err()
            .contains("--batch"));
        assert!(parse("--mode target --bogus 1")
            .unwrap_err()
            .contains("--bogus"));
        assert!(parse("--mode target --listen")
            .unwrap_err()
            .contains("--listen"));
        assert!(parse("--mode target --duration -1")
            .unwrap_err()
            .contains("--duration"));
        assert!(parse("--mode target stray").unwrap_err().contains("stray"));
    }
}
