//! Chaos, bounded: real etcd, two HA masters, three stores, and a verifying load from
//! two clients following the leader through `etcd://`, while a chaos loop kill -9s and
//! restarts masters (never both down at once) and stores (the "anchor" store is never
//! killed, so at least one store is always up).
//!
//! Every value carries its own checksum (magic, key, length and a hash of key and
//! payload), so any value a get returns is verified without a side table.
//!
//! Invariants:
//! - no get ever returns wrong bytes;
//! - every acknowledged object whose replicas include the anchor (asked for with
//!   `preferred_segments` and confirmed by the leader's `/query_key` right after the
//!   put) reads back at the end, through every master kill (the standby takes over
//!   with the leader's replicated index).
//!
//! `MOONCAKE_CHAOS_SECS` (default 90) sets the length of the chaos phase;
//! `MOONCAKE_CHAOS_SEED` replays a schedule.

use mooncake_client::{Client, ReplicateConfig};
use mooncake_tests::etcd::{
    etcd_available, ha_client, ha_store_env, running, start_ha_master_on, wait_one_leader,
    wait_standby_in_sync, EtcdCluster,
};
use mooncake_tests::{free_port, http, Master, Store};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MAGIC: &[u8; 8] = b"MCCHAOS1";
/// Keys a load task keeps before it removes its oldest (bounds memory in long runs,
/// so eviction never has to take anything).
const MAX_LIVE: usize = 1500;

/// xorshift64*: deterministic from the seed, good enough for schedules and payloads.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        h = (h ^ 0xff).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// `MAGIC | hash u64 | total length u32 | key length u16 | key | payload`, the hash
/// covering key and payload.
fn make_value(key: &str, len: usize, rng: &mut Rng) -> Vec<u8> {
    let head = 8 + 8 + 4 + 2 + key.len();
    let len = len.max(head + 1);
    let payload: Vec<u8> = (0..len - head).map(|_| rng.next() as u8).collect();
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(&fnv(&[key.as_bytes(), &payload]).to_le_bytes());
    v.extend_from_slice(&(len as u32).to_le_bytes());
    v.extend_from_slice(&(key.len() as u16).to_le_bytes());
    v.extend_from_slice(key.as_bytes());
    v.extend_from_slice(&payload);
    v
}

/// Checks a value read for `key`; the error says what is wrong.
fn verify(key: &str, v: &[u8]) -> Result<(), String> {
    if v.len() < 22 || &v[..8] != MAGIC {
        return Err(format!("{} bytes without the header", v.len()));
    }
    let hash = u64::from_le_bytes(v[8..16].try_into().unwrap());
    let len = u32::from_le_bytes(v[16..20].try_into().unwrap()) as usize;
    let klen = u16::from_le_bytes(v[20..22].try_into().unwrap()) as usize;
    if len != v.len() {
        return Err(format!("header says {len} bytes, got {}", v.len()));
    }
    if 22 + klen > v.len() || &v[22..22 + klen] != key.as_bytes() {
        return Err("the value belongs to another key".into());
    }
    if fnv(&[key.as_bytes(), &v[22 + klen..]]) != hash {
        return Err("checksum mismatch".into());
    }
    Ok(())
}

#[derive(Default)]
struct Counters {
    puts_ok: AtomicU64,
    puts_failed: AtomicU64,
    gets_ok: AtomicU64,
    gets_failed: AtomicU64,
    wrong_bytes: AtomicU64,
    removed: AtomicU64,
}

/// An acknowledged object: when, and whether the leader confirmed a replica on the
/// anchor store right after the put.
#[derive(Clone, Copy)]
struct Acked {
    at: Instant,
    on_anchor: bool,
}

/// The masters' admin ports (fixed for the whole run; restarts reuse them), to ask
/// the current leader where an object lives.
type AdminPorts = Arc<Vec<u16>>;

/// Whether the leader lists a replica of `key` on segment `anchor`.
fn on_anchor(ports: &[u16], key: &str, anchor: &str) -> bool {
    let needle = format!("\"segment\":\"{anchor}\"");
    ports.iter().any(|&p| {
        matches!(http("GET", p, &format!("/query_key?key={key}"), b""),
            Ok((200, body)) if String::from_utf8_lossy(&body).contains(&needle))
    })
}

struct Load {
    acked: HashMap<String, Acked>,
    order: std::collections::VecDeque<String>,
}

async fn load_task(
    id: usize,
    c: Client,
    anchor: String,
    ports: AdminPorts,
    stop: Arc<AtomicBool>,
    n: Arc<Counters>,
    seed: u64,
) -> (Client, Load) {
    let mut rng = Rng(seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(id as u64 + 1)));
    let mut load = Load {
        acked: HashMap::new(),
        order: Default::default(),
    };
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if load.order.is_empty() || rng.below(10) < 6 {
            i += 1;
            let key = format!("t{id}-{i}");
            let len = 512 + rng.below(8 * 1024) as usize;
            let v = make_value(&key, len, &mut rng);
            let anchored = rng.below(2) == 0;
            let rc = ReplicateConfig {
                replica_num: 1 + rng.below(2) as usize,
                preferred_segments: if anchored {
                    vec![anchor.clone()]
                } else {
                    Vec::new()
                },
                ..Default::default()
            };
            if c.put(&key, &v, &rc).await.is_ok() {
                n.puts_ok.fetch_add(1, Ordering::Relaxed);
                let at = Instant::now();
                let on = anchored && {
                    let (p, k, a) = (ports.clone(), key.clone(), anchor.clone());
                    tokio::task::spawn_blocking(move || on_anchor(&p, &k, &a))
                        .await
                        .unwrap_or(false)
                };
                load.acked.insert(key.clone(), Acked { at, on_anchor: on });
                load.order.push_back(key);
            } else {
                n.puts_failed.fetch_add(1, Ordering::Relaxed);
            }
            if load.order.len() > MAX_LIVE {
                let old = load.order.pop_front().unwrap();
                // Removed or not, it is no longer checked at the end.
                load.acked.remove(&old);
                let _ = c.remove(&old, true).await;
                n.removed.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            let k = &load.order[rng.below(load.order.len() as u64) as usize];
            match c.get(k).await {
                Ok(v) => {
                    n.gets_ok.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = verify(k, &v) {
                        n.wrong_bytes.fetch_add(1, Ordering::Relaxed);
                        eprintln!("WRONG BYTES for {k}: {e}");
                    }
                }
                Err(_) => {
                    n.gets_failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (c, load)
}

/// Everything the chaos loop kills and restarts.
struct Cluster {
    eps: String,
    masters: Vec<Option<Master>>,
    rpc_ports: Vec<u16>,
    admin_ports: Vec<u16>,
    stores: Vec<Option<Store>>,
    master_kills: u32,
    leader_kills: u32,
    store_kills: u32,
}

impl Cluster {
    fn start_master(&mut self, i: usize) {
        self.masters[i] = Some(start_ha_master_on(
            self.rpc_ports[i],
            self.admin_ports[i],
            &self.eps,
            &[],
        ));
    }

    fn store_env(&self) -> Vec<(String, String)> {
        ha_store_env(&self.eps, "64mb")
    }

    /// One chaos step: kill a master (only while both run) or a non-anchor store,
    /// wait a little, start it again.
    fn step(&mut self, rng: &mut Rng, force_master: bool) {
        let both_masters = self.masters.iter().all(Option::is_some);
        if (force_master || rng.below(2) == 0) && both_masters {
            // Mostly the leader (the kill that matters), sometimes the standby. Pick
            // only once one of them leads: right after a leader's kill the standby waits
            // out the dead leader's lease, and killing it then (as "not the leader") is
            // two failures at once, the second taking the index's only live copy.
            let leader = wait_one_leader(&running(&self.masters), Duration::from_secs(30));
            let i = if force_master || rng.below(4) != 0 {
                leader
            } else {
                rng.below(2) as usize
            };
            let was_leader = i == leader;
            if was_leader {
                // Kill a leader only once the standby holds its index (else this is
                // two failures at once, and the index has no live copy).
                let l = self.masters[i].as_ref().unwrap();
                assert!(
                    wait_standby_in_sync(l, Duration::from_secs(30)),
                    "the standby never got in sync with the leader"
                );
            }
            self.masters[i].take().unwrap().proc.kill9();
            self.master_kills += 1;
            if was_leader {
                self.leader_kills += 1;
            }
            eprintln!(
                "chaos: kill -9 master {i}{}",
                if was_leader { " (leader)" } else { "" }
            );
            std::thread::sleep(Duration::from_millis(2000 + rng.below(4000)));
            self.start_master(i);
        } else {
            let i = 1 + rng.below(2) as usize;
            if let Some(mut s) = self.stores[i].take() {
                s.proc.kill9();
                self.store_kills += 1;
                eprintln!("chaos: kill -9 store {i}");
            }
            std::thread::sleep(Duration::from_millis(500 + rng.below(3000)));
            self.stores[i] = Some(Store::spawn(&self.store_env()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_under_a_verifying_load() {
    if !etcd_available() {
        return;
    }
    let secs: u64 = std::env::var("MOONCAKE_CHAOS_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(90);
    let seed: u64 = std::env::var("MOONCAKE_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("chaos: {secs} s, seed {seed} (MOONCAKE_CHAOS_SEED={seed} replays the schedule)");

    let etcd = EtcdCluster::start(1, "chaos");
    let eps = etcd.endpoints();
    let mut cl = Cluster {
        eps: eps.clone(),
        masters: vec![None, None],
        rpc_ports: vec![free_port(), free_port()],
        admin_ports: vec![free_port(), free_port()],
        stores: vec![None, None, None],
        master_kills: 0,
        leader_kills: 0,
        store_kills: 0,
    };
    cl.start_master(0);
    cl.start_master(1);
    wait_one_leader(&running(&cl.masters), Duration::from_secs(30));
    // The anchor first, alone, to learn its segment name.
    cl.stores[0] = Some(Store::start(&ha_store_env(&eps, "256mb")));
    let probe = ha_client(&eps).await;
    let segs = probe.segments().await.expect("list segments");
    assert_eq!(segs.len(), 1, "only the anchor is mounted yet");
    let anchor = segs[0].segment.as_ref().expect("segment desc").name.clone();
    let _ = probe.close().await;
    for i in 1..3 {
        cl.stores[i] = Some(Store::start(&cl.store_env()));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let n = Arc::new(Counters::default());
    let ports: AdminPorts = Arc::new(cl.admin_ports.clone());
    let mut tasks = Vec::new();
    for id in 0..2 {
        let c = ha_client(&eps).await;
        tasks.push(tokio::spawn(load_task(
            id,
            c,
            anchor.clone(),
            ports.clone(),
            stop.clone(),
            n.clone(),
            seed,
        )));
    }

    // The chaos loop, on a thread of its own (it sleeps and waits on processes).
    let chaos_stop = Arc::new(AtomicBool::new(false));
    let cs = chaos_stop.clone();
    let chaos = std::thread::spawn(move || {
        let mut rng = Rng(seed);
        let t0 = Instant::now();
        let mut steps = 0;
        std::thread::sleep(Duration::from_secs(3));
        while !cs.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(secs) {
            // The first step kills the leader, so every run has at least one failover.
            cl.step(&mut rng, steps == 0);
            steps += 1;
            std::thread::sleep(Duration::from_millis(1000 + rng.below(3000)));
        }
        cl
    });
    let mut cl = tokio::task::spawn_blocking(move || chaos.join().expect("chaos loop"))
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut loads = Vec::new();
    for t in tasks {
        loads.push(t.await.expect("load task"));
    }
    chaos_stop.store(true, Ordering::Relaxed);

    // Everything up again; one leader; then every object that had a replica on the
    // anchor must read back, byte-exact.
    for i in 0..2 {
        if cl.masters[i].is_none() {
            cl.start_master(i);
        }
    }
    for i in 1..3 {
        if cl.stores[i].is_none() {
            cl.stores[i] = Some(Store::spawn(&cl.store_env()));
        }
    }
    wait_one_leader(&running(&cl.masters), Duration::from_secs(30));
    let (c, _) = &loads[0];
    let mut checked = 0u64;
    let mut lost = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for (_, load) in &loads {
        for (k, a) in &load.acked {
            if !a.on_anchor {
                continue;
            }
            checked += 1;
            loop {
                match c.get(k).await {
                    Ok(v) => {
                        if let Err(e) = verify(k, &v) {
                            n.wrong_bytes.fetch_add(1, Ordering::Relaxed);
                            eprintln!("WRONG BYTES for {k} at the end: {e}");
                        }
                        break;
                    }
                    Err(e) if e.code == mooncake_common::ErrorCode::ObjectNotFound => {
                        lost.push((k.clone(), a.at));
                        break;
                    }
                    // Between leaders or a store re-mounting: try again, bounded.
                    Err(e) if Instant::now() < deadline => {
                        let _ = e;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => {
                        lost.push((k.clone(), a.at));
                        eprintln!("{k}: {e}");
                        break;
                    }
                }
            }
        }
    }
    let wrong = n.wrong_bytes.load(Ordering::Relaxed);
    eprintln!(
        "chaos summary: {secs} s, seed {seed}; puts {} ok / {} failed, gets {} ok / {} failed, removed {}; \
         kills: {} masters ({} leaders), {} stores; anchored objects checked {checked}, lost {}, wrong bytes {wrong}",
        n.puts_ok.load(Ordering::Relaxed),
        n.puts_failed.load(Ordering::Relaxed),
        n.gets_ok.load(Ordering::Relaxed),
        n.gets_failed.load(Ordering::Relaxed),
        n.removed.load(Ordering::Relaxed),
        cl.master_kills,
        cl.leader_kills,
        cl.store_kills,
        lost.len(),
    );
    for (c, _) in &loads {
        let _ = c.close().await;
    }
    assert_eq!(wrong, 0, "a get returned wrong bytes");
    assert!(
        n.puts_ok.load(Ordering::Relaxed) > 100,
        "the load made no progress"
    );
    assert!(
        cl.leader_kills >= 1,
        "the chaos loop never killed the leader"
    );
    assert!(checked > 0, "no object was confirmed on the anchor store");
    assert!(
        lost.is_empty(),
        "{} acknowledged objects with a replica on the never-killed store were lost, e.g. {:?}",
        lost.len(),
        lost.iter().take(5).map(|(k, _)| k).collect::<Vec<_>>()
    );
    drop(etcd);
}
