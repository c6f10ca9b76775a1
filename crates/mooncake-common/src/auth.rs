//! Authentication and tenants: the pieces every surface shares.
//!
//! A master started with `--auth_token_file` holds a [`TokenSet`]: one token per
//! line, or `tenant:token` (a bare token belongs to the [`CLUSTER_TENANT`], the
//! infrastructure's tenant, so a one-token deployment is one tenant). Peers hold a
//! [`Credential`] (`MOONCAKE_AUTH_TOKEN_FILE` or `MOONCAKE_AUTH_TOKEN`).
//!
//! Connection-oriented protocols prove the token by challenge-response so that the
//! token never crosses the wire: the server sends a fresh random [`Challenge`], the
//! peer answers `HMAC-SHA256(token, DOMAIN || purpose || challenge || peer_nonce)`
//! ([`Credential::prove`]), and the server finds the token that gives the same proof
//! ([`TokenSet::verify`]); the token it finds names the connection's tenant. The
//! purpose string keeps a proof made for one surface (say the data port) from being
//! replayed on another. HTTP takes `Authorization: Bearer <token>`
//! ([`TokenSet::tenant_of_bearer`]), which is why TLS is advised where the network
//! is not trusted.
//!
//! Keys are namespaced per tenant inside the master ([`namespaced_key`]): a tenant's
//! key `k` is stored as `tenant` + [`TENANT_SEPARATOR`] + `k`; the cluster tenant's
//! keys are stored as given, and it reaches every tenant's keys by naming them whole.

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The infrastructure's tenant: stores and operators; its segments serve every tenant.
pub const CLUSTER_TENANT: &str = "cluster";

/// Separates a tenant's name from its key inside the master. A unit separator: no
/// engine's key contains one, and a tenant name may not.
pub const TENANT_SEPARATOR: char = '\u{1f}';

/// Length of a server's challenge and of a proof.
pub const CHALLENGE_LEN: usize = 32;
pub const PROOF_LEN: usize = 32;
/// Longest accepted token and tenant name: bounds what a peer can make us hash.
pub const MAX_TOKEN_LEN: usize = 4096;
pub const MAX_TENANT_LEN: usize = 128;

const DOMAIN: &[u8] = b"mooncake-auth-v1\0";

/// What went wrong with a token file or a token; the message names the cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError(pub String);

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AuthError {}

/// Whether `name` may name a tenant: 1..=128 of `[A-Za-z0-9._-]`.
pub fn valid_tenant(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TENANT_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The key the master stores for `tenant`'s `key`.
pub fn namespaced_key(tenant: &str, key: &str) -> String {
    if tenant == CLUSTER_TENANT {
        return key.to_string();
    }
    let mut k = String::with_capacity(tenant.len() + 1 + key.len());
    k.push_str(tenant);
    k.push(TENANT_SEPARATOR);
    k.push_str(key);
    k
}

/// The tenant an internal key belongs to and the key as that tenant named it.
pub fn split_key(internal: &str) -> (&str, &str) {
    match internal.split_once(TENANT_SEPARATOR) {
        Some((t, k)) if valid_tenant(t) => (t, k),
        _ => (CLUSTER_TENANT, internal),
    }
}

/// How `viewer` sees an internal key: its own keys without the prefix, others' not at
/// all (`None`); the cluster tenant sees every key whole.
pub fn visible_key<'a>(viewer: &str, internal: &'a str) -> Option<&'a str> {
    if viewer == CLUSTER_TENANT {
        return Some(internal);
    }
    match split_key(internal) {
        (t, k) if t == viewer => Some(k),
        _ => None,
    }
}

/// A server's fresh random challenge.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Challenge(pub [u8; CHALLENGE_LEN]);

impl Challenge {
    pub fn random() -> Challenge {
        let mut b = [0u8; CHALLENGE_LEN];
        SystemRandom::new()
            .fill(&mut b)
            .expect("the system random source is unavailable");
        Challenge(b)
    }
}

impl fmt::Debug for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Challenge(..)")
    }
}

/// Random bytes for a peer's own nonce or a session ticket.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .expect("the system random source is unavailable");
    b
}

fn proof_of(token: &[u8], purpose: &str, challenge: &Challenge, peer_nonce: &[u8]) -> hmac::Tag {
    let key = hmac::Key::new(hmac::HMAC_SHA256, token);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(DOMAIN);
    ctx.update(purpose.as_bytes());
    ctx.update(&[0]);
    ctx.update(&challenge.0);
    ctx.update(peer_nonce);
    ctx.sign()
}

/// The secret a peer proves. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    token: Vec<u8>,
    /// Where it came from, for messages ("MOONCAKE_AUTH_TOKEN_FILE=/run/token").
    pub source: String,
    file: Option<PathBuf>,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credential(from {})", self.source)
    }
}

impl Credential {
    /// A credential given inline.
    pub fn from_token(token: &str, source: &str) -> Result<Credential, AuthError> {
        Ok(Credential {
            token: check_token(token.trim(), source)?.as_bytes().to_vec(),
            source: source.to_string(),
            file: None,
        })
    }

    /// A credential read from a file: its first non-empty line, trimmed. Read again by
    /// [`Credential::reload`] so a rotated file is picked up without a restart.
    pub fn from_file(path: &Path) -> Result<Credential, AuthError> {
        let source = format!("token file {}", path.display());
        let text = std::fs::read_to_string(path)
            .map_err(|e| AuthError(format!("cannot read {source}: {e}")))?;
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or_else(|| AuthError(format!("{source} is empty")))?;
        // A peer's file may hold the master's `tenant:token` form: the token is what it proves.
        let token = line.split_once(':').map_or(line, |(_, t)| t.trim());
        Ok(Credential {
            token: check_token(token, &source)?.as_bytes().to_vec(),
            source,
            file: Some(path.to_path_buf()),
        })
    }

    /// The same credential read again from its file (a rotated token); itself if inline
    /// or if the file cannot be read now.
    pub fn reload(&self) -> Credential {
        match &self.file {
            Some(p) => Credential::from_file(p).unwrap_or_else(|_| self.clone()),
            None => self.clone(),
        }
    }

    /// The answer to `challenge` for `purpose`, with this peer's own `peer_nonce`.
    pub fn prove(
        &self,
        purpose: &str,
        challenge: &Challenge,
        peer_nonce: &[u8],
    ) -> [u8; PROOF_LEN] {
        let tag = proof_of(&self.token, purpose, challenge, peer_nonce);
        let mut out = [0u8; PROOF_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// The token as an HTTP bearer credential.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", String::from_utf8_lossy(&self.token))
    }
}

fn check_token<'a>(token: &'a str, source: &str) -> Result<&'a str, AuthError> {
    if token.is_empty() {
        return Err(AuthError(format!("{source}: the token is empty")));
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(AuthError(format!(
            "{source}: the token is longer than {MAX_TOKEN_LEN} bytes"
        )));
    }
    if token.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(AuthError(format!(
            "{source}: the token contains spaces or control characters"
        )));
    }
    Ok(token)
}

#[derive(Clone)]
struct Entry {
    tenant: Arc<str>,
    token: Vec<u8>,
}

/// The tokens a master accepts, each naming its tenant.
#[derive(Clone, Default)]
pub struct TokenSet {
    entries: Vec<Entry>,
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenSet({} tokens)", self.entries.len())
    }
}

impl TokenSet {
    /// Parses a token file: one `token` or `tenant:token` per line; blank lines and
    /// lines starting with `#` are skipped. An empty set is an error (authentication
    /// on with nobody able to pass is a misconfiguration, not a lock-down).
    pub fn parse(text: &str, source: &str) -> Result<TokenSet, AuthError> {
        let mut entries: Vec<Entry> = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = format!("{source} line {}", n + 1);
            let (tenant, token) = match line.split_once(':') {
                Some((t, tok)) => (t.trim(), tok.trim()),
                None => (CLUSTER_TENANT, line),
            };
            if !valid_tenant(tenant) {
                return Err(AuthError(format!(
                    "{at}: {tenant:?} is not a tenant name (1 to {MAX_TENANT_LEN} of A-Z a-z 0-9 . _ -)"
                )));
            }
            let token = check_token(token, &at)?;
            if entries.iter().any(|e| e.token == token.as_bytes()) {
                return Err(AuthError(format!(
                    "{at}: the same token is listed twice (a token names one tenant)"
                )));
            }
            entries.push(Entry {
                tenant: tenant.into(),
                token: token.as_bytes().to_vec(),
            });
        }
        if entries.is_empty() {
            return Err(AuthError(format!("{source} holds no token")));
        }
        Ok(TokenSet { entries })
    }

    pub fn load(path: &Path) -> Result<TokenSet, AuthError> {
        let source = format!("token file {}", path.display());
        let text = std::fs::read_to_string(path)
            .map_err(|e| AuthError(format!("cannot read {source}: {e}")))?;
        TokenSet::parse(&text, &source)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The tenants named, each once.
    pub fn tenants(&self) -> Vec<String> {
        let mut t: Vec<String> = self.entries.iter().map(|e| e.tenant.to_string()).collect();
        t.sort();
        t.dedup();
        t
    }

    /// A credential for one of `tenant`'s tokens (the first listed): what a master
    /// proves when it is itself a peer of another master (a standby following its
    /// leader proves the `cluster` tenant).
    pub fn credential_for(&self, tenant: &str) -> Option<Credential> {
        self.entries
            .iter()
            .find(|e| &*e.tenant == tenant)
            .map(|e| Credential {
                token: e.token.clone(),
                source: format!("the {tenant} tenant's token"),
                file: None,
            })
    }

    /// The tenant whose token `proof` proves, if any. Every token is tried, so the
    /// time taken does not say which one came close.
    pub fn verify(
        &self,
        purpose: &str,
        challenge: &Challenge,
        peer_nonce: &[u8],
        proof: &[u8],
    ) -> Option<Arc<str>> {
        let mut found = None;
        for e in &self.entries {
            let key = hmac::Key::new(hmac::HMAC_SHA256, &e.token);
            let mut msg = Vec::with_capacity(
                DOMAIN.len() + purpose.len() + 1 + CHALLENGE_LEN + peer_nonce.len(),
            );
            msg.extend_from_slice(DOMAIN);
            msg.extend_from_slice(purpose.as_bytes());
            msg.push(0);
            msg.extend_from_slice(&challenge.0);
            msg.extend_from_slice(peer_nonce);
            if hmac::verify(&key, &msg, proof).is_ok() && found.is_none() {
                found = Some(e.tenant.clone());
            }
        }
        found
    }

    /// The tenant of an `Authorization` header value (`Bearer <token>`), if it names a
    /// listed token. Compared in constant time per token.
    pub fn tenant_of_bearer(&self, header: &str) -> Option<Arc<str>> {
        let presented = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))?
            .trim()
            .as_bytes();
        let mut found = None;
        for e in &self.entries {
            if constant_time_eq(&e.token, presented) && found.is_none() {
                found = Some(e.tenant.clone());
            }
        }
        found
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A token file the master re-reads when it changes, so tokens rotate without a
/// restart (list old and new together for the overlap, then drop the old). A file
/// that becomes unreadable or empty keeps the last good set, with an error returned
/// to log.
pub struct TokenFile {
    path: PathBuf,
    state: Mutex<(Option<SystemTime>, Arc<TokenSet>)>,
}

impl TokenFile {
    /// Reads the file once; an error here stops the master from starting.
    pub fn open(path: &Path) -> Result<TokenFile, AuthError> {
        let set = TokenSet::load(path)?;
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        Ok(TokenFile {
            path: path.to_path_buf(),
            state: Mutex::new((mtime, Arc::new(set))),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tokens in force.
    pub fn current(&self) -> Arc<TokenSet> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    /// Reads the file again if it changed since the last read. `Ok(true)` when the set
    /// was replaced; an error (the old set stays) when the new content is bad.
    pub fn reload_if_changed(&self) -> Result<bool, AuthError> {
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .map_err(|e| {
                AuthError(format!(
                    "cannot read token file {}: {e}",
                    self.path.display()
                ))
            })?;
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.0 == Some(mtime) {
            return Ok(false);
        }
        st.0 = Some(mtime);
        let set = TokenSet::load(&self.path)?;
        st.1 = Arc::new(set);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_tenants_and_bare_tokens() {
        let s = TokenSet::parse("# ops\nroot-token\nalpha: tok-a\n\nbeta:tok-b\n", "t").unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s.tenants(), vec!["alpha", "beta", "cluster"]);
        assert_eq!(s.tenant_of_bearer("Bearer tok-a").as_deref(), Some("alpha"));
        assert_eq!(
            s.tenant_of_bearer("Bearer root-token").as_deref(),
            Some("cluster")
        );
        assert_eq!(s.tenant_of_bearer("Bearer tok-"), None);
        assert_eq!(s.tenant_of_bearer("tok-a"), None);
    }

    #[test]
    fn bad_files_name_the_line() {
        assert!(TokenSet::parse("", "f")
            .unwrap_err()
            .0
            .contains("holds no token"));
        let e = TokenSet::parse("a:x\nb c:y\n", "f").unwrap_err();
        assert!(e.0.contains("line 2"), "{e}");
        let e = TokenSet::parse("a:x\nb:x\n", "f").unwrap_err();
        assert!(e.0.contains("twice"), "{e}");
        let e = TokenSet::parse("a:\n", "f").unwrap_err();
        assert!(e.0.contains("empty"), "{e}");
    }

    #[test]
    fn proof_names_the_tenant_and_binds_purpose_and_challenge() {
        let s = TokenSet::parse("alpha:tok-a\nbeta:tok-b\n", "t").unwrap();
        let c = Challenge::random();
        let cred = Credential::from_token("tok-b", "test").unwrap();
        let p = cred.prove("rpc", &c, b"nonce");
        assert_eq!(s.verify("rpc", &c, b"nonce", &p).as_deref(), Some("beta"));
        assert_eq!(s.verify("data", &c, b"nonce", &p), None);
        assert_eq!(s.verify("rpc", &Challenge::random(), b"nonce", &p), None);
        assert_eq!(s.verify("rpc", &c, b"other", &p), None);
        let wrong = Credential::from_token("tok-c", "test").unwrap();
        assert_eq!(
            s.verify("rpc", &c, b"nonce", &wrong.prove("rpc", &c, b"nonce")),
            None
        );
        assert_eq!(s.verify("rpc", &c, b"nonce", &p[..16]), None);
    }

    #[test]
    fn keys_are_namespaced_per_tenant() {
        let k = namespaced_key("alpha", "k");
        assert_ne!(k, namespaced_key("beta", "k"));
        assert_eq!(namespaced_key(CLUSTER_TENANT, "k"), "k");
        assert_eq!(split_key(&k), ("alpha", "k"));
        assert_eq!(split_key("plain"), (CLUSTER_TENANT, "plain"));
        assert_eq!(visible_key("alpha", &k), Some("k"));
        assert_eq!(visible_key("beta", &k), None);
        assert_eq!(visible_key("beta", "plain"), None);
        assert_eq!(visible_key(CLUSTER_TENANT, &k), Some(k.as_str()));
    }

    #[test]
    fn token_files_reload_and_keep_the_last_good_set() {
        let dir = std::env::temp_dir().join(format!("mc-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("tokens");
        std::fs::write(&p, "alpha:one\n").unwrap();
        let f = TokenFile::open(&p).unwrap();
        assert!(f.current().tenant_of_bearer("Bearer one").is_some());
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&p, "alpha:one\nalpha:two\n").unwrap();
        let _ = f.reload_if_changed();
        assert!(f.current().tenant_of_bearer("Bearer two").is_some());
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&p, "").unwrap();
        assert!(f.reload_if_changed().is_err());
        assert!(f.current().tenant_of_bearer("Bearer one").is_some());
        let cred_file = dir.join("cred");
        std::fs::write(&cred_file, "\n  two \n").unwrap();
        let c = Credential::from_file(&cred_file).unwrap();
        assert_eq!(c.bearer(), "Bearer two");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
