//! An election without rivals: the key is always free, every campaign wins, every
//! keep-alive is acknowledged with the TTL granted, and nobody else is ready. The
//! election's rules then run unchanged (a term, its fence, a revoke on the way out)
//! with nothing to lose to. The plain master does not use it (app.rs: its calls skip
//! the fence altogether).

use super::{Campaign, Election, ElectionResult, Holder, Watched};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct LocalElection {
    /// The last lease handed out.
    last: i64,
    /// The live leases and their TTLs in seconds.
    live: Vec<(i64, i64)>,
}

impl LocalElection {
    fn grant(&mut self, ttl: Duration) -> (i64, i64) {
        self.last += 1;
        let l = (self.last, ttl.as_secs().max(1) as i64);
        self.live.push(l);
        l
    }
}

impl Election for LocalElection {
    async fn holder(&mut self) -> ElectionResult<Option<Holder>> {
        Ok(None)
    }

    async fn wait_for_delete(
        &mut self,
        _revision: i64,
        _within: Duration,
    ) -> ElectionResult<Watched> {
        Ok(Watched::Deleted)
    }

    async fn ready(&mut self) -> ElectionResult<Vec<String>> {
        Ok(Vec::new())
    }

    async fn campaign(&mut self, ttl: Duration) -> ElectionResult<Campaign> {
        let (lease, secs) = self.grant(ttl);
        Ok(Campaign {
            lease,
            granted: Duration::from_secs(secs as u64),
            won: true,
        })
    }

    async fn keep_alive(&mut self, lease: i64, _within: Duration) -> ElectionResult<i64> {
        Ok(self
            .live
            .iter()
            .find(|(l, _)| *l == lease)
            .map_or(0, |(_, ttl)| *ttl))
    }

    async fn revoke(&mut self, lease: i64) -> ElectionResult<()> {
        self.live.retain(|(l, _)| *l != lease);
        Ok(())
    }

    async fn put_ready(&mut self, ttl: Duration) -> ElectionResult<i64> {
        Ok(self.grant(ttl).0)
    }

    fn rotate(&mut self) -> bool {
        true
    }
}
