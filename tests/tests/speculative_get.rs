//! Speculative gets over TCP: a client that remembers where an object was reads from
//! there while its lookup runs, and keeps those bytes only when the lookup names the
//! same allocation. Here a second client changes the object under a reader's warm
//! cache (removed, removed and put again with other bytes at the same offset,
//! evicted by filling the pool, force-removed while leased, its store killed and
//! replaced): every get returns the current bytes or the right miss code, never the
//! old bytes.

use mooncake_client::{Client, ErrorCode, ReplicateConfig};
use mooncake_tests::{client, store_env, value_for, Master, Store};
use std::time::Duration;

fn tcp_only() {
    // Every test in this process sets the same value; it is read when a client starts.
    std::env::set_var("MOONCAKE_DISABLE_SHM", "1");
}

/// `get`, `get_batch` and `get_into` of `key` all agree with `want` (`None`: missing).
async fn check(c: &Client, key: &str, want: Option<&[u8]>, buf: &mut [u8]) {
    let keys = [key.to_string()];
    let one = c.get(key).await;
    let batch = c.get_batch(&keys).await.pop().unwrap();
    // Safety: `buf` is registered by the caller and outlives the call.
    let into = unsafe { c.get_into(key, buf.as_mut_ptr() as usize, buf.len()).await };
    match want {
        Some(v) => {
            assert!(one.expect("get") == v, "get {key}: wrong bytes");
            assert!(
                batch.expect("get_batch") == v,
                "get_batch {key}: wrong bytes"
            );
            let n = into.expect("get_into");
            assert!(&buf[..n] == v, "get_into {key}: wrong bytes");
        }
        None => {
            for (what, code) in [
                ("get", one.err().map(|e| e.code)),
                ("get_batch", batch.err().map(|e| e.code)),
                ("get_into", into.err().map(|e| e.code)),
            ] {
                assert_eq!(code, Some(ErrorCode::ObjectNotFound), "{what} {key}");
            }
        }
    }
}

async fn put(c: &Client, key: &str, v: &[u8]) {
    c.put(key, v, &ReplicateConfig::default())
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
}

/// Where `key`'s replica is (segment name, offset).
async fn offset(c: &Client, key: &str) -> (String, u64) {
    let (reps, _) = c
        .replica_descs(&[key.to_string()])
        .await
        .pop()
        .unwrap()
        .unwrap();
    let r = &reps[0];
    (r.segment.as_ref().unwrap().name.clone(), r.offset)
}

/// A reader with a registered destination buffer.
async fn reader(m: &Master) -> (Client, Vec<u8>) {
    let c = client(m).await;
    let mut buf = vec![0u8; 1 << 20];
    // Safety: the buffer lives as long as the client in every test below.
    unsafe { c.register_buffer(buf.as_mut_ptr() as usize, buf.len()) }.unwrap();
    (c, buf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_cache_reads_once_and_never_returns_old_bytes() {
    tcp_only();
    let m = Master::start(&["--default_kv_lease_ttl=50"]);
    // A small segment: a value put again lands where the old one was.
    let _s = Store::start(&store_env(&m, "4mb"));
    let w = client(&m).await;
    let (r, mut buf) = reader(&m).await;
    let old = value_for("old", 4096);
    let new = value_for("new", 4096);

    // Warm: the first get learns the location, the next ones read speculatively.
    put(&w, "k", &old).await;
    check(&r, "k", Some(&old), &mut buf).await;
    let s = r.location_cache_stats();
    assert!(s.hits >= 2, "speculative reads kept: {s:?}");
    assert_eq!(s.stale, 0);
    assert_eq!(s.entries, 1);

    // Removed (while the reader's lease may still run: forced).
    w.remove("k", true).await.unwrap();
    check(&r, "k", None, &mut buf).await;
    assert!(r.location_cache_stats().stale >= 1);
    assert_eq!(
        r.location_cache_stats().entries,
        0,
        "a miss forgets the key"
    );

    // Removed and put again with other bytes of the same size: same offset, new
    // allocation.
    put(&w, "k", &old).await;
    check(&r, "k", Some(&old), &mut buf).await;
    let before = offset(&w, "k").await;
    w.remove("k", true).await.unwrap();
    put(&w, "k", &new).await;
    let after = offset(&w, "k").await;
    assert_eq!(
        before, after,
        "the new value did not land at the old offset: this case tests nothing"
    );
    let stale = r.location_cache_stats().stale;
    check(&r, "k", Some(&new), &mut buf).await;
    assert!(
        r.location_cache_stats().stale > stale,
        "the old location was refused"
    );

    // Force-removed while the reader holds a fresh lease, then replaced.
    check(&r, "k", Some(&new), &mut buf).await;
    w.remove("k", true).await.unwrap();
    put(&w, "k", &old).await;
    check(&r, "k", Some(&old), &mut buf).await;

    // Replaced by a value of another size.
    w.remove("k", true).await.unwrap();
    let longer = value_for("longer", 10_000);
    put(&w, "k", &longer).await;
    check(&r, "k", Some(&longer), &mut buf).await;

    // The reader's own remove forgets the key.
    r.remove("k", true).await.unwrap();
    assert_eq!(r.location_cache_stats().entries, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_objects_read_as_missing_or_as_themselves() {
    tcp_only();
    // LRU: the keys read before the fill are the oldest (2q would keep them as reused).
    let m = Master::start(&["--default_kv_lease_ttl=50", "--eviction_policy=lru"]);
    let _s = Store::start(&store_env(&m, "8mb"));
    let w = client(&m).await;
    let (r, _buf) = reader(&m).await;
    let keys: Vec<String> = (0..4).map(|i| format!("cold-{i}")).collect();
    for k in &keys {
        put(&w, k, &value_for(k, 256 << 10)).await;
        // The reader remembers the location.
        assert!(r.get(k).await.unwrap() == value_for(k, 256 << 10));
    }
    assert_eq!(r.location_cache_stats().entries, keys.len() as u64);
    tokio::time::sleep(Duration::from_millis(100)).await; // the leases run out
                                                          // 64 MiB through an 8 MiB pool: the cold keys go, their space is reused.
    for i in 0..256 {
        let k = format!("fill-{i}");
        let v = value_for(&k, 256 << 10);
        for attempt in 0.. {
            match w.put(&k, &v, &ReplicateConfig::default()).await {
                Ok(()) => break,
                Err(e) if e.code == ErrorCode::NoAvailableHandle && attempt < 50 => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => panic!("put {k}: {e}"),
            }
        }
    }
    let mut gone = 0;
    for k in &keys {
        let want = value_for(k, 256 << 10);
        match r.get(k).await {
            Ok(v) => assert!(v == want, "{k}: wrong bytes after eviction"),
            Err(e) => {
                assert_eq!(e.code, ErrorCode::ObjectNotFound, "{k}");
                gone += 1;
            }
        }
    }
    assert!(gone > 0, "nothing was evicted: this case tests nothing");
    assert!(r.location_cache_stats().stale >= gone);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_killed_and_replaced_never_serves_old_bytes() {
    tcp_only();
    let m = Master::start(&[
        "--default_kv_lease_ttl=50",
        "--client_ttl=1",
        "--segment_restart_grace_sec=0",
    ]);
    let mut a = Store::start(&store_env(&m, "4mb"));
    let w = client(&m).await;
    let (r, mut buf) = reader(&m).await;
    let old = value_for("before", 4096);
    put(&w, "k", &old).await;
    check(&r, "k", Some(&old), &mut buf).await;
    a.proc.kill9();
    // The master drops the dead store's objects once its heartbeats stop; until
    // then the object may still be listed (and its read fails).
    let mut missing = false;
    for _ in 0..200 {
        match r.get("k").await {
            Ok(v) => panic!("read {} bytes from a killed store", v.len()),
            Err(e) if e.code == ErrorCode::ObjectNotFound => {
                missing = true;
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert!(missing, "the killed store's object never went away");
    let _b = Store::start(&store_env(&m, "4mb"));
    let new = value_for("after", 4096);
    put(&w, "k", &new).await;
    check(&r, "k", Some(&new), &mut buf).await;
    check(&r, "k", Some(&new), &mut buf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_master_protocols_carry_the_generation() {
    use mooncake_client::transport::Protocol;
    tcp_only();
    let m = Master::start(&[]);
    let _s = Store::start(&store_env(&m, "4mb"));
    let w = client(&m).await;
    let v = value_for("both", 4096);
    put(&w, "k", &v).await;
    for protocol in [Protocol::Framed, Protocol::Grpc] {
        let node = mooncake_common::config::NodeConfig {
            master_server_address: m.addr(),
            metadata_server: m.metadata_url(),
            local_hostname: "127.0.0.1".into(),
            ..Default::default()
        };
        let mut cfg = mooncake_client::ClientConfig::new(node);
        cfg.tuning.master_protocol = protocol;
        let r = Client::connect(cfg).await.unwrap();
        for _ in 0..3 {
            assert!(r.get("k").await.unwrap() == v);
        }
        let s = r.location_cache_stats();
        assert_eq!((s.hits, s.stale), (2, 0), "{protocol:?}: {s:?}");
    }
}

/// The change in the counters from `a` to `b`: (hits, misses, stale).
fn delta(
    a: mooncake_client::LocationCacheStats,
    b: mooncake_client::LocationCacheStats,
) -> (u64, u64, u64) {
    (b.hits - a.hits, b.misses - a.misses, b.stale - a.stale)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_right_after_a_put_reads_where_the_put_wrote_and_never_old_bytes() {
    tcp_only();
    let m = Master::start(&["--default_kv_lease_ttl=50"]);
    // A small segment: a value put again lands where the old one was.
    let _s = Store::start(&store_env(&m, "4mb"));
    let (w, mut buf) = reader(&m).await;
    let other = client(&m).await;
    let rc = ReplicateConfig::default();
    let old = value_for("old", 4096);
    let new = value_for("new", 4096);

    // The put remembers where it wrote: its first get is speculative and kept.
    put(&w, "k", &old).await;
    assert_eq!(w.location_cache_stats().entries, 1);
    let s0 = w.location_cache_stats();
    assert!(w.get("k").await.unwrap() == old);
    let s1 = w.location_cache_stats();
    assert_eq!(delta(s0, s1), (1, 0, 0), "{s1:?}");

    // Another client removes the key and puts other bytes of the same size in the
    // same place: the location the put remembered is refused, the new bytes come back.
    let before = offset(&w, "k").await;
    other.remove("k", true).await.unwrap();
    put(&other, "k", &new).await;
    assert_eq!(
        offset(&other, "k").await,
        before,
        "the new value did not land at the old offset: this case tests nothing"
    );
    let s0 = w.location_cache_stats();
    assert!(w.get("k").await.unwrap() == new, "old bytes after a re-put");
    let s1 = w.location_cache_stats();
    assert_eq!(delta(s0, s1), (0, 0, 1), "{s1:?}");
    check(&w, "k", Some(&new), &mut buf).await;

    // Again with the writer's own get first after its put, then the other client's
    // re-put under it.
    w.remove("k", true).await.unwrap();
    put(&w, "k", &old).await;
    other.remove("k", true).await.unwrap();
    put(&other, "k", &new).await;
    check(&w, "k", Some(&new), &mut buf).await;

    // An upsert remembers its new allocation: the next get reads from there (kept,
    // or refused when a free elsewhere shared its generation slot; never a miss).
    w.upsert("k", &old, &rc).await.unwrap();
    let s0 = w.location_cache_stats();
    check(&w, "k", Some(&old), &mut buf).await;
    let (hits, misses, stale) = delta(s0, w.location_cache_stats());
    assert_eq!((hits + stale, misses), (3, 0));

    // Batch puts remember every key they wrote.
    let keys: Vec<String> = (0..4).map(|i| format!("b{i}")).collect();
    let vals: Vec<Vec<u8>> = keys.iter().map(|k| value_for(k, 4096)).collect();
    let refs: Vec<&[u8]> = vals.iter().map(|v| v.as_slice()).collect();
    for r in w.put_batch(&keys, &refs, &rc).await {
        r.unwrap();
    }
    let s0 = w.location_cache_stats();
    for (got, want) in w.get_batch(&keys).await.into_iter().zip(&vals) {
        assert!(&got.unwrap() == want);
    }
    let s1 = w.location_cache_stats();
    assert_eq!(delta(s0, s1), (4, 0, 0), "{s1:?}");

    // And so do zero-copy batch puts from registered memory.
    let zkeys: Vec<String> = (0..2).map(|i| format!("z{i}")).collect();
    let zvals: Vec<Vec<u8>> = zkeys.iter().map(|k| value_for(k, 4096)).collect();
    for (i, v) in zvals.iter().enumerate() {
        buf[i * 4096..(i + 1) * 4096].copy_from_slice(v);
    }
    let base = buf.as_ptr() as usize;
    let bufs: Vec<(usize, usize)> = (0..2).map(|i| (base + i * 4096, 4096)).collect();
    // Safety: `buf` is registered and outlives the call.
    for r in unsafe { w.batch_put_from(&zkeys, &bufs, &rc).await } {
        r.unwrap();
    }
    let s0 = w.location_cache_stats();
    for (k, want) in zkeys.iter().zip(&zvals) {
        assert!(&w.get(k).await.unwrap() == want);
    }
    let s1 = w.location_cache_stats();
    assert_eq!(delta(s0, s1), (2, 0, 0), "{s1:?}");

    // A put-if-absent of an existing key writes nothing and remembers nothing new:
    // the next get still returns the stored bytes.
    put(&w, "b0", &value_for("other", 4096)).await;
    assert!(w.get("b0").await.unwrap() == vals[0]);

    // A client that never wrote a key misses first.
    let (r, _rbuf) = reader(&m).await;
    assert!(r.get("b1").await.unwrap() == vals[1]);
    let s = r.location_cache_stats();
    assert_eq!((s.hits, s.misses, s.stale), (0, 1, 0), "{s:?}");
}
