//! A speculative get (a client reading an object from the location it remembers while
//! the lookup runs) is an ordinary one-sided read of (segment, offset, length): over
//! RDMA it is one READ work request of exactly that range, with no help from the
//! store's CPU (nothing served over TCP), shown here against the fake verbs.
#![cfg(feature = "rdma")]

mod common;

use common::pattern;
use mooncake_transfer::rdma::fake::{FakeFabric, FakeVerbs};
use mooncake_transfer::rdma::transport::RdmaTransport;
use mooncake_transfer::rdma::verbs::WrOp;
use mooncake_transfer::rdma::RdmaEngine;
use mooncake_transfer::{Opcode, TransferConfig, TransferEngine, TransferRequest};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_location_is_read_with_one_rdma_read_of_its_range() {
    let fabric = FakeFabric::default();
    let start = |v: Arc<FakeVerbs>| {
        let t = RdmaTransport::new(v, &["fake0".to_string()], 64 << 10).unwrap();
        TransferEngine::start_with_rdma(
            TransferConfig::new("127.0.0.1"),
            Arc::new(RdmaEngine::new(t)),
        )
    };
    let store_verbs = Arc::new(FakeVerbs::new(&fabric, &["fake0"]));
    let client_verbs = Arc::new(FakeVerbs::new(&fabric, &["fake0"]));
    let store = start(store_verbs).await.unwrap();
    let client = start(client_verbs.clone()).await.unwrap();

    // The store's segment holds a 4 KiB object at offset 64 KiB.
    let mut segment = vec![0u8; 1 << 20];
    let base = segment.as_mut_ptr() as u64;
    let (offset, len) = (64u64 << 10, 4096usize);
    let object = pattern(len, 3);
    segment[offset as usize..offset as usize + len].copy_from_slice(&object);
    unsafe { store.register_memory(base as usize, segment.len()) }.unwrap();

    // The client reads it into registered memory from the remembered replica: the
    // request the client's data path builds (segment base + replica offset).
    let mut dest = vec![0u8; len];
    unsafe { client.register_memory(dest.as_mut_ptr() as usize, dest.len()) }.unwrap();
    let req = TransferRequest {
        opcode: Opcode::Read,
        local_addr: dest.as_mut_ptr() as usize,
        length: len,
        target: store.segment_name().into(),
        target_endpoint: None,
        remote_addr: base + offset,
        grant: None,
    };
    let res = unsafe { client.transfer(&[req]).await };
    assert!(res[0].is_ok(), "{:?}", res[0]);
    assert!(dest == object, "the bytes of the remembered range");

    let reads: Vec<_> = client_verbs
        .posted()
        .into_iter()
        .filter(|wr| wr.op == WrOp::Read)
        .collect();
    assert_eq!(reads.len(), 1, "one READ: {reads:?}");
    assert_eq!(reads[0].remote_addr, base + offset);
    assert_eq!(reads[0].len as usize, len);
    assert_eq!(reads[0].local_addr, dest.as_ptr() as u64);
    assert_eq!(
        store.metrics().bytes_served_out,
        0,
        "the store's CPU served nothing: the read was one-sided"
    );
}
