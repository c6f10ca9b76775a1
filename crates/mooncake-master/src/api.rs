//! The master's control plane in domain terms: the methods clients call, what each
//! answers, and the gate a call passes before and after it runs.
//!
//! Every protocol edge (`service`: gRPC and the framed protocol) decodes a request,
//! passes the [`Gate`], runs the [`Master`] operation of its [`Method`] and encodes the
//! domain answer. The wire types never reach `Master`; whether a call changes state a
//! client relies on is a property of its method ([`Method::mutates`]), not a list of
//! path strings.

pub use crate::errors::Refused;
use crate::master::Master;
use crate::segments::Segment;
use std::future::Future;
use std::sync::Arc;

/// Declares [`Method`] once: the variants, [`Method::ALL`] and each variant's name in
/// the service (the same word, so one list gives all three).
macro_rules! methods {
    ($($m:ident),* $(,)?) => {
        /// The control-plane methods (one per RPC of the `Master` service).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Method {
            $($m,)*
        }

        impl Method {
            /// Every method, in the service's order.
            pub const ALL: &'static [Method] = &[$(Method::$m,)*];

            /// The method's name in the service (the last part of its gRPC path).
            pub fn name(self) -> &'static str {
                match self {
                    $(Method::$m => stringify!($m),)*
                }
            }
        }
    };
}

methods!(
    MountSegment,
    RemountSegment,
    UnmountSegment,
    Heartbeat,
    ListSegments,
    PutStart,
    BatchPutStart,
    PutEnd,
    BatchPutEnd,
    PutRevoke,
    BatchPutRevoke,
    UpsertStart,
    BatchUpsertStart,
    UpsertEnd,
    BatchUpsertEnd,
    UpsertRevoke,
    BatchUpsertRevoke,
    GetReplicaList,
    BatchGetReplicaList,
    Exist,
    BatchExist,
    Remove,
    BatchRemove,
    RemoveByRegex,
    RemoveAll,
    QueryKey,
    GetStats,
    VerifyProof,
);

impl Method {
    /// The method called `name`.
    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL.iter().copied().find(|m| m.name() == name)
    }

    /// Whether the method changes state a client relies on: under HA its answer waits
    /// until an in-sync standby has the change (docs/ha.md). Reads (leases and access
    /// recency included) and heartbeats do not wait.
    pub fn mutates(self) -> bool {
        use Method::*;
        !matches!(
            self,
            Heartbeat
                | ListSegments
                | GetReplicaList
                | BatchGetReplicaList
                | Exist
                | BatchExist
                | QueryKey
                | GetStats
                | VerifyProof
        )
    }
}

/// Where one replica of an object is: `size` bytes at `offset` in `segment`.
#[derive(Debug, Clone)]
pub struct Placed {
    pub segment: Arc<Segment>,
    pub offset: u64,
}

/// A write that may proceed: write `size` bytes to each replica, then end it with
/// `put_id`.
#[derive(Debug, Clone)]
pub struct WriteStart {
    pub put_id: u64,
    pub size: u64,
    pub replicas: Vec<Placed>,
    /// The generation of each replica's allocation (`generation.rs`), in the order of
    /// `replicas`: a client whose write ends well may read the object from there
    /// speculatively, as after a lookup naming these allocations.
    pub generations: Vec<u64>,
}

/// Where a complete object can be read, and for how long it is leased.
#[derive(Debug, Clone)]
pub struct ReplicaList {
    pub size: u64,
    pub lease_ttl_ms: u64,
    pub replicas: Vec<Placed>,
    /// The generation of each replica's allocation (`generation.rs`), in the order of
    /// `replicas`; shorter (empty for the SSD tier's replicas) where there is none.
    pub generations: Vec<u64>,
}

/// The master's answer to a client's heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub view_id: u64,
    /// The master no longer knows this client's segments: mount them again.
    pub remount_needed: bool,
}

/// What lets a call run: the master it runs on.
pub struct Pass {
    pub master: Arc<Master>,
    /// The leadership term the call runs in (0 without HA).
    pub term: u64,
}

/// Decides whether calls may run now and whether their answers may leave.
///
/// A plain master always lets calls through. An HA master lets them through only
/// while it leads with a live lease, holds a mutation's answer until an in-sync
/// standby has the change, and refuses an answer whose term ended meanwhile, so a
/// paused or partitioned former leader never acknowledges anything.
pub trait Gate: Clone + Send + Sync + 'static {
    /// The master to run a call on now, or why not.
    fn enter(&self) -> Result<Pass, Refused>;

    /// Whether the answer of a call that ran under `pass` may leave (`mutated`: the
    /// call's method mutates; its change is waited for first).
    fn leave(&self, pass: &Pass, mutated: bool)
        -> impl Future<Output = Result<(), Refused>> + Send;
}

/// A master without HA serves every call.
impl Gate for Arc<Master> {
    fn enter(&self) -> Result<Pass, Refused> {
        Ok(Pass {
            master: self.clone(),
            term: 0,
        })
    }

    /// With the index on disk (`persist`), a mutation's answer waits until the disk
    /// follower has written the log's head; otherwise nothing to wait for.
    fn leave(
        &self,
        pass: &Pass,
        mutated: bool,
    ) -> impl Future<Output = Result<(), Refused>> + Send {
        let wait = (mutated && pass.master.index.log().is_active()).then(|| pass.master.clone());
        async move {
            if let Some(m) = wait {
                let log = m.index.log();
                log.wait_synced(log.head(), crate::ha::replication::log::SYNC_BOUND)
                    .await;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_back_to_methods_and_reads_do_not_mutate() {
        assert_eq!(Method::ALL.len(), 28);
        for &m in Method::ALL {
            assert_eq!(Method::from_name(m.name()), Some(m));
        }
        assert_eq!(Method::from_name("Follow"), None);
        assert!(Method::BatchPutEnd.mutates());
        assert!(Method::RemountSegment.mutates());
        assert!(Method::RemoveAll.mutates());
        assert!(!Method::BatchGetReplicaList.mutates());
        assert!(!Method::Heartbeat.mutates());
        assert!(!Method::GetStats.mutates());
        assert!(!Method::VerifyProof.mutates());
    }
}
