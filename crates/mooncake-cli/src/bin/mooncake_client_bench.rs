//! `mooncake_client_bench`: put/get throughput of the Rust client for a range of
//! object sizes, through batched zero-copy calls on registered memory.
//!
//! With `--spawn-stores N` it starts its own master and N store daemons (the sibling
//! binaries of this executable) on free loopback ports; otherwise it uses `--master`.
//! `MOONCAKE_DISABLE_SHM=1` forces the TCP transfer engine even on one host.
//! `--probe-dead` measures how fast calls fail against an unreachable master.

use clap::Parser;
use mooncake_client::{Client, ClientConfig, ReplicateConfig};
use mooncake_common::config::NodeConfig;
use mooncake_common::size::{format_size, parse_size};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    master: Option<String>,
    /// Start a master and this many stores on loopback.
    #[arg(long = "spawn-stores", default_value_t = 0)]
    spawn_stores: usize,
    /// Segment size of each spawned store.
    #[arg(long, default_value = "1gb")]
    segment: String,
    #[arg(long, default_value = "4kb,64kb,512kb,1mb,4mb,32mb")]
    sizes: String,
    /// Bytes moved per size and direction.
    #[arg(long, default_value = "512mb")]
    total: String,
    /// Objects per batch call (capped by the size of `--total`).
    #[arg(long, default_value_t = 16)]
    batch: usize,
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Measure the failure latency against a master nobody serves, then exit.
    #[arg(long = "probe-dead")]
    probe_dead: bool,
}

struct Cluster(Vec<Child>);

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self.0.iter_mut().rev() {
            // Safety: signalling our own child (SIGTERM: stores unmount and clean up).
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    mooncake_common::ports::free_loopback_port().unwrap_or(0)
}

fn wait_port(port: u16) -> bool {
    (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
}

fn spawn(n: usize, segment: &str) -> Result<(Cluster, String), String> {
    let dir = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .parent()
        .map(|p| p.to_path_buf())
        .ok_or("no exe dir")?;
    let (rpc, met, meta) = (free_port(), free_port(), free_port());
    let mut cl = Cluster(Vec::new());
    let master = Command::new(dir.join("mooncake_master"))
        .args([
            "--rpc_address",
            "127.0.0.1",
            "--rpc_port",
            &rpc.to_string(),
            "--metrics_port",
            &met.to_string(),
        ])
        .args([
            "--http_metadata_server_host",
            "127.0.0.1",
            "--http_metadata_server_port",
            &meta.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start mooncake_master next to this binary: {e}"))?;
    cl.0.push(master);
    if !wait_port(rpc) {
        return Err("master did not start".into());
    }
    let ready_dir = std::env::temp_dir().join(format!("mc-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&ready_dir);
    for i in 0..n {
        let ready = ready_dir.join(format!("store-{i}"));
        let _ = std::fs::remove_file(&ready);
        let store = Command::new(dir.join("mooncake_store"))
            .args(["--port", "0", "--http_host", "127.0.0.1"])
            .env("MOONCAKE_MASTER", format!("127.0.0.1:{rpc}"))
            .env(
                "MOONCAKE_TE_META_DATA_SERVER",
                format!("http://127.0.0.1:{meta}/metadata"),
            )
            .env("MOONCAKE_GLOBAL_SEGMENT_SIZE", segment)
            .env("MOONCAKE_LOCAL_HOSTNAME", "127.0.0.1")
            .env("MOONCAKE_READY_FILE", &ready)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start mooncake_store: {e}"))?;
        cl.0.push(store);
        if !(0..400).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            ready.exists()
        }) {
            return Err("store did not mount".into());
        }
    }
    Ok((cl, format!("127.0.0.1:{rpc}")))
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(((v.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

async fn run_size(
    c: &Client,
    size: usize,
    total: usize,
    batch: usize,
    rc: &ReplicateConfig,
    buf: &mut [u8],
) -> Result<(), String> {
    let per_batch = batch.min(buf.len() / size).max(1);
    let objects = (total / size).max(per_batch);
    let batches = objects.div_ceil(per_batch);
    let base = buf.as_mut_ptr() as usize;
    let bufs: Vec<(usize, usize)> = (0..per_batch).map(|i| (base + i * size, size)).collect();
    let keys_of = |b: usize| -> Vec<String> {
        (0..per_batch)
            .map(|i| format!("bench-{size}-{}", b * per_batch + i))
            .collect()
    };
    let mut lat = Vec::new();
    let t0 = Instant::now();
    for b in 0..batches {
        let t = Instant::now();
        // Safety: `buf` is registered and outlives the call.
        let r = unsafe { c.batch_put_from(&keys_of(b), &bufs, rc).await };
        if let Some(Err(e)) = r.into_iter().find(|r| r.is_err()) {
            return Err(format!("put {}: {e}", format_size(size as u64)));
        }
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let put_s = t0.elapsed().as_secs_f64();
    let put_p50 = pct(&mut lat, 0.5);
    lat.clear();
    let t0 = Instant::now();
    for b in 0..batches {
        let t = Instant::now();
        // Safety: as above.
        let r = unsafe { c.batch_get_into(&keys_of(b), &bufs).await };
        if let Some(Err(e)) = r.into_iter().find(|r| r.is_err()) {
            return Err(format!("get {}: {e}", format_size(size as u64)));
        }
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let get_s = t0.elapsed().as_secs_f64();
    let bytes = (batches * per_batch * size) as f64;
    println!(
        "| {:>9} | {:>5} | {:>8.2} | {:>8.2} | {:>9.0} | {:>9.0} | {:>8.3} | {:>8.3} |",
        format_size(size as u64),
        per_batch,
        bytes / put_s / 1e9,
        bytes / get_s / 1e9,
        (batches * per_batch) as f64 / put_s,
        (batches * per_batch) as f64 / get_s,
        put_p50,
        pct(&mut lat, 0.5),
    );
    let _ = c.remove_by_regex(&format!("^bench-{size}-"), true).await;
    Ok(())
}

async fn probe_dead() -> Result<(), String> {
    let dead = format!("127.0.0.1:{}", free_port());
    let node = NodeConfig {
        master_server_address: dead,
        global_segment_size: 0,
        local_buffer_size: 0,
        local_hostname: "127.0.0.1".into(),
        ..NodeConfig::default()
    };
    // Setup itself refuses a dead master (RPC_FAIL)...
    let t = Instant::now();
    match Client::connect(ClientConfig::new(node.clone())).await {
        Err(e) if e.code.code() == -900 => println!(
            "unreachable master: connect -> -900 in {:.3} ms",
            t.elapsed().as_secs_f64() * 1e3
        ),
        Err(e) => return Err(format!("connect: expected -900, got {e}")),
        Ok(_) => return Err("connect to a dead master succeeded".into()),
    }
    // ...so the calls are measured on a client whose master is gone after start-up.
    let c = Client::start(ClientConfig::new(node))
        .await
        .map_err(|e| e.to_string())?;
    let mut lat = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let e = c.exist("k").await.err().map(|e| e.code.code());
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        if e != Some(-900) {
            return Err(format!("expected -900, got {e:?}"));
        }
    }
    println!(
        "unreachable master: exist -> -900 in p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms (200 calls)",
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
        pct(&mut lat, 1.0)
    );
    Ok(())
}

async fn run(a: Args) -> Result<(), String> {
    if a.probe_dead {
        return probe_dead().await;
    }
    let (_cluster, master) = if a.spawn_stores > 0 {
        let (c, m) = spawn(a.spawn_stores, &a.segment)?;
        (Some(c), m)
    } else {
        (
            None,
            a.master
                .clone()
                .ok_or("--master or --spawn-stores is required")?,
        )
    };
    let node = NodeConfig {
        master_server_address: master,
        global_segment_size: 0,
        local_buffer_size: 0,
        local_hostname: "127.0.0.1".into(),
        ..NodeConfig::default()
    };
    let c = Client::connect(ClientConfig::new(node))
        .await
        .map_err(|e| e.to_string())?;
    let sizes: Vec<usize> = a
        .sizes
        .split(',')
        .map(|s| {
            parse_size("--sizes", s)
                .map(|n| n as usize)
                .map_err(|e| e.0)
        })
        .collect::<Result<_, _>>()?;
    let total = parse_size("--total", &a.total).map_err(|e| e.0)? as usize;
    let max = sizes.iter().copied().max().unwrap_or(0);
    let mut buf = vec![0xA5u8; (max * a.batch).min(512 << 20).max(max)];
    for (i, b) in buf.iter_mut().enumerate().step_by(4096) {
        *b = i as u8;
    }
    // Safety: `buf` outlives every call below and is unregistered before it drops.
    unsafe { c.register_buffer(buf.as_mut_ptr() as usize, buf.len()) }
        .map_err(|e| e.to_string())?;
    let shm = c.tuning().shm;
    println!(
        "stores: {}, replicas: {}, same-host shm path: {}",
        a.spawn_stores.max(1),
        a.replicas,
        if shm { "on" } else { "off (TCP)" }
    );
    println!("| size      | batch | put GB/s | get GB/s | put obj/s | get obj/s | put p50 ms | get p50 ms |");
    println!(
        "|-----------|-------|----------|----------|-----------|-----------|----------|----------|"
    );
    let rc = ReplicateConfig::replicas(a.replicas);
    // Warm-up (untimed): one small put/get maps the same-host segments; give the
    // background page-table prefault a moment so it is not measured.
    let warm: Vec<String> = (0..8).map(|i| format!("bench-warmup-{i}")).collect();
    let one: Vec<(usize, usize)> = (0..8)
        .map(|i| (buf.as_mut_ptr() as usize + i * 4096, 4096))
        .collect();
    // Safety: `buf` is registered and outlives the calls.
    unsafe {
        let _ = c.batch_put_from(&warm, &one, &rc).await;
        let _ = c.batch_get_into(&warm, &one).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = c.remove_by_regex("^bench-warmup-", true).await;
    for s in sizes {
        run_size(&c, s, total, a.batch, &rc, &mut buf).await?;
    }
    let _ = c.unregister_buffer(buf.as_mut_ptr() as usize);
    let _ = c.close().await;
    Ok(())
}

fn main() {
    let a = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Err(e) = rt.block_on(run(a)) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
