//! Segment churn under load, against the master process over gRPC: while two writers
//! put objects with two replicas each, segments keep mounting and unmounting, and one
//! owner goes silent and is expired by liveness. Afterwards every object that still
//! has a replica on a mounted segment must be readable with exactly those replicas,
//! and no object may linger whose replicas were all on segments that left.

use mooncake_proto::master_client::MasterClient;
use mooncake_proto::{
    BatchKeyRequest, HeartbeatRequest, ListSegmentsRequest, MountSegmentRequest, PutEndRequest,
    PutStartRequest, ReplicateConfig, SegmentDesc, UnmountSegmentRequest,
};
use mooncake_tests::Master;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the writers run while segments churn (longer with MC_CHURN_SECS).
fn churn_secs() -> u64 {
    std::env::var("MC_CHURN_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

fn desc(name: &str, size: u64) -> SegmentDesc {
    SegmentDesc {
        name: name.into(),
        owner: name.into(),
        base: 0x1000_0000,
        size,
        protocol: "tcp".into(),
        transport_endpoint: "127.0.0.1:9".into(),
        ..Default::default()
    }
}

/// (client id, segment name) of the owners that heartbeat.
type Live = Arc<Mutex<Vec<(String, String)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_under_load_loses_no_object_with_a_live_replica() {
    let m = Master::start(&["--client_ttl=2"]);
    let url = format!("http://{}", m.addr());
    let mut admin = MasterClient::connect(url.clone()).await.expect("connect");
    let live: Live = Arc::default();
    let mount = |name: &str, size: u64| MountSegmentRequest {
        client_id: format!("{name}-owner"),
        segment: Some(desc(name, size)),
    };
    for (name, size) in [("stable:1", 1u64 << 30), ("silent:1", 256 << 20)] {
        let r = admin.mount_segment(mount(name, size)).await.unwrap();
        assert_eq!(r.into_inner().code, 0, "mount {name}");
    }
    live.lock()
        .unwrap()
        .push(("stable:1-owner".into(), "stable:1".into()));
    // Owners heartbeat; the silent one never does and is expired after client_ttl.
    let stop = Arc::new(AtomicBool::new(false));
    let mut hb = admin.clone();
    let (hb_live, hb_stop) = (live.clone(), stop.clone());
    let heartbeats = tokio::spawn(async move {
        while !hb_stop.load(Ordering::Relaxed) {
            let ids: Vec<String> = hb_live
                .lock()
                .unwrap()
                .iter()
                .map(|x| x.0.clone())
                .collect();
            for client_id in ids {
                let _ = hb.heartbeat(HeartbeatRequest { client_id }).await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    // Two writers: PutStart (two replicas) + PutEnd, recording where each landed.
    let done: Arc<Mutex<HashMap<String, BTreeSet<String>>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..2 {
        let mut c = admin.clone();
        let (done, stop) = (done.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let (mut i, mut ended_badly) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let key = format!("churn-{w}-{i}");
                i += 1;
                let s = c
                    .put_start(PutStartRequest {
                        client_id: format!("writer-{w}"),
                        key: key.clone(),
                        size: 4096,
                        config: Some(ReplicateConfig {
                            replica_num: 2,
                            ..Default::default()
                        }),
                    })
                    .await
                    .expect("put_start rpc")
                    .into_inner();
                if s.code != 0 {
                    continue;
                }
                let segs: BTreeSet<String> = s
                    .replicas
                    .iter()
                    .filter_map(|r| r.segment.as_ref().map(|d| d.name.clone()))
                    .collect();
                let e = c
                    .put_end(PutEndRequest {
                        client_id: format!("writer-{w}"),
                        key: key.clone(),
                        put_id: s.put_id,
                    })
                    .await
                    .expect("put_end rpc")
                    .into_inner();
                if e.code == 0 {
                    done.lock().unwrap().insert(key, segs);
                } else {
                    ended_badly += 1;
                }
            }
            ended_badly
        }));
    }
    // Churn: a new segment every ~100 ms, the oldest churning one unmounted once
    // more than three are mounted.
    let t0 = Instant::now();
    let (mut n, mut unmounted, mut dropped) = (0u64, 0u64, 0u64);
    let mut churning: Vec<String> = Vec::new();
    // At least `churn_secs`, and on a slow machine until ten unmounts happened.
    while t0.elapsed() < Duration::from_secs(churn_secs())
        || (unmounted < 10 && t0.elapsed() < Duration::from_secs(churn_secs() + 40))
    {
        let name = format!("churn-seg-{n}:1");
        n += 1;
        let r = admin.mount_segment(mount(&name, 256 << 20)).await.unwrap();
        assert_eq!(r.into_inner().code, 0, "mount {name}");
        live.lock()
            .unwrap()
            .push((format!("{name}-owner"), name.clone()));
        churning.push(name);
        if churning.len() > 3 {
            let old = churning.remove(0);
            live.lock().unwrap().retain(|(_, s)| *s != old);
            let r = admin
                .unmount_segment(UnmountSegmentRequest {
                    client_id: format!("{old}-owner"),
                    segment_name: old.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(r.code, 0, "unmount {old}");
            unmounted += 1;
            dropped += r.objects_dropped;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut ended_badly = 0;
    for w in writers {
        ended_badly += w.await.unwrap();
    }
    heartbeats.await.unwrap();
    // The silent owner's segment must be gone by now (or soon: liveness sweeps).
    let mounted = loop {
        let l = admin.list_segments(ListSegmentsRequest {}).await.unwrap();
        let names: BTreeSet<String> = l
            .into_inner()
            .segments
            .iter()
            .filter_map(|s| s.segment.as_ref().map(|d| d.name.clone()))
            .collect();
        if !names.contains("silent:1") {
            break names;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(churn_secs() + 70),
            "the silent owner was never expired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let done = std::mem::take(&mut *done.lock().unwrap());
    assert!(done.len() > 200, "only {} puts completed", done.len());
    assert!(unmounted >= 10, "only {unmounted} unmounts");
    // Every completed object: readable with exactly its live replicas, or gone if none.
    let keys: Vec<String> = done.keys().cloned().collect();
    let (mut kept, mut gone) = (0, 0);
    for chunk in keys.chunks(512) {
        let r = admin
            .batch_get_replica_list(BatchKeyRequest {
                keys: chunk.to_vec(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.results.len(), chunk.len());
        for (k, got) in chunk.iter().zip(r.results) {
            let want: BTreeSet<String> = done[k].intersection(&mounted).cloned().collect();
            if want.is_empty() {
                assert_eq!(
                    got.code, -704,
                    "{k}: all its replicas left, yet it is there"
                );
                gone += 1;
            } else {
                assert_eq!(got.code, 0, "{k}: lost although {want:?} are mounted");
                let have: BTreeSet<String> = got
                    .replicas
                    .iter()
                    .filter_map(|r| r.segment.as_ref().map(|d| d.name.clone()))
                    .collect();
                assert_eq!(have, want, "{k}: wrong replicas");
                kept += 1;
            }
        }
    }
    assert!(
        kept > 0 && gone > 0,
        "kept {kept}, gone {gone}: churn did not bite"
    );
    eprintln!(
        "{} puts completed ({ended_badly} ended with an error), {n} mounts, {unmounted} unmounts \
         ({dropped} objects dropped), {kept} kept, {gone} gone with their segments",
        done.len()
    );
}
