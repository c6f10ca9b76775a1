//! Tenant scoping on the store's data port, against real master and store processes
//! on loopback with authentication on: a tenant's client reads and writes its own
//! objects through a store's data port (the master's answers carry the grants); a
//! peer of another tenant that takes the offsets of those objects from the first
//! tenant's replica list is refused, with or without the first tenant's grant, and so
//! is a forged grant; the `cluster` tenant still reaches everything (a drain copies a
//! tenant's objects between stores); after a master restart the tenant's client keeps
//! working (its remembered grants are stale, its reads ask the master again).

use mooncake_client::{Client, ClientConfig, GetTicket, Location, ReplicateConfig};
use mooncake_common::auth::{Challenge, Credential};
use mooncake_tests::{
    free_port, http_text, node_for, store_env, value_for, Master, Store, TestDir,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const TOKENS: &str =
    "cluster:tok-cluster-5555555555\nalpha:tok-alpha-0123456789\nbeta:tok-beta-9876543210\n";
const CLUSTER: &str = "tok-cluster-5555555555";
const ALPHA: &str = "tok-alpha-0123456789";
const BETA: &str = "tok-beta-9876543210";

// The data port's frames, as a peer writes them by hand (40-byte header).
const WRITE: u8 = 1;
const READ: u8 = 2;
const WRITE_ACK: u8 = 3;
const READ_DATA: u8 = 4;
const HELLO: u8 = 5;
const HELLO_ACK: u8 = 6;
const CHALLENGE: u8 = 11;
const PROOF: u8 = 12;
const GRANT: u8 = 13;
const FORBIDDEN: i32 = 6;

fn header(op: u8, id: u64, addr: u64, len: u64) -> [u8; 40] {
    let mut b = [0u8; 40];
    b[0..2].copy_from_slice(&0x4d43u16.to_le_bytes());
    b[2] = 1;
    b[3] = op;
    b[16..24].copy_from_slice(&id.to_le_bytes());
    b[24..32].copy_from_slice(&addr.to_le_bytes());
    b[32..40].copy_from_slice(&len.to_le_bytes());
    b
}

/// One answer frame: (opcode, status, payload); `None` when the connection ends.
fn frame(s: &mut TcpStream) -> Option<(u8, i32, Vec<u8>)> {
    let mut h = [0u8; 40];
    s.read_exact(&mut h).ok()?;
    let (op, status) = (h[3], i32::from_le_bytes(h[8..12].try_into().unwrap()));
    let len = u64::from_le_bytes(h[32..40].try_into().unwrap()) as usize;
    let has_payload = matches!(op, CHALLENGE) || (op == READ_DATA && status == 0);
    let mut payload = vec![0u8; if has_payload { len } else { 0 }];
    s.read_exact(&mut payload).ok()?;
    Some((op, status, payload))
}

/// A data connection to `endpoint` proved with `token` (the listener accepted it).
fn proved(endpoint: &str, token: &str) -> TcpStream {
    let mut s = TcpStream::connect(endpoint).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(&header(HELLO, 1, 0, 0)).unwrap();
    let (op, _, challenge) = frame(&mut s).expect("a challenge");
    assert_eq!(op, CHALLENGE);
    let challenge = Challenge(challenge.try_into().unwrap());
    let nonce = [3u8; 16];
    let proof = Credential::from_token(token, "test")
        .unwrap()
        .prove("data", &challenge, &nonce);
    let mut f = header(PROOF, 0, 0, 48).to_vec();
    f.extend_from_slice(&nonce);
    f.extend_from_slice(&proof);
    s.write_all(&f).unwrap();
    let (op, status, _) = frame(&mut s).expect("an answer to the hello");
    assert_eq!((op, status), (HELLO_ACK, 0), "the token is accepted");
    s
}

fn send_grant(s: &mut TcpStream, grant: &[u8]) {
    let mut f = header(GRANT, 0, 0, grant.len() as u64).to_vec();
    f.extend_from_slice(grant);
    s.write_all(&f).unwrap();
}

/// A raw read of `[addr, +len)`: (status, bytes).
fn raw_read(s: &mut TcpStream, id: u64, addr: u64, len: u64) -> (i32, Vec<u8>) {
    s.write_all(&header(READ, id, addr, len)).unwrap();
    let (op, status, body) = frame(s).expect("an answer");
    assert_eq!(op, READ_DATA);
    (status, body)
}

fn raw_write(s: &mut TcpStream, id: u64, addr: u64, bytes: &[u8]) -> i32 {
    s.write_all(&header(WRITE, id, addr, bytes.len() as u64))
        .unwrap();
    s.write_all(bytes).unwrap();
    let (op, status, _) = frame(s).expect("an answer");
    assert_eq!(op, WRITE_ACK);
    status
}

async fn client_as(m: &Master, token: &str) -> Client {
    let mut cfg = ClientConfig::new(node_for(m));
    cfg.tuning.credential = Some(Credential::from_token(token, "test").unwrap());
    // Every byte through the store's data port, as from another host.
    cfg.tuning.shm = false;
    Client::connect(cfg).await.expect("client connects")
}

/// Where `key`'s first replica lives: (transfer endpoint, absolute address, size,
/// grant).
async fn replica(c: &Client, key: &str) -> (String, u64, u64, Vec<u8>) {
    let (reps, size) = c
        .replica_descs(&[key.to_string()])
        .await
        .remove(0)
        .expect("replica");
    let r = &reps[0];
    let seg = r.segment.as_ref().expect("segment");
    (
        seg.transport_endpoint.clone(),
        seg.base + r.offset,
        size,
        r.grant.clone().unwrap_or_default(),
    )
}

fn master_with_tokens(dir: &TestDir, extra: &[&str]) -> Master {
    let tokens = dir.file("tokens", TOKENS);
    let auth = format!("--auth_token_file={}", tokens.display());
    let mut flags = vec![auth.as_str()];
    flags.extend_from_slice(extra);
    Master::start(&flags)
}

fn store_env_as(m: &Master, token: &str) -> Vec<(String, String)> {
    let mut env = store_env(m, "64mb");
    env.push(("MOONCAKE_AUTH_TOKEN".into(), token.into()));
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_reaches_its_own_objects_and_no_other_tenant_does() {
    let dir = TestDir::new("tenant-grants");
    let m = master_with_tokens(&dir, &[]);
    let _store = Store::start(&store_env_as(&m, CLUSTER));
    let alpha = client_as(&m, ALPHA).await;

    // Single and batched puts and gets through the store's data port.
    let value = value_for("a-secret", 256 << 10);
    alpha
        .put("a-secret", &value, &ReplicateConfig::default())
        .await
        .expect("a tenant's put");
    assert_eq!(alpha.get("a-secret").await.unwrap(), value);
    let keys: Vec<String> = (0..8).map(|i| format!("a-batch-{i}")).collect();
    let values: Vec<Vec<u8>> = keys.iter().map(|k| value_for(k, 300_000)).collect();
    let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
    for r in alpha
        .put_batch(&keys, &refs, &ReplicateConfig::default())
        .await
    {
        r.expect("a tenant's batched put");
    }
    for (got, want) in alpha.get_batch(&keys).await.into_iter().zip(&values) {
        assert_eq!(&got.expect("a tenant's batched get"), want);
    }
    // Again: the location cache's speculative reads present the remembered grants.
    assert_eq!(alpha.get("a-secret").await.unwrap(), value);

    // Beta takes alpha's offsets from alpha's replica list (the attack the threat
    // model names) and tries them on its own proved connection.
    let (ep, addr, size, grant) = replica(&alpha, "a-secret").await;
    assert_eq!(size, value.len() as u64);
    assert!(!grant.is_empty(), "a tenant's replica list carries grants");
    let ep2 = ep.clone();
    let grant2 = grant.clone();
    tokio::task::spawn_blocking(move || {
        let mut b = proved(&ep2, BETA);
        let (st, body) = raw_read(&mut b, 10, addr, 4096);
        assert_eq!(st, FORBIDDEN, "beta read alpha's bytes without a grant");
        assert!(body.is_empty());
        // Alpha's own grant: issued to alpha, so worth nothing on beta's connection.
        send_grant(&mut b, &grant2);
        let (st, body) = raw_read(&mut b, 11, addr, 4096);
        assert_eq!(st, FORBIDDEN, "beta read alpha's bytes with alpha's grant");
        assert!(body.is_empty());
        assert_eq!(raw_write(&mut b, 12, addr, &[0u8; 4096]), FORBIDDEN);

        // Alpha on a raw connection: a forged grant (range widened) is refused,
        // its own is served, and only inside the allocation.
        let mut a = proved(&ep2, ALPHA);
        let mut forged = grant2.clone();
        forged[17..25].copy_from_slice(&(64u64 << 20).to_le_bytes());
        send_grant(&mut a, &forged);
        assert_eq!(raw_read(&mut a, 20, addr, 4096).0, FORBIDDEN);
        let mut a = proved(&ep2, ALPHA);
        assert_eq!(raw_read(&mut a, 21, addr, 4096).0, FORBIDDEN, "no grant");
        send_grant(&mut a, &grant2);
        let (st, body) = raw_read(&mut a, 22, addr, 4096);
        assert_eq!(st, 0);
        assert_eq!(body.len(), 4096);
        let end = addr + (256 << 10);
        assert_eq!(raw_read(&mut a, 23, end, 4096).0, FORBIDDEN, "past the end");
        assert_eq!(raw_read(&mut a, 24, addr - 4096, 4096).0, FORBIDDEN);

        // The cluster tenant (stores, operators) reaches any offset.
        let mut c = proved(&ep2, CLUSTER);
        let (st, body) = raw_read(&mut c, 30, addr, 4096);
        assert_eq!(st, 0);
        body
    })
    .await
    .map(|body| assert_eq!(body, value[..4096]))
    .unwrap();
    assert_eq!(
        alpha.get("a-secret").await.unwrap(),
        value,
        "a refused write changed nothing"
    );

    // Beta's own objects work as alpha's do, and beta's grants do not open alpha's.
    let beta = client_as(&m, BETA).await;
    let bv = value_for("b-own", 100_000);
    beta.put("b-own", &bv, &ReplicateConfig::default())
        .await
        .unwrap();
    assert_eq!(beta.get("b-own").await.unwrap(), bv);
    let (_, _, _, beta_grant) = replica(&beta, "b-own").await;
    tokio::task::spawn_blocking(move || {
        let mut b = proved(&ep, BETA);
        send_grant(&mut b, &beta_grant);
        assert_eq!(raw_read(&mut b, 40, addr, 4096).0, FORBIDDEN);
    })
    .await
    .unwrap();
}

fn drain_query(m: &Master, job: &str) -> serde_json::Value {
    let (_, body) = http_text(
        "GET",
        m.metrics_port,
        &format!("/api/v1/drain_jobs/query?job_id={job}"),
        "",
        Some(CLUSTER),
    );
    serde_json::from_str(&body).unwrap()
}

fn segments(m: &Master) -> Vec<String> {
    let (_, body) = http_text(
        "GET",
        m.metrics_port,
        "/get_all_segments",
        "",
        Some(CLUSTER),
    );
    body.lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_tenant_drains_a_tenants_objects_between_stores() {
    let dir = TestDir::new("tenant-grants-drain");
    let m = master_with_tokens(&dir, &[]);
    let before = segments(&m);
    let _a = Store::start(&store_env_as(&m, CLUSTER));
    let drained = segments(&m)
        .into_iter()
        .find(|s| !before.contains(s))
        .expect("the first store's segment");
    let alpha = client_as(&m, ALPHA).await;
    let keys: Vec<String> = (0..6).map(|i| format!("drained-{i}")).collect();
    for k in &keys {
        alpha
            .put(k, &value_for(k, 200_000), &ReplicateConfig::default())
            .await
            .unwrap();
    }
    let _b = Store::start(&store_env_as(&m, CLUSTER));
    let body =
        serde_json::json!({"segments": [drained], "target_segments": [], "max_concurrency": 2});
    let (code, resp) = http_text(
        "POST",
        m.metrics_port,
        "/api/v1/drain_jobs",
        &body.to_string(),
        Some(CLUSTER),
    );
    assert_eq!(code, 200, "{resp}");
    let resp: serde_json::Value = serde_json::from_str(&resp).unwrap();
    let job = resp["job_id"].as_str().unwrap().to_string();
    let t0 = Instant::now();
    let mut q = drain_query(&m, &job);
    while q["status_name"] == "RUNNING" && t0.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        q = drain_query(&m, &job);
    }
    assert_eq!(q["status_name"], "SUCCEEDED", "{q}");
    assert_eq!(q["failed_units"], 0, "{q}");
    assert_eq!(
        q["succeeded_units"].as_u64(),
        Some(keys.len() as u64),
        "{q}"
    );
    // Alpha reads every object from its new store, with the grants of its new place.
    for k in &keys {
        let (_, _, _, grant) = replica(&alpha, k).await;
        assert!(!grant.is_empty());
        assert_eq!(alpha.get(k).await.unwrap(), value_for(k, 200_000), "{k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_master_restart_a_tenant_keeps_reading_and_writing() {
    let dir = TestDir::new("tenant-grants-restart");
    let snap_dir = dir.path().join("snap");
    let snap = format!("--snapshot_backup_dir={}", snap_dir.display());
    let tokens = dir.file("tokens", TOKENS);
    let auth = format!("--auth_token_file={}", tokens.display());
    let flags = [
        auth.as_str(),
        "--enable_snapshot=true",
        snap.as_str(),
        "--client_ttl",
        "2",
    ];
    let (rpc, met) = (free_port(), free_port());
    let mut m = Master::start_on_ports(rpc, met, &flags);
    let _store = Store::start(&store_env_as(&m, CLUSTER));
    let alpha = client_as(&m, ALPHA).await;
    let keys: Vec<String> = (0..5).map(|i| format!("kept-{i}")).collect();
    for k in &keys {
        alpha
            .put(k, &value_for(k, 64 << 10), &ReplicateConfig::default())
            .await
            .unwrap();
        // The location cache now holds each key's grant from this master.
        assert_eq!(alpha.get(k).await.unwrap(), value_for(k, 64 << 10));
    }
    m.proc.kill9();
    let m = Master::start_on_ports(rpc, met, &flags);
    // The restored index knows the objects; the store mounts again (the new master
    // holds no secret for its segment) and learns a fresh secret. Until then a
    // tenant's transfers are refused and its calls fail; they never return wrong
    // bytes.
    let t0 = Instant::now();
    let mut ok = 0;
    while t0.elapsed() < Duration::from_secs(30) {
        ok = 0;
        for k in &keys {
            if let Ok(v) = alpha.get(k).await {
                assert_eq!(v, value_for(k, 64 << 10), "{k}: wrong bytes");
                ok += 1;
            }
        }
        if ok == keys.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(ok, keys.len(), "every object readable after the restart");
    let v = value_for("after-restart", 100_000);
    alpha
        .put("after-restart", &v, &ReplicateConfig::default())
        .await
        .expect("a put after the restart");
    assert_eq!(alpha.get("after-restart").await.unwrap(), v);
    let stats = alpha.location_cache_stats();
    assert!(
        stats.stale > 0,
        "the remembered grants were stale: {stats:?}"
    );
    drop(m);
}

const FORM_LEN: usize = 96 << 10;
const FORMS: [&str; 10] = [
    "get", "batch-0", "batch-1", "into", "binto-0", "binto-1", "multi", "range", "loc", "session",
];

fn form_key(f: &str) -> String {
    format!("form-{f}")
}

fn form_value(f: &str) -> Vec<u8> {
    value_for(&form_key(f), FORM_LEN)
}

/// Reads the `form-*` objects with every read form of `c` at once (`loc` and
/// `ticket`: a lookup of `form-loc` and a get session of `form-session`), checks the
/// bytes, then reads the session again (its ticket keeps what a refused read looked
/// up afresh).
async fn read_every_form(c: &Client, loc: &Location, ticket: &GetTicket) {
    const LEN: usize = FORM_LEN;
    // Registered memory for the zero-copy forms: one LEN-byte slot per read.
    let mut mem = vec![0u8; 8 * LEN];
    let base = mem.as_mut_ptr() as usize;
    // Safety: `mem` outlives the client's use of it and is not moved.
    unsafe { c.register_buffer(base, mem.len()) }.unwrap();
    let slot = |i: usize| base + i * LEN;
    let (range_off, range_len) = (5000u64, 40_000usize);
    // The session reads two ranges of its object into slot 7, back to front.
    let (s_a, s_b) = ((0usize, 30_000usize), (50_000usize, 20_000usize));
    let batch = [form_key("batch-0"), form_key("batch-1")];
    let binto = [form_key("binto-0"), form_key("binto-1")];
    let binto_bufs = [(slot(1), LEN), (slot(2), LEN)];
    // Scattered over two buffers.
    let multi_bufs = [vec![(slot(3), 1000), (slot(4), LEN - 1000)]];
    let session_ranges = [(
        ticket,
        vec![
            (slot(7) + s_b.0, s_b.1, s_b.0 as u64),
            (slot(7) + s_a.0, s_a.1, s_a.0 as u64),
        ],
    )];
    let (k_get, k_into, k_multi, k_range) = (
        form_key("get"),
        form_key("into"),
        form_key("multi"),
        form_key("range"),
    );
    // Safety (every unsafe read below): each reads into its own slots of `mem`.
    let (got, got_batch, into, binto_r, multi, range, at_loc, session) = tokio::join!(
        c.get(&k_get),
        c.get_batch(&batch),
        unsafe { c.get_into(&k_into, slot(0), LEN) },
        unsafe { c.batch_get_into(&binto, &binto_bufs) },
        unsafe { c.batch_get_into_multi(std::slice::from_ref(&k_multi), &multi_bufs) },
        unsafe { c.get_range_into(&k_range, range_off, slot(5), range_len) },
        unsafe { c.read_location(loc, slot(6)) },
        unsafe { c.get_session_read(&session_ranges) },
    );
    assert_eq!(got.expect("get"), form_value("get"));
    for (r, f) in got_batch.into_iter().zip(["batch-0", "batch-1"]) {
        assert_eq!(r.expect("get_batch"), form_value(f), "{f}");
    }
    assert_eq!(into.expect("get_into"), LEN);
    for r in binto_r {
        assert_eq!(r.expect("batch_get_into"), LEN);
    }
    assert_eq!(multi.into_iter().next().unwrap().expect("multi"), LEN);
    assert_eq!(range.expect("get_range_into"), range_len);
    at_loc.expect("read_location");
    assert_eq!(
        session
            .into_iter()
            .next()
            .unwrap()
            .expect("get_session_read"),
        s_a.1 + s_b.1
    );
    let at = |i: usize, n: usize| &mem[i * LEN..i * LEN + n];
    assert_eq!(at(0, LEN), form_value("into"));
    assert_eq!(at(1, LEN), form_value("binto-0"));
    assert_eq!(at(2, LEN), form_value("binto-1"));
    assert_eq!(at(3, 1000), &form_value("multi")[..1000]);
    assert_eq!(at(4, LEN - 1000), &form_value("multi")[1000..]);
    let r = range_off as usize;
    assert_eq!(at(5, range_len), &form_value("range")[r..r + range_len]);
    assert_eq!(at(6, LEN), form_value("loc"));
    let sv = form_value("session");
    let s = at(7, LEN);
    assert_eq!(&s[s_a.0..s_a.0 + s_a.1], &sv[s_a.0..s_a.0 + s_a.1]);
    assert_eq!(&s[s_b.0..s_b.0 + s_b.1], &sv[s_b.0..s_b.0 + s_b.1]);
    // The whole session object, with the ticket as the reads above left it.
    mem[7 * LEN..].fill(0);
    let again = unsafe { c.get_session_read(&[(ticket, vec![(slot(7), LEN, 0)])]) }.await;
    assert_eq!(again.into_iter().next().unwrap().expect("again"), LEN);
    assert_eq!(&mem[7 * LEN..], sv);
    c.unregister_buffer(base).unwrap();
}

/// Every read form after a master restart, every byte through the store's data port.
/// A client that connects right after the restart finds the store not mounted again
/// yet (the master signs nothing for its segment until its next heartbeat, so the
/// first reads are refused and asked again); the client from before the restart holds
/// grants signed with the old secrets (a `Location`, a get session, its location
/// cache), refused for certain once the store has mounted again. Every form of both
/// reads the right bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_master_restart_every_read_form_reads_the_right_bytes() {
    let dir = TestDir::new("tenant-grants-read-forms");
    let snap_dir = dir.path().join("snap");
    let snap = format!("--snapshot_backup_dir={}", snap_dir.display());
    let tokens = dir.file("tokens", TOKENS);
    let auth = format!("--auth_token_file={}", tokens.display());
    // The get sessions' leases must outlast the restart.
    let flags = [
        auth.as_str(),
        "--enable_snapshot=true",
        snap.as_str(),
        "--client_ttl",
        "2",
        "--default_kv_lease_ttl=60000",
    ];
    let (rpc, met) = (free_port(), free_port());
    let mut m = Master::start_on_ports(rpc, met, &flags);
    let _store = Store::start(&store_env_as(&m, CLUSTER));
    let alpha = client_as(&m, ALPHA).await;
    for f in FORMS {
        alpha
            .put(&form_key(f), &form_value(f), &ReplicateConfig::default())
            .await
            .unwrap();
        // The location cache remembers each key with this master's grant.
        assert_eq!(alpha.get(&form_key(f)).await.unwrap(), form_value(f));
    }
    // Looked up before the restart, read after it.
    let loc = alpha.locate_one(&form_key("loc")).await.unwrap();
    let ticket = alpha
        .get_session_start(&[form_key("session")])
        .await
        .remove(0)
        .unwrap();

    m.proc.kill9();
    let m = Master::start_on_ports(rpc, met, &flags);

    let fresh = client_as(&m, ALPHA).await;
    let loc2 = fresh.locate_one(&form_key("loc")).await.unwrap();
    let ticket2 = fresh
        .get_session_start(&[form_key("session")])
        .await
        .remove(0)
        .unwrap();
    read_every_form(&fresh, &loc2, &ticket2).await;

    // The store has mounted again (the fresh client could not have read otherwise):
    // the old secret is gone from its data port.
    let (_, _, _, grant) = replica(&alpha, &form_key("get")).await;
    assert!(
        !grant.is_empty(),
        "the new master signs for the store's segment"
    );
    read_every_form(&alpha, &loc, &ticket).await;
    let stats = alpha.location_cache_stats();
    assert!(
        stats.stale > 0,
        "the remembered grants were stale: {stats:?}"
    );
    drop(m);
}

/// `--grant_ttl_sec` sets how long the grants the master signs last: a tenant's
/// replica list carries grants expiring that long after they were issued, and they
/// work on the data port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_signs_grants_for_the_window_it_is_given() {
    let dir = TestDir::new("tenant-grants-window");
    let m = master_with_tokens(&dir, &["--grant_ttl_sec=7"]);
    let _store = Store::start(&store_env_as(&m, CLUSTER));
    let alpha = client_as(&m, ALPHA).await;
    let v = value_for("windowed", 100_000);
    alpha
        .put("windowed", &v, &ReplicateConfig::default())
        .await
        .unwrap();
    let t0 = mooncake_common::grant::now_ms();
    let (_, _, _, grant) = replica(&alpha, "windowed").await;
    let t1 = mooncake_common::grant::now_ms();
    let (g, _, _) = mooncake_common::grant::Grant::parse(&grant).expect("a grant");
    // The window, less at most one step of an eighth of it (expiries are rounded
    // down so that lookups of one allocation get the same bytes for a while).
    assert!(
        (t0 + 7_000 - 875..=t1 + 7_000).contains(&g.expires_ms),
        "expires at {} for a lookup between {t0} and {t1}",
        g.expires_ms
    );
    assert_eq!(alpha.get("windowed").await.unwrap(), v);
}
