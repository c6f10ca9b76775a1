//! This process's SSD tier (`MOONCAKE_OFFLOAD_FILE_STORAGE_PATH`): the records live in
//! `mooncake_tier::DiskTier`; this module serves reads of them on the transfer engine
//! (addresses from `DISK_BASE`, checked record by record) and does the master's tasks
//! (`SegmentTier.Work`): persist an object from our segment into the tier, discard a
//! record. The first call of a run reports every record the tier holds, so a
//! restarted store gets its SSD objects back.

use crate::client::{Client, Inner};
use mooncake_common::ErrorCode;
use mooncake_proto::segment_tier_client::SegmentTierClient;
use mooncake_proto::{
    TierCounters, TierRecord, TierTask, TierTaskKind, TierTaskResult, TierWorkRequest,
};
use mooncake_tier::{DiskTier, TierConfig, DISK_BASE};
use mooncake_transfer::{ReadSource, SourceBytes};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The largest read served on the connection's task when the page cache holds it.
const AT_HAND_MAX: usize = 256 << 10;

/// Pause after a failed call.
const RETRY: Duration = Duration::from_secs(1);

/// Reads of the tier's address range, for the transfer engine.
struct TierSource(Arc<DiskTier>);

impl ReadSource for TierSource {
    fn covers(&self, addr: u64, len: u64) -> bool {
        addr >= DISK_BASE
            && (addr - DISK_BASE)
                .checked_add(len)
                .is_some_and(|end| end <= self.0.capacity())
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), String> {
        self.0
            .read(addr - DISK_BASE, buf)
            .map_err(|e| e.to_string())
    }

    fn read_bytes(&self, addr: u64, len: usize) -> Result<SourceBytes, String> {
        self.0
            .read_bytes(addr - DISK_BASE, len as u64)
            .map(|b| Box::new(b) as SourceBytes)
            .map_err(|e| e.to_string())
    }

    fn read_at_hand(&self, addr: u64, len: usize) -> Option<Result<SourceBytes, String>> {
        // Small ranges only: a check and copy of a few hundred KiB is shorter than
        // the hop to a blocking thread; a larger one would hold up the connection.
        if len > AT_HAND_MAX {
            return None;
        }
        self.0
            .read_bytes_cached(addr - DISK_BASE, len as u64)
            .map(|r| {
                r.map(|b| Box::new(b) as SourceBytes)
                    .map_err(|e| e.to_string())
            })
    }
}

impl Client {
    /// This process's SSD tier's figures (objects, bytes, reads, writes, demotions,
    /// promotions, checksum failures); `None` without a tier.
    pub fn tier_stats(&self) -> Option<crate::TierStats> {
        self.inner.tier.lock().as_ref().map(|t| t.stats())
    }

    /// Opens the tier the environment asks for (`MOONCAKE_OFFLOAD_FILE_STORAGE_PATH`,
    /// `MOONCAKE_OFFLOAD_TOTAL_SIZE_LIMIT_BYTES`, `MOONCAKE_ENABLE_SSD_OFFLOAD`) and
    /// starts serving it; `Ok(None)` when none is asked for. A bad path or capacity is
    /// an error naming it.
    pub fn start_tier_from_env(&self, master_addr: &str) -> Result<Option<Arc<DiskTier>>, String> {
        match TierConfig::from_env().map_err(|e| e.to_string())? {
            None => Ok(None),
            Some(cfg) => self.start_tier(master_addr, &cfg).map(Some),
        }
    }

    /// As [`start_tier_from_env`](Self::start_tier_from_env), with what the caller was
    /// given taking the place of the environment where it has something: the Python
    /// `setup(..., enable_ssd_offload=True, ssd_offload_path=...)` keywords SGLang
    /// passes. Whether a tier was started.
    pub fn start_tier_with(
        &self,
        master_addr: &str,
        path: Option<String>,
        enable: Option<bool>,
    ) -> Result<bool, String> {
        use mooncake_tier::config::{ENV_ENABLE, ENV_LIMIT, ENV_PATH};
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let path = path
            .filter(|p| !p.trim().is_empty())
            .or_else(|| get(ENV_PATH));
        let enable = enable.map(|b| b.to_string()).or_else(|| get(ENV_ENABLE));
        match TierConfig::from_values(path, get(ENV_LIMIT), enable).map_err(|e| e.to_string())? {
            None => Ok(false),
            Some(cfg) => self.start_tier(master_addr, &cfg).map(|_| true),
        }
    }

    /// Opens the tier in `cfg.dir`, serves reads of its records on the transfer
    /// engine and does the master's tasks (asking the master at `master_addr`). Needs
    /// a segment: the tier holds copies of this process's objects.
    pub fn start_tier(&self, master_addr: &str, cfg: &TierConfig) -> Result<Arc<DiskTier>, String> {
        if self.inner.segment.is_none() {
            return Err("an SSD tier needs a segment (this client contributes no memory)".into());
        }
        // The tier's calls go where this client's go (under HA, to the leader).
        let mut link = self
            .owner_link(master_addr)
            .map_err(|e| format!("SSD tier: {e}"))?;
        let tier = Arc::new(DiskTier::open(cfg).map_err(|e| e.to_string())?);
        let found = tier.records().len();
        tracing::info!(
            dir = %cfg.dir.display(),
            capacity = cfg.capacity,
            records = found,
            "SSD tier open"
        );
        self.inner
            .data
            .engine
            .set_read_source(Some(Arc::new(TierSource(tier.clone()))));
        *self.inner.tier.lock() = Some(tier.clone());
        let weak = Arc::downgrade(&self.inner);
        let worker = Worker::start(weak.clone(), tier.clone())?;
        let t = tier.clone();
        tokio::spawn(async move {
            // Results a failed call carried: they go again on the next.
            let mut unsent: Vec<TierTaskResult> = Vec::new();
            let mut report = true;
            let mut warned = false;
            loop {
                let Some(inner) = weak.upgrade() else { return };
                if inner.closed.load(Ordering::Acquire) {
                    return;
                }
                let Some(seg) = inner.segment.as_ref() else {
                    return;
                };
                if !seg.mounted.load(Ordering::Acquire) {
                    drop(inner);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                // Counted first: a task no longer counted has its result in
                // `results` already (pushed before the count goes down), so none
                // is left behind for a call that would then wait for work.
                let left = worker.pending();
                let mut done = std::mem::take(&mut unsent);
                done.append(&mut worker.results.lock());
                if !report && (left > 1 || (left == 1 && done.is_empty())) {
                    // Results go once the thread is down to its last task: the
                    // call and its answer (the next tasks) travel while that one
                    // is written, and a call carries several results, not one.
                    unsent = done;
                    drop(inner);
                    worker.ready.notified().await;
                    continue;
                }
                // The master to call (under HA the leader may have changed: the
                // one that took over knows nothing of this tier until it reports).
                let link_now = match link.link().await {
                    Ok(l) => l,
                    Err(e) => {
                        if !warned {
                            tracing::warn!("SSD tier: no master to call: {e}");
                            warned = true;
                        }
                        unsent = done;
                        drop(inner);
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                };
                if link_now.moved {
                    report = true;
                }
                let mut rpc = SegmentTierClient::with_origin(link_now.channel, link_now.origin);
                let s = t.stats();
                let req = TierWorkRequest {
                    client_id: inner.client_id.clone(),
                    segment_name: seg.desc.name.clone(),
                    transport_endpoint: seg.desc.transport_endpoint.clone(),
                    capacity: t.capacity(),
                    report,
                    records: if report {
                        t.records()
                            .into_iter()
                            .map(|r| TierRecord {
                                key: r.key,
                                offset: r.offset,
                                len: r.len,
                                value_len: r.value_len,
                            })
                            .collect()
                    } else {
                        Vec::new()
                    },
                    done,
                    counters: Some(TierCounters {
                        reads: s.reads,
                        read_bytes: s.read_bytes,
                        writes: s.writes,
                        write_bytes: s.write_bytes,
                        write_failures: s.write_failures,
                        checksum_failures: s.checksum_failures,
                        demotions: s.demotions,
                        promotions: s.promotions,
                    }),
                    protocol: seg.desc.protocol.clone(),
                    host_id: seg.desc.host_id.clone(),
                    tier_id: t.id().to_string(),
                };
                drop(inner);
                let sent = req.done.clone();
                let at = link_now.addr;
                let Some(answer) = link.answer(&at, rpc.work(req)).await else {
                    // Given up at a master etcd no longer names: the results go
                    // again, to the leader that took over (which reports at once).
                    unsent = sent;
                    continue;
                };
                match answer {
                    Ok(r) => {
                        let r = r.into_inner();
                        warned = false;
                        report = r.report_needed;
                        for task in r.tasks {
                            worker.give(task);
                        }
                    }
                    Err(e) => {
                        if !warned {
                            tracing::warn!(
                                "SSD tier: the master does not take its work: {}",
                                e.message()
                            );
                            warned = true;
                        }
                        unsent = sent;
                        link.failed();
                        link.pause(&at, RETRY).await;
                    }
                }
            }
        });
        Ok(tier)
    }
}

/// The threads that do the master's tasks, one after another in the order given
/// (a discard and a later write of the same extent must not swap), while the loop
/// that asks for them goes on: results are reported while the last task given is
/// still being done, not after a whole batch. One thread lays the next record out
/// while the other writes (`Worker::start`).
///
/// Why: a demotion's memory is freed, and the put waiting for it goes on, only
/// once the master has the result. Reported by batch, the disk idled while the
/// batch's results travelled and the next batch came back, and the puts waited for
/// a whole batch's writes. A call for every result instead cost the two cores more
/// than it saved (docs/benchmarks/tier.md, "Reported while writing").
struct Worker {
    tx: std::sync::mpsc::Sender<TierTask>,
    results: Arc<parking_lot::Mutex<Vec<TierTaskResult>>>,
    ready: Arc<tokio::sync::Notify>,
    pending: Arc<std::sync::atomic::AtomicUsize>,
}

/// A task on its way from the thread that prepares to the one that writes.
enum Step {
    /// Done as given.
    Run(TierTask),
    /// A persist whose record is laid out for a direct write already.
    Write(TierTask, mooncake_tier::PreparedRecord),
    /// Refused when checked: its result.
    Answer(TierTaskResult),
}

impl Step {
    fn task_id(&self) -> u64 {
        match self {
            Step::Run(t) | Step::Write(t, _) => t.task_id,
            Step::Answer(r) => r.task_id,
        }
    }
}

/// Records laid out ahead of the one being written (each holds its record's bytes).
const PREPARED_AHEAD: usize = 1;

impl Worker {
    /// Two threads: one lays each persist's record out for a direct write (the
    /// copy of the value and its checksums, [`DiskTier::prepare`]) while the other
    /// writes the one before. They end once the loop (the sender) is gone and its
    /// tasks are done, or when the client is.
    fn start(weak: std::sync::Weak<Inner>, tier: Arc<DiskTier>) -> Result<Worker, String> {
        let (tx, rx) = std::sync::mpsc::channel::<TierTask>();
        let (steps_tx, steps) = std::sync::mpsc::sync_channel::<Step>(PREPARED_AHEAD);
        let results = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let ready = Arc::new(tokio::sync::Notify::new());
        let pending = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (w, t) = (weak.clone(), tier.clone());
        std::thread::Builder::new()
            .name("tier-prepare".into())
            .spawn(move || {
                while let Ok(task) = rx.recv() {
                    let Some(inner) = w.upgrade() else { return };
                    let id = task.task_id;
                    let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        prepare(&inner, &t, task)
                    }))
                    .unwrap_or_else(|_| Step::Answer(failed(id)));
                    drop(inner);
                    if steps_tx.send(step).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| format!("SSD tier: cannot start its task threads: {e}"))?;
        let (r, n, p) = (results.clone(), ready.clone(), pending.clone());
        std::thread::Builder::new()
            .name("tier-tasks".into())
            .spawn(move || {
                while let Ok(step) = steps.recv() {
                    let Some(inner) = weak.upgrade() else { return };
                    let id = step.task_id();
                    // A task that panicked still gets its answer (an error), or
                    // the loop would wait for it for ever.
                    let result =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match step {
                            Step::Run(task) => run_task(&inner, &tier, &task),
                            Step::Write(task, record) => TierTaskResult {
                                task_id: task.task_id,
                                code: persisted(&tier, &task, tier.write_prepared(record)),
                            },
                            Step::Answer(r) => r,
                        }))
                        .unwrap_or_else(|_| failed(id));
                    drop(inner);
                    r.lock().push(result);
                    p.fetch_sub(1, Ordering::AcqRel);
                    n.notify_one();
                }
            })
            .map_err(|e| format!("SSD tier: cannot start its task threads: {e}"))?;
        Ok(Worker {
            tx,
            results,
            ready,
            pending,
        })
    }

    fn give(&self, task: TierTask) {
        self.pending.fetch_add(1, Ordering::AcqRel);
        if self.tx.send(task).is_err() {
            // The thread is gone (the client with it): nobody is left to answer.
            self.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Tasks given and not done yet.
    fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }
}

/// Does one task; its result.
fn run_task(inner: &Inner, tier: &DiskTier, t: &TierTask) -> TierTaskResult {
    let code = match TierTaskKind::try_from(t.kind) {
        Ok(TierTaskKind::TierPersist) => persist(inner, tier, t),
        Ok(TierTaskKind::TierPromote) => promote(inner, tier, t),
        Ok(TierTaskKind::TierDiscard) => {
            tier.discard(t.disk_offset, t.disk_len);
            0
        }
        _ => ErrorCode::InvalidParams.code(),
    };
    TierTaskResult {
        task_id: t.task_id,
        code,
    }
}

/// Runs `f` with the address of the task's `[mem_offset, +size)` in our segment,
/// once the task is checked (its record length, the range inside the segment),
/// with the segment's memory locked (mapped) until `f` returns; `InvalidParams`
/// otherwise.
fn with_task_range(inner: &Inner, t: &TierTask, f: impl FnOnce(*mut u8) -> i32) -> i32 {
    let Some(seg) = inner.segment.as_ref() else {
        return ErrorCode::InvalidParams.code();
    };
    if mooncake_tier::record_len(t.key.len(), t.size) != t.disk_len {
        return ErrorCode::InvalidParams.code();
    }
    let mem = seg.memory.lock();
    let Some(m) = mem.as_ref() else {
        return ErrorCode::InvalidParams.code();
    };
    let in_bounds = t
        .mem_offset
        .checked_add(t.size)
        .is_some_and(|end| end <= m.len() as u64);
    if !in_bounds {
        return ErrorCode::InvalidParams.code();
    }
    f((m.addr() + t.mem_offset as usize) as *mut u8)
}

/// Reads the value of the record at `disk_offset` (checked as every read is) into
/// our segment at `mem_offset`, which the master allocated for it.
fn promote(inner: &Inner, tier: &DiskTier, t: &TierTask) -> i32 {
    with_task_range(inner, t, |at| {
        // SAFETY: `with_task_range` checked the range inside our mapped segment,
        // which stays mapped until we return; the master allocated it to this
        // promotion and hands it to no reader before we answer.
        let dst = unsafe { std::slice::from_raw_parts_mut(at, t.size as usize) };
        let value_offset = t.disk_offset + mooncake_tier::record::header_len(t.key.len(), t.size);
        match tier.read(value_offset, dst) {
            Ok(()) => {
                mooncake_tier::TierMetrics::add(&tier.metrics().promotions, 1);
                0
            }
            Err(e) => {
                tracing::warn!(key = %t.key, "SSD tier: promotion: {e}");
                ErrorCode::InternalError.code()
            }
        }
    })
}

/// Writes the object at `mem_offset` of our segment as a record at `disk_offset`.
fn persist(inner: &Inner, tier: &DiskTier, t: &TierTask) -> i32 {
    with_task_range(inner, t, |at| {
        // SAFETY: `with_task_range` checked the range inside our mapped segment,
        // which stays mapped until we return; the master keeps the replica
        // allocated until we answer.
        let value = unsafe { std::slice::from_raw_parts(at.cast_const(), t.size as usize) };
        persisted(tier, t, tier.write(t.disk_offset, &t.key, t.task_id, value))
    })
}

/// A persist task's step for the writing thread: its record laid out for a direct
/// write when records go around the page cache now, else the task as given.
fn prepare(inner: &Inner, tier: &DiskTier, t: TierTask) -> Step {
    if TierTaskKind::try_from(t.kind) != Ok(TierTaskKind::TierPersist) {
        return Step::Run(t);
    }
    let mut record = None;
    let code = with_task_range(inner, &t, |at| {
        // SAFETY: as in `persist`; the bytes are copied out before we return.
        let value = unsafe { std::slice::from_raw_parts(at.cast_const(), t.size as usize) };
        record = tier.prepare(t.disk_offset, &t.key, t.task_id, value);
        0
    });
    match (code, record) {
        (0, Some(r)) => Step::Write(t, r),
        (0, None) => Step::Run(t),
        (code, _) => Step::Answer(TierTaskResult {
            task_id: t.task_id,
            code,
        }),
    }
}

/// A persist's result code, counted.
fn persisted(
    tier: &DiskTier,
    t: &TierTask,
    r: Result<mooncake_tier::RecordInfo, mooncake_tier::TierError>,
) -> i32 {
    match r {
        Ok(_) => {
            if t.demotion {
                mooncake_tier::TierMetrics::add(&tier.metrics().demotions, 1);
            }
            0
        }
        Err(e) => {
            mooncake_tier::TierMetrics::add(&tier.metrics().write_failures, 1);
            tracing::warn!(key = %t.key, "SSD tier: {e}");
            ErrorCode::InternalError.code()
        }
    }
}

fn failed(task_id: u64) -> TierTaskResult {
    TierTaskResult {
        task_id,
        code: ErrorCode::InternalError.code(),
    }
}
