//! The leader's side of `Follow`: attach the follower to the log, send it a snapshot
//! (every segment, then every object, one shard at a time under its lock), then
//! everything the log queues for it, one batch per wake-up (group commit). The
//! follower's acknowledgements arrive on the request stream.
//!
//! The follower is attached BEFORE the snapshot is taken, so a change racing with the
//! snapshot is both in the snapshot and in the queue; ops are whole states, so
//! applying the queued op after the snapshot leaves the latest state either way.
//!
//! The stream ends when the term ends (the fence no longer holds), when the follower
//! is dropped from the sync set (status ABORTED: the standby must discard its shadow
//! and resync), or when the follower goes away.

use super::log::{self, Follower, ReplLog};
use crate::index::SHARDS;
use crate::master::Master;
use mooncake_proto::master_replication_server::{MasterReplication, MasterReplicationServer};
use mooncake_proto::replication_op::Op;
use mooncake_proto::{FollowAck, ReplicationBatch, ReplicationOp};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// The `Follow` service as the rpc port serves it.
pub type FollowServer = MasterReplicationServer<ReplicationService>;

/// The path prefix of the replication service's calls.
pub const FOLLOW_PREFIX: &str = "/mooncake.v1.MasterReplication/";

/// Objects per snapshot batch.
const SNAPSHOT_CHUNK: usize = 4096;
/// An empty batch at least this often keeps an idle stream visibly alive.
const IDLE_BATCH_EVERY: Duration = Duration::from_secs(1);
/// How often the sender re-checks the fence while idle.
const POLL: Duration = Duration::from_millis(100);
/// Largest replication message either side accepts.
pub const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// Whether the term that serves this stream still holds the fence.
pub type StillLeading = Arc<dyn Fn() -> bool + Send + Sync>;

#[derive(Clone)]
pub struct ReplicationService {
    master: Arc<Master>,
    leading: StillLeading,
}

impl ReplicationService {
    pub fn new(master: Arc<Master>, leading: StillLeading) -> Self {
        Self { master, leading }
    }

    pub fn server(self) -> FollowServer {
        MasterReplicationServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }
}

type Batch = Result<ReplicationBatch, Status>;

#[tonic::async_trait]
impl MasterReplication for ReplicationService {
    type FollowStream = ReceiverStream<Batch>;

    async fn follow(
        &self,
        req: Request<Streaming<FollowAck>>,
    ) -> Result<Response<Self::FollowStream>, Status> {
        let peer = req
            .remote_addr()
            .map_or_else(|| "?".to_string(), |a| a.to_string());
        let mut acks = req.into_inner();
        let name = match acks.message().await {
            Ok(Some(a)) if !a.follower.is_empty() => format!("{} ({peer})", a.follower),
            _ => peer,
        };
        let log = self.master.index.log().clone();
        let follower = log.attach(&name);
        tracing::info!(follower = %name, "HA: standby attached; sending the snapshot");
        let (tx, rx) = mpsc::channel::<Batch>(4);
        let (m, f, l, leading) = (
            self.master.clone(),
            follower.clone(),
            log.clone(),
            self.leading.clone(),
        );
        tokio::spawn(async move {
            let why = send(&m, &l, &f, &leading, &tx).await;
            l.detach(&f);
            report(&m, &l);
            tracing::info!(follower = %f.name, "HA: standby stream ended: {why}");
        });
        tokio::spawn(async move {
            while let Ok(Some(a)) = acks.message().await {
                log.ack(&follower, a.applied_seq);
            }
            // The follower went away: nobody waits for it any more; the sender ends.
            log.drop_follower(&follower, "its stream closed");
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Shows the sync set on the admin port's `/workers` (worker `replication`).
fn report(m: &Master, log: &ReplLog) {
    m.set_worker_status(
        "replication",
        format!("standbys in sync: {}", log.in_sync_count()),
    );
}

fn batch(m: &Master, ops: Vec<ReplicationOp>, head: u64, end: bool) -> ReplicationBatch {
    ReplicationBatch {
        ops,
        view_id: m.view_id(),
        snapshot_end: end,
        leader_now_ms: m.now_ms(),
        next_put_id: m.put_id_watermark(),
        head_seq: head,
    }
}

/// The snapshot as batches: segments and tenant quotas first, then objects by shard.
fn snapshot(m: &Master) -> Vec<Vec<ReplicationOp>> {
    let mut out = Vec::new();
    let mut segs: Vec<ReplicationOp> = m
        .segments
        .list()
        .iter()
        .map(|s| ReplicationOp {
            seq: 0,
            op: Some(Op::SegmentMounted(log::segment_record(s))),
        })
        .collect();
    segs.extend(crate::quota::snapshot_ops(m));
    out.push(segs);
    let mut cur = Vec::with_capacity(SNAPSHOT_CHUNK);
    for i in 0..SHARDS {
        let shard = m.index.lock_shard(i);
        for (k, o) in shard.iter() {
            cur.push(ReplicationOp {
                seq: 0,
                op: Some(Op::Object(log::object_record(k, o))),
            });
            if cur.len() >= SNAPSHOT_CHUNK {
                out.push(std::mem::replace(
                    &mut cur,
                    Vec::with_capacity(SNAPSHOT_CHUNK),
                ));
            }
        }
    }
    out.push(cur);
    out
}

/// Sends one message unless the follower is dropped first (a stopped standby stops
/// draining the stream, and the sender must not stay blocked on it). Whether it was
/// sent.
async fn push(tx: &mpsc::Sender<Batch>, f: &Follower, b: Batch) -> bool {
    let dropped = async {
        while !f.dropped.load(Ordering::SeqCst) {
            f.on_drop.notified().await;
        }
    };
    tokio::select! {
        r = tx.send(b) => r.is_ok(),
        _ = dropped => false,
    }
}

async fn send(
    m: &Arc<Master>,
    log: &ReplLog,
    f: &Arc<Follower>,
    leading: &StillLeading,
    tx: &mpsc::Sender<Batch>,
) -> String {
    let m2 = m.clone();
    let Ok(chunks) = tokio::task::spawn_blocking(move || snapshot(&m2)).await else {
        return "the snapshot task failed".into();
    };
    let objects: usize = chunks.iter().skip(1).map(Vec::len).sum();
    for ops in chunks {
        if !push(tx, f, Ok(batch(m, ops, 0, false))).await {
            return "the standby went away during the snapshot".into();
        }
    }
    let (ops, head) = log.take(f);
    f.snapshot_head.store(head, Ordering::SeqCst);
    if !push(tx, f, Ok(batch(m, ops, head, true))).await {
        return "the standby went away during the snapshot".into();
    }
    tracing::info!(follower = %f.name, objects, head, "HA: snapshot sent");
    let mut sent_head = head;
    let mut last_sent = Instant::now();
    let mut was_in_sync = false;
    loop {
        if tokio::time::timeout(POLL, f.wake.notified()).await.is_ok() {
            // Let the calls running alongside the one that woke us append too, so
            // that one batch carries them all (group commit).
            tokio::task::yield_now().await;
        }
        let in_sync = f.in_sync.load(Ordering::SeqCst);
        if in_sync != was_in_sync {
            was_in_sync = in_sync;
            report(m, log);
        }
        if !leading() {
            let _ = tx
                .send(Err(Status::unavailable("the leader's term ended")))
                .await;
            return "the term ended".into();
        }
        if f.dropped.load(Ordering::SeqCst) {
            // Best effort: a standby that stopped reading finds the stream ended
            // without a status, which it also reads as "dropped".
            let _ = tx.try_send(Err(Status::aborted(
                "dropped from the sync set; discard the shadow and follow again",
            )));
            return "dropped from the sync set".into();
        }
        let (ops, head) = log.take(f);
        if ops.is_empty() && head == sent_head && last_sent.elapsed() < IDLE_BATCH_EVERY {
            continue;
        }
        if !push(tx, f, Ok(batch(m, ops, head, false))).await {
            let _ = tx.try_send(Err(Status::aborted(
                "dropped from the sync set; discard the shadow and follow again",
            )));
            return "the standby went away or was dropped".into();
        }
        sent_head = head;
        last_sent = Instant::now();
    }
}
