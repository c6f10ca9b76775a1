//! The data plane attacked as a stranger would, over raw sockets on loopback, against
//! real master and store processes: the store's transfer port serves nothing to a peer
//! that has not proved a token (not the bytes of a live object, not those of a removed
//! one, and no write lands), a wrong token is refused while a tenant's token works; a
//! write whose CRC fails never becomes visible; and a segment mounted with a `shm_path`
//! naming a file outside the client's segment directories is never mapped.

use mooncake_client::calls::MasterCalls;
use mooncake_client::transport::{DirectConfig, MasterChannel, Protocol};
use mooncake_client::{Client, ClientConfig, ReplicateConfig};
use mooncake_common::auth::{Challenge, Credential};
use mooncake_proto::{MountSegmentRequest, SegmentDesc};
use mooncake_tests::{node_for, runtime, store_env, value_for, Master, Store, TestDir};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const TOKENS: &str = "cluster:tok-cluster-5555555555\nalpha:tok-alpha-0123456789\n";
const CLUSTER: &str = "tok-cluster-5555555555";
const ALPHA: &str = "tok-alpha-0123456789";

// The data port's frames, as an attacker writes them (40-byte little-endian header).
const READ: u8 = 2;
const WRITE: u8 = 1;
const WRITE_ACK: u8 = 3;
const READ_DATA: u8 = 4;
const HELLO: u8 = 5;
const HELLO_ACK: u8 = 6;
const CHALLENGE: u8 = 11;
const PROOF: u8 = 12;
const GRANT: u8 = 13;
const UNAUTHENTICATED: i32 = 5;
const CHECKSUM: i32 = 2;

fn header(op: u8, id: u64, addr: u64, len: u64, crc: Option<u32>) -> [u8; 40] {
    let mut b = [0u8; 40];
    b[0..2].copy_from_slice(&0x4d43u16.to_le_bytes());
    b[2] = 1;
    b[3] = op;
    if let Some(c) = crc {
        b[4] = 1;
        b[12..16].copy_from_slice(&c.to_le_bytes());
    }
    b[16..24].copy_from_slice(&id.to_le_bytes());
    b[24..32].copy_from_slice(&addr.to_le_bytes());
    b[32..40].copy_from_slice(&len.to_le_bytes());
    b
}

struct Frame {
    op: u8,
    status: i32,
    payload: Vec<u8>,
}

/// Reads one answer frame; `None` when the connection ends.
fn frame(s: &mut TcpStream) -> Option<Frame> {
    let mut h = [0u8; 40];
    s.read_exact(&mut h).ok()?;
    let op = h[3];
    let status = i32::from_le_bytes(h[8..12].try_into().unwrap());
    let len = u64::from_le_bytes(h[32..40].try_into().unwrap()) as usize;
    let has_payload =
        matches!(op, HELLO | CHALLENGE | PROOF | 8 | 9 | 10) || (op == READ_DATA && status == 0);
    let mut payload = vec![0u8; if has_payload { len } else { 0 }];
    s.read_exact(&mut payload).ok()?;
    Some(Frame {
        op,
        status,
        payload,
    })
}

fn connect(endpoint: &str) -> TcpStream {
    let s = TcpStream::connect(endpoint).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s
}

/// CRC32C (Castagnoli), bit by bit: what the wire's CRC field carries.
fn crc32c(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82f6_3b78
            } else {
                c >> 1
            };
        }
    }
    !c
}

async fn client_of(m: &Master, token: Option<&str>, shm: bool) -> Client {
    let mut cfg = ClientConfig::new(node_for(m));
    cfg.tuning.credential = token.map(|t| Credential::from_token(t, "test").unwrap());
    cfg.tuning.shm = shm;
    Client::connect(cfg).await.expect("client connects")
}

/// Where `key`'s one replica lives: (transfer endpoint, absolute address, size).
async fn replica(c: &Client, key: &str) -> (String, u64, u64) {
    let (reps, size) = c
        .replica_descs(&[key.to_string()])
        .await
        .remove(0)
        .expect("replica");
    let r = &reps[0];
    let seg = r.segment.as_ref().expect("segment");
    (seg.transport_endpoint.clone(), seg.base + r.offset, size)
}

/// Proves `token` on a fresh connection (Hello, challenge, proof) and answers whether
/// the listener accepted it.
fn prove(s: &mut TcpStream, token: &str) -> bool {
    s.write_all(&header(HELLO, 1, 0, 0, None)).unwrap();
    let c = frame(s).expect("a challenge");
    assert_eq!(c.op, CHALLENGE);
    let challenge = Challenge(c.payload.try_into().unwrap());
    let nonce = [9u8; 16];
    let proof = Credential::from_token(token, "test")
        .unwrap()
        .prove("data", &challenge, &nonce);
    let mut f = header(PROOF, 0, 0, 48, None).to_vec();
    f.extend_from_slice(&nonce);
    f.extend_from_slice(&proof);
    s.write_all(&f).unwrap();
    let ack = frame(s).expect("an answer to the hello");
    assert_eq!(ack.op, HELLO_ACK);
    ack.status == 0
}

#[test]
fn the_transfer_port_serves_only_peers_that_proved_a_token() {
    let dir = TestDir::new("dataport-auth");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, TOKENS).unwrap();
    let store_token = dir.path().join("store-token");
    std::fs::write(&store_token, CLUSTER).unwrap();
    let m = Master::start(&[&format!("--auth_token_file={}", tokens.display())]);
    let mut env = store_env(&m, "64mb");
    env.push((
        "MOONCAKE_AUTH_TOKEN_FILE".into(),
        store_token.display().to_string(),
    ));
    let _store = Store::start(&env);
    let rt = runtime();
    let alpha = rt.block_on(client_of(&m, Some(ALPHA), false));
    let value = value_for("secret", 256 << 10);
    rt.block_on(alpha.put("secret", &value, &ReplicateConfig::default()))
        .expect("a tenant's put through the store's data port");
    assert_eq!(rt.block_on(alpha.get("secret")).unwrap(), value);
    let (ep, addr, size) = rt.block_on(replica(&alpha, "secret"));
    assert_eq!(size, value.len() as u64);

    // No handshake: a raw read gets a challenge and a refusal, never a byte.
    let mut s = connect(&ep);
    s.write_all(&header(READ, 7, addr, 4096, None)).unwrap();
    assert_eq!(frame(&mut s).unwrap().op, CHALLENGE);
    let r = frame(&mut s).expect("a refusal");
    assert_eq!((r.op, r.status), (READ_DATA, UNAUTHENTICATED));
    assert!(r.payload.is_empty());
    assert!(frame(&mut s).is_none(), "the connection stays open");

    // A wrong token: refused.
    let mut s = connect(&ep);
    assert!(!prove(&mut s, "tok-not-listed-00000"));
    assert!(frame(&mut s).is_none());

    // No handshake: a raw write is refused and changes nothing.
    let mut s = connect(&ep);
    let _ = s.write_all(&header(WRITE, 8, addr, 4096, None));
    let _ = s.write_all(&[0u8; 4096]);
    assert_eq!(frame(&mut s).unwrap().op, CHALLENGE);
    let r = frame(&mut s).expect("a refusal");
    assert_eq!((r.op, r.status), (WRITE_ACK, UNAUTHENTICATED));
    assert_eq!(rt.block_on(alpha.get("secret")).unwrap(), value);

    // A tenant's token, checked by the store through the master: served inside
    // the allocations the master granted the tenant (`tenant_grants.rs`).
    let (reps, _) = rt
        .block_on(alpha.replica_descs(&["secret".to_string()]))
        .remove(0)
        .unwrap();
    let grant = reps[0]
        .grant
        .clone()
        .expect("a tenant's replica carries a grant");
    let mut s = connect(&ep);
    assert!(prove(&mut s, ALPHA));
    let mut g = header(GRANT, 0, 0, grant.len() as u64, None).to_vec();
    g.extend_from_slice(&grant);
    s.write_all(&g).unwrap();
    s.write_all(&header(READ, 9, addr, 4096, None)).unwrap();
    let r = frame(&mut s).unwrap();
    assert_eq!((r.op, r.status), (READ_DATA, 0));
    assert_eq!(r.payload, value[..4096]);

    // A removed object's bytes are no more reachable by a stranger.
    rt.block_on(alpha.remove("secret", true)).unwrap();
    let mut s = connect(&ep);
    s.write_all(&header(READ, 10, addr, 4096, None)).unwrap();
    assert_eq!(frame(&mut s).unwrap().op, CHALLENGE);
    let r = frame(&mut s).expect("a refusal");
    assert_eq!((r.op, r.status), (READ_DATA, UNAUTHENTICATED));
    assert!(r.payload.is_empty());

    // A peer without a token cannot use the store either (and is told why).
    let mut cfg = ClientConfig::new(node_for(&m));
    cfg.tuning.credential = None;
    assert!(rt.block_on(Client::connect(cfg)).is_err());
}

#[test]
fn a_write_that_fails_its_crc_is_never_served() {
    let m = Master::start(&[]);
    let _store = Store::start(&store_env(&m, "64mb"));
    let rt = runtime();
    let c = rt.block_on(client_of(&m, None, false));
    let value = value_for("kept", 64 << 10);
    rt.block_on(c.put("kept", &value, &ReplicateConfig::default()))
        .unwrap();
    let (ep, addr, _) = rt.block_on(replica(&c, "kept"));
    let forged = vec![0x5au8; 8192];
    let mut s = connect(&ep);
    // The CRC of other bytes: the payload fails its check.
    let h = header(WRITE, 1, addr, 8192, Some(crc32c(&value[..8192])));
    s.write_all(&h).unwrap();
    s.write_all(&forged).unwrap();
    let a = frame(&mut s).expect("an answer");
    assert_eq!((a.op, a.status), (WRITE_ACK, CHECKSUM));
    assert_eq!(
        rt.block_on(c.get("kept")).unwrap(),
        value,
        "bytes whose CRC failed were served"
    );
}

#[test]
fn a_mount_naming_a_file_outside_the_segment_directories_is_never_mapped() {
    let dir = TestDir::new("dataport-shm");
    let victim = dir.path().join("victim.conf");
    let original = vec![b'#'; 32 << 20];
    std::fs::write(&victim, &original).unwrap();
    // The attacker holds the file's lock, as a live segment owner would.
    let held = std::fs::File::open(&victim).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: a lock on our own descriptor.
    assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX) }, 0);
    let m = Master::start(&[]);
    let rt = runtime();
    // The attacker mounts a segment whose file is the victim, on this host, with a
    // transfer endpoint nobody serves.
    let host_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let ch = MasterChannel::new(
        &m.addr(),
        DirectConfig {
            connect_timeout: Duration::from_secs(2),
            timeout: Some(Duration::from_secs(5)),
            keep_alive: None,
            auth: None,
        },
        Protocol::Framed,
    );
    let mut calls = MasterCalls::new(ch).unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = dead.local_addr().unwrap().to_string();
    drop(dead);
    let seg = SegmentDesc {
        name: "attacker:1".into(),
        owner: "attacker:1".into(),
        base: 0x7000_0000_0000,
        size: 32 << 20,
        protocol: "tcp".into(),
        transport_endpoint: endpoint,
        shm_path: victim.display().to_string(),
        host_id,
        generation: "g1".into(),
    };
    let r = rt
        .block_on(calls.mount_segment(MountSegmentRequest {
            client_id: "attacker".into(),
            segment: Some(seg),
        }))
        .expect("mounted");
    assert_eq!(r.into_inner().code, 0);
    // A same-host client with the fast path on puts: its only choice is that segment.
    let c = rt.block_on(client_of(&m, None, true));
    let value = value_for("victim-bound", 1 << 20);
    let put = rt.block_on(c.put("victim-bound", &value, &ReplicateConfig::default()));
    let e = put.expect_err("the put cannot have reached a real segment");
    assert!(e.message.contains("connect"), "{e:?}");
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        original,
        "put data was written into a file the mount named"
    );
    drop(held);
}
