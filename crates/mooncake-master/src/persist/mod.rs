//! The index on disk (`--enable_snapshot`, `--snapshot_backup_dir`), so that a
//! master restarted after a crash (`kill -9`) serves every object it acknowledged.
//!
//! It reuses what HA replication already has: every change of the index and of the
//! segment table is an op of the replication log (`ha::replication::log`), reported
//! under the lock that orders it. The disk is one more follower of that log: it
//! writes a snapshot (`snapshot-<n>`: every segment, then every object, as the
//! leader's `Follow` snapshot), then appends every batch of ops the log queues for it
//! to `log-<n>` and acknowledges it. A call that mutates is answered only after the
//! disk follower acknowledged the log's head (the same wait that makes HA writes
//! synchronous, `api::Gate`), so an acknowledged put is in the file before its
//! answer leaves. The write goes to the kernel, not to the device: it survives the
//! process being killed, not the machine losing power.
//!
//! Every `--snapshot_interval_seconds` the log is folded into a new snapshot
//! `snapshot-<n+1>`; `log-<n+1>` is created (with every batch written since the fold
//! began) before the snapshot is renamed into place, so the newest complete snapshot
//! and its log always hold every acknowledged change. Ops are whole states of one key
//! or segment, so replaying one twice is harmless.
//!
//! On start the newest snapshot and its log are read into a [`Shadow`] and the master
//! is rebuilt from it as an HA takeover is (`replication::rebuild`): the same view id
//! (stores and clients keep their mounts and client ids), every segment with its
//! replicas at the same offsets, each owner given a fresh `client_ttl` to show up.
//! A segment whose owner does not come back is held for its restart grace and then
//! dropped with its objects, as at any owner's loss.

pub mod file;

use crate::config::MasterConfig;
use crate::ha::replication::log::{self, Follower};
use crate::ha::replication::{rebuild, Shadow};
use crate::index::SHARDS;
use crate::master::Master;
use file::Appender;
use mooncake_proto::replication_op::Op;
use mooncake_proto::{ReplicationBatch, ReplicationOp};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Objects per snapshot frame.
const SNAPSHOT_CHUNK: usize = 4096;
/// How often the writer looks at the log while nothing wakes it.
const POLL: Duration = Duration::from_millis(100);

fn snapshot_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("snapshot-{n:010}"))
}

fn log_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("log-{n:010}"))
}

/// The numbers of the complete snapshots in `dir`, newest first.
fn snapshots(dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("snapshot-")?
                .parse()
                .ok()
        })
        .collect();
    v.sort_unstable_by(|a, b| b.cmp(a));
    v
}

/// What a start found on disk (logged, and reported by tests and benchmarks).
#[derive(Debug, Default, Clone)]
pub struct Loaded {
    pub snapshot: u64,
    pub objects: usize,
    pub segments: usize,
    pub log_batches: usize,
    pub took: Duration,
}

/// Reads the newest snapshot and its log in `dir` (none: `Ok(None)`, a first
/// start). A snapshot that is truncated or not ours is an error naming the file.
pub fn load(dir: &Path) -> Result<Option<(Shadow, Loaded)>, String> {
    let t0 = Instant::now();
    let Some(&n) = snapshots(dir).first() else {
        return Ok(None);
    };
    let snap = snapshot_path(dir, n);
    let frames = file::read(&snap)?;
    let complete = frames.batches.last().is_some_and(|b| b.snapshot_end);
    if !complete || frames.torn_tail != 0 {
        return Err(format!(
            "{} is truncated (it does not end with the snapshot's last frame); move it away to start with an empty index",
            snap.display()
        ));
    }
    let mut shadow = Shadow::default();
    for b in frames.batches {
        shadow.apply(b);
    }
    let mut loaded = Loaded {
        snapshot: n,
        ..Default::default()
    };
    let logp = log_path(dir, n);
    if logp.exists() {
        let frames = file::read(&logp)?;
        if frames.torn_tail != 0 {
            tracing::warn!(
                path = %logp.display(),
                bytes = frames.torn_tail,
                "the log ends with a torn write (a change that was never acknowledged); ignored"
            );
        }
        loaded.log_batches = frames.batches.len();
        for b in frames.batches {
            shadow.apply(b);
        }
    }
    loaded.objects = shadow.objects.len();
    loaded.segments = shadow.segments.len();
    loaded.took = t0.elapsed();
    Ok(Some((shadow, loaded)))
}

/// The master a start with `--enable_snapshot` serves: rebuilt from the directory's
/// newest snapshot and log, or a new one when there is none.
pub fn open(cfg: MasterConfig) -> Result<Arc<Master>, String> {
    let dir = PathBuf::from(&cfg.snapshot_backup_dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot create --snapshot_backup_dir {}: {e}", dir.display()))?;
    match load(&dir)? {
        None => {
            tracing::info!(dir = %dir.display(), "on-disk index: none yet; starting empty");
            Ok(Master::new(cfg))
        }
        Some((shadow, loaded)) => {
            let t0 = Instant::now();
            let (m, report) = rebuild::master_from(cfg, shadow);
            tracing::info!(
                dir = %dir.display(),
                snapshot = loaded.snapshot,
                log_batches = loaded.log_batches,
                objects = report.objects,
                segments = report.segments,
                in_flight = report.in_flight,
                dropped_objects = report.dropped_objects,
                read_ms = loaded.took.as_millis() as u64,
                rebuild_ms = t0.elapsed().as_millis() as u64,
                "on-disk index loaded; owners have client_ttl to show up, then their restart grace"
            );
            Ok(m)
        }
    }
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

/// Writes `snapshot-<n>` (under a temporary name; the caller renames it) with every
/// segment and object as they are now, one shard locked at a time.
fn write_snapshot(m: &Master, dir: &Path, n: u64) -> std::io::Result<PathBuf> {
    let tmp = dir.join(format!("snapshot-{n:010}.tmp"));
    let mut out = Appender::create(&tmp)?;
    let segs: Vec<ReplicationOp> = m
        .segments
        .list()
        .iter()
        .map(|s| ReplicationOp {
            seq: 0,
            op: Some(Op::SegmentMounted(log::segment_record(s))),
        })
        .collect();
    out.append(&file::frame(&batch(m, segs, 0, false)))?;
    let mut cur = Vec::with_capacity(SNAPSHOT_CHUNK);
    for i in 0..SHARDS {
        {
            let shard = m.index.lock_shard(i);
            for (k, o) in shard.iter() {
                cur.push(ReplicationOp {
                    seq: 0,
                    op: Some(Op::Object(log::object_record(k, o))),
                });
            }
        }
        if cur.len() >= SNAPSHOT_CHUNK {
            out.append(&file::frame(&batch(m, std::mem::take(&mut cur), 0, false)))?;
        }
    }
    out.append(&file::frame(&batch(m, cur, 0, true)))?;
    out.sync()?;
    Ok(tmp)
}

/// The disk follower of the replication log: attached, and caught up with its first
/// snapshot before the master serves (see the module docs).
pub struct DiskLog {
    master: Arc<Master>,
    dir: PathBuf,
    follower: Arc<Follower>,
    n: u64,
    log: Appender,
}

fn io(what: &str, p: &Path, e: std::io::Error) -> String {
    format!("on-disk index: cannot {what} {}: {e}", p.display())
}

impl DiskLog {
    /// Attaches to `m`'s log and writes a first snapshot (the loaded state folded
    /// into one file). Call before serving.
    pub fn start(m: Arc<Master>, dir: &Path) -> Result<DiskLog, String> {
        let rlog = m.index.log().clone();
        let follower = rlog.attach("on-disk index");
        let n = snapshots(dir).first().map_or(1, |n| n + 1);
        let mut d = DiskLog {
            master: m,
            dir: dir.to_path_buf(),
            follower,
            n: 0,
            log: Appender::create(&dir.join("log-start.tmp")).map_err(|e| io("create", dir, e))?,
        };
        let _ = std::fs::remove_file(dir.join("log-start.tmp"));
        d.fold(n, &mut Vec::new())?;
        // What changed while the snapshot was read goes to the new log; from the
        // acknowledgement on, mutations wait for this follower.
        d.follower.snapshot_head.store(0, Ordering::SeqCst);
        d.flush(None)?;
        Ok(d)
    }

    /// Writes snapshot `n`, creates `log-<n>` with `carry` (batches written to the
    /// current log since the snapshot began) and what is queued, renames the snapshot
    /// into place, and removes the older files.
    fn fold(&mut self, n: u64, carry: &mut Vec<u8>) -> Result<(), String> {
        let tmp = write_snapshot(&self.master, &self.dir, n)
            .map_err(|e| io("write a snapshot in", &self.dir, e))?;
        self.finish_fold(n, tmp, carry)
    }

    fn finish_fold(&mut self, n: u64, tmp: PathBuf, carry: &mut Vec<u8>) -> Result<(), String> {
        let logp = log_path(&self.dir, n);
        let mut log = Appender::create(&logp).map_err(|e| io("create", &logp, e))?;
        log.append(carry).map_err(|e| io("write", &logp, e))?;
        carry.clear();
        let snap = snapshot_path(&self.dir, n);
        std::fs::rename(&tmp, &snap).map_err(|e| io("rename", &snap, e))?;
        let old = self.n;
        self.n = n;
        self.log = log;
        // Everything older than the snapshot now in place.
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let num = name
                .strip_prefix("snapshot-")
                .or_else(|| name.strip_prefix("log-"))
                .and_then(|s| s.trim_end_matches(".tmp").parse::<u64>().ok());
            if num.is_some_and(|x| x < n) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        tracing::debug!(
            from = old,
            to = n,
            "on-disk index: log folded into a snapshot"
        );
        Ok(())
    }

    /// Appends what the log queued and acknowledges it; also to `carry` while a
    /// fold is under way.
    fn flush(&mut self, carry: Option<&mut Vec<u8>>) -> Result<(), String> {
        let rlog = self.master.index.log().clone();
        let (ops, head) = rlog.take(&self.follower);
        if !ops.is_empty() {
            let bytes = file::frame(&batch(&self.master, ops, head, false));
            self.log
                .append(&bytes)
                .map_err(|e| io("append to", &self.log.path.clone(), e))?;
            if let Some(c) = carry {
                c.extend_from_slice(&bytes);
            }
        }
        rlog.ack(&self.follower, head);
        Ok(())
    }

    /// Follows the log until `stop` resolves (module docs). A write that fails, or
    /// the follower dropped for a late acknowledgement, starts over with a snapshot.
    pub async fn run(mut self, interval: Duration, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut folded = Instant::now();
        self.master
            .set_worker_status("on_disk_index", format!("snapshot {}", self.n));
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::timeout(POLL, self.follower.wake.notified()) => {}
            }
            // Let the calls running alongside the one that woke us append too.
            tokio::task::yield_now().await;
            let broken = self.follower.dropped.load(Ordering::SeqCst);
            let r = if broken {
                Err("the log dropped the disk follower (it was late)".to_string())
            } else {
                self.flush(None)
            };
            let r = match r {
                Ok(()) if folded.elapsed() >= interval => {
                    folded = Instant::now();
                    self.fold_while_serving().await
                }
                r => r,
            };
            if let Err(e) = r {
                tracing::error!("{e}; starting over with a new snapshot");
                self.master
                    .set_worker_status("on_disk_index", format!("error: {e}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
                let rlog = self.master.index.log().clone();
                rlog.detach(&self.follower);
                match DiskLog::start(self.master.clone(), &self.dir) {
                    Ok(d) => self = d,
                    Err(e) => tracing::error!("{e}"),
                }
            }
        }
        let _ = self.flush(None);
        self.master.index.log().detach(&self.follower);
    }

    /// A fold while calls keep coming: the snapshot is written on a blocking thread;
    /// meanwhile batches still go to the current log (and to `carry`, for the next).
    async fn fold_while_serving(&mut self) -> Result<(), String> {
        let n = self.n + 1;
        let (m, dir) = (self.master.clone(), self.dir.clone());
        let mut job = tokio::task::spawn_blocking(move || write_snapshot(&m, &dir, n));
        let mut carry = Vec::new();
        let tmp = loop {
            tokio::select! {
                done = &mut job => break done,
                _ = tokio::time::timeout(POLL, self.follower.wake.notified()) => {
                    tokio::task::yield_now().await;
                    self.flush(Some(&mut carry))?;
                }
            }
        };
        let tmp = tmp
            .map_err(|e| format!("on-disk index: the snapshot task failed: {e}"))?
            .map_err(|e| io("write a snapshot in", &self.dir, e))?;
        self.flush(Some(&mut carry))?;
        self.finish_fold(n, tmp, &mut carry)?;
        self.master
            .set_worker_status("on_disk_index", format!("snapshot {n}"));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mooncake_common::{ReplicateConfig, SegmentDesc};

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mc-persist-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn cfg(d: &Path) -> MasterConfig {
        MasterConfig {
            enable_snapshot: true,
            snapshot_backup_dir: d.display().to_string(),
            ..Default::default()
        }
    }

    fn seg(name: &str, size: u64) -> SegmentDesc {
        SegmentDesc {
            name: name.into(),
            owner: name.into(),
            size,
            generation: format!("gen-{name}"),
            ..Default::default()
        }
    }

    fn put(m: &Master, key: &str, size: u64) {
        let s = m
            .put_start("c1", key, size, &ReplicateConfig::default())
            .expect("put_start");
        m.write_end("c1", key, s.put_id).expect("put_end");
    }

    fn replicas(m: &Master, key: &str) -> Option<Vec<(String, u64)>> {
        m.query_key(key).map(|i| {
            i.replicas
                .into_iter()
                .map(|r| (r.segment, r.offset))
                .collect()
        })
    }

    /// Changes made after the snapshot come back from the log, folds included, and
    /// every object is where it was.
    #[tokio::test]
    async fn snapshot_and_log_bring_back_every_change() {
        let d = dir("round");
        let m = open(cfg(&d)).unwrap();
        m.mount_segment("c1", seg("s1:1", 8 << 20)).unwrap();
        for i in 0..50 {
            put(&m, &format!("before-{i}"), 4096 + i);
        }
        let mut disk = DiskLog::start(m.clone(), &d).unwrap();
        for i in 0..50 {
            put(&m, &format!("after-{i}"), 10_000 + i);
        }
        m.remove("before-3", true).unwrap();
        disk.flush(None).unwrap();
        disk.fold_while_serving().await.unwrap();
        put(&m, "after-the-fold", 777);
        m.remove("after-7", true).unwrap();
        disk.flush(None).unwrap();
        let keys = m.all_keys();
        let want: Vec<_> = keys.iter().map(|k| replicas(&m, k)).collect();
        drop(disk);

        let (shadow, loaded) = load(&d).unwrap().expect("found");
        assert_eq!(loaded.objects, 99);
        let (back, report) = rebuild::master_from(cfg(&d), shadow);
        assert_eq!(report.dropped_replicas, 0);
        assert_eq!(back.all_keys(), keys);
        let got: Vec<_> = keys.iter().map(|k| replicas(&back, k)).collect();
        assert_eq!(got, want, "same replicas at the same offsets");
        assert!(back.query_key("before-3").is_none() && back.query_key("after-7").is_none());
        assert_eq!(
            back.view_id(),
            m.view_id(),
            "the same view: owners keep their mounts"
        );
        // One snapshot and its log are left.
        let mut names: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["log-0000000002", "snapshot-0000000002"]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_truncated_or_foreign_snapshot_is_an_error_naming_it() {
        let d = dir("bad");
        let m = Master::new(cfg(&d));
        m.mount_segment("c1", seg("s1:1", 1 << 20)).unwrap();
        put(&m, "k", 100);
        let tmp = write_snapshot(&m, &d, 1).unwrap();
        let snap = snapshot_path(&d, 1);
        let bytes = std::fs::read(&tmp).unwrap();
        std::fs::write(&snap, &bytes[..bytes.len() - 5]).unwrap();
        let e = load(&d).unwrap_err();
        assert!(
            e.contains("snapshot-0000000001") && e.contains("truncated"),
            "{e}"
        );
        std::fs::write(&snap, b"not ours").unwrap();
        let e = load(&d).unwrap_err();
        assert!(e.contains("not a mooncake master index file"), "{e}");
        std::fs::write(&snap, &bytes).unwrap();
        assert_eq!(load(&d).unwrap().unwrap().1.objects, 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// Start-up time from disk (prints; run with `cargo test --release -p
    /// mooncake-master --lib persist::tests::startup_time -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn startup_time() {
        let d = dir("startup");
        let m = Master::new(cfg(&d));
        for s in 0..4 {
            m.mount_segment(&format!("c{s}"), seg(&format!("s{s}:1"), 16 << 30))
                .unwrap();
        }
        let n = 1_000_000;
        for i in 0..n {
            let s = m
                .put_start(
                    "c0",
                    &format!("key-{i:012}"),
                    4096,
                    &ReplicateConfig::default(),
                )
                .unwrap();
            m.write_end("c0", &format!("key-{i:012}"), s.put_id)
                .unwrap();
        }
        let t0 = Instant::now();
        let tmp = write_snapshot(&m, &d, 1).unwrap();
        std::fs::rename(&tmp, snapshot_path(&d, 1)).unwrap();
        let wrote = t0.elapsed();
        let bytes = std::fs::metadata(snapshot_path(&d, 1)).unwrap().len();
        let t0 = Instant::now();
        let back = open(cfg(&d)).unwrap();
        let took = t0.elapsed();
        assert_eq!(back.index.len(), n);
        eprintln!(
            "{n} objects: snapshot {bytes} bytes written in {wrote:?}; start-up (read + rebuild) {took:?}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
