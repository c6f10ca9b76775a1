//! Capabilities for the data port: what lets a tenant's peer reach one allocation of a
//! store's memory, and nothing else.
//!
//! With authentication on, a data connection is bound to the tenant its token names.
//! The `cluster` tenant (stores, operators) may address a store's memory anywhere; any
//! other tenant only where a *grant* allows it. The master hands a grant out with each
//! replica location it answers to a tenant (lookups, write starts): the allocation's
//! segment, absolute address range and generation, an expiry, and an HMAC tag over
//! those and the tenant, keyed with a secret of that segment. The master draws the
//! segment's secret when the segment is mounted and returns it to the mounting owner
//! (proved by its own token), whose data port then checks grants with it. A client
//! never reads a grant: it forwards the bytes to the data port before the reads and
//! writes the grant covers.
//!
//! Wire form (little-endian):
//! ```text
//! 0  version u8 = 1      1  expires (unix ms) u64   9  address u64   17 length u64
//! 25 generation u64      33 name length u16         35 segment name  .. tag (32 bytes)
//! ```
//! The tag is `HMAC-SHA256(secret, "mooncake-grant-v1" ‖ tenant length u16 ‖ tenant ‖
//! everything before the tag)`: a grant issued to one tenant is worth nothing on a
//! connection proved by another, and changing any field breaks it.
//!
//! Expiries are rounded down to a step of an eighth of the window ([`expiry_at`]), so
//! the master answers the same bytes for the same allocation and tenant for that long.
//! That is what keeps a tenant's hot gets cheap: the client's location cache keeps its
//! entry, a connection that carried the grant does not carry it again, and the data
//! port does not check it again. A grant never lives longer than the window.

use ring::hmac;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Length of a segment's grant secret.
pub const SECRET_LEN: usize = 32;
/// Length of a grant's tag.
pub const TAG_LEN: usize = 32;
/// Longest segment name a grant carries.
pub const MAX_NAME_LEN: usize = 1024;
/// Largest wire grant.
pub const MAX_GRANT_LEN: usize = HEAD_LEN + MAX_NAME_LEN + TAG_LEN;
/// How long a grant is good for after the master issued it, unless the master is
/// told otherwise (`--grant_ttl_sec`). A reader's lease is
/// shorter, so once the allocation is freed and handed to another object, a grant
/// for it still works for at most this long: the window a tenant keeps on memory it
/// was allowed to read (see docs/security.md, "Data port").
pub const GRANT_TTL: Duration = Duration::from_secs(60);
/// How far a store's clock may run behind the master's before a fresh grant is
/// refused as expired (and ahead: how much longer an old one still works).
pub const CLOCK_SKEW: Duration = Duration::from_secs(30);

const VERSION: u8 = 1;
const HEAD_LEN: usize = 35;
const DOMAIN: &[u8] = b"mooncake-grant-v1";

/// The fields of a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub segment: String,
    /// Absolute address of the allocation in the segment owner's memory.
    pub addr: u64,
    pub len: u64,
    pub generation: u64,
    /// Unix time in milliseconds after which the grant is refused.
    pub expires_ms: u64,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A fresh random segment secret.
pub fn new_secret() -> [u8; SECRET_LEN] {
    crate::auth::random_bytes::<SECRET_LEN>()
}

/// A segment secret made ready to sign and check grants with (the HMAC key's inner
/// and outer pads computed once, not per grant).
#[derive(Clone)]
pub struct GrantKey {
    secret: [u8; SECRET_LEN],
    key: hmac::Key,
}

impl GrantKey {
    pub fn new(secret: [u8; SECRET_LEN]) -> Self {
        Self {
            secret,
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
        }
    }

    /// The secret this key was made from.
    pub fn secret(&self) -> &[u8; SECRET_LEN] {
        &self.secret
    }
}

impl std::fmt::Debug for GrantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GrantKey(..)")
    }
}

/// When a grant issued at `now` (Unix ms) for a window of `ttl` expires: `now + ttl`
/// rounded down to a step of `ttl / 8` (at least 1 ms), so every grant issued within
/// one step for the same allocation and tenant is the same bytes, and none lives
/// longer than `ttl` (at least `ttl` minus one step).
pub fn expiry_at(now: u64, ttl: Duration) -> u64 {
    let ttl = ttl.as_millis() as u64;
    let step = (ttl / 8).max(1);
    now.saturating_add(ttl) / step * step
}

fn tag_of(key: &hmac::Key, tenant: &str, signed: &[u8]) -> hmac::Tag {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(DOMAIN);
    ctx.update(&(tenant.len() as u16).to_le_bytes());
    ctx.update(tenant.as_bytes());
    ctx.update(signed);
    ctx.sign()
}

/// Equality in time that depends only on the lengths.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && std::hint::black_box(a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y))) == 0
}

/// A wire grant's fields, borrowed from the bytes it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantView<'a> {
    pub segment: &'a str,
    pub addr: u64,
    pub len: u64,
    pub generation: u64,
    pub expires_ms: u64,
    /// The bytes the tag covers.
    pub signed: &'a [u8],
    pub tag: &'a [u8],
}

impl GrantView<'_> {
    /// Checks the tag for `tenant` with the segment's `key` (in constant time) and the
    /// expiry against `now` (Unix ms).
    pub fn verify_at(&self, key: &GrantKey, tenant: &str, now: u64) -> Result<(), String> {
        if !same_bytes(tag_of(&key.key, tenant, self.signed).as_ref(), self.tag) {
            return Err("the grant's tag does not verify (forged, issued to another tenant, or signed with a secret this segment no longer has)".to_string());
        }
        if self
            .expires_ms
            .saturating_add(CLOCK_SKEW.as_millis() as u64)
            < now
        {
            return Err(format!(
                "the grant expired {} ms ago",
                now - self.expires_ms
            ));
        }
        Ok(())
    }
}

impl Grant {
    /// The wire grant for `tenant`, signed with the segment's `secret`. `None` for a
    /// segment name too long to carry, or a secret not [`SECRET_LEN`] bytes long.
    pub fn sign(&self, secret: &[u8], tenant: &str) -> Option<Vec<u8>> {
        let secret: [u8; SECRET_LEN] = secret.try_into().ok()?;
        self.sign_with(&GrantKey::new(secret), tenant)
    }

    /// [`Grant::sign`] with a prepared key.
    pub fn sign_with(&self, key: &GrantKey, tenant: &str) -> Option<Vec<u8>> {
        if self.segment.len() > MAX_NAME_LEN {
            return None;
        }
        let mut b = Vec::with_capacity(HEAD_LEN + self.segment.len() + TAG_LEN);
        b.push(VERSION);
        b.extend_from_slice(&self.expires_ms.to_le_bytes());
        b.extend_from_slice(&self.addr.to_le_bytes());
        b.extend_from_slice(&self.len.to_le_bytes());
        b.extend_from_slice(&self.generation.to_le_bytes());
        b.extend_from_slice(&(self.segment.len() as u16).to_le_bytes());
        b.extend_from_slice(self.segment.as_bytes());
        let tag = tag_of(&key.key, tenant, &b);
        b.extend_from_slice(tag.as_ref());
        Some(b)
    }

    /// Parses a wire grant without checking its tag (the data port looks the
    /// segment's secret up by the name first). Returns the grant, the signed bytes
    /// and the tag.
    pub fn parse(b: &[u8]) -> Result<(Grant, &[u8], &[u8]), String> {
        let v = Self::view(b)?;
        let g = Grant {
            segment: v.segment.to_string(),
            addr: v.addr,
            len: v.len,
            generation: v.generation,
            expires_ms: v.expires_ms,
        };
        Ok((g, v.signed, v.tag))
    }

    /// [`Grant::parse`] without copying anything.
    pub fn view(b: &[u8]) -> Result<GrantView<'_>, String> {
        if b.len() < HEAD_LEN + TAG_LEN || b.len() > MAX_GRANT_LEN {
            return Err(format!("grant of {} bytes", b.len()));
        }
        if b[0] != VERSION {
            return Err(format!("grant version {}", b[0]));
        }
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        let name_len = u16::from_le_bytes([b[33], b[34]]) as usize;
        if HEAD_LEN + name_len + TAG_LEN != b.len() {
            return Err("grant length does not match its segment name".into());
        }
        let segment = std::str::from_utf8(&b[HEAD_LEN..HEAD_LEN + name_len])
            .map_err(|_| "grant segment name is not UTF-8".to_string())?;
        let (addr, len) = (u64_at(9), u64_at(17));
        if addr.checked_add(len).is_none() {
            return Err("grant range wraps".into());
        }
        let (signed, tag) = b.split_at(HEAD_LEN + name_len);
        Ok(GrantView {
            segment,
            addr,
            len,
            generation: u64_at(25),
            expires_ms: u64_at(1),
            signed,
            tag,
        })
    }

    /// Checks a wire grant's tag for `tenant` against the segment's `secret` (in
    /// constant time), and its expiry against this host's clock.
    pub fn verify(
        secret: &[u8],
        tenant: &str,
        signed: &[u8],
        tag: &[u8],
        g: &Grant,
    ) -> Result<(), String> {
        Self::verify_at(secret, tenant, signed, tag, g, now_ms())
    }

    /// [`Grant::verify`] as of `now` (Unix milliseconds).
    pub fn verify_at(
        secret: &[u8],
        tenant: &str,
        signed: &[u8],
        tag: &[u8],
        g: &Grant,
        now: u64,
    ) -> Result<(), String> {
        let secret: [u8; SECRET_LEN] = secret
            .try_into()
            .map_err(|_| format!("a grant secret of {} bytes", secret.len()))?;
        GrantView {
            segment: &g.segment,
            addr: g.addr,
            len: g.len,
            generation: g.generation,
            expires_ms: g.expires_ms,
            signed,
            tag,
        }
        .verify_at(&GrantKey::new(secret), tenant, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            segment: "127.0.0.1:1234".into(),
            addr: 0x1000,
            len: 4096,
            generation: 7,
            expires_ms: now_ms() + 60_000,
        }
    }

    #[test]
    fn signed_grants_verify_for_their_tenant_only() {
        let secret = new_secret();
        let g = grant();
        let b = g.sign(&secret, "alpha").unwrap();
        let (back, signed, tag) = Grant::parse(&b).unwrap();
        assert_eq!(back, g);
        assert!(Grant::verify(&secret, "alpha", signed, tag, &back).is_ok());
        assert!(Grant::verify(&secret, "beta", signed, tag, &back).is_err());
        assert!(Grant::verify(&new_secret(), "alpha", signed, tag, &back).is_err());
        // Any changed field breaks the tag.
        for i in [1, 9, 17, 25, 36] {
            let mut bad = b.clone();
            bad[i] ^= 1;
            let (g2, s2, t2) = Grant::parse(&bad).unwrap();
            assert!(
                Grant::verify(&secret, "alpha", s2, t2, &g2).is_err(),
                "byte {i}"
            );
        }
    }

    #[test]
    fn expired_and_malformed_grants_are_refused() {
        let secret = new_secret();
        let mut g = grant();
        g.expires_ms = now_ms() - CLOCK_SKEW.as_millis() as u64 - 1000;
        let b = g.sign(&secret, "alpha").unwrap();
        let (back, signed, tag) = Grant::parse(&b).unwrap();
        let e = Grant::verify(&secret, "alpha", signed, tag, &back).unwrap_err();
        assert!(e.contains("expired"), "{e}");
        assert!(Grant::parse(&b[..b.len() - 1]).is_err());
        assert!(Grant::parse(&[]).is_err());
        let mut v = b.clone();
        v[0] = 9;
        assert!(Grant::parse(&v).is_err());
        let mut wrap = grant();
        wrap.addr = u64::MAX;
        assert!(Grant::parse(&wrap.sign(&secret, "a").unwrap()).is_err());
        let long = Grant {
            segment: "x".repeat(MAX_NAME_LEN + 1),
            ..grant()
        };
        assert!(long.sign(&secret, "a").is_none());
    }

    #[test]
    fn expiries_step_down_so_one_allocation_gets_the_same_bytes_for_a_while() {
        let ttl = Duration::from_secs(60);
        let step = 7_500;
        let t = 1_000_000_000_000u64;
        for now in [t, t + 1, t + 4_999, t + 7_499] {
            let e = expiry_at(now, ttl);
            assert!(e <= now + 60_000 && e > now + 60_000 - step, "{now} -> {e}");
            assert_eq!(e % step, 0);
        }
        // Grants issued within one step are the same bytes; the view agrees with
        // the parsed grant and verifies with a prepared key.
        let key = GrantKey::new(new_secret());
        let at = |now| Grant {
            expires_ms: expiry_at(now, ttl),
            ..grant()
        };
        let base = t / step * step;
        let a = at(base).sign_with(&key, "alpha").unwrap();
        assert_eq!(a, at(base + step - 1).sign_with(&key, "alpha").unwrap());
        assert_ne!(a, at(base + step).sign_with(&key, "alpha").unwrap());
        let v = Grant::view(&a).unwrap();
        assert_eq!(v.expires_ms, expiry_at(base, ttl));
        assert!(v.verify_at(&key, "alpha", base).is_ok());
        assert!(v.verify_at(&key, "beta", base).is_err());
        assert!(v
            .verify_at(&GrantKey::new(new_secret()), "alpha", base)
            .is_err());
        // A tiny window still expires.
        assert_eq!(expiry_at(5, Duration::from_millis(3)), 8);
    }
}
