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

fn tag_of(secret: &[u8], tenant: &str, signed: &[u8]) -> hmac::Tag {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(DOMAIN);
    ctx.update(&(tenant.len() as u16).to_le_bytes());
    ctx.update(tenant.as_bytes());
    ctx.update(signed);
    ctx.sign()
}

impl Grant {
    /// The wire grant for `tenant`, signed with the segment's `secret`. `None` for a
    /// segment name too long to carry.
    pub fn sign(&self, secret: &[u8], tenant: &str) -> Option<Vec<u8>> {
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
        let tag = tag_of(secret, tenant, &b);
        b.extend_from_slice(tag.as_ref());
        Some(b)
    }

    /// Parses a wire grant without checking its tag (the data port looks the
    /// segment's secret up by the name first). Returns the grant, the signed bytes
    /// and the tag.
    pub fn parse(b: &[u8]) -> Result<(Grant, &[u8], &[u8]), String> {
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
            .map_err(|_| "grant segment name is not UTF-8".to_string())?
            .to_string();
        let g = Grant {
            segment,
            addr: u64_at(9),
            len: u64_at(17),
            generation: u64_at(25),
            expires_ms: u64_at(1),
        };
        if g.addr.checked_add(g.len).is_none() {
            return Err("grant range wraps".into());
        }
        let (signed, tag) = b.split_at(HEAD_LEN + name_len);
        Ok((g, signed, tag))
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
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let mut msg = Vec::with_capacity(DOMAIN.len() + 2 + tenant.len() + signed.len());
        msg.extend_from_slice(DOMAIN);
        msg.extend_from_slice(&(tenant.len() as u16).to_le_bytes());
        msg.extend_from_slice(tenant.as_bytes());
        msg.extend_from_slice(signed);
        hmac::verify(&key, &msg, tag).map_err(|_| {
            "the grant's tag does not verify (forged, issued to another tenant, or signed with a secret this segment no longer has)".to_string()
        })?;
        if g.expires_ms.saturating_add(CLOCK_SKEW.as_millis() as u64) < now {
            return Err(format!("the grant expired {} ms ago", now - g.expires_ms));
        }
        Ok(())
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
}
