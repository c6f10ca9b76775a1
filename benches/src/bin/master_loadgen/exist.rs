//! Batch exist: one `BatchExist` of `batch` keys per round trip, back to back from one
//! client, after the keys were written (so every answer must be 1).

use crate::setup::Client;
use mooncake_benches::latency::{Samples, Summary};
use mooncake_proto::{BatchKeyRequest, BatchPutEndRequest, BatchPutStartRequest, ReplicateConfig};
use std::time::{Duration, Instant};

/// Writes the keys the exist phase asks about.
pub async fn populate(c: &mut Client, keys: &[String], value_size: u64) -> Result<(), String> {
    let start = c
        .batch_put_start(BatchPutStartRequest {
            segment_table: false,
            client_id: "loadgen-exist".into(),
            keys: keys.to_vec(),
            sizes: vec![value_size; keys.len()],
            config: Some(ReplicateConfig {
                replica_num: 1,
                ..Default::default()
            }),
        })
        .await
        .map_err(|e| format!("batch put start: {}", e.message()))?
        .into_inner();
    let mut put_ids = Vec::with_capacity(keys.len());
    for (k, r) in keys.iter().zip(&start.results) {
        if r.code != 0 {
            return Err(format!("batch put start of {k}: code {}", r.code));
        }
        put_ids.push(r.put_id);
    }
    let end = c
        .batch_put_end(BatchPutEndRequest {
            client_id: "loadgen-exist".into(),
            keys: keys.to_vec(),
            put_ids,
        })
        .await
        .map_err(|e| format!("batch put end: {}", e.message()))?
        .into_inner();
    match end.codes.iter().position(|&c| c != 0) {
        Some(i) => Err(format!(
            "batch put end of {}: code {}",
            keys[i], end.codes[i]
        )),
        None => Ok(()),
    }
}

/// Runs batch exists for `duration`, printing progress every `every`.
pub async fn run(
    c: &mut Client,
    keys: &[String],
    duration: Duration,
    every: Duration,
) -> Result<Summary, String> {
    let req = BatchKeyRequest {
        keys: keys.to_vec(),
    };
    // Warm the connection and the server's code paths.
    for _ in 0..20 {
        c.batch_exist(req.clone())
            .await
            .map_err(|e| e.message().to_string())?;
    }
    let mut all = Samples::with_capacity(16_384);
    let mut window = Samples::default();
    let begin = Instant::now();
    let mut next_report = begin + every;
    while begin.elapsed() < duration {
        // Building the request (1024 owned strings) is the caller's work, not the
        // round trip's: done before the clock starts.
        let msg = req.clone();
        let t = Instant::now();
        let r = c
            .batch_exist(msg)
            .await
            .map_err(|e| format!("batch exist: {}", e.message()))?
            .into_inner();
        let dt = t.elapsed();
        if r.codes.len() != keys.len() || r.codes.iter().any(|&x| x != 1) {
            return Err(format!(
                "batch exist answered {} codes, not all 1: {:?}",
                r.codes.len(),
                &r.codes[..r.codes.len().min(8)]
            ));
        }
        all.record(dt);
        window.record(dt);
        if Instant::now() >= next_report {
            if let Some(s) = window.summary() {
                println!(
                    "  exist progress: {:>6} batches, last {:?}: {s}",
                    all.len(),
                    every
                );
            }
            window = Samples::default();
            next_report += every;
        }
    }
    all.summary()
        .ok_or_else(|| "no batch exist completed".to_string())
}
