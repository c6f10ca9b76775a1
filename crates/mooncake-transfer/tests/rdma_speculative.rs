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

/// An engine on loopback whose RDMA goes through `verbs` (one fake NIC).
async fn start(v: Arc<FakeVerbs>) -> Result<Arc<TransferEngine>, mooncake_transfer::TransferError> {
    let t = RdmaTransport::new(v, &["fake0".to_string()], 64 << 10).unwrap();
    TransferEngine::start_with_rdma(
        TransferConfig::new("127.0.0.1"),
        Arc::new(RdmaEngine::new(t)),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_location_is_read_with_one_rdma_read_of_its_range() {
    let fabric = FakeFabric::default();
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

/// Bytes at addresses beyond the registered memory, as an SSD tier serves them.
struct Disk {
    base: u64,
    bytes: Vec<u8>,
}

impl mooncake_transfer::ReadSource for Disk {
    fn covers(&self, addr: u64, len: u64) -> bool {
        addr >= self.base && addr + len <= self.base + self.bytes.len() as u64
    }
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), String> {
        let at = (addr - self.base) as usize;
        buf.copy_from_slice(&self.bytes[at..at + buf.len()]);
        Ok(())
    }
}

/// A range the peer did not register for RDMA (an SSD tier's record, served by the
/// owner's CPU from its read source) is read over TCP by an RDMA reader: no READ work
/// request names it (one would fail: the NIC holds no key for it), and the bytes
/// come back; registered memory of the same peer still goes over RDMA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_the_peer_did_not_register_is_read_over_tcp() {
    let fabric = FakeFabric::default();
    let store = start(Arc::new(FakeVerbs::new(&fabric, &["fake0"])))
        .await
        .unwrap();
    let client_verbs = Arc::new(FakeVerbs::new(&fabric, &["fake0"]));
    let client = start(client_verbs.clone()).await.unwrap();

    let mut segment = pattern(1 << 20, 5);
    let base = segment.as_mut_ptr() as u64;
    unsafe { store.register_memory(base as usize, segment.len()) }.unwrap();
    let disk_base = 1u64 << 56;
    let record = pattern(256 << 10, 9);
    store.set_read_source(Some(Arc::new(Disk {
        base: disk_base,
        bytes: record.clone(),
    })));

    let read = |remote: u64, len: usize| {
        let (client, store) = (&client, &store);
        async move {
            let mut dest = vec![0u8; len];
            unsafe { client.register_memory(dest.as_mut_ptr() as usize, len) }.unwrap();
            let req = TransferRequest {
                opcode: Opcode::Read,
                local_addr: dest.as_mut_ptr() as usize,
                length: len,
                target: store.segment_name().into(),
                target_endpoint: None,
                remote_addr: remote,
                grant: None,
            };
            let res = unsafe { client.transfer(&[req]).await };
            client.unregister_memory(dest.as_ptr() as usize).unwrap();
            res[0].clone().map(|_| dest)
        }
    };
    let at = 4096usize;
    match read(disk_base + at as u64, 64 << 10).await {
        Ok(got) => assert!(got == record[at..at + (64 << 10)], "the record's bytes"),
        Err(e) => panic!("a read of the unregistered range failed: {e:?}"),
    }
    assert!(
        client_verbs
            .posted()
            .iter()
            .all(|wr| wr.remote_addr < disk_base),
        "no work request names the unregistered range"
    );
    // Counted once the answer is written, which may be just after the client has it.
    let t0 = std::time::Instant::now();
    while store.metrics().bytes_served_out < 64 << 10 && t0.elapsed().as_secs() < 5 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(
        store.metrics().bytes_served_out,
        64 << 10,
        "served over TCP"
    );

    let got = read(base + 8192, 4096).await.expect("registered range");
    assert_eq!(got, segment[8192..8192 + 4096]);
    assert!(
        client_verbs
            .posted()
            .iter()
            .any(|wr| wr.op == WrOp::Read && wr.remote_addr == base + 8192),
        "registered memory still goes over RDMA"
    );
}
