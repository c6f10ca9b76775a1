//! The dummy client: a light client that owns no segment and no transfer engine and
//! forwards every call to the node's real client (`mooncake_client`). Pointer calls
//! on shared pools (`shm`) send addresses, not bytes: the real client maps the pool
//! once (its descriptor goes over the unix socket) and moves the bytes itself.
//!
//! Blocking I/O on a small pool of connections: each call takes an idle connection
//! (checked alive first) or opens one, so calls from many Python threads run in
//! parallel. A real client that is gone makes every call fail at once with
//! RPC_FAIL (-900); the next call after it returns connects again, says hello, sees
//! a new instance and hands the pools over again.

use crate::fdpass;
use crate::ops::{self, get_replica, put_bufs, put_rc, ReplicaView};
use crate::shm;
use crate::wire::{self, Dec, Enc, WireError};
use mooncake_client::ReplicateConfig;
use mooncake_common::hostname::split_host_port;
use mooncake_common::{ErrorCode, MooncakeError, Result};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Connecting to the real client (it is on this node: a refusal is immediate).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// One call's answer (the real client's own master and transfer deadlines are shorter).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Idle connections older than this are closed rather than reused (the real client
/// closes silent ones after its idle timeout, ten minutes by default).
const IDLE_REUSE: Duration = Duration::from_secs(240);
/// Idle connections kept.
const MAX_IDLE: usize = 32;

fn rpc_fail(m: impl Into<String>) -> MooncakeError {
    MooncakeError::new(ErrorCode::RpcFail, m)
}

fn wire_fail(what: &str, e: WireError) -> MooncakeError {
    rpc_fail(format!("real client: {what}: {e}"))
}

struct Known {
    instance: u64,
    hostname: String,
    /// Pools handed to `instance`: id -> base address.
    registered: HashMap<u64, usize>,
    /// `shm::frees()` when the registered pools were last checked for frees.
    frees_seen: u64,
}

pub struct DummyClient {
    addrs: Vec<SocketAddr>,
    ipc_name: String,
    token: u64,
    idle: Mutex<Vec<(TcpStream, Instant)>>,
    known: Mutex<Known>,
    /// Serialises pool hand-overs (one per pool and instance).
    registering: Mutex<()>,
}

/// Whether the peer closed `s` (or sent what no idle connection should have).
fn is_dead(s: &TcpStream) -> bool {
    let mut b = 0u8;
    // SAFETY: a one-byte peek into a local.
    let n = unsafe {
        libc::recv(
            s.as_raw_fd(),
            &mut b as *mut u8 as *mut libc::c_void,
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
        );
    }
    true // 0 = end of stream; > 0 = unexpected bytes
}

impl DummyClient {
    /// Connects to the real client at `server_address` (`host:port`) and says hello.
    /// INVALID_PARAMS for an address that does not parse, RPC_FAIL when nothing
    /// answers there.
    pub fn connect(server_address: &str) -> Result<DummyClient> {
        let addr = server_address.trim();
        let (host, port) = split_host_port(addr);
        let port = port.ok_or_else(|| {
            MooncakeError::invalid(format!(
                "setup_dummy(): server_address {addr:?} needs a port (host:port of mooncake_client)"
            ))
        })?;
        let addrs: Vec<SocketAddr> = (host.trim_matches(['[', ']']), port)
            .to_socket_addrs()
            .map_err(|e| {
                MooncakeError::invalid(format!("setup_dummy(): cannot resolve {addr:?}: {e}"))
            })?
            .collect();
        let d = DummyClient {
            addrs,
            ipc_name: fdpass::ipc_name(port),
            token: uuid::Uuid::new_v4().as_u64_pair().0,
            idle: Mutex::new(Vec::new()),
            known: Mutex::new(Known {
                instance: 0,
                hostname: String::new(),
                registered: HashMap::new(),
                frees_seen: 0,
            }),
            registering: Mutex::new(()),
        };
        let s = d.open()?;
        d.checkin(s);
        Ok(d)
    }

    /// The real client's `host:port` in the pool.
    pub fn hostname(&self) -> String {
        self.known.lock().hostname.clone()
    }

    fn hello_body(&self) -> Vec<u8> {
        let mut e = Enc::new(ops::HELLO);
        e.buf.extend_from_slice(ops::MAGIC);
        e.u32(ops::VERSION).u64(self.token);
        e.buf
    }

    /// A new connection, hello done; notes a restarted real client.
    fn open(&self) -> Result<TcpStream> {
        let mut last = None;
        let mut s = None;
        for a in &self.addrs {
            match TcpStream::connect_timeout(a, CONNECT_TIMEOUT) {
                Ok(c) => {
                    s = Some(c);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let mut s = s.ok_or_else(|| {
            rpc_fail(format!(
                "real client at {:?} unreachable: {}",
                self.addrs,
                last.map_or_else(|| "no address".to_string(), |e| e.to_string())
            ))
        })?;
        let _ = s.set_nodelay(true);
        s.set_read_timeout(Some(CALL_TIMEOUT))
            .and_then(|_| s.set_write_timeout(Some(CALL_TIMEOUT)))
            .map_err(|e| rpc_fail(e.to_string()))?;
        wire::write_frame(&mut s, &self.hello_body())
            .map_err(|e| rpc_fail(format!("real client: hello: {e}")))?;
        let answer = wire::read_frame(&mut s)
            .map_err(|e| wire_fail("hello", e))?
            .ok_or_else(|| rpc_fail("real client closed the connection at hello"))?;
        let mut d = Dec::new(&answer);
        let (instance, hostname) = (|| Ok::<_, WireError>((d.u64()?, d.string()?)))()
            .map_err(|e| wire_fail("hello", e))?;
        let mut k = self.known.lock();
        if k.instance != instance {
            if k.instance != 0 {
                tracing::info!("the real client restarted; shared pools are handed over again");
            }
            k.instance = instance;
            k.registered.clear();
        }
        k.hostname = hostname;
        Ok(s)
    }

    fn checkout(&self) -> Result<TcpStream> {
        loop {
            let next = self.idle.lock().pop();
            match next {
                Some((s, at)) if at.elapsed() < IDLE_REUSE && !is_dead(&s) => return Ok(s),
                Some(_) => continue,
                None => return self.open(),
            }
        }
    }

    fn checkin(&self, s: TcpStream) {
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push((s, Instant::now()));
        }
    }

    /// One request on `s`; the connection goes back to the pool only after a whole
    /// answer.
    fn exchange(&self, mut s: TcpStream, body: &[u8]) -> Result<Vec<u8>> {
        wire::write_frame(&mut s, body).map_err(|e| rpc_fail(format!("real client: {e}")))?;
        let answer = wire::read_frame(&mut s)
            .map_err(|e| wire_fail("answer", e))?
            .ok_or_else(|| rpc_fail("the real client closed the connection"))?;
        self.checkin(s);
        Ok(answer)
    }

    fn call(&self, body: &[u8]) -> Result<Vec<u8>> {
        let s = self.checkout()?;
        self.exchange(s, body)
    }

    /// Makes sure every pool in `pools` is mapped by the current real client, and
    /// that pools freed since are unmapped there (their memory goes only then).
    fn hand_over(&self, pools: &[std::sync::Arc<shm::Pool>]) -> Result<()> {
        let _one = self.registering.lock();
        let freed: Vec<usize> = {
            let mut k = self.known.lock();
            let now = shm::frees();
            if k.frees_seen == now {
                Vec::new()
            } else {
                k.frees_seen = now;
                let gone: Vec<u64> = k
                    .registered
                    .keys()
                    .copied()
                    .filter(|id| !shm::is_live(*id))
                    .collect();
                gone.iter()
                    .filter_map(|id| k.registered.remove(id))
                    .collect()
            }
        };
        for base in freed {
            let mut e = Enc::new(ops::UNREGISTER_POOL);
            e.u64(base as u64);
            // Best effort: a real client that is gone has no mapping left either.
            let _ = self.call(&e.buf);
        }
        for p in pools {
            let (instance, done) = {
                let k = self.known.lock();
                (k.instance, k.registered.contains_key(&p.id))
            };
            if done {
                continue;
            }
            self.register_pool(p)?;
            let mut k = self.known.lock();
            if k.instance == instance {
                k.registered.insert(p.id, p.base);
            }
        }
        Ok(())
    }

    fn register_pool(&self, p: &shm::Pool) -> Result<()> {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(self.ipc_name.as_bytes())
            .map_err(|e| rpc_fail(e.to_string()))?;
        let mut s = UnixStream::connect_addr(&addr).map_err(|e| {
            rpc_fail(format!(
                "cannot reach the real client's pool socket @{} (is it on this node, in this \
                 network namespace?): {e}",
                self.ipc_name
            ))
        })?;
        s.set_read_timeout(Some(CALL_TIMEOUT))
            .map_err(|e| rpc_fail(e.to_string()))?;
        wire::write_frame(&mut s, &self.hello_body()).map_err(|e| rpc_fail(e.to_string()))?;
        let answer = wire::read_frame(&mut s)
            .map_err(|e| wire_fail("hello", e))?
            .ok_or_else(|| rpc_fail("real client closed the pool socket"))?;
        let instance = Dec::new(&answer).u64().map_err(|e| wire_fail("hello", e))?;
        if instance != self.known.lock().instance {
            return Err(rpc_fail(
                "the pool socket belongs to another real client instance (it restarted)",
            ));
        }
        let mut e = Enc::new(ops::REGISTER_POOL);
        e.u64(self.token).u64(p.base as u64).u64(p.len as u64);
        let mut frame = (e.buf.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&e.buf);
        fdpass::send_with_fd(&s, &frame, p.fd()).map_err(|e| rpc_fail(e.to_string()))?;
        let answer = wire::read_frame(&mut s)
            .map_err(|e| wire_fail("pool", e))?
            .ok_or_else(|| rpc_fail("real client closed the pool socket"))?;
        let mut d = Dec::new(&answer);
        let (code, message) =
            (|| Ok::<_, WireError>((d.i32()?, d.string()?)))().map_err(|e| wire_fail("pool", e))?;
        if code != 0 {
            return Err(MooncakeError::new(
                ErrorCode::from_code(code),
                format!("the real client cannot map the shared pool: {message}"),
            ));
        }
        Ok(())
    }

    /// Pools behind every key's buffers; a key with a buffer outside every pool gets
    /// INVALID_PARAMS in `failed`.
    fn pools_of(
        &self,
        bufs: &[Vec<(usize, usize)>],
    ) -> (Vec<std::sync::Arc<shm::Pool>>, Vec<Option<i64>>) {
        let mut pools: Vec<std::sync::Arc<shm::Pool>> = Vec::new();
        let failed = bufs
            .iter()
            .map(|b| {
                for &(p, l) in b {
                    match shm::find(p, l) {
                        Some(pool) => {
                            if !pools.iter().any(|x| x.id == pool.id) {
                                pools.push(pool);
                            }
                        }
                        None => return Some(ErrorCode::InvalidParams.code() as i64),
                    }
                }
                None
            })
            .collect();
        (pools, failed)
    }

    /// A pointer call: keys whose buffers are in shared pools are sent, the others
    /// fail alone.
    fn pointer_call(
        &self,
        keys: &[String],
        bufs: &[Vec<(usize, usize)>],
        head: impl FnOnce(&mut Enc),
    ) -> Vec<i64> {
        let (pools, failed) = self.pools_of(bufs);
        let send: Vec<usize> = (0..keys.len()).filter(|&i| failed[i].is_none()).collect();
        let mut out: Vec<i64> = failed.iter().map(|f| f.unwrap_or(0)).collect();
        if send.is_empty() {
            return out;
        }
        let result = (|| {
            let s = self.checkout()?;
            self.hand_over(&pools)?;
            let mut e = Enc::default();
            head(&mut e);
            e.len(send.len());
            for &i in &send {
                e.str(&keys[i]);
                put_bufs(&mut e, &bufs[i]);
            }
            let answer = self.exchange(s, &e.buf)?;
            let mut d = Dec::new(&answer);
            let r = d.i64s().map_err(|e| wire_fail("answer", e))?;
            if r.len() != send.len() {
                return Err(rpc_fail("real client: wrong number of results"));
            }
            Ok(r)
        })();
        match result {
            Ok(r) => {
                for (i, v) in send.into_iter().zip(r) {
                    out[i] = v;
                }
            }
            Err(e) => {
                for i in send {
                    out[i] = e.code.code() as i64;
                }
            }
        }
        out
    }

    pub fn put_from(
        &self,
        keys: &[String],
        bufs: &[Vec<(usize, usize)>],
        rc: &ReplicateConfig,
        upsert: bool,
    ) -> Vec<i64> {
        self.pointer_call(keys, bufs, |e| {
            e.u8(ops::PUT_FROM).bool(upsert);
            put_rc(e, rc);
        })
    }

    pub fn get_into(&self, keys: &[String], bufs: &[Vec<(usize, usize)>]) -> Vec<i64> {
        self.pointer_call(keys, bufs, |e| {
            e.u8(ops::GET_INTO);
        })
    }

    /// Ranged reads: `(key, source offset, destination address, length)`.
    pub fn get_ranges(&self, frags: &[(&str, u64, usize, usize)]) -> Vec<i64> {
        let bufs: Vec<Vec<(usize, usize)>> = frags.iter().map(|f| vec![(f.2, f.3)]).collect();
        let (pools, failed) = self.pools_of(&bufs);
        let send: Vec<usize> = (0..frags.len()).filter(|&i| failed[i].is_none()).collect();
        let mut out: Vec<i64> = failed.iter().map(|f| f.unwrap_or(0)).collect();
        if send.is_empty() {
            return out;
        }
        let result = (|| {
            let s = self.checkout()?;
            self.hand_over(&pools)?;
            let mut e = Enc::new(ops::GET_RANGES);
            e.len(send.len());
            for &i in &send {
                let (k, src, p, l) = frags[i];
                e.str(k).u64(src).u64(p as u64).u64(l as u64);
            }
            let answer = self.exchange(s, &e.buf)?;
            let r = Dec::new(&answer)
                .i64s()
                .map_err(|e| wire_fail("answer", e))?;
            if r.len() != send.len() {
                return Err(rpc_fail("real client: wrong number of results"));
            }
            Ok(r)
        })();
        match result {
            Ok(r) => send.into_iter().zip(r).for_each(|(i, v)| out[i] = v),
            Err(e) => send.into_iter().for_each(|i| out[i] = e.code.code() as i64),
        }
        out
    }

    /// Values sent through the socket: `(key, parts)` each.
    pub fn put_values(
        &self,
        items: &[(&str, Vec<&[u8]>)],
        rc: &ReplicateConfig,
        upsert: bool,
    ) -> Vec<i32> {
        let mut e = Enc::new(ops::PUT_VALUES);
        e.bool(upsert);
        put_rc(&mut e, rc);
        e.len(items.len());
        for (k, parts) in items {
            e.str(k).len(parts.len());
            for p in parts {
                e.bytes(p);
            }
        }
        self.codes(&e.buf, items.len())
    }

    fn codes(&self, body: &[u8], n: usize) -> Vec<i32> {
        let r = self.call(body).and_then(|a| {
            let v = Dec::new(&a).i32s().map_err(|e| wire_fail("answer", e))?;
            if v.len() == n {
                Ok(v)
            } else {
                Err(rpc_fail("real client: wrong number of results"))
            }
        });
        r.unwrap_or_else(|e| vec![e.code.code(); n])
    }

    fn scalar(&self, body: &[u8]) -> Result<i64> {
        let a = self.call(body)?;
        Dec::new(&a).i64().map_err(|e| wire_fail("answer", e))
    }

    pub fn get_values(&self, keys: &[String]) -> Vec<Result<Vec<u8>>> {
        let mut e = Enc::new(ops::GET_VALUES);
        e.strs(keys);
        let r = self.call(&e.buf).and_then(|a| {
            let mut d = Dec::new(&a);
            let n = d.len(8).map_err(|e| wire_fail("answer", e))?;
            if n != keys.len() {
                return Err(rpc_fail("real client: wrong number of results"));
            }
            (0..n)
                .map(|i| {
                    let c = d.i32().map_err(|e| wire_fail("answer", e))?;
                    let v = d.bytes().map_err(|e| wire_fail("answer", e))?;
                    Ok(if c == 0 {
                        Ok(v.to_vec())
                    } else {
                        Err(MooncakeError::new(
                            ErrorCode::from_code(c),
                            format!("get {:?}", keys[i]),
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()
        });
        r.unwrap_or_else(|e| keys.iter().map(|_| Err(e.clone())).collect())
    }

    /// 1, 0 or a negative code per key.
    pub fn exist(&self, keys: &[String]) -> Vec<i32> {
        let mut e = Enc::new(ops::EXIST);
        e.strs(keys);
        self.codes(&e.buf, keys.len())
    }

    pub fn get_size(&self, key: &str) -> i64 {
        let mut e = Enc::new(ops::GET_SIZE);
        e.str(key);
        self.scalar(&e.buf).unwrap_or_else(|e| e.code.code() as i64)
    }

    pub fn remove(&self, keys: &[String], force: bool) -> Vec<i32> {
        let mut e = Enc::new(ops::REMOVE);
        e.strs(keys).bool(force);
        self.codes(&e.buf, keys.len())
    }

    pub fn remove_all(&self, force: bool) -> i64 {
        let mut e = Enc::new(ops::REMOVE_ALL);
        e.bool(force);
        self.scalar(&e.buf).unwrap_or_else(|e| e.code.code() as i64)
    }

    pub fn remove_by_regex(&self, pattern: &str, force: bool) -> i64 {
        let mut e = Enc::new(ops::REMOVE_BY_REGEX);
        e.str(pattern).bool(force);
        self.scalar(&e.buf).unwrap_or_else(|e| e.code.code() as i64)
    }

    /// 0 healthy, 2 when the real client or its master cannot be reached.
    pub fn health(&self) -> i32 {
        let a = self.call(&[ops::HEALTH]);
        match a.and_then(|a| Dec::new(&a).i32().map_err(|e| wire_fail("answer", e))) {
            Ok(h) => h,
            Err(_) => mooncake_client::Health::MasterUnreachable as i32,
        }
    }

    /// The real client's location cache counters (shared by every dummy attached to
    /// it); `None` when it cannot be asked (gone, or too old to know the call).
    pub fn location_cache_stats(&self) -> Option<mooncake_client::LocationCacheStats> {
        let a = self.call(&[ops::LOCATION_STATS]).ok()?;
        let mut d = Dec::new(&a);
        let st = mooncake_client::LocationCacheStats {
            hits: d.u64().ok()?,
            misses: d.u64().ok()?,
            stale: d.u64().ok()?,
            entries: d.u64().ok()?,
        };
        Some(st)
    }

    /// Per key: the object's size and its replicas, or a code.
    pub fn replica_descs(&self, keys: &[String]) -> Vec<Result<(u64, Vec<ReplicaView>)>> {
        let mut e = Enc::new(ops::REPLICA_DESC);
        e.strs(keys);
        let r = self.call(&e.buf).and_then(|a| {
            let mut d = Dec::new(&a);
            let parse = |d: &mut Dec<'_>| -> std::result::Result<_, WireError> {
                let n = d.len(16)?;
                let mut out = Vec::with_capacity(n);
                for _ in 0..n {
                    let c = d.i32()?;
                    let size = d.u64()?;
                    let m = d.len(24)?;
                    let reps = (0..m)
                        .map(|_| get_replica(d))
                        .collect::<std::result::Result<Vec<_>, _>>()?;
                    out.push(if c == 0 {
                        Ok((size, reps))
                    } else {
                        Err(MooncakeError::new(
                            ErrorCode::from_code(c),
                            "get_replica_desc",
                        ))
                    });
                }
                Ok(out)
            };
            let v = parse(&mut d).map_err(|e| wire_fail("answer", e))?;
            if v.len() == keys.len() {
                Ok(v)
            } else {
                Err(rpc_fail("real client: wrong number of results"))
            }
        });
        r.unwrap_or_else(|e| keys.iter().map(|_| Err(e.clone())).collect())
    }

    /// Says goodbye (the real client unmaps this dummy's pools) and closes the
    /// connections. Best effort: a real client that is gone forgets us on its own.
    pub fn close(&self) {
        if let Ok(s) = self.checkout() {
            let _ = self.exchange(s, &[ops::BYE]);
        }
        self.idle.lock().clear();
    }
}
