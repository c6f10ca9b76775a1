//! The data listener: serves Hello, Describe, Read and Write frames against this
//! engine's registered memory.
//!
//! One task per connection, reading requests in order and answering each before the
//! next; the peer pipelines many requests, so the socket buffers keep the link busy
//! while this task parses. Copies per payload byte on this side: a Write's payload is
//! read from the socket straight into the registered region (one kernel->user copy;
//! only the bytes that arrived with the header, at most 8 KiB, pass through the read
//! buffer); a Read's payload is written from the region with writev (one user->kernel
//! copy). No intermediate buffer exists for payloads. The region is pinned only inside
//! each syscall (`tcp::guarded`), so unregistering never waits on a slow peer.

use std::sync::Arc;
use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::frame::{crc, status, Header, Op};
use super::guarded::{read_into, write_from, MemAccess, RegionMem};
use super::io::{drain, read_control, read_header, tune, write_frame, READ_BUF};
use crate::errors::TransferError;
use crate::local::LocalSegment;
use crate::metrics::Metrics;

/// Accepts connections until `stop` turns true.
pub async fn run_listener(
    listener: TcpListener,
    seg: Arc<LocalSegment>,
    sock_buf: usize,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tune(&stream, sock_buf);
                    let seg = seg.clone();
                    conns.spawn(async move {
                        if let Err(e) = serve(stream, &seg).await {
                            tracing::debug!(%peer, error = %e, "data connection closed");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.abort_all();
}

async fn serve(stream: TcpStream, seg: &LocalSegment) -> Result<(), TransferError> {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(READ_BUF, rd);
    let io = |what: &'static str| move |e| TransferError::io(what, e);
    while let Some(h) = read_header(&mut rd).await? {
        match h.op {
            Op::Hello => {
                let name = read_control(&mut rd, h.len).await.map_err(io("hello"))?;
                let ok = name.is_empty() || name == seg.name.as_bytes();
                let st = if ok {
                    status::OK
                } else {
                    status::WRONG_SEGMENT
                };
                let ack = Header::new(Op::HelloAck, h.id, seg.generation, 0).with_status(st);
                write_frame(&mut wr, &ack, &[])
                    .await
                    .map_err(io("hello ack"))?;
            }
            Op::Describe => {
                let json = seg.descriptor().to_json();
                let resp = Header::new(Op::DescribeData, h.id, seg.generation, json.len() as u64);
                write_frame(&mut wr, &resp, json.as_bytes())
                    .await
                    .map_err(io("describe"))?;
            }
            Op::Control => {
                let req = read_control(&mut rd, h.len).await.map_err(io("control"))?;
                let handler = seg.control.read().clone();
                let (st, body) = match handler {
                    None => (
                        status::BAD_REQUEST,
                        b"no control handler on this engine".to_vec(),
                    ),
                    Some(f) => match f(&req) {
                        Ok(b) => (status::OK, b),
                        Err(e) => (status::BAD_REQUEST, e.into_bytes()),
                    },
                };
                let resp = Header::new(Op::ControlData, h.id, 0, body.len() as u64).with_status(st);
                write_frame(&mut wr, &resp, &body)
                    .await
                    .map_err(io("control answer"))?;
            }
            Op::Write => {
                let st = match seg.memory.lookup(h.addr, h.len) {
                    None => {
                        Metrics::add(&seg.metrics.out_of_region, 1);
                        drain(&mut rd, h.len).await.map_err(io("draining write"))?;
                        status::OUT_OF_REGION
                    }
                    Some(region) => {
                        drop(region);
                        let mem = RegionMem {
                            memory: &seg.memory,
                            addr: h.addr,
                            len: h.len,
                        };
                        let delivered = read_into(&mut rd, h.len as usize, &mem)
                            .await
                            .map_err(io("write payload"))?;
                        // SAFETY: `with` pins the registered range for the CRC pass.
                        let crc_ok = !h.has_crc()
                            || mem.with(|p| {
                                crc(unsafe { std::slice::from_raw_parts(p, h.len as usize) })
                            }) == Some(h.crc);
                        Metrics::add(&seg.metrics.bytes_served_in, h.len);
                        match (delivered, crc_ok) {
                            (false, _) => status::OUT_OF_REGION,
                            (true, false) => status::CHECKSUM,
                            (true, true) => status::OK,
                        }
                    }
                };
                let ack = Header::new(Op::WriteAck, h.id, h.addr, h.len).with_status(st);
                write_frame(&mut wr, &ack, &[])
                    .await
                    .map_err(io("write ack"))?;
            }
            Op::Read => match seg.memory.lookup(h.addr, h.len) {
                None => {
                    Metrics::add(&seg.metrics.out_of_region, 1);
                    let resp = Header::new(Op::ReadData, h.id, h.addr, h.len)
                        .with_status(status::OUT_OF_REGION);
                    write_frame(&mut wr, &resp, &[])
                        .await
                        .map_err(io("read refusal"))?;
                }
                Some(region) => {
                    let mut resp = Header::new(Op::ReadData, h.id, h.addr, h.len);
                    if h.has_crc() {
                        // SAFETY: the range is inside the registered region `region` pins.
                        let src = unsafe {
                            std::slice::from_raw_parts(h.addr as usize as *const u8, h.len as usize)
                        };
                        resp = resp.with_crc(crc(src));
                    }
                    drop(region);
                    let mem = RegionMem {
                        memory: &seg.memory,
                        addr: h.addr,
                        len: h.len,
                    };
                    write_from(&mut wr, &resp, h.len as usize, &mem)
                        .await
                        .map_err(io("read payload"))?;
                    Metrics::add(&seg.metrics.bytes_served_out, h.len);
                }
            },
            other => {
                return Err(TransferError::Frame(format!(
                    "unexpected {other:?} frame from an initiator"
                )))
            }
        }
    }
    Ok(())
}
