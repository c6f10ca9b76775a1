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
//! process being killed, not the machine losing power. The waiting calls append
//! themselves ([`DiskLog`]: one `write` for everything queued, under one lock); the
//! writer task only appends what changes made outside calls (liveness sweeps,
//! eviction) left queued, every 100 ms, and folds. The queue is in change order, so an
//! acknowledged change is on disk with every change made before it.
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
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
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
/// snapshot before the master serves (see the module docs). Shared by the task that
/// folds the log and the calls that wait for it: a mutating call's answer waits for
/// [`ReplLog::wait_synced`], which first lets the caller append what is queued itself
/// (`flush`, one `write` for every call queued so far: group commit without a task
/// switch per call).
pub struct DiskLog {
    shared: Arc<Shared>,
}

struct Shared {
    master: Arc<Master>,
    dir: PathBuf,
    state: Mutex<State>,
}

struct State {
    follower: Arc<Follower>,
    n: u64,
    log: Option<Appender>,
    /// While a fold writes its snapshot: every batch also goes here, for the next log.
    carry: Option<Vec<u8>>,
}

fn io(what: &str, p: &Path, e: std::io::Error) -> String {
    format!("on-disk index: cannot {what} {}: {e}", p.display())
}

impl Shared {
    /// Appends what the log queued for the follower and acknowledges it.
    fn flush_locked(&self, st: &mut State) -> Result<(), String> {
        let rlog = self.master.index.log();
        let (ops, head) = rlog.take(&st.follower);
        if !ops.is_empty() {
            let bytes = file::frame(&batch(&self.master, ops, head, false));
            let log = st.log.as_mut().ok_or("on-disk index: no log open")?;
            log.append(&bytes)
                .map_err(|e| io("append to", &log.path.clone(), e))?;
            if let Some(c) = &mut st.carry {
                c.extend_from_slice(&bytes);
            }
        }
        rlog.ack(&st.follower, head);
        Ok(())
    }

    fn flush(&self) -> Result<(), String> {
        let mut st = self.state.lock();
        self.flush_locked(&mut st)
    }

    /// Creates `log-<n>` with `carry`, renames the snapshot `tmp` into place, and
    /// removes the older files.
    fn finish_fold(
        &self,
        st: &mut State,
        n: u64,
        tmp: PathBuf,
        carry: &[u8],
    ) -> Result<(), String> {
        let logp = log_path(&self.dir, n);
        let mut log = Appender::create(&logp).map_err(|e| io("create", &logp, e))?;
        log.append(carry).map_err(|e| io("write", &logp, e))?;
        let snap = snapshot_path(&self.dir, n);
        std::fs::rename(&tmp, &snap).map_err(|e| io("rename", &snap, e))?;
        st.n = n;
        st.log = Some(log);
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
        Ok(())
    }

    /// (Re)attaches a follower and writes a snapshot of everything as it is now; the
    /// changes made meanwhile go to the new log. Mutations wait for the follower
    /// from its first acknowledgement on.
    fn restart(&self, st: &mut State) -> Result<(), String> {
        let rlog = self.master.index.log();
        rlog.detach(&st.follower);
        st.follower = rlog.attach("on-disk index");
        let n = snapshots(&self.dir).first().map_or(1, |n| n + 1);
        let tmp = write_snapshot(&self.master, &self.dir, n)
            .map_err(|e| io("write a snapshot in", &self.dir, e))?;
        self.finish_fold(st, n, tmp, &[])?;
        st.follower.snapshot_head.store(0, Ordering::SeqCst);
        self.flush_locked(st)
    }
}

impl DiskLog {
    /// Attaches to `m`'s log and writes a first snapshot (the loaded state folded
    /// into one file). Call before serving.
    pub fn start(m: Arc<Master>, dir: &Path) -> Result<DiskLog, String> {
        let follower = m.index.log().attach("on-disk index");
        let shared = Arc::new(Shared {
            master: m.clone(),
            dir: dir.to_path_buf(),
            state: Mutex::new(State {
                follower,
                n: 0,
                log: None,
                carry: None,
            }),
        });
        {
            let mut st = shared.state.lock();
            shared.restart(&mut st)?;
        }
        let weak: Weak<Shared> = Arc::downgrade(&shared);
        // A caller appends what is queued itself, unless the append of another one
        // that it waited for covered its change already (group commit).
        m.index.log().set_flusher(Box::new(move |target| {
            let Some(s) = weak.upgrade() else { return };
            let mut st = s.state.lock();
            if st.follower.acked.load(Ordering::SeqCst) >= target {
                return;
            }
            if let Err(e) = s.flush_locked(&mut st) {
                tracing::error!("{e}");
            }
        }));
        Ok(DiskLog { shared })
    }

    /// Appends what is queued (tests).
    pub fn flush(&self) -> Result<(), String> {
        self.shared.flush()
    }

    /// Follows the log until `stop` resolves (module docs): appends what calls did not
    /// append themselves, folds every `interval`. A write that fails, or the follower
    /// dropped for a late acknowledgement, starts over with a snapshot.
    pub async fn run(self, interval: Duration, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut folded = Instant::now();
        let sh = self.shared.clone();
        let status = |s: &Shared| {
            let n = s.state.lock().n;
            s.master
                .set_worker_status("on_disk_index", format!("snapshot {n}"));
        };
        status(&sh);
        loop {
            // Callers append their own changes; this catches what a change made
            // outside a call (liveness sweeps, eviction) left queued.
            let follower = sh.state.lock().follower.clone();
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(POLL) => {}
            }
            let r = if follower.dropped.load(Ordering::SeqCst) {
                Err("the log dropped the disk follower (it was late)".to_string())
            } else {
                sh.flush()
            };
            let r = match r {
                Ok(()) if folded.elapsed() >= interval => {
                    folded = Instant::now();
                    self.fold_while_serving().await
                }
                r => r,
            };
            match r {
                Ok(()) => status(&sh),
                Err(e) => {
                    tracing::error!("{e}; starting over with a new snapshot");
                    sh.master
                        .set_worker_status("on_disk_index", format!("error: {e}"));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let sh2 = sh.clone();
                    let r = tokio::task::spawn_blocking(move || {
                        let mut st = sh2.state.lock();
                        sh2.restart(&mut st)
                    })
                    .await;
                    if let Ok(Err(e)) = r {
                        tracing::error!("{e}");
                    }
                }
            }
        }
        let _ = sh.flush();
        let st = sh.state.lock();
        sh.master.index.log().detach(&st.follower);
    }

    /// A fold while calls keep coming: the snapshot is written on a blocking thread;
    /// meanwhile batches still go to the current log, and to the carry for the next.
    async fn fold_while_serving(&self) -> Result<(), String> {
        let sh = self.shared.clone();
        let n = {
            let mut st = sh.state.lock();
            st.carry = Some(Vec::new());
            st.n + 1
        };
        let (m, dir) = (sh.master.clone(), sh.dir.clone());
        let tmp = tokio::task::spawn_blocking(move || write_snapshot(&m, &dir, n)).await;
        let mut st = sh.state.lock();
        let carry = st.carry.take().unwrap_or_default();
        let tmp = tmp
            .map_err(|e| format!("on-disk index: the snapshot task failed: {e}"))?
            .map_err(|e| io("write a snapshot in", &sh.dir, e))?;
        // What was queued since the last append goes to both logs.
        let rlog = sh.master.index.log();
        let (ops, head) = rlog.take(&st.follower);
        let mut carry = carry;
        if !ops.is_empty() {
            let bytes = file::frame(&batch(&sh.master, ops, head, false));
            if let Some(log) = st.log.as_mut() {
                log.append(&bytes)
                    .map_err(|e| io("append to", &log.path.clone(), e))?;
            }
            carry.extend_from_slice(&bytes);
        }
        sh.finish_fold(&mut st, n, tmp, &carry)?;
        rlog.ack(&st.follower, head);
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
        let disk = DiskLog::start(m.clone(), &d).unwrap();
        for i in 0..50 {
            put(&m, &format!("after-{i}"), 10_000 + i);
        }
        m.remove("before-3", true).unwrap();
        disk.flush().unwrap();
        disk.fold_while_serving().await.unwrap();
        put(&m, "after-the-fold", 777);
        m.remove("after-7", true).unwrap();
        disk.flush().unwrap();
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
