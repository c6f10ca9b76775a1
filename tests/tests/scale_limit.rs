//! `--index_memory_limit` through the real processes: a master with the smallest limit
//! (1024 objects) keeps taking puts from a client by evicting least recently used
//! objects, never holds more objects than the limit, and reports the limit, the index
//! memory and the evictions in `/metrics`. A bad value stops the master with a message
//! naming the flag.

use mooncake_client::ReplicateConfig;
use mooncake_tests::{bin, client, store_env, value_for, Master, Store};
use std::process::Command;

/// 1024 objects at the 256 B each the limit budgets.
const LIMIT: &str = "256kb";
const LIMIT_OBJECTS: f64 = 1024.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_index_keeps_taking_puts_by_evicting_and_stays_under_its_limit() {
    let m = Master::start(&[&format!("--index_memory_limit={LIMIT}")]);
    let _store = Store::start(&store_env(&m, "64mb"));
    let c = client(&m).await;
    let rc = ReplicateConfig::default();
    assert_eq!(m.metric("master_object_count_limit"), Some(LIMIT_OBJECTS));
    assert_eq!(
        m.metric("master_index_memory_limit_bytes"),
        Some(256.0 * 1024.0)
    );
    let (batches, per_batch) = (16, 256);
    for b in 0..batches {
        let keys: Vec<String> = (0..per_batch).map(|i| format!("lim-{b}-{i}")).collect();
        let values: Vec<Vec<u8>> = keys.iter().map(|k| value_for(k, 1024)).collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
        for (k, r) in keys.iter().zip(c.put_batch(&keys, &refs, &rc).await) {
            r.unwrap_or_else(|e| panic!("put {k} with the index full: {e}"));
        }
        let count = m.metric("master_key_count").expect("key count");
        assert!(
            count <= LIMIT_OBJECTS,
            "{count} objects after batch {b}: over the limit"
        );
        let mem = m.metric("master_index_memory_bytes").expect("index gauge");
        assert!(
            mem > 0.0 && mem <= 256.0 * 1024.0,
            "index memory {mem} after batch {b}"
        );
    }
    let total = (batches * per_batch) as f64;
    let count = m.metric("master_key_count").unwrap();
    let evicted = m.metric("master_limit_evictions_total").unwrap();
    assert!(count > LIMIT_OBJECTS / 2.0, "kept only {count}");
    assert_eq!(
        count + evicted,
        total,
        "every object is kept or was evicted"
    );
    // The last batch, written most recently, is all there with its bytes.
    let b = batches - 1;
    for i in 0..per_batch {
        let k = format!("lim-{b}-{i}");
        let v = c.get(&k).await.unwrap_or_else(|e| panic!("get {k}: {e}"));
        assert!(v == value_for(&k, 1024), "{k}: wrong bytes");
    }
    // The first batch was least recently used: gone.
    for i in 0..per_batch {
        let k = format!("lim-0-{i}");
        assert!(!c.exist(&k).await.unwrap(), "{k} survived");
    }
}

#[test]
fn a_bad_limit_stops_the_master_with_a_message_naming_the_flag() {
    for bad in ["lots", "1kb", "-5"] {
        let out = Command::new(bin("mooncake_master"))
            .arg(format!("--index_memory_limit={bad}"))
            .output()
            .expect("run mooncake_master");
        assert!(!out.status.success(), "{bad} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--index_memory_limit"), "{bad}: {err}");
    }
}

#[test]
fn help_lists_the_limit_and_its_default() {
    let out = Command::new(bin("mooncake_master"))
        .arg("--help")
        .output()
        .expect("run mooncake_master");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("--index_memory_limit") && text.contains("(default: \"auto\")"),
        "{text}"
    );
}
