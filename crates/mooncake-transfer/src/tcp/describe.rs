//! P2PHANDSHAKE: ask a peer's data listener for its segment descriptor.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

use super::frame::{Header, Op, MAX_CONTROL_LEN};
use super::io::read_control;
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

/// Fetches the descriptor from the listener at `endpoint`, proving `credential` if
/// the listener asks for it.
pub async fn describe(
    endpoint: &str,
    timeout: Duration,
    credential: Option<&Credential>,
) -> Result<SegmentDescriptor, TransferError> {
    let fut = async {
        let addr = resolve_endpoint(endpoint).await?;
        let mut s = TcpStream::connect(addr).await.map_err(|e| {
            TransferError::SegmentNotFound(endpoint.to_string(), format!("connect: {e}"))
        })?;
        let req = Header::new(Op::Describe, 0, 0, 0);
        let h = super::auth::request(&mut s, &req, &[], credential, endpoint).await?;
        if h.op != Op::DescribeData {
            return Err(TransferError::Frame(format!(
                "expected DescribeData, got {:?}",
                h.op
            )));
        }
        let body = read_control(&mut s, h.len, MAX_CONTROL_LEN, None)
            .await
            .map_err(|e| TransferError::io("describe payload", e))?;
        let text = String::from_utf8(body)
            .map_err(|_| TransferError::Frame("descriptor is not UTF-8".into()))?;
        SegmentDescriptor::from_json(&text).map_err(TransferError::Frame)
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| TransferError::Io(format!("describe {endpoint} timed out")))?
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
    let fut = async {
        let addr = resolve_endpoint(endpoint).await?;
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|e| TransferError::io("control connect", e))?;
        let req = Header::new(Op::Control, 0, 0, payload.len() as u64);
        let h = super::auth::request(&mut s, &req, payload, credential, endpoint).await?;
        if h.op != Op::ControlData {
            return Err(TransferError::Frame(format!(
                "expected ControlData, got {:?}",
                h.op
            )));
        }
        let body = read_control(&mut s, h.len, MAX_CONTROL_LEN, None)
            .await
            .map_err(|e| TransferError::io("control answer", e))?;
        if h.status != super::frame::status::OK {
            return Err(TransferError::Io(format!(
                "{endpoint} refused: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        Ok(body)
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| TransferError::Io(format!("control exchange with {endpoint} timed out")))?
}
