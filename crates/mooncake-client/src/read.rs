//! The read path behind every get form: `Client::locate` (one
//! `BatchGetReplicaList`, which also grants the lease) and `Client::read_objects`,
//! which reads each object from one replica (same-host replicas first, the others in
//! rotating order to spread load) and retries the objects whose read failed on their
//! next replica.

use crate::client::Client;
use crate::errors::{check_code, check_key};
use crate::io::{Job, Piece};
use mooncake_common::{ErrorCode, MooncakeError, Result};
use mooncake_proto::{BatchKeyRequest, Replica};
use mooncake_transfer::Opcode;
use std::sync::atomic::Ordering;

/// Where an object lives.
pub(crate) struct Located {
    pub replicas: Vec<Replica>,
    pub size: u64,
}

/// One object to read: its replicas (in preference order) and the local pieces.
pub(crate) struct ReadItem {
    pub replicas: Vec<Replica>,
    pub pieces: Vec<Piece>,
}

impl Client {
    /// One `BatchGetReplicaList` for `keys`; bad keys are answered locally.
    pub(crate) async fn locate(&self, keys: &[String]) -> Vec<Result<Located>> {
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
        let resp = self
            .inner
            .rpc
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
            Ok(_) => {
                for i in ask {
                    out[i] = Err(MooncakeError::new(
                        ErrorCode::InternalError,
                        "get_replica_list: wrong number of results",
                    ));
                }
            }
            Err(e) => {
                for i in ask {
                    out[i] = Err(e.clone());
                }
            }
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
