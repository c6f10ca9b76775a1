//! Connections to one peer: `paths x conns_per_path` slots, where a path is a (local
//! interface, remote endpoint) pair. Connections open lazily and reopen after a failure.
//! Each slice goes to the least-loaded slot (round-robin among equals), so a large
//! request spreads over every connection and every NIC.

use parking_lot::Mutex;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::conn::Conn;
use crate::config::TcpTuning;
use crate::errors::TransferError;
use crate::local::LocalSegment;
use crate::segment::SegmentDescriptor;

struct Slot {
    local_ip: Option<IpAddr>,
    remote: SocketAddr,
    conn: Mutex<Option<Arc<Conn>>>,
    connecting: tokio::sync::Mutex<()>,
}

/// A resolved peer and its connection slots.
pub struct Peer {
    pub desc: SegmentDescriptor,
    slots: Vec<Slot>,
    rr: AtomicUsize,
    /// Idle lanes to this peer (`tcp::lane`).
    pub lanes: Arc<super::lane::LanePool>,
}

impl Peer {
    /// Builds the slots: every local address paired with the remote endpoint that
    /// shares the longest prefix with it (the one on the same link), and every remote
    /// endpoint reached at least once.
    pub fn new(
        desc: SegmentDescriptor,
        local_ips: &[IpAddr],
        conns_per_path: usize,
    ) -> Result<Peer, TransferError> {
        let remotes: Vec<SocketAddr> = desc
            .endpoints
            .iter()
            .filter_map(|e| e.addr.parse().ok())
            .collect();
        if remotes.is_empty() {
            return Err(TransferError::SegmentNotFound(
                desc.name.clone(),
                "its descriptor lists no usable endpoint".into(),
            ));
        }
        let paths = pair_paths(&remotes, local_ips);
        let mut slots = Vec::new();
        for _ in 0..conns_per_path {
            for &(local_ip, remote) in &paths {
                slots.push(Slot {
                    local_ip,
                    remote,
                    conn: Mutex::new(None),
                    connecting: tokio::sync::Mutex::new(()),
                });
            }
        }
        Ok(Peer {
            desc,
            slots,
            rr: AtomicUsize::new(0),
            lanes: Arc::default(),
        })
    }

    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The (local, remote) addresses of a slot.
    pub fn slot_path(&self, idx: usize) -> (Option<IpAddr>, SocketAddr) {
        (self.slots[idx].local_ip, self.slots[idx].remote)
    }

    /// The least-loaded slot other than `avoid`.
    pub fn pick(&self, avoid: Option<usize>) -> usize {
        let n = self.slots.len();
        let start = self.rr.fetch_add(1, Ordering::Relaxed) % n;
        let mut best = start;
        let mut best_load = u64::MAX;
        for k in 0..n {
            let i = (start + k) % n;
            if Some(i) == avoid && n > 1 {
                continue;
            }
            let load = match &*self.slots[i].conn.lock() {
                Some(c) if c.alive() => c.outstanding(),
                Some(_) => u64::MAX / 2, // dead: reconnect only if nothing better
                None => 0,
            };
            if load < best_load {
                best = i;
                best_load = load;
            }
        }
        best
    }

    /// The slot's live connection, connecting if needed.
    pub async fn conn(
        &self,
        idx: usize,
        tuning: &TcpTuning,
        seg: &Arc<LocalSegment>,
    ) -> Result<Arc<Conn>, TransferError> {
        let slot = &self.slots[idx];
        if let Some(c) = live(&slot.conn) {
            return Ok(c);
        }
        let _g = slot.connecting.lock().await;
        if let Some(c) = live(&slot.conn) {
            return Ok(c);
        }
        let (c, _) = Conn::connect(
            slot.local_ip,
            slot.remote,
            &self.desc.name,
            self.desc.generation,
            tuning,
            seg.clone(),
        )
        .await?;
        *slot.conn.lock() = Some(c.clone());
        Ok(c)
    }

    /// Kills the connection of one slot (tests: a path that dies).
    pub fn kill_slot(&self, idx: usize) {
        if let Some(c) = self.slots[idx].conn.lock().as_ref() {
            c.kill();
        }
    }
}

fn live(m: &Mutex<Option<Arc<Conn>>>) -> Option<Arc<Conn>> {
    m.lock().as_ref().filter(|c| c.alive()).cloned()
}

fn common_prefix(a: IpAddr, b: IpAddr) -> u32 {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) ^ u32::from(b)).leading_zeros(),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a) ^ u128::from(b)).leading_zeros(),
        _ => 0,
    }
}

/// Pairs local addresses with remote endpoints. Loopback peers get one unbound path.
pub fn pair_paths(
    remotes: &[SocketAddr],
    local_ips: &[IpAddr],
) -> Vec<(Option<IpAddr>, SocketAddr)> {
    let mut paths: Vec<(Option<IpAddr>, SocketAddr)> = Vec::new();
    fn push(paths: &mut Vec<(Option<IpAddr>, SocketAddr)>, p: (Option<IpAddr>, SocketAddr)) {
        if !paths.contains(&p) {
            paths.push(p);
        }
    }
    let locals: Vec<IpAddr> = local_ips
        .iter()
        .copied()
        .filter(|ip| !ip.is_loopback())
        .collect();
    for &r in remotes {
        if r.ip().is_loopback() || locals.is_empty() {
            push(&mut paths, (None, r));
        }
    }
    for &l in &locals {
        let same_family: Vec<&SocketAddr> = remotes
            .iter()
            .filter(|r| r.is_ipv4() == l.is_ipv4() && !r.ip().is_loopback())
            .collect();
        if let Some(r) = same_family.iter().max_by_key(|r| common_prefix(l, r.ip())) {
            push(&mut paths, (Some(l), **r));
        }
    }
    if paths.is_empty() {
        for &r in remotes {
            push(&mut paths, (None, r));
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn pairs_each_local_nic_with_the_remote_on_its_link() {
        let remotes = [sa("10.0.1.2:9"), sa("10.0.2.2:9")];
        let locals: Vec<IpAddr> = vec!["10.0.2.1".parse().unwrap(), "10.0.1.1".parse().unwrap()];
        let p = pair_paths(&remotes, &locals);
        assert_eq!(
            p,
            vec![(Some(locals[0]), remotes[1]), (Some(locals[1]), remotes[0])]
        );
        let lo = pair_paths(&[sa("127.0.0.1:5")], &locals);
        assert_eq!(lo, vec![(None, sa("127.0.0.1:5"))]);
        let none = pair_paths(&remotes, &[]);
        assert_eq!(none.len(), 2);
    }
}
