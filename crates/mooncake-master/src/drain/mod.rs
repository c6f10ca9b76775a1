//! Drain: moving every object out of some segments before their owners leave
//! (scale-in, a node's maintenance), with nothing lost and no read failing.
//!
//! A job (`POST /api/v1/drain_jobs`) marks its segments draining (they take no new
//! replicas from then on) and plans at once, walking the index one shard at a time:
//! an object that has a replica outside the drained segments just loses its drained
//! replicas; any other gets a new replica allocated on a segment that takes replicas
//! (one of `target_segments` when given), and a copy unit. The owner of a drained
//! segment asks for its units (`SegmentOwner.DrainWork`, `service.rs`), writes the bytes
//! from its own memory into the new replicas over the transfer engine (store to
//! store, never through the master) and reports them; the master then switches each
//! object from the old replica to the new one under the key's shard lock, in one step.
//! Until then readers get the old replica, whose range is never handed out again
//! (the segment takes no replicas), so no read fails for lack of a replica and none
//! returns wrong bytes. An object removed or rewritten meanwhile is left as it is and
//! its new range freed.
//!
//! One job at a time. Statuses are the reference's: CREATED, PLANNING, RUNNING,
//! SUCCEEDED, FAILED, CANCELED.

pub mod service;
pub mod tasks;

use crate::alloc::AllocHandle;
use crate::index::{Replica, Walked, SHARDS};
use crate::master::Master;
use mooncake_common::ErrorCode;
use mooncake_proto::{DrainCopy, DrainCopyResult};
use parking_lot::Mutex;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// A unit handed out and not reported within this is handed out again.
const REISSUE_AFTER: Duration = Duration::from_secs(30);
/// A unit whose copy failed this often fails.
const MAX_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Created,
    Planning,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Created => "CREATED",
            Status::Planning => "PLANNING",
            Status::Running => "RUNNING",
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
            Status::Canceled => "CANCELED",
        }
    }

    fn is_active(self) -> bool {
        matches!(self, Status::Created | Status::Planning | Status::Running)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnitState {
    Waiting,
    Out(Instant),
    Done,
    Failed,
}

struct Unit {
    task_id: u64,
    key: String,
    src_seg: u32,
    src: AllocHandle,
    size: u64,
    dst_seg: u32,
    dst: AllocHandle,
    state: UnitState,
    attempts: u32,
}

struct Job {
    id: String,
    segments: Vec<String>,
    seg_ids: Vec<u32>,
    targets: Vec<String>,
    max_concurrency: usize,
    status: Status,
    units: Vec<Unit>,
    /// Objects whose drained replicas were simply dropped (another replica stayed).
    dropped_extra: u64,
    succeeded: u64,
    failed: u64,
    migrated_bytes: u64,
    message: String,
    created_unix_ms: u64,
}

/// A job as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub success: bool,
    pub job_id: String,
    pub status: &'static str,
    pub status_name: &'static str,
    pub segments: Vec<String>,
    pub target_segments: Vec<String>,
    pub max_concurrency: usize,
    pub total_units: u64,
    pub succeeded_units: u64,
    pub failed_units: u64,
    pub pending_units: u64,
    pub migrated_bytes: u64,
    pub replicas_dropped_without_copy: u64,
    pub message: String,
    pub created_at_unix_ms: u64,
}

impl Job {
    fn view(&self) -> JobView {
        let pending = self
            .units
            .iter()
            .filter(|u| matches!(u.state, UnitState::Waiting | UnitState::Out(_)))
            .count() as u64;
        JobView {
            success: true,
            job_id: self.id.clone(),
            status: self.status.name(),
            status_name: self.status.name(),
            segments: self.segments.clone(),
            target_segments: self.targets.clone(),
            max_concurrency: self.max_concurrency,
            total_units: self.units.len() as u64,
            succeeded_units: self.succeeded,
            failed_units: self.failed,
            pending_units: pending,
            migrated_bytes: self.migrated_bytes,
            replicas_dropped_without_copy: self.dropped_extra,
            message: self.message.clone(),
            created_at_unix_ms: self.created_unix_ms,
        }
    }

    /// Ends the job once no unit is pending.
    fn settle(&mut self) {
        if self.status != Status::Running {
            return;
        }
        let pending = self
            .units
            .iter()
            .any(|u| matches!(u.state, UnitState::Waiting | UnitState::Out(_)));
        if pending {
            return;
        }
        if self.failed == 0 {
            self.status = Status::Succeeded;
            self.message = format!(
                "moved {} objects ({} bytes); {} objects kept a replica elsewhere",
                self.succeeded, self.migrated_bytes, self.dropped_extra
            );
        } else {
            self.status = Status::Failed;
            if self.message.is_empty() {
                self.message = format!("{} objects could not be moved", self.failed);
            }
        }
        tracing::info!(job = %self.id, status = self.status.name(), "{}", self.message);
    }
}

/// What a drain request asks for.
#[derive(Debug, Clone, Default)]
pub struct DrainRequest {
    pub segments: Vec<String>,
    pub target_segments: Vec<String>,
    pub max_concurrency: usize,
}

#[derive(Default)]
struct State {
    jobs: Vec<Job>,
    next_job: u64,
    next_task: u64,
}

/// Every drain job of one master.
pub struct Drains {
    master: Arc<Master>,
    state: Mutex<State>,
    /// Copy and move tasks: single objects on the same copy path (`tasks.rs`).
    tasks: tasks::Tasks,
}

impl Drains {
    pub fn new(master: Arc<Master>) -> Arc<Drains> {
        Arc::new(Drains {
            master,
            state: Mutex::new(State::default()),
            tasks: tasks::Tasks::new(),
        })
    }

    /// The master the jobs run on.
    pub fn master(&self) -> &Arc<Master> {
        &self.master
    }

    /// The copy and move tasks.
    pub fn tasks(&self) -> &tasks::Tasks {
        &self.tasks
    }

    /// Starts a job: checks the request, marks the segments draining and plans the
    /// moves. Errors say what is wrong with the request.
    pub fn create(&self, req: DrainRequest) -> Result<JobView, String> {
        let m = &self.master;
        if req.segments.is_empty() {
            return Err("no segment to drain: give \"segments\": [\"<segment name>\", ...]".into());
        }
        let mut st = self.state.lock();
        if let Some(j) = st.jobs.iter().find(|j| j.status.is_active()) {
            return Err(format!(
                "drain job {} is still {}; one drain at a time (cancel it or wait)",
                j.id,
                j.status.name()
            ));
        }
        let mut segs = Vec::new();
        for name in &req.segments {
            match m.segments.by_name(name) {
                Some(s) if s.held_until_ms() == 0 => segs.push(s),
                Some(_) => {
                    return Err(format!(
                        "segment {name} is held for its owner's restart; it cannot be drained now"
                    ))
                }
                None => return Err(format!("unknown segment {name} (see /get_all_segments)")),
            }
        }
        for t in &req.target_segments {
            if req.segments.contains(t) {
                return Err(format!("segment {t} is both drained and a target"));
            }
            if m.segments.by_name(t).is_none() {
                return Err(format!(
                    "unknown target segment {t} (see /get_all_segments)"
                ));
            }
        }
        let ids: Vec<u32> = segs.iter().map(|s| s.id).collect();
        let others = m.segments.list().into_iter().any(|s| {
            !ids.contains(&s.id)
                && s.takes_replicas()
                && (req.target_segments.is_empty()
                    || req.target_segments.iter().any(|t| *t == s.desc.name))
        });
        if !others {
            return Err(
                "no other segment would take the objects: draining the last segment(s) would lose them"
                    .into(),
            );
        }
        st.next_job += 1;
        let id = format!("drain-{}", st.next_job);
        let mut job = Job {
            id: id.clone(),
            segments: req.segments.clone(),
            seg_ids: ids.clone(),
            targets: req.target_segments.clone(),
            max_concurrency: req.max_concurrency.clamp(1, 1024),
            status: Status::Created,
            units: Vec::new(),
            dropped_extra: 0,
            succeeded: 0,
            failed: 0,
            migrated_bytes: 0,
            message: String::new(),
            created_unix_ms: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        for s in &segs {
            s.set_draining(true);
        }
        job.status = Status::Planning;
        let mut next_task = st.next_task;
        self.plan(&mut job, &mut next_task);
        st.next_task = next_task;
        job.status = Status::Running;
        tracing::info!(job = %id, segments = ?job.segments, units = job.units.len(), failed = job.failed, "drain planned");
        job.settle();
        let view = job.view();
        st.jobs.push(job);
        Ok(view)
    }

    /// Walks the index: drops drained replicas of objects that keep another one,
    /// allocates new replicas (and units) for the others.
    fn plan(&self, job: &mut Job, next_task: &mut u64) {
        let m = &self.master;
        let drained = job.seg_ids.clone();
        let targets: Vec<Arc<crate::segments::Segment>> = m
            .segments
            .list()
            .into_iter()
            .filter(|s| !drained.contains(&s.id))
            .filter(|s| job.targets.is_empty() || job.targets.contains(&s.desc.name))
            .collect();
        for i in 0..SHARDS {
            let mut shard = m.index.lock_shard(i);
            shard.edit_each(|key, o| {
                if !o.is_complete() {
                    return Walked::Untouched;
                }
                let on: Vec<Replica> = o
                    .replicas
                    .iter()
                    .filter(|r| drained.contains(&r.seg))
                    .copied()
                    .collect();
                if on.is_empty() {
                    return Walked::Untouched;
                }
                if o.replicas.iter().any(|r| !drained.contains(&r.seg)) {
                    // Readers may still copy from these ranges: the segment takes no
                    // replicas, so they are never handed out again.
                    for r in &on {
                        if let Some(s) = m.segments.get(r.seg) {
                            s.free(r.handle, o.size);
                        }
                    }
                    o.replicas = o
                        .replicas
                        .iter()
                        .filter(|r| !drained.contains(&r.seg))
                        .copied()
                        .collect();
                    job.dropped_extra += 1;
                    return Walked::Changed;
                }
                let src = on[0];
                let mut best: Option<&Arc<crate::segments::Segment>> = None;
                for t in &targets {
                    if !t.takes_replicas() {
                        continue;
                    }
                    let free = t.view().largest_free;
                    if free >= o.size && best.is_none_or(|b| b.view().free < t.view().free) {
                        best = Some(t);
                    }
                }
                let dst = best.and_then(|t| t.allocate(o.size).map(|h| (t.id, h)));
                *next_task += 1;
                match dst {
                    Some((dst_seg, dst)) => job.units.push(Unit {
                        task_id: *next_task,
                        key: key.to_string(),
                        src_seg: src.seg,
                        src: src.handle,
                        size: o.size,
                        dst_seg,
                        dst,
                        state: UnitState::Waiting,
                        attempts: 0,
                    }),
                    None => {
                        job.failed += 1;
                        job.message = format!(
                            "no segment has room for {key:?} ({} bytes); it stays where it is",
                            o.size
                        );
                    }
                }
                Walked::Untouched
            });
        }
    }

    /// The owner of `segment` reports copies and asks for more: what to copy now, and
    /// whether to ask again.
    pub fn work(
        &self,
        client_id: &str,
        segment: &str,
        done: &[DrainCopyResult],
    ) -> Result<(Vec<DrainCopy>, bool), ErrorCode> {
        let m = &self.master;
        let Some(seg) = m.segments.by_name(segment) else {
            return Err(ErrorCode::SegmentNotFound);
        };
        if &*seg.client_id != client_id {
            return Err(ErrorCode::IllegalClient);
        }
        // Copy and move tasks ride along with the drain's copies.
        self.tasks.report(m, seg.id, done);
        let mut out = self.tasks.hand_out(m, &seg, 256);
        let tasks_left = self.tasks.busy(seg.id);
        let mut st = self.state.lock();
        let Some(job) = st
            .jobs
            .iter_mut()
            .find(|j| j.status == Status::Running && j.seg_ids.contains(&seg.id))
        else {
            return Ok((out, tasks_left));
        };
        for r in done.iter().filter(|r| !tasks::is_task_unit(r.task_id)) {
            let Some(u) = job.units.iter_mut().find(|u| u.task_id == r.task_id) else {
                continue;
            };
            if !matches!(u.state, UnitState::Out(_)) || u.src_seg != seg.id {
                continue;
            }
            if r.code == 0 {
                if switch(m, u) {
                    job.migrated_bytes += u.size;
                }
                job.succeeded += 1;
                u.state = UnitState::Done;
            } else {
                u.attempts += 1;
                if u.attempts >= MAX_ATTEMPTS {
                    free(m, u.dst_seg, u.dst, u.size);
                    u.state = UnitState::Failed;
                    job.failed += 1;
                    job.message = format!(
                        "copying {:?} failed {MAX_ATTEMPTS} times (code {}); it stays where it is",
                        u.key, r.code
                    );
                } else {
                    u.state = UnitState::Waiting;
                }
            }
        }
        let batch = job.max_concurrency * 8;
        let now = Instant::now();
        for u in job.units.iter_mut().filter(|u| u.src_seg == seg.id) {
            if out.len() >= batch {
                break;
            }
            let due = match u.state {
                UnitState::Waiting => true,
                UnitState::Out(t) => now.duration_since(t) > REISSUE_AFTER,
                _ => false,
            };
            if !due {
                continue;
            }
            let Some(dst) = m.segments.get(u.dst_seg) else {
                u.state = UnitState::Failed;
                job.failed += 1;
                job.message = format!("the target segment of {:?} went away", u.key);
                continue;
            };
            u.state = UnitState::Out(now);
            out.push(DrainCopy {
                task_id: u.task_id,
                src_offset: seg.offset_of(u.src),
                size: u.size,
                dst: Some(mooncake_proto::Replica {
                    segment: Some((&dst.desc).into()),
                    offset: dst.offset_of(u.dst),
                    size: u.size,
                    segment_index: None,
                    generation: None,
                    grant: None,
                }),
            });
        }
        job.settle();
        let more = job.status == Status::Running;
        Ok((out, more || tasks_left))
    }

    /// The job's status; running jobs whose drained segment's owner went away fail
    /// the units it still had.
    pub fn query(&self, id: &str) -> Option<JobView> {
        let mut st = self.state.lock();
        let job = st.jobs.iter_mut().find(|j| j.id == id)?;
        if job.status == Status::Running {
            for (name, sid) in job.segments.iter().zip(&job.seg_ids) {
                let gone = self
                    .master
                    .segments
                    .get(*sid)
                    .is_none_or(|s| s.held_until_ms() != 0);
                if !gone {
                    continue;
                }
                for u in job.units.iter_mut().filter(|u| u.src_seg == *sid) {
                    if matches!(u.state, UnitState::Waiting | UnitState::Out(_)) {
                        free(&self.master, u.dst_seg, u.dst, u.size);
                        u.state = UnitState::Failed;
                        job.failed += 1;
                        job.message = format!("the owner of {name} went away during the drain");
                    }
                }
            }
            job.settle();
        }
        Some(job.view())
    }

    /// Every job, newest first.
    pub fn list(&self) -> Vec<JobView> {
        self.state.lock().jobs.iter().rev().map(Job::view).collect()
    }

    /// Cancels a job: units not copied yet are dropped (their new ranges freed), the
    /// segments take replicas again. Moves already made stay.
    pub fn cancel(&self, id: &str) -> Result<JobView, String> {
        let mut st = self.state.lock();
        let Some(job) = st.jobs.iter_mut().find(|j| j.id == id) else {
            return Err(format!("unknown drain job {id}"));
        };
        if !job.status.is_active() {
            return Err(format!(
                "drain job {id} already ended ({})",
                job.status.name()
            ));
        }
        for u in job.units.iter_mut() {
            if matches!(u.state, UnitState::Waiting | UnitState::Out(_)) {
                free(&self.master, u.dst_seg, u.dst, u.size);
                u.state = UnitState::Failed;
            }
        }
        for sid in &job.seg_ids {
            if let Some(s) = self.master.segments.get(*sid) {
                s.set_draining(false);
            }
        }
        job.status = Status::Canceled;
        job.message = "canceled".into();
        Ok(job.view())
    }
}

fn free(m: &Master, seg: u32, h: AllocHandle, size: u64) {
    if let Some(s) = m.segments.get(seg) {
        s.free(h, size);
    }
}

/// Switches the object of a copied unit from its old replica to the new one; when
/// the object was removed or rewritten meanwhile, the new range is freed instead.
/// Whether it switched.
fn switch(m: &Master, u: &Unit) -> bool {
    let mut shard = m.index.lock(&u.key);
    let Some(mut o) = shard.edit(&u.key) else {
        drop(shard);
        free(m, u.dst_seg, u.dst, u.size);
        return false;
    };
    let same = |r: &Replica| r.seg == u.src_seg && r.handle.offset == u.src.offset;
    if o.size != u.size || !o.replicas.iter().any(same) {
        o.unchanged();
        drop(shard);
        free(m, u.dst_seg, u.dst, u.size);
        return false;
    }
    let dst = Replica {
        seg: u.dst_seg,
        handle: u.dst,
    };
    o.replicas = o
        .replicas
        .iter()
        .map(|r| if same(r) { dst } else { *r })
        .collect();
    drop(o);
    drop(shard);
    // Readers that got the old replica may still copy from it: the drained segment
    // takes no replicas, so the range is not handed out again.
    free(m, u.src_seg, u.src, u.size);
    true
}
