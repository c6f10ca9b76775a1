//! `kv_ops`: end-to-end put/get through a running master and store with the Rust
//! client, for comparing one cluster against another (e.g. with and without TLS on the
//! control plane; the client reads `MOONCAKE_TLS_*` itself).
//!
//! ```text
//! kv_ops MASTER METADATA [SECS]
//! ```
//! Phases, `SECS` (default 3) each: `put` of fresh 4 KiB keys, `get` of those keys
//! round-robin, then rounds of `put_batch` + `get_batch` of 32 x 512 KiB (the batch's
//! keys removed after each round, untimed). One JSON line per phase on stdout:
//! `{"phase","ops","secs","ops_per_s","mib_per_s","client_cpu_us","server_cpu_us"}`.
//! Every get's length is checked.
//!
//! `client_cpu_us` is this process's CPU time (user + system) per operation of the
//! phase; `server_cpu_us` that of the processes listed in `KV_OPS_CPU_PIDS`
//! (comma-separated PIDs, e.g. the master and the store; 0 when unset). CPU per
//! operation moves far less than throughput with the load of a shared host.

use mooncake_client::{Client, ClientConfig};
use mooncake_common::config::NodeConfig;
use mooncake_common::types::ReplicateConfig;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: kv_ops MASTER METADATA [SECS]";
const SMALL: usize = 4096;
const BATCH: usize = 32;
const LARGE: usize = 512 << 10;

fn report(phase: &str, ops: usize, bytes_per_op: usize, took: Duration, cpu: Cpu) {
    let secs = took.as_secs_f64();
    let rate = ops as f64 / secs;
    let per_op = |s: f64| s * 1e6 / ops.max(1) as f64;
    println!(
        "{{\"phase\":\"{phase}\",\"ops\":{ops},\"secs\":{secs:.3},\"ops_per_s\":{rate:.0},\"mib_per_s\":{:.1},\"client_cpu_us\":{:.2},\"server_cpu_us\":{:.2}}}",
        rate * bytes_per_op as f64 / (1 << 20) as f64,
        per_op(cpu.client),
        per_op(cpu.servers)
    );
}

/// CPU seconds (user + system): this process's and the watched processes' together.
#[derive(Clone, Copy, Default)]
struct Cpu {
    client: f64,
    servers: f64,
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;
    fn sub(self, o: Cpu) -> Cpu {
        Cpu {
            client: self.client - o.client,
            servers: self.servers - o.servers,
        }
    }
}

impl std::ops::AddAssign for Cpu {
    fn add_assign(&mut self, o: Cpu) {
        self.client += o.client;
        self.servers += o.servers;
    }
}

/// The PIDs of `KV_OPS_CPU_PIDS`.
fn watched() -> Vec<u32> {
    std::env::var("KV_OPS_CPU_PIDS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

/// CPU used so far by this process and by `pids` (a process that is gone counts 0).
fn cpu_now(pids: &[u32]) -> Cpu {
    // SAFETY: getrusage fills the struct it is given; a zeroed rusage is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let servers = pids
        .iter()
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            // Fields after the command's closing parenthesis start at field 3 (state);
            // utime and stime are fields 14 and 15.
            let f: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
            let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            Some(ticks / tick)
        })
        .sum();
    Cpu {
        client: tv(ru.ru_utime) + tv(ru.ru_stime),
        servers,
    }
}

async fn run(master: String, metadata: String, secs: Duration) -> Result<(), String> {
    let node = NodeConfig {
        master_server_address: master,
        metadata_server: metadata,
        global_segment_size: 0,
        local_buffer_size: 64 << 20,
        local_hostname: "127.0.0.1".into(),
        ..Default::default()
    };
    let c = Client::connect(ClientConfig::new(node))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let rc = ReplicateConfig::default();
    let tag = std::process::id();
    let small = vec![7u8; SMALL];

    let pids = watched();
    let (mut n, t, c0) = (0usize, Instant::now(), cpu_now(&pids));
    while t.elapsed() < secs {
        c.put(&format!("kv-{tag}-{n}"), &small, &rc)
            .await
            .map_err(|e| format!("put: {e}"))?;
        n += 1;
    }
    report("put_4k", n, SMALL, t.elapsed(), cpu_now(&pids) - c0);

    let (mut i, t, c0) = (0usize, Instant::now(), cpu_now(&pids));
    while t.elapsed() < secs {
        let v = c
            .get(&format!("kv-{tag}-{}", i % n))
            .await
            .map_err(|e| format!("get: {e}"))?;
        if v.len() != SMALL {
            return Err(format!("get: {} bytes, not {SMALL}", v.len()));
        }
        i += 1;
    }
    report("get_4k", i, SMALL, t.elapsed(), cpu_now(&pids) - c0);
    for k in 0..n {
        let _ = c.remove(&format!("kv-{tag}-{k}"), true).await;
    }

    let large = vec![9u8; LARGE];
    let values: Vec<&[u8]> = (0..BATCH).map(|_| large.as_slice()).collect();
    let (mut put_t, mut get_t, mut rounds) = (Duration::ZERO, Duration::ZERO, 0usize);
    let (mut put_cpu, mut get_cpu) = (Cpu::default(), Cpu::default());
    let t = Instant::now();
    while t.elapsed() < secs * 2 {
        let keys: Vec<String> = (0..BATCH)
            .map(|j| format!("kvb-{tag}-{rounds}-{j}"))
            .collect();
        let (t0, c0) = (Instant::now(), cpu_now(&pids));
        for r in c.put_batch(&keys, &values, &rc).await {
            r.map_err(|e| format!("put_batch: {e}"))?;
        }
        put_t += t0.elapsed();
        put_cpu += cpu_now(&pids) - c0;
        let (t0, c0) = (Instant::now(), cpu_now(&pids));
        for r in c.get_batch(&keys).await {
            let v = r.map_err(|e| format!("get_batch: {e}"))?;
            if v.len() != LARGE {
                return Err(format!("get_batch: {} bytes, not {LARGE}", v.len()));
            }
        }
        get_t += t0.elapsed();
        get_cpu += cpu_now(&pids) - c0;
        for k in &keys {
            let _ = c.remove(k, true).await;
        }
        rounds += 1;
    }
    report("batch_put_32x512k", rounds, BATCH * LARGE, put_t, put_cpu);
    report("batch_get_32x512k", rounds, BATCH * LARGE, get_t, get_cpu);
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(master), Some(metadata)) = (args.first(), args.get(1)) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let secs = match args.get(2).map(|s| s.parse::<f64>()) {
        None => 3.0,
        Some(Ok(s)) if s > 0.0 && s.is_finite() => s,
        Some(_) => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kv_ops: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(
        master.clone(),
        metadata.clone(),
        Duration::from_secs_f64(secs),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kv_ops: {e}");
            ExitCode::FAILURE
        }
    }
}
