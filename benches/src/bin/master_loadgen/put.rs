//! Put start+end pairs: `clients` connections, each running `depth` loops of
//! `PutStart` then `PutEnd` on fresh keys, for a fixed time.

use crate::setup::{connect, Client};
use mooncake_benches::latency::{Samples, Summary};
use mooncake_proto::{PutEndRequest, PutStartRequest, ReplicateConfig};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Outcome {
    pub pairs: u64,
    pub elapsed: Duration,
    pub latency: Option<Summary>,
    /// Failed pairs by the contract code that failed them.
    pub errors: BTreeMap<i32, u64>,
}

impl Outcome {
    pub fn rate(&self) -> f64 {
        self.pairs as f64 / self.elapsed.as_secs_f64()
    }
}

struct Shared {
    done: AtomicU64,
    stop: AtomicBool,
}

async fn one_loop(
    mut c: Client,
    prefix: String,
    value_size: u64,
    shared: Arc<Shared>,
) -> (Samples, BTreeMap<i32, u64>) {
    let mut samples = Samples::with_capacity(65_536);
    let mut errors = BTreeMap::new();
    let config = Some(ReplicateConfig {
        replica_num: 1,
        ..Default::default()
    });
    let mut seq = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let key = format!("{prefix}-{seq}");
        seq += 1;
        let t = Instant::now();
        let start = c
            .put_start(PutStartRequest {
                client_id: prefix.clone(),
                key: key.clone(),
                size: value_size,
                config: config.clone(),
            })
            .await;
        let code = match start {
            Ok(r) => {
                let r = r.into_inner();
                if r.code != 0 {
                    r.code
                } else {
                    match c
                        .put_end(PutEndRequest {
                            client_id: prefix.clone(),
                            key,
                            put_id: r.put_id,
                        })
                        .await
                    {
                        Ok(e) => e.into_inner().code,
                        Err(s) => mooncake_proto::status::from_status(&s).code(),
                    }
                }
            }
            Err(s) => mooncake_proto::status::from_status(&s).code(),
        };
        if code == 0 {
            samples.record(t.elapsed());
            shared.done.fetch_add(1, Ordering::Relaxed);
        } else {
            *errors.entry(code).or_default() += 1;
        }
    }
    (samples, errors)
}

/// Runs the phase and prints the rate every `every`.
pub async fn run(
    addr: &str,
    clients: usize,
    depth: usize,
    value_size: u64,
    duration: Duration,
    every: Duration,
) -> Result<Outcome, String> {
    let shared = Arc::new(Shared {
        done: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let run = std::process::id();
    let mut tasks = Vec::new();
    for ci in 0..clients {
        let c = connect(addr).await?;
        for d in 0..depth {
            let prefix = format!("lg{run}-c{ci}-d{d}");
            tasks.push(tokio::spawn(one_loop(
                c.clone(),
                prefix,
                value_size,
                shared.clone(),
            )));
        }
    }
    let begin = Instant::now();
    let mut last = 0u64;
    while begin.elapsed() < duration {
        tokio::time::sleep(every.min(duration.saturating_sub(begin.elapsed()))).await;
        let now = shared.done.load(Ordering::Relaxed);
        println!(
            "  put progress: {now:>8} pairs, {:>8.0} pairs/s over the last {:?}",
            (now - last) as f64 / every.as_secs_f64(),
            every
        );
        last = now;
    }
    shared.stop.store(true, Ordering::Relaxed);
    let elapsed = begin.elapsed();
    let mut all = Samples::default();
    let mut errors = BTreeMap::new();
    for t in tasks {
        let (s, e) = t.await.map_err(|e| format!("client task failed: {e}"))?;
        all.merge(s);
        for (code, n) in e {
            *errors.entry(code).or_default() += n;
        }
    }
    Ok(Outcome {
        pairs: all.len() as u64,
        elapsed,
        latency: all.summary(),
        errors,
    })
}
