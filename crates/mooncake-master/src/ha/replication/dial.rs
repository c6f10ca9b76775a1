//! How a standby reaches its leader's rpc port: plain HTTP/2, or TLS when this master
//! runs with `--tls_cert_file` (every master of a group serves TLS or none does).
//!
//! Over TLS the standby trusts what `--tls_ca_file` holds, or without it its own
//! `--tls_cert_file` (a group sharing one certificate, pinned); it presents its own
//! certificate, which a leader with `--tls_ca_file` requires. The files are read at
//! each connection, so a renewed certificate is used by the next one.

use crate::config::MasterConfig;
use hyper_util::rt::TokioIo;
use mooncake_tls::{Connector, Stream};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::codegen::http::Uri;
use tonic::codegen::Service;
use tonic::transport::{Channel, Endpoint};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A connected channel to `leader` (`host:port`).
pub(super) async fn connect(cfg: &MasterConfig, leader: &str) -> Result<Channel, String> {
    let ep = Endpoint::from_shared(format!("http://{leader}"))
        .map_err(|e| format!("bad leader address: {e}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(3));
    match connector(cfg)? {
        None => ep.connect().await.map_err(|e| format!("connect: {e}")),
        Some(connector) => {
            let dial = TlsDial {
                connector,
                addr: leader.to_string(),
            };
            ep.connect_with_connector(dial)
                .await
                .map_err(|e| format!("connect over TLS: {}", chain(&e)))
        }
    }
}

/// The connector the `--tls_*` flags make; `None` without `--tls_cert_file`.
fn connector(cfg: &MasterConfig) -> Result<Option<Connector>, String> {
    if cfg.tls_cert_file.is_empty() {
        return Ok(None);
    }
    let ca = if cfg.tls_ca_file.is_empty() {
        &cfg.tls_cert_file
    } else {
        &cfg.tls_ca_file
    };
    let identity = (Path::new(&cfg.tls_cert_file), Path::new(&cfg.tls_key_file));
    let c = mooncake_tls::client_config(Path::new(ca), Some(identity))
        .map_err(|e| format!("TLS to the leader: {e}"))?;
    Ok(Some(Connector::new(c)))
}

/// An error with its sources (tonic's transport error says only "transport error").
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// TCP then the TLS handshake, for tonic's channel.
#[derive(Clone)]
struct TlsDial {
    connector: Connector,
    addr: String,
}

impl Service<Uri> for TlsDial {
    type Response = TokioIo<Stream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<TokioIo<Stream>>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let tcp = tokio::net::TcpStream::connect(this.addr.as_str()).await?;
            tcp.set_nodelay(true)?;
            let host = mooncake_common::hostname::split_host_port(&this.addr).0;
            let s = this.connector.connect(host, tcp).await?;
            Ok(TokioIo::new(s))
        })
    }
}
