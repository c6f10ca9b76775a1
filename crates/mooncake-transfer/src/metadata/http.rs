//! The HTTP metadata backend: `GET/PUT/DELETE <base>?key=K` against the metadata server
//! (CONTRACT §6). A deliberately tiny HTTP/1.1 client over a tokio `TcpStream`
//! (one request per connection, `Connection: close`): descriptors are looked up once
//! per peer and cached, so this is never on the data path.
//!
//! With `MOONCAKE_AUTH_TOKEN_FILE` or `MOONCAKE_AUTH_TOKEN` set, every request carries
//! `Authorization: Bearer <token>` (a master started with `--auth_token_file` serves
//! its metadata server to no one else); the file is read again for each request, so a
//! rotated token is used at once. A 401 or 403 answer is an error naming
//! authentication.

use futures::future::BoxFuture;
use mooncake_tls::Stream;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::MetadataStore;
use crate::errors::TransferError;

const TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BODY: usize = 64 << 20;

#[derive(Debug, Clone)]
pub struct HttpMetadata {
    /// `host:port`
    authority: String,
    /// `https://`: TLS with the process's `MOONCAKE_TLS_*` settings.
    tls: bool,
    /// `/metadata`
    path: String,
    /// The token sent as a bearer credential, if this process has one.
    auth: Option<mooncake_common::auth::Credential>,
}

/// A parsed response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl HttpMetadata {
    /// `url` is `http://host:port/path` or `https://host:port/path`.
    pub fn new(url: &str) -> Result<Self, TransferError> {
        let url = url.trim();
        let (rest, tls) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(r), _) => (r, false),
            (_, Some(r)) => (r, true),
            _ => {
                return Err(TransferError::Config(format!(
                    "metadata URL {url:?} must start with http:// or https://"
                )))
            }
        };
        if tls {
            // Unusable TLS settings stop the engine here, naming the file.
            match mooncake_tls::config::client() {
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err(TransferError::Config(format!(
                        "metadata URL {url:?} is https: set {} to the CA file that signed \
                         the metadata server's certificate",
                        mooncake_tls::config::CA_FILE_ENV
                    )))
                }
                Err(e) => return Err(TransferError::Config(e.to_string())),
            }
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/metadata"),
        };
        if authority.is_empty() {
            return Err(TransferError::Config(format!(
                "metadata URL {url:?} has no host"
            )));
        }
        let authority = if mooncake_common::hostname::split_host_port(authority)
            .1
            .is_some()
        {
            authority.to_string()
        } else if tls {
            format!("{authority}:443")
        } else {
            format!("{authority}:80")
        };
        let auth = mooncake_common::config::credential_from_env()
            .map_err(|e| TransferError::Config(format!("metadata server credential: {e}")))?;
        Ok(Self {
            authority,
            tls,
            path: path.to_string(),
            auth,
        })
    }

    /// One request; the response body is read by Content-Length or to EOF.
    pub async fn request(
        &self,
        method: &str,
        key: &str,
        body: &[u8],
    ) -> Result<Response, TransferError> {
        let fut = async {
            let err = |e: std::io::Error| {
                TransferError::Metadata(format!("{method} {}{}: {e}", self.authority, self.path))
            };
            let tcp = TcpStream::connect(&self.authority).await.map_err(err)?;
            let mut s = match mooncake_tls::config::client() {
                Ok(Some(c)) if self.tls => {
                    let host = mooncake_common::hostname::split_host_port(&self.authority).0;
                    c.connect(host, tcp).await.map_err(err)?
                }
                Ok(_) => Stream::from(tcp),
                Err(e) => return Err(TransferError::Config(e.to_string())),
            };
            let auth = self.auth.as_ref().map_or(String::new(), |c| {
                format!("Authorization: {}\r\n", c.reload().bearer())
            });
            let req = format!(
                "{method} {}?key={} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Length: {}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
                self.path,
                encode(key),
                self.authority,
                body.len()
            );
            s.write_all(req.as_bytes()).await.map_err(err)?;
            s.write_all(body).await.map_err(err)?;
            let mut raw = Vec::new();
            (&mut s)
                .take(MAX_BODY as u64 + 65536)
                .read_to_end(&mut raw)
                .await
                .map_err(err)?;
            let r = parse_response(&raw)?;
            if r.status == 401 || r.status == 403 {
                return Err(TransferError::Metadata(format!(
                    "{method} {}{}: the metadata server refused this process ({}): {}",
                    self.authority,
                    self.path,
                    r.status,
                    if self.auth.is_some() {
                        "its token (MOONCAKE_AUTH_TOKEN_FILE / MOONCAKE_AUTH_TOKEN) is not accepted"
                    } else {
                        "authentication is on; set MOONCAKE_AUTH_TOKEN_FILE or MOONCAKE_AUTH_TOKEN"
                    }
                )));
            }
            Ok(r)
        };
        tokio::time::timeout(TIMEOUT, fut).await.map_err(|_| {
            TransferError::Metadata(format!("{method} {} timed out", self.authority))
        })?
    }
}

/// Percent-encodes a query value (keys hold `/` and `:`).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Parses an HTTP/1.x response; malformed input is an error, never a panic.
pub fn parse_response(raw: &[u8]) -> Result<Response, TransferError> {
    let bad = |m: &str| TransferError::Metadata(format!("bad HTTP response: {m}"));
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("headers are not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    if !parts.next().unwrap_or_default().starts_with("HTTP/1.") {
        return Err(bad("not HTTP/1.x"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status code"))?;
    let mut content_length = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                content_length = Some(
                    v.trim()
                        .parse::<usize>()
                        .map_err(|_| bad("bad Content-Length"))?,
                );
            }
            if k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
            {
                return Err(bad("chunked bodies are not supported"));
            }
        }
    }
    let body = &raw[end + 4..];
    let body = match content_length {
        Some(n) if n > body.len() => return Err(bad("truncated body")),
        Some(n) => &body[..n],
        None => body,
    };
    Ok(Response {
        status,
        body: body.to_vec(),
    })
}

impl MetadataStore for HttpMetadata {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, TransferError>> {
        Box::pin(async move {
            let r = self.request("GET", key, &[]).await?;
            match r.status {
                200 => String::from_utf8(r.body)
                    .map(Some)
                    .map_err(|_| TransferError::Metadata(format!("value of {key} is not UTF-8"))),
                404 => Ok(None),
                s => Err(TransferError::Metadata(format!("GET {key}: HTTP {s}"))),
            }
        })
    }

    fn put<'a>(&'a self, key: &'a str, value: &'a str) -> BoxFuture<'a, Result<(), TransferError>> {
        Box::pin(async move {
            let r = self.request("PUT", key, value.as_bytes()).await?;
            match r.status {
                200 => Ok(()),
                s => Err(TransferError::Metadata(format!(
                    "PUT {key}: HTTP {s} {}",
                    String::from_utf8_lossy(&r.body)
                ))),
            }
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), TransferError>> {
        Box::pin(async move {
            let r = self.request("DELETE", key, &[]).await?;
            match r.status {
                200 | 404 => Ok(()),
                s => Err(TransferError::Metadata(format!("DELETE {key}: HTTP {s}"))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_and_responses() {
        let m = HttpMetadata::new("http://127.0.0.1:8080/metadata").unwrap();
        assert_eq!(m.authority, "127.0.0.1:8080");
        assert_eq!(m.path, "/metadata");
        assert_eq!(HttpMetadata::new("http://h").unwrap().authority, "h:80");
        assert!(HttpMetadata::new("ftp://h").is_err());
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhixx").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hi"[..]));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhi").is_err());
        assert!(parse_response(b"garbage").is_err());
        assert!(parse_response(b"SMTP 200\r\n\r\n").is_err());
        assert_eq!(encode("mooncake/ram/a:1"), "mooncake/ram/a%3A1");
    }
}
