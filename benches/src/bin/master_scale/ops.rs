//! The gRPC side: synthetic segments (descriptors only, owners heartbeating), batched
//! preloading, and single-key calls timed one at a time.

use mooncake_benches::latency::Samples;
use mooncake_proto::master_client::MasterClient;
use mooncake_proto::{
    BatchPutEndRequest, BatchPutStartRequest, HeartbeatRequest, KeyRequest, MountSegmentRequest,
    PutEndRequest, PutStartRequest, SegmentDesc, UnmountSegmentRequest,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};

pub type Client = MasterClient<Channel>;

/// One HTTP/2 connection to the master.
pub async fn connect(addr: &str) -> Result<Client, String> {
    let ch = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("master address {addr:?}: {e}"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(120))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| format!("cannot reach the master at {addr}: {e}"))?;
    Ok(MasterClient::new(ch))
}

/// The key of object `i`: 20 bytes, like the check's keys.
pub fn key(i: u64) -> String {
    format!("k{i:019}")
}

/// A segment descriptor nobody backs with memory (the master never touches bytes).
fn desc(name: &str, size: u64, n: u64) -> SegmentDesc {
    SegmentDesc {
        name: name.into(),
        owner: name.into(),
        base: 0x1000_0000_0000 + n * (1 << 40),
        size,
        protocol: "tcp".into(),
        transport_endpoint: "127.0.0.1:9".into(),
        ..Default::default()
    }
}

/// Synthetic segments whose owners heartbeat (every second, so that a 10 s client
/// TTL never expires them) until the set is dropped.
pub struct Segments {
    /// (client id, segment name)
    pub ids: Arc<Mutex<Vec<(String, String)>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Segments {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Segments {
    pub fn new(c: &Client) -> Self {
        let ids: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (list, halt, mut hb) = (ids.clone(), stop.clone(), c.clone());
        tokio::spawn(async move {
            while !halt.load(Ordering::Relaxed) {
                let clients: Vec<String> =
                    list.lock().unwrap().iter().map(|x| x.0.clone()).collect();
                for client_id in clients {
                    let _ = hb.heartbeat(HeartbeatRequest { client_id }).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Segments { ids, stop }
    }

    /// Mounts one segment of `size` bytes under its own client id.
    pub async fn mount(&self, c: &mut Client, name: &str, size: u64) -> Result<Duration, String> {
        let n = self.ids.lock().unwrap().len() as u64;
        let client_id = format!("{name}-owner");
        let t = Instant::now();
        let r = c
            .mount_segment(MountSegmentRequest {
                client_id: client_id.clone(),
                segment: Some(desc(name, size, n)),
            })
            .await
            .map_err(|e| format!("mount {name}: {}", e.message()))?
            .into_inner();
        let took = t.elapsed();
        if r.code != 0 {
            return Err(format!("mount {name}: code {}", r.code));
        }
        self.ids.lock().unwrap().push((client_id, name.to_string()));
        Ok(took)
    }

    /// Unmounts the oldest segment whose name starts with `prefix`: (time, objects dropped).
    pub async fn unmount_oldest(
        &self,
        c: &mut Client,
        prefix: &str,
    ) -> Result<Option<(Duration, u64)>, String> {
        let found = {
            let mut ids = self.ids.lock().unwrap();
            let at = ids.iter().position(|(_, n)| n.starts_with(prefix));
            at.map(|i| ids.remove(i))
        };
        let Some((client_id, name)) = found else {
            return Ok(None);
        };
        let t = Instant::now();
        let r = c
            .unmount_segment(UnmountSegmentRequest {
                client_id,
                segment_name: name.clone(),
            })
            .await
            .map_err(|e| format!("unmount {name}: {}", e.message()))?
            .into_inner();
        if r.code != 0 {
            return Err(format!("unmount {name}: code {}", r.code));
        }
        Ok(Some((t.elapsed(), r.objects_dropped)))
    }
}

/// Puts keys `from..to` in batches of `batch` (one BatchPutStart + one BatchPutEnd each),
/// adding each finished batch to `done`. Failed items are counted, not fatal.
pub async fn put_range(
    c: &mut Client,
    (from, to): (u64, u64),
    batch: usize,
    size: u64,
    done: &AtomicU64,
) -> Result<u64, String> {
    let mut failed = 0;
    let mut i = from;
    while i < to {
        let end = (i + batch as u64).min(to);
        let keys: Vec<String> = (i..end).map(key).collect();
        let r = c
            .batch_put_start(BatchPutStartRequest {
                segment_table: false,
                client_id: "master-scale".into(),
                sizes: vec![size; keys.len()],
                keys: keys.clone(),
                config: None,
            })
            .await
            .map_err(|e| format!("batch_put_start: {}", e.message()))?
            .into_inner();
        let (mut ok_keys, mut ids) = (Vec::new(), Vec::new());
        for (k, s) in keys.into_iter().zip(r.results) {
            if s.code == 0 {
                ok_keys.push(k);
                ids.push(s.put_id);
            } else {
                failed += 1;
            }
        }
        let r = c
            .batch_put_end(BatchPutEndRequest {
                client_id: "master-scale".into(),
                keys: ok_keys,
                put_ids: ids,
            })
            .await
            .map_err(|e| format!("batch_put_end: {}", e.message()))?
            .into_inner();
        failed += r.codes.iter().filter(|&&x| x != 0).count() as u64;
        done.fetch_add(end - i, Ordering::Relaxed);
        i = end;
    }
    Ok(failed)
}

/// Which single-key call to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// PutStart + PutEnd of a fresh key (one sample per pair).
    PutPair,
    Exist,
    GetReplicaList,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::PutPair => "put start+end",
            Op::Exist => "exist",
            Op::GetReplicaList => "get replica list",
        }
    }
}

/// What a timed run of one op saw.
pub struct Timed {
    pub samples: Samples,
    /// Calls whose answer was not the expected success.
    pub failed: u64,
}

/// Times `op` back to back for `secs` (at most `max` calls). Reads pick keys below
/// `present` (pseudo-randomly, so they miss the cache like a real workload); put pairs
/// write keys from `fresh_from` upwards and advance it.
pub async fn time_op(
    c: &mut Client,
    op: Op,
    secs: f64,
    max: usize,
    present: u64,
    fresh_from: &mut u64,
    size: u64,
) -> Result<Timed, String> {
    let mut samples = Samples::with_capacity(max.min(1 << 20));
    let mut failed = 0;
    let stop = Instant::now() + Duration::from_secs_f64(secs);
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ present;
    while samples.len() < max && Instant::now() < stop {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let t = Instant::now();
        let ok = match op {
            Op::PutPair => {
                let k = key(*fresh_from);
                *fresh_from += 1;
                put_pair(c, &k, size).await?
            }
            Op::Exist => {
                let k = key(rng % present.max(1));
                let r = c.exist(KeyRequest { key: k }).await;
                r.map_err(|e| format!("exist: {}", e.message()))?
                    .into_inner()
                    .code
                    == 1
            }
            Op::GetReplicaList => {
                let k = key(rng % present.max(1));
                let r = c.get_replica_list(KeyRequest { key: k }).await;
                r.map_err(|e| format!("get_replica_list: {}", e.message()))?
                    .into_inner()
                    .code
                    == 0
            }
        };
        samples.record(t.elapsed());
        failed += u64::from(!ok);
    }
    Ok(Timed { samples, failed })
}

/// One PutStart + PutEnd; whether both succeeded.
pub async fn put_pair(c: &mut Client, k: &str, size: u64) -> Result<bool, String> {
    let s = c
        .put_start(PutStartRequest {
            client_id: "master-scale".into(),
            key: k.to_string(),
            size,
            config: None,
        })
        .await
        .map_err(|e| format!("put_start: {}", e.message()))?
        .into_inner();
    if s.code != 0 {
        return Ok(false);
    }
    let e = c
        .put_end(PutEndRequest {
            client_id: "master-scale".into(),
            key: k.to_string(),
            put_id: s.put_id,
        })
        .await
        .map_err(|e| format!("put_end: {}", e.message()))?
        .into_inner();
    Ok(e.code == 0)
}
