//! A batched put that fails in the middle: 256 keys from registered memory (so the
//! batch goes as two pipelined halves, `MOONCAKE_PUT_PIPELINE=1`), over TCP, with one of
//! the two stores killed just before, while the master still places objects on it. The
//! keys placed on the dead store are put again on the live one, which has room for only
//! some of them (hard-pinned objects: nothing can be evicted for them). Every key gets
//! its own result; a key reported written reads back byte for byte, a key reported
//! failed is not visible at all (no half-written object), and the failed keys can be
//! written again once a new store joins.

use mooncake_client::ReplicateConfig;
use mooncake_tests::{client, store_env, value_for, Master, Store};
use std::time::{Duration, Instant};

const KEYS: usize = 256;
const SIZE: usize = 64 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_dying_mid_batch_leaves_no_half_visible_object() {
    // Only this test runs in this process: both switches are read when a client starts.
    std::env::set_var("MOONCAKE_DISABLE_SHM", "1");
    std::env::set_var("MOONCAKE_PUT_PIPELINE", "1");
    let m = Master::start(&["--client_ttl", "2"]);
    let mut a = Store::start(&store_env(&m, "64mb"));
    // Room for 160 of the 256 keys: not all of them can be put again here.
    let _b = Store::start(&store_env(&m, "10mb"));
    let pinned = ReplicateConfig {
        with_hard_pin: true,
        ..Default::default()
    };
    let c = client(&m).await;

    let keys: Vec<String> = (0..KEYS).map(|i| format!("pipe-{i}")).collect();
    let mut buf: Vec<u8> = keys.iter().flat_map(|k| value_for(k, SIZE)).collect();
    let base = buf.as_mut_ptr() as usize;
    // Safety: `buf` outlives every use of the registration below.
    unsafe { c.register_buffer(base, buf.len()) }.unwrap();
    let bufs: Vec<(usize, usize)> = (0..KEYS).map(|i| (base + i * SIZE, SIZE)).collect();

    a.proc.kill9();
    // Safety: `buf` is registered and alive for the call.
    let results = unsafe { c.batch_put_from(&keys, &bufs, &pinned).await };
    assert_eq!(results.len(), KEYS, "one result per key");
    let mut failed = Vec::new();
    for (k, r) in keys.iter().zip(&results) {
        match r {
            Ok(()) => {
                let v = c
                    .get(k)
                    .await
                    .unwrap_or_else(|e| panic!("{k} was reported written but reads {e}"));
                assert!(v == value_for(k, SIZE), "{k}: wrong bytes");
            }
            Err(e) => {
                assert!(
                    !c.exist(k).await.unwrap(),
                    "{k} failed ({e}) but is visible"
                );
                assert!(c.get(k).await.is_err(), "{k} failed ({e}) but reads");
                failed.push(k.clone());
            }
        }
    }
    // The live store takes what fits; the rest fails.
    assert!(
        !failed.is_empty() && failed.len() < KEYS,
        "{} of {KEYS} keys failed; want some, not all",
        failed.len()
    );

    // Once a store with room joins, the failed keys are free to be written.
    let _fresh = Store::start(&store_env(&m, "64mb"));
    let t0 = Instant::now();
    let retry: Vec<(usize, usize)> = failed
        .iter()
        .map(|k| bufs[keys.iter().position(|x| x == k).unwrap()])
        .collect();
    loop {
        // Safety: as above.
        let again = unsafe { c.batch_put_from(&failed, &retry, &pinned).await };
        if again.iter().all(|r| r.is_ok()) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "failed keys could not be written again: {:?}",
            again.iter().find(|r| r.is_err())
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for k in &failed {
        assert!(
            c.get(k).await.unwrap() == value_for(k, SIZE),
            "{k}: wrong bytes"
        );
    }
    drop(buf);
}
