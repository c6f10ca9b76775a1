//! An election store in memory whose answers a test sets: who holds the leader key,
//! which readiness keys exist, how each lease's keep-alives are answered, failures.
//! Every clone shares one world; the test keeps a clone to steer and inspect it.

use super::{Campaign, Election, ElectionResult, Holder, Watched};
use crate::ha::fence::Fence;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How keep-alives of one lease are answered (unset: acknowledged with 1 s left).
#[derive(Clone, Debug)]
pub enum Answer {
    /// Acknowledged with this TTL left (0: the lease is gone, and its keys with it).
    Ttl(i64),
    /// No answer within the caller's bound.
    Silent,
    /// Refused while the fence (see [`Scripted::with_fence`]) is open; the first one
    /// sent after it closed is acknowledged, as are all later ones (etcd back after a
    /// pause).
    RefuseWhileServing,
}

/// What the election asked for, when it matters to a test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    ReadyListed,
    Campaign {
        won: bool,
        lease: i64,
    },
    /// A keep-alive refused or left unanswered; whether the fence was open then.
    Unanswered {
        lease: i64,
        serving: bool,
    },
    AckedWhilePaused(i64),
    Revoke(i64),
    RevokeOnExit(i64),
    PutReady(i64),
    Rotate,
}

#[derive(Default)]
struct World {
    holder: Option<String>,
    /// The lease the leader key is on (None: set by the test, on no lease).
    holder_lease: Option<i64>,
    revision: i64,
    /// Readiness keys: (their lease, if put through the election; the address).
    ready: Vec<(Option<i64>, String)>,
    answers: HashMap<i64, Answer>,
    next_lease: i64,
    lose_next_to: Option<String>,
    fail: usize,
    events: Vec<Event>,
    fence: Option<Arc<Fence>>,
}

impl World {
    fn set_holder(&mut self, addr: Option<String>, lease: Option<i64>) {
        self.holder = addr;
        self.holder_lease = lease;
        self.revision += 1;
    }

    fn lease_gone(&mut self, lease: i64) {
        if self.holder_lease == Some(lease) {
            self.set_holder(None, None);
        }
        self.ready.retain(|(l, _)| *l != Some(lease));
        self.answers.remove(&lease);
    }

    fn unanswered(&mut self, lease: i64) -> bool {
        let serving = self.fence.as_ref().is_some_and(|f| f.is_leader_now());
        self.events.push(Event::Unanswered { lease, serving });
        serving
    }

    fn failure(&mut self) -> ElectionResult<()> {
        if self.fail > 0 {
            self.fail -= 1;
            return Err("scripted failure".into());
        }
        Ok(())
    }
}

#[derive(Clone)]
pub struct Scripted {
    me: String,
    w: Arc<Mutex<World>>,
}

impl Scripted {
    pub fn new(me: &str) -> Self {
        Self {
            me: me.into(),
            w: Arc::default(),
        }
    }

    /// Records with every unanswered keep-alive whether `fence` was open.
    pub fn with_fence(self, fence: Arc<Fence>) -> Self {
        self.w.lock().fence = Some(fence);
        self
    }

    pub fn set_holder(&self, addr: Option<&str>) {
        self.w.lock().set_holder(addr.map(str::to_string), None);
    }

    pub fn holder_now(&self) -> Option<String> {
        self.w.lock().holder.clone()
    }

    /// Replaces every readiness key with these (on no lease).
    pub fn set_ready(&self, addrs: &[&str]) {
        self.w.lock().ready = addrs.iter().map(|a| (None, a.to_string())).collect();
    }

    pub fn ready_now(&self) -> Vec<String> {
        self.w.lock().ready.iter().map(|(_, a)| a.clone()).collect()
    }

    pub fn answer(&self, lease: i64, a: Answer) {
        self.w.lock().answers.insert(lease, a);
    }

    /// The next campaign finds the key taken by `other` (who won between the read and
    /// the transaction).
    pub fn lose_next_campaign(&self, other: &str) {
        self.w.lock().lose_next_to = Some(other.into());
    }

    /// The next `n` requests fail.
    pub fn fail_next(&self, n: usize) {
        self.w.lock().fail = n;
    }

    pub fn events(&self) -> Vec<Event> {
        self.w.lock().events.clone()
    }

    pub fn campaigns(&self) -> usize {
        self.w
            .lock()
            .events
            .iter()
            .filter(|e| matches!(e, Event::Campaign { won: true, .. }))
            .count()
    }
}

impl Election for Scripted {
    async fn holder(&mut self) -> ElectionResult<Option<Holder>> {
        let mut w = self.w.lock();
        w.failure()?;
        Ok(w.holder.clone().map(|addr| Holder {
            addr,
            revision: w.revision,
        }))
    }

    async fn wait_for_delete(
        &mut self,
        _revision: i64,
        within: Duration,
    ) -> ElectionResult<Watched> {
        let end = Instant::now() + within;
        loop {
            {
                let mut w = self.w.lock();
                w.failure()?;
                if w.holder.is_none() {
                    return Ok(Watched::Deleted);
                }
            }
            if Instant::now() >= end {
                return Ok(Watched::Quiet);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn ready(&mut self) -> ElectionResult<Vec<String>> {
        let mut w = self.w.lock();
        w.failure()?;
        w.events.push(Event::ReadyListed);
        Ok(w.ready.iter().map(|(_, a)| a.clone()).collect())
    }

    async fn campaign(&mut self, ttl: Duration) -> ElectionResult<Campaign> {
        let mut w = self.w.lock();
        w.failure()?;
        w.next_lease += 1;
        let lease = w.next_lease;
        if let Some(other) = w.lose_next_to.take() {
            w.set_holder(Some(other), None);
        }
        let won = w.holder.is_none();
        if won {
            w.set_holder(Some(self.me.clone()), Some(lease));
        }
        w.events.push(Event::Campaign { won, lease });
        Ok(Campaign {
            lease,
            granted: Duration::from_secs(ttl.as_secs().max(1)),
            won,
        })
    }

    async fn keep_alive(&mut self, lease: i64, within: Duration) -> ElectionResult<i64> {
        let answer = {
            let mut w = self.w.lock();
            w.failure()?;
            w.answers.get(&lease).cloned().unwrap_or(Answer::Ttl(1))
        };
        match answer {
            Answer::Ttl(0) => {
                self.w.lock().lease_gone(lease);
                Ok(0)
            }
            Answer::Ttl(n) => Ok(n),
            Answer::Silent => {
                self.w.lock().unanswered(lease);
                tokio::time::sleep(within).await;
                Err(format!("keep-alive: no answer within {within:?}"))
            }
            Answer::RefuseWhileServing => {
                let mut w = self.w.lock();
                if w.unanswered(lease) {
                    Err("keep-alive refused".into())
                } else {
                    w.events.push(Event::AckedWhilePaused(lease));
                    w.answers.insert(lease, Answer::Ttl(1));
                    Ok(1)
                }
            }
        }
    }

    async fn revoke(&mut self, lease: i64) -> ElectionResult<()> {
        let mut w = self.w.lock();
        w.failure()?;
        w.events.push(Event::Revoke(lease));
        w.lease_gone(lease);
        Ok(())
    }

    async fn revoke_on_exit(&mut self, lease: i64) -> ElectionResult<()> {
        let mut w = self.w.lock();
        w.events.push(Event::RevokeOnExit(lease));
        w.lease_gone(lease);
        Ok(())
    }

    async fn put_ready(&mut self, _ttl: Duration) -> ElectionResult<i64> {
        let mut w = self.w.lock();
        w.failure()?;
        w.next_lease += 1;
        let lease = w.next_lease;
        let me = self.me.clone();
        w.ready.push((Some(lease), me));
        w.events.push(Event::PutReady(lease));
        Ok(lease)
    }

    fn rotate(&mut self) -> bool {
        self.w.lock().events.push(Event::Rotate);
        true
    }
}
