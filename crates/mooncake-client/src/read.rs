//! The read path behind every get form: `Client::locate` (one
//! `BatchGetReplicaList`, which also grants the lease), `Client::locate_guessing` (the
//! same lookup with speculative reads from the location cache beside it) and
//! `Client::read_objects`,
//! which reads each object from one replica (same-host replicas first, the others in
//! rotating order to spread load) and retries the objects whose read failed on their
//! next replica.

use crate::client::Client;
use crate::errors::{check_code, check_key, fail_at, transfer_error, wrong_count};
use crate::io::{Job, Piece};
use crate::locations::{same_allocation, Remembered};
use crate::rpc::MasterRpc;
use mooncake_common::{ErrorCode, MooncakeError, Result};
use mooncake_proto::{BatchKeyRequest, Replica};
use mooncake_transfer::Opcode;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Where an object lives.
pub(crate) struct Located {
    pub replicas: Vec<Replica>,
    pub size: u64,
}

/// One object read speculatively: its position in the batch, where the cache
/// remembered it, and the local pieces its bytes go to (laid out for the remembered
/// size).
pub(crate) struct Guess {
    pub index: usize,
    pub loc: Arc<Remembered>,
    pub pieces: Vec<Piece>,
}

/// A lookup's answer, and whether the object's bytes are already in place (a kept
/// speculative read).
pub(crate) struct Found {
    pub located: Located,
    pub read: bool,
}

/// One object to read: its replicas (in preference order) and the local pieces.
pub(crate) struct ReadItem {
    pub replicas: Vec<Replica>,
    pub pieces: Vec<Piece>,
}

impl Client {
    /// One `BatchGetReplicaList` for `keys`; bad keys are answered locally. Each
    /// answer refreshes the location cache.
    pub(crate) async fn locate(&self, keys: &[String]) -> Vec<Result<Located>> {
        let out = self.locate_via(&self.inner.rpc, keys).await;
        self.remember(keys, &out);
        out
    }

    /// What the location cache knows of each key.
    pub(crate) fn remembered(&self, keys: &[String]) -> Vec<Option<Arc<Remembered>>> {
        let cache = &self.inner.locations;
        if !cache.enabled() {
            return keys.iter().map(|_| None).collect();
        }
        keys.iter().map(|k| cache.get(k)).collect()
    }

    /// The location cache keeps what each lookup answered (a miss forgets the key).
    fn remember(&self, keys: &[String], located: &[Result<Located>]) {
        let cache = &self.inner.locations;
        if !cache.enabled() {
            return;
        }
        for (k, l) in keys.iter().zip(located) {
            match l {
                Ok(l) => match l.replicas.first() {
                    Some(r) if r.generation.is_some() => cache.put(k, r, l.size),
                    _ => cache.forget(k),
                },
                Err(_) => cache.forget(k),
            }
        }
    }

    /// A write of `key` (`size` bytes to `replicas`, as its start answered) ended
    /// well: the cache remembers where, so the next get reads it speculatively. The
    /// same-host replica is preferred, as a get would. Replicas without a generation
    /// (a master that predates them) are not remembered.
    pub(crate) fn remember_written(&self, key: &str, replicas: &[Replica], size: u64) {
        let cache = &self.inner.locations;
        if !cache.enabled() {
            return;
        }
        let shm = &self.inner.data.shm;
        let r = replicas
            .iter()
            .find(|r| r.segment.as_ref().is_some_and(|s| shm.is_local(s)))
            .or_else(|| replicas.first());
        if let Some(r) = r.filter(|r| r.generation.is_some()) {
            let r = Replica {
                segment_index: None,
                ..r.clone()
            };
            cache.put(key, &r, size);
        }
    }

    /// The lookup of `keys` and, at the same time, the speculative reads of `guesses`
    /// (objects whose location the cache remembered, each read into its pieces). A
    /// guess's bytes are kept (`Found::read`) only when the lookup names the same
    /// allocation it read from: same segment, offset, size and generation. The
    /// allocation's generation changes whenever it is freed, so the same one at the
    /// lookup means it held this complete object from the moment the cache learnt of
    /// it until the lookup, and the lease the lookup granted covers the rest of the
    /// read, as for any read. Anything else (moved, replaced, removed, the read
    /// failed) leaves `read` false: the caller reads again from what the lookup named.
    /// The master still sees every lookup, so leases and eviction order are unchanged.
    ///
    /// # Safety
    /// Every guess's pieces are valid for writes for the whole call; what the caller
    /// finds there when `read` is false is unspecified.
    pub(crate) async unsafe fn locate_guessing(
        &self,
        keys: &[String],
        guesses: &[Guess],
    ) -> Vec<Result<Found>> {
        let found = |l: Result<Located>| {
            l.map(|located| Found {
                located,
                read: false,
            })
        };
        self.inner
            .locations
            .missed(keys.len().saturating_sub(guesses.len()));
        if guesses.is_empty() {
            return self.locate(keys).await.into_iter().map(found).collect();
        }
        let jobs: Vec<Job> = guesses
            .iter()
            .map(|g| Job {
                replica: &g.loc.replica,
                pieces: g.pieces.clone(),
            })
            .collect();
        // The reads are polled first, so their requests are on the wire before the
        // lookup goes out; the lookup then runs in the caller's call mode (a blocking
        // call waits for its answer on this thread while the transfer engine's tasks
        // take the reads' answers), and the reads are collected after it.
        // One small guess from a thread that may block: its request goes out on a
        // lane this thread drives, the lookup runs, then this thread reads the
        // answer, which arrived meanwhile; no other thread is woken.
        let lane = match &jobs[..] {
            // Safety: forwarded from the caller.
            [job] => unsafe { self.inner.data.lane_read(job) }.await,
            _ => None,
        };
        let (reads, located) = match lane {
            Some(op) => {
                let located = self.locate_via(&self.inner.rpc, keys).await;
                // Safety: forwarded from the caller.
                let read = unsafe { op.finish() }.map_err(|e| transfer_error(&e));
                (vec![read], located)
            }
            None => {
                tokio::join!(
                    async {
                        // Safety: forwarded from the caller.
                        unsafe { self.inner.data.run(Opcode::Read, &jobs).await }
                    },
                    self.locate_via(&self.inner.rpc, keys)
                )
            }
        };
        self.remember(keys, &located);
        let mut out: Vec<Result<Found>> = located.into_iter().map(found).collect();
        let cache = &self.inner.locations;
        for (g, read) in guesses.iter().zip(reads) {
            let Some(Ok(f)) = out.get_mut(g.index) else {
                cache.stale();
                continue;
            };
            let same = read.is_ok()
                && f.located.size == g.loc.size
                && f.located
                    .replicas
                    .iter()
                    .any(|r| same_allocation(r, &g.loc.replica));
            if same {
                f.read = true;
                cache.hit();
            } else {
                cache.stale();
            }
        }
        out
    }

    /// [`Client::locate`] over `rpc`, without touching the cache.
    async fn locate_via(&self, rpc: &MasterRpc, keys: &[String]) -> Vec<Result<Located>> {
        let mut out: Vec<Result<Located>> = Vec::with_capacity(keys.len());
        let mut ask = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            match self.ensure_open().and_then(|_| check_key(k)) {
                Ok(()) => {
                    ask.push(i);
                    out.push(Ok(Located {
                        replicas: vec![],
                        size: 0,
                    }));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        if ask.is_empty() {
            return out;
        }
        let req = BatchKeyRequest {
            keys: ask.iter().map(|i| keys[*i].clone()).collect(),
        };
        let resp = rpc
            .call("batch_get_replica_list", |mut c| async move {
                c.batch_get_replica_list(req).await
            })
            .await;
        match resp {
            Ok(r) if r.results.len() == ask.len() => {
                for (i, res) in ask.into_iter().zip(r.results) {
                    out[i] = check_code(res.code, &format!("get {:?}", keys[i])).and_then(|_| {
                        if res.replicas.is_empty() {
                            Err(MooncakeError::new(
                                ErrorCode::ReplicaIsNotReady,
                                format!("get {:?}: no complete replica", keys[i]),
                            ))
                        } else {
                            Ok(Located {
                                replicas: self.prefer(res.replicas),
                                size: res.size,
                            })
                        }
                    });
                }
            }
            Ok(_) => fail_at(&mut out, ask, &wrong_count("get_replica_list")),
            Err(e) => fail_at(&mut out, ask, &e),
        }
        out
    }

    /// Same-host replicas first; the others rotated so readers spread over replicas.
    fn prefer(&self, mut replicas: Vec<Replica>) -> Vec<Replica> {
        let shm = &self.inner.data.shm;
        let n = replicas.len();
        if n > 1 {
            let k = self.inner.rotation.fetch_add(1, Ordering::Relaxed) as usize % n;
            replicas.rotate_left(k);
            replicas.sort_by_key(|r| !r.segment.as_ref().is_some_and(|s| shm.is_local(s)));
        }
        replicas
    }

    /// Reads each item from its first replica, falling back to the next on failure.
    ///
    /// # Safety
    /// Every piece's local range is valid for writes for the whole call.
    pub(crate) async unsafe fn read_objects(&self, items: &[ReadItem]) -> Vec<Result<()>> {
        let mut results: Vec<Result<()>> = items.iter().map(|_| Ok(())).collect();
        let mut pending: Vec<usize> = (0..items.len())
            .filter(|i| !items[*i].pieces.is_empty())
            .collect();
        let mut attempt = 0;
        while !pending.is_empty() {
            let jobs: Vec<Job> = pending
                .iter()
                .map(|i| Job {
                    replica: &items[*i].replicas[attempt],
                    pieces: items[*i].pieces.clone(),
                })
                .collect();
            // Safety: forwarded from the caller.
            let outcome = unsafe { self.inner.data.run(Opcode::Read, &jobs).await };
            let mut retry = Vec::new();
            for (i, r) in pending.iter().zip(outcome) {
                match r {
                    Ok(()) => results[*i] = Ok(()),
                    Err(e) => {
                        if attempt + 1 < items[*i].replicas.len() {
                            tracing::debug!(error = %e, "read failed; trying the next replica");
                            retry.push(*i);
                        }
                        results[*i] = Err(e);
                    }
                }
            }
            pending = retry;
            attempt += 1;
        }
        results
    }
}
