//! P2PHANDSHAKE: ask a peer's data listener for its segment descriptor.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::frame::{Header, Op, MAX_CONTROL_LEN};
use super::io::read_control;
use super::tls::{DataTls, Sniff};
use crate::errors::TransferError;
use crate::segment::SegmentDescriptor;
use mooncake_common::auth::Credential;

/// Resolves `host:port` (names allowed) to a socket address, IPv4 first.
pub async fn resolve_endpoint(endpoint: &str) -> Result<SocketAddr, TransferError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(endpoint)
        .await
        .map_err(|e| {
            TransferError::SegmentNotFound(endpoint.to_string(), format!("cannot resolve: {e}"))
        })?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| TransferError::SegmentNotFound(endpoint.to_string(), "no address".into()))
}

/// One request on a new connection to `addr`: TLS with `tls`, else plaintext (whose
/// failure names TLS when the listener answered with TLS).
macro_rules! on_connection {
    ($tcp:expr, $addr:expr, $tls:expr, |$s:ident| $body:expr) => {{
        let mut tcp: TcpStream = $tcp;
        match $tls {
            Some(t) => {
                let mut tls_stream = t.connect(tcp, $addr).await?;
                let $s = &mut tls_stream;
                $body.await.map_err(|e| DataTls::explain($addr, e))
            }
            None => {
                let mut sniff = Sniff::new(&mut tcp);
                let r = {
                    let $s = &mut sniff;
                    $body.await
                };
                r.map_err(|e| sniff.explain($addr, e))
            }
        }
    }};
}

/// Fetches the descriptor from the listener at `endpoint`, proving `credential` if
/// the listener asks for it.
pub async fn describe(
    endpoint: &str,
    timeout: Duration,
    credential: Option<&Credential>,
) -> Result<SegmentDescriptor, TransferError> {
    describe_with(endpoint, timeout, credential, None).await
}

/// [`describe`] over TLS when `tls` is given (a data port with
/// `MOONCAKE_TRANSFER_TLS=1`).
pub async fn describe_with(
    endpoint: &str,
    timeout: Duration,
    credential: Option<&Credential>,
    tls: Option<&DataTls>,
) -> Result<SegmentDescriptor, TransferError> {
    let fut = async {
        let addr = resolve_endpoint(endpoint).await?;
        let tcp = TcpStream::connect(addr).await.map_err(|e| {
            TransferError::SegmentNotFound(endpoint.to_string(), format!("connect: {e}"))
        })?;
        on_connection!(tcp, addr, tls, |s| ask_descriptor(s, endpoint, credential))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| TransferError::Io(format!("describe {endpoint} timed out")))?
}

async fn ask_descriptor<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    endpoint: &str,
    credential: Option<&Credential>,
) -> Result<SegmentDescriptor, TransferError> {
    {
        let req = Header::new(Op::Describe, 0, 0, 0);
        let h = super::auth::request(s, &req, &[], credential, endpoint).await?;
        if h.op != Op::DescribeData {
            return Err(TransferError::Frame(format!(
                "expected DescribeData, got {:?}",
                h.op
            )));
        }
        let body = read_control(s, h.len, MAX_CONTROL_LEN, None)
            .await
            .map_err(|e| TransferError::io("describe payload", e))?;
        let text = String::from_utf8(body)
            .map_err(|_| TransferError::Frame("descriptor is not UTF-8".into()))?;
        SegmentDescriptor::from_json(&text).map_err(TransferError::Frame)
    }
}

/// Sends a Control request to the listener at `endpoint` and returns its answer
/// (transport handshakes, e.g. RDMA queue-pair exchange, ride the TCP control path),
/// proving `credential` first if the listener asks for it: the exchange hands out
/// keys to the registered memory, so it is never served to a stranger.
pub async fn control(
    endpoint: &str,
    payload: &[u8],
    timeout: Duration,
    credential: Option<&Credential>,
) -> Result<Vec<u8>, TransferError> {
    control_with(endpoint, payload, timeout, credential, None).await
}

/// [`control`] over TLS when `tls` is given.
pub async fn control_with(
    endpoint: &str,
    payload: &[u8],
    timeout: Duration,
    credential: Option<&Credential>,
    tls: Option<&DataTls>,
) -> Result<Vec<u8>, TransferError> {
    let fut = async {
        let addr = resolve_endpoint(endpoint).await?;
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| TransferError::io("control connect", e))?;
        on_connection!(tcp, addr, tls, |s| ask_control(
            s, endpoint, payload, credential
        ))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| TransferError::Io(format!("control exchange with {endpoint} timed out")))?
}

async fn ask_control<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    endpoint: &str,
    payload: &[u8],
    credential: Option<&Credential>,
) -> Result<Vec<u8>, TransferError> {
    {
        let req = Header::new(Op::Control, 0, 0, payload.len() as u64);
        let h = super::auth::request(s, &req, payload, credential, endpoint).await?;
        if h.op != Op::ControlData {
            return Err(TransferError::Frame(format!(
                "expected ControlData, got {:?}",
                h.op
            )));
        }
        let body = read_control(s, h.len, MAX_CONTROL_LEN, None)
            .await
            .map_err(|e| TransferError::io("control answer", e))?;
        if h.status != super::frame::status::OK {
            return Err(TransferError::Io(format!(
                "{endpoint} refused: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        Ok(body)
    }
}
