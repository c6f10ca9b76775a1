//! Replica tasks: copying one object's replica to named segments, or moving it from
//! one segment to another (the reference's `create_copy_task`, `create_move_task` and
//! `query_task`). They run on the drain machinery: the master allocates each new
//! replica when the task is created; the owner of the source segment gets the copy
//! with its drain copies (`SegmentOwner.DrainWork`), writes the bytes store to store
//! and reports it; the master then, under the key's shard lock and in one step, adds
//! the new replica (copy) or puts it in place of the source replica (move).
//!
//! Until that step readers get the old replicas, so no read fails during a move and
//! none returns wrong bytes; a moved-out range is freed only once the object's read
//! guard is over (a reader handed the old replica may still be copying from it). A
//! copy that fails leaves the object as it was (its new range freed), so a move never
//! loses the object. An object removed or rewritten meanwhile is left alone and the
//! task fails saying so.
//!
//! Statuses and codes are the reference's: PENDING (not handed out yet), PROCESSING,
//! SUCCESS, FAILED; an unknown task id is -1400 (TASK_NOT_FOUND). Task ids are two
//! numbers, as the reference's UUIDs: this master's random epoch and a sequence.

use crate::alloc::AllocHandle;
use crate::index::Replica;
use crate::master::Master;
use mooncake_common::ErrorCode;
use mooncake_proto::{DrainCopy, DrainCopyResult};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Copy ids of task units carry this bit, drain units never do.
pub const TASK_UNIT_BIT: u64 = 1 << 63;
/// The reference's TASK_NOT_FOUND.
pub const TASK_NOT_FOUND: i32 = -1400;
/// The reference's UNAVAILABLE_IN_CURRENT_STATUS (a target that takes no replicas).
pub const UNAVAILABLE_IN_CURRENT_STATUS: i32 = -1010;
/// Finished tasks kept for `query_task` (oldest dropped first), as the reference.
const KEEP_FINISHED: usize = 10_000;
/// A unit handed out and not reported within this is handed out again.
const REISSUE_AFTER: Duration = Duration::from_secs(30);
/// A unit whose copy failed this often fails its task.
const MAX_ATTEMPTS: u32 = 3;

/// Whether a reported copy id belongs to a task (not to a drain job).
pub fn is_task_unit(id: u64) -> bool {
    id & TASK_UNIT_BIT != 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Copy = 0,
    Move = 1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    Pending = 0,
    Processing = 1,
    Success = 2,
    Failed = 3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnitState {
    Waiting,
    Out(Instant),
    Done,
    Failed,
}

struct Unit {
    id: u64,
    src_seg: u32,
    src: AllocHandle,
    dst_seg: u32,
    dst: AllocHandle,
    state: UnitState,
    attempts: u32,
}

struct Task {
    kind: Kind,
    key: String,
    size: u64,
    status: TaskStatus,
    created_ms: u64,
    updated_ms: u64,
    assigned_client: String,
    message: String,
    units: Vec<Unit>,
}

/// What `query_task` answers.
#[derive(Debug, Clone)]
pub struct TaskView {
    pub id: (u64, u64),
    pub kind: Kind,
    pub status: TaskStatus,
    pub created_at_ms_epoch: u64,
    pub last_updated_at_ms_epoch: u64,
    pub assigned_client: String,
    pub message: String,
}

#[derive(Default)]
struct State {
    tasks: BTreeMap<u64, Task>,
    next: u64,
}

/// Every replica task of one master.
pub struct Tasks {
    epoch: u64,
    state: Mutex<State>,
}

impl Default for Tasks {
    fn default() -> Self {
        Self::new()
    }
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn free(m: &Master, seg: u32, h: AllocHandle, size: u64) {
    if let Some(s) = m.segments.get(seg) {
        s.free(h, size);
    }
}

impl Tasks {
    pub fn new() -> Self {
        Tasks {
            epoch: rand::random::<u64>() | 1,
            state: Mutex::new(State::default()),
        }
    }

    /// A task copying `key`'s object to each of `targets` (a target that already
    /// holds a replica is skipped, as the reference does).
    pub fn create_copy(
        &self,
        m: &Master,
        key: &str,
        targets: &[String],
    ) -> Result<(u64, u64), i32> {
        // A unit's id keeps its index in 8 bits.
        if targets.is_empty() || targets.len() > 255 {
            return Err(ErrorCode::InvalidParams.code());
        }
        let (size, replicas) = object(m, key)?;
        let mut segs = Vec::new();
        for t in targets {
            let s = target(m, t)?;
            if !segs
                .iter()
                .any(|x: &Arc<crate::segments::Segment>| x.id == s.id)
            {
                segs.push(s);
            }
        }
        // The source: a replica whose owner is still there to serve copies.
        let src = replicas
            .iter()
            .find(|r| {
                m.segments
                    .get(r.seg)
                    .is_some_and(|s| s.held_until_ms() == 0)
            })
            .or(replicas.first())
            .copied()
            .ok_or(ErrorCode::ObjectNotFound.code())?;
        let mut units = Vec::new();
        let mut message = String::new();
        for s in segs {
            if replicas.iter().any(|r| r.seg == s.id) {
                continue;
            }
            match s.allocate(size) {
                Some(dst) => units.push((s.id, dst)),
                None => {
                    message = format!(
                        "segment {} has no room for {key:?} ({size} bytes)",
                        s.desc.name
                    );
                    for (seg, h) in units.drain(..) {
                        free(m, seg, h, size);
                    }
                    break;
                }
            }
        }
        let failed = !message.is_empty();
        Ok(self.add(m, Kind::Copy, key, size, src, units, failed, message))
    }

    /// A task moving `key`'s replica on `source` to `target`.
    pub fn create_move(
        &self,
        m: &Master,
        key: &str,
        source: &str,
        target_name: &str,
    ) -> Result<(u64, u64), i32> {
        let (size, replicas) = object(m, key)?;
        if source == target_name {
            return Err(ErrorCode::InvalidParams.code());
        }
        let dst = target(m, target_name)?;
        let src_seg = m
            .segments
            .by_name(source)
            .ok_or(ErrorCode::InvalidParams.code())?;
        let src = replicas
            .iter()
            .find(|r| r.seg == src_seg.id)
            .copied()
            .ok_or(ErrorCode::InvalidParams.code())?;
        if replicas.iter().any(|r| r.seg == dst.id) {
            // The target already holds it: the move only drops the source replica.
            let message = match drop_source(m, key, size, src) {
                true => String::new(),
                false => format!("{key:?} was removed or rewritten meanwhile"),
            };
            let failed = !message.is_empty();
            return Ok(self.add(m, Kind::Move, key, size, src, Vec::new(), failed, message));
        }
        let (units, failed, message) = match dst.allocate(size) {
            Some(h) => (vec![(dst.id, h)], false, String::new()),
            None => (
                Vec::new(),
                true,
                format!("segment {target_name} has no room for {key:?} ({size} bytes)"),
            ),
        };
        Ok(self.add(m, Kind::Move, key, size, src, units, failed, message))
    }

    #[allow(clippy::too_many_arguments)]
    fn add(
        &self,
        m: &Master,
        kind: Kind,
        key: &str,
        size: u64,
        src: Replica,
        dsts: Vec<(u32, AllocHandle)>,
        failed: bool,
        message: String,
    ) -> (u64, u64) {
        let now = epoch_ms();
        let assigned_client = m
            .segments
            .get(src.seg)
            .map(|s| s.client_id.to_string())
            .unwrap_or_default();
        let mut st = self.state.lock();
        st.next += 1;
        let seq = st.next;
        let units: Vec<Unit> = dsts
            .into_iter()
            .enumerate()
            .map(|(i, (dst_seg, dst))| Unit {
                id: TASK_UNIT_BIT | (seq << 8) | i as u64,
                src_seg: src.seg,
                src: src.handle,
                dst_seg,
                dst,
                state: UnitState::Waiting,
                attempts: 0,
            })
            .collect();
        let status = if failed {
            TaskStatus::Failed
        } else if units.is_empty() {
            TaskStatus::Success
        } else {
            TaskStatus::Pending
        };
        st.tasks.insert(
            seq,
            Task {
                kind,
                key: key.to_string(),
                size,
                status,
                created_ms: now,
                updated_ms: now,
                assigned_client,
                message,
                units,
            },
        );
        prune(&mut st);
        (self.epoch, seq)
    }

    /// The task's state; `TASK_NOT_FOUND` for an id this master never gave (or
    /// forgot). A task whose source segment's owner went away fails.
    pub fn query(&self, m: &Master, id: (u64, u64)) -> Result<TaskView, i32> {
        if id.0 != self.epoch {
            return Err(TASK_NOT_FOUND);
        }
        let mut st = self.state.lock();
        let t = st.tasks.get_mut(&id.1).ok_or(TASK_NOT_FOUND)?;
        if matches!(t.status, TaskStatus::Pending | TaskStatus::Processing) {
            let gone = t.units.iter().any(|u| {
                m.segments
                    .get(u.src_seg)
                    .is_none_or(|s| s.held_until_ms() != 0)
            });
            if gone {
                for u in t.units.iter_mut() {
                    if matches!(u.state, UnitState::Waiting | UnitState::Out(_)) {
                        free(m, u.dst_seg, u.dst, t.size);
                        u.state = UnitState::Failed;
                    }
                }
                t.message = "the owner of the source segment went away".into();
                settle(t);
            }
        }
        Ok(TaskView {
            id,
            kind: t.kind,
            status: t.status,
            created_at_ms_epoch: t.created_ms,
            last_updated_at_ms_epoch: t.updated_ms,
            assigned_client: t.assigned_client.clone(),
            message: t.message.clone(),
        })
    }

    /// Takes the owner of segment `seg`'s reports of task copies.
    pub fn report(&self, m: &Master, seg: u32, done: &[DrainCopyResult]) {
        let mut st = self.state.lock();
        for r in done.iter().filter(|r| is_task_unit(r.task_id)) {
            let seq = (r.task_id & !TASK_UNIT_BIT) >> 8;
            let Some(t) = st.tasks.get_mut(&seq) else {
                continue;
            };
            let (kind, size) = (t.kind, t.size);
            let Some(u) = t.units.iter_mut().find(|u| u.id == r.task_id) else {
                continue;
            };
            if !matches!(u.state, UnitState::Out(_)) || u.src_seg != seg {
                continue;
            }
            if r.code == 0 {
                if switch(m, kind, &t.key, size, u) {
                    u.state = UnitState::Done;
                } else {
                    u.state = UnitState::Failed;
                    t.message = format!("{:?} was removed or rewritten meanwhile", t.key);
                }
            } else {
                u.attempts += 1;
                if u.attempts >= MAX_ATTEMPTS {
                    free(m, u.dst_seg, u.dst, size);
                    u.state = UnitState::Failed;
                    t.message = format!(
                        "copying {:?} failed {MAX_ATTEMPTS} times (code {}); it stays where it is",
                        t.key, r.code
                    );
                } else {
                    u.state = UnitState::Waiting;
                }
            }
            t.updated_ms = epoch_ms();
            settle(t);
        }
    }

    /// The task copies segment `seg`'s owner is to make now (at most `max`).
    pub fn hand_out(
        &self,
        m: &Master,
        seg: &crate::segments::Segment,
        max: usize,
    ) -> Vec<DrainCopy> {
        let mut st = self.state.lock();
        let now = Instant::now();
        let mut out = Vec::new();
        for t in st.tasks.values_mut() {
            if !matches!(t.status, TaskStatus::Pending | TaskStatus::Processing) {
                continue;
            }
            for u in t.units.iter_mut().filter(|u| u.src_seg == seg.id) {
                if out.len() >= max {
                    return out;
                }
                let due = match u.state {
                    UnitState::Waiting => true,
                    UnitState::Out(at) => now.duration_since(at) > REISSUE_AFTER,
                    _ => false,
                };
                if !due {
                    continue;
                }
                let Some(dst) = m.segments.get(u.dst_seg) else {
                    u.state = UnitState::Failed;
                    t.message = "the target segment went away".into();
                    continue;
                };
                u.state = UnitState::Out(now);
                out.push(DrainCopy {
                    task_id: u.id,
                    src_offset: seg.offset_of(u.src),
                    size: t.size,
                    dst: Some(mooncake_proto::Replica {
                        segment: Some((&dst.desc).into()),
                        offset: dst.offset_of(u.dst),
                        size: t.size,
                        segment_index: None,
                        generation: None,
                        grant: None,
                    }),
                });
            }
            if t.status == TaskStatus::Pending {
                t.status = TaskStatus::Processing;
                t.updated_ms = epoch_ms();
            }
            settle(t);
        }
        out
    }

    /// Whether segment `seg`'s owner has task copies still to make or report.
    pub fn busy(&self, seg: u32) -> bool {
        self.state.lock().tasks.values().any(|t| {
            t.units.iter().any(|u| {
                u.src_seg == seg && matches!(u.state, UnitState::Waiting | UnitState::Out(_))
            })
        })
    }
}

/// Ends a task once no unit is pending.
fn settle(t: &mut Task) {
    if !matches!(t.status, TaskStatus::Pending | TaskStatus::Processing) {
        return;
    }
    if t.units
        .iter()
        .any(|u| matches!(u.state, UnitState::Waiting | UnitState::Out(_)))
    {
        return;
    }
    t.status = if t.units.iter().any(|u| u.state == UnitState::Failed) {
        TaskStatus::Failed
    } else {
        TaskStatus::Success
    };
    t.updated_ms = epoch_ms();
}

/// Drops the oldest finished tasks past [`KEEP_FINISHED`].
fn prune(st: &mut State) {
    let finished = |t: &Task| matches!(t.status, TaskStatus::Success | TaskStatus::Failed);
    let mut n = st.tasks.values().filter(|t| finished(t)).count();
    if n <= KEEP_FINISHED {
        return;
    }
    let old: Vec<u64> = st
        .tasks
        .iter()
        .filter(|(_, t)| finished(t))
        .map(|(k, _)| *k)
        .take(n - KEEP_FINISHED)
        .collect();
    for k in old {
        st.tasks.remove(&k);
        n -= 1;
    }
    debug_assert_eq!(n, KEEP_FINISHED);
}

/// `key`'s complete object: its size and replicas, or OBJECT_NOT_FOUND.
fn object(m: &Master, key: &str) -> Result<(u64, Vec<Replica>), i32> {
    let mut shard = m.index.lock(key);
    match shard.touch(key) {
        Some(o) if o.is_complete() => Ok((o.size, o.replicas.to_vec())),
        _ => Err(ErrorCode::ObjectNotFound.code()),
    }
}

/// A target segment: unknown is INVALID_PARAMS, one that takes no replicas
/// (draining, held for a restart) UNAVAILABLE_IN_CURRENT_STATUS, as the reference.
fn target(m: &Master, name: &str) -> Result<Arc<crate::segments::Segment>, i32> {
    let s = m
        .segments
        .by_name(name)
        .ok_or(ErrorCode::InvalidParams.code())?;
    if !s.takes_replicas() {
        return Err(UNAVAILABLE_IN_CURRENT_STATUS);
    }
    Ok(s)
}

/// Frees a moved-out range once no reader can still be copying from it: after the
/// object's read guard (the same rule eviction follows).
fn free_after_guard(m: &Master, guard_until_ms: u64, seg: u32, h: AllocHandle, size: u64) {
    let wait = guard_until_ms.saturating_sub(m.now_ms());
    let segment = m.segments.get(seg);
    match (wait, tokio::runtime::Handle::try_current(), segment) {
        (_, _, None) => {}
        (0, _, Some(s)) | (_, Err(_), Some(s)) => s.free(h, size),
        (ms, Ok(rt), Some(s)) => {
            rt.spawn(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                s.free(h, size);
            });
        }
    }
}

/// Drops the replica `src` of `key` (a move whose target already held one); false
/// when the object changed meanwhile.
fn drop_source(m: &Master, key: &str, size: u64, src: Replica) -> bool {
    let mut shard = m.index.lock(key);
    let Some(mut o) = shard.edit(key) else {
        return false;
    };
    let same = |r: &Replica| r.seg == src.seg && r.handle.offset == src.handle.offset;
    if o.size != size || !o.replicas.iter().any(same) || o.replicas.len() < 2 {
        o.unchanged();
        return false;
    }
    o.replicas = o
        .replicas
        .iter()
        .filter(|r| !same(r))
        .copied()
        .collect::<Vec<_>>()
        .into();
    let guard = o.guard_until_ms();
    drop(o);
    drop(shard);
    free_after_guard(m, guard, src.seg, src.handle, size);
    true
}

/// Puts a copied unit's new replica in: next to the source (copy) or in its place
/// (move). When the object was removed, rewritten or lost the source meanwhile, the
/// new range is freed instead. Whether it went in.
fn switch(m: &Master, kind: Kind, key: &str, size: u64, u: &Unit) -> bool {
    let mut shard = m.index.lock(key);
    let Some(mut o) = shard.edit(key) else {
        drop(shard);
        free(m, u.dst_seg, u.dst, size);
        return false;
    };
    let same = |r: &Replica| r.seg == u.src_seg && r.handle.offset == u.src.offset;
    let there = o.replicas.iter().any(|r| r.seg == u.dst_seg);
    if o.size != size || !o.replicas.iter().any(same) || there {
        o.unchanged();
        drop(shard);
        free(m, u.dst_seg, u.dst, size);
        return false;
    }
    let dst = Replica {
        seg: u.dst_seg,
        handle: u.dst,
    };
    let mut list: Vec<Replica> = o.replicas.to_vec();
    match kind {
        Kind::Copy => list.push(dst),
        Kind::Move => {
            for r in list.iter_mut() {
                if same(r) {
                    *r = dst;
                }
            }
        }
    }
    o.replicas = list.into();
    let guard = o.guard_until_ms();
    drop(o);
    drop(shard);
    if kind == Kind::Move {
        free_after_guard(m, guard, u.src_seg, u.src, size);
    }
    true
}
