//! The two tasks of an initiator connection. The writer sends frames from the queue
//! (payloads straight from the caller's memory); the reader matches responses to
//! requests by id and lands Read payloads straight in the caller's memory.

use std::sync::Arc;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use super::conn::Shared;
use super::frame::{crc, status, Header, Op, FLAG_CRC, HEADER_LEN};
use super::grant::SentGrants;
use super::guarded::{CallerMem, MemAccess};
use super::io::{read_header, write_frame, READ_BUF};
use super::slice::Job;
use super::tls::{WireRead, WireWrite};
use crate::errors::TransferError;
use crate::local::LocalSegment;
use crate::metrics::Metrics;
use crate::Opcode;

pub(super) async fn writer<W: WireWrite>(
    mut rx: mpsc::Receiver<Job>,
    mut wr: W,
    sh: Arc<Shared>,
    crc_on: bool,
    seg: Arc<LocalSegment>,
) {
    let mut next_id = 1u64;
    let mut carried = SentGrants::default();
    while let Some(job) = rx.recv().await {
        let id = next_id;
        next_id += 1;
        // A grant this connection has not carried yet goes right before the request,
        // in the same write.
        let grant = job.grant.as_ref().filter(|g| !carried.carried(g)).cloned();
        let (op, addr, len, local, ctl) =
            (job.op, job.remote_addr, job.len, job.local, job.ctl.clone());
        let result = match op {
            Opcode::Write => {
                if ctl.is_cancelled() {
                    sh.finish(job, Err(TransferError::Shutdown));
                    continue;
                }
                let mem = CallerMem {
                    ctl: &ctl,
                    ptr: local,
                };
                let mut h = Header::new(Op::Write, id, addr, len as u64);
                if crc_on {
                    // SAFETY: `with` grants access to the caller's `len` bytes.
                    match mem.with(|p| crc(unsafe { std::slice::from_raw_parts(p, len) })) {
                        Some(c) => h = h.with_crc(c),
                        None => {
                            sh.finish(job, Err(TransferError::Shutdown));
                            continue;
                        }
                    }
                }
                if let Err((job, e)) = sh.insert(id, job, true) {
                    sh.finish(job, Err(e));
                    continue;
                }
                // A new grant goes in the same write as the request it covers (one
                // segment on the wire, one wake-up of the listener).
                let prefix = grant.as_ref().map_or_else(Vec::new, |g| {
                    let mut b = Vec::with_capacity(HEADER_LEN + g.len());
                    b.extend_from_slice(&Header::new(Op::Grant, 0, 0, g.len() as u64).encode());
                    b.extend_from_slice(g);
                    b
                });
                let r = wr.write_from(&prefix, &h, len, &mem, None).await;
                sh.written(id);
                if r.is_ok() {
                    Metrics::add(&seg.metrics.bytes_written, len as u64);
                }
                r
            }
            Opcode::Read => {
                let mut h = Header::new(Op::Read, id, addr, len as u64);
                if crc_on {
                    h.flags |= FLAG_CRC;
                }
                if let Err((job, e)) = sh.insert(id, job, false) {
                    sh.finish(job, Err(e));
                    continue;
                }
                let sent = match &grant {
                    None => write_frame(&mut wr, &h, &[]).await,
                    Some(g) => {
                        // The Grant frame's payload, then the Read's header: the same
                        // bytes as two frames, in one write.
                        let mut both = Vec::with_capacity(g.len() + HEADER_LEN);
                        both.extend_from_slice(g);
                        both.extend_from_slice(&h.encode());
                        let gh = Header::new(Op::Grant, 0, 0, g.len() as u64);
                        write_frame(&mut wr, &gh, &both).await
                    }
                };
                // The flush sends what a TLS stream buffered (a no-op in plaintext).
                match sent {
                    Ok(()) => wr.flush().await,
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(e) = result {
            sh.close(TransferError::io(&format!("sending to {}", sh.segment), e));
            break;
        }
        // Only a grant that went out counts as carried (a request dropped before its
        // write, cancelled or on a closing connection, took its grant with it).
        if let Some(g) = grant {
            carried.sent(g);
        }
    }
    // Fail whatever is still queued; the reader fails what is in flight.
    rx.close();
    while let Ok(job) = rx.try_recv() {
        sh.finish(job, Err(TransferError::Io("data connection closed".into())));
    }
}

pub(super) async fn reader<R: WireRead>(rd: R, sh: Arc<Shared>, seg: Arc<LocalSegment>) {
    let mut rd = BufReader::with_capacity(READ_BUF, rd);
    let err = loop {
        let h = match read_header(&mut rd).await {
            Ok(Some(h)) => h,
            Ok(None) => break TransferError::Io(format!("{} closed the connection", sh.segment)),
            Err(e) => break e,
        };
        let Some(job) = sh.take(h.id) else {
            break TransferError::Frame(format!("response for unknown request id {}", h.id));
        };
        let result = match (h.op, job.op) {
            (Op::WriteAck, Opcode::Write) => status_result(&sh.segment, &h, job.len),
            (Op::ReadData, Opcode::Read) if h.status != status::OK => {
                status_result(&sh.segment, &h, job.len)
            }
            (Op::ReadData, Opcode::Read) if h.len != job.len as u64 => {
                let e = TransferError::Frame(format!(
                    "read returned {} bytes, asked {}",
                    h.len, job.len
                ));
                sh.finish(job, Err(e.clone()));
                break e;
            }
            (Op::ReadData, Opcode::Read) => {
                let mem = CallerMem {
                    ctl: &job.ctl,
                    ptr: job.local,
                };
                let r = R::read_into(&mut rd, job.len, &mem, None)
                    .await
                    .map(|delivered| {
                        if !delivered {
                            return Some(TransferError::Shutdown);
                        }
                        if !h.has_crc() {
                            return None;
                        }
                        // SAFETY: `with` grants access to the caller's `len` bytes.
                        match mem.with(|p| crc(unsafe { std::slice::from_raw_parts(p, job.len) })) {
                            Some(c) if c == h.crc => None,
                            Some(_) => Some(TransferError::Checksum(format!(
                                "read of {} bytes at {:#x} from {}",
                                h.len, h.addr, sh.segment
                            ))),
                            None => Some(TransferError::Shutdown),
                        }
                    });
                match r {
                    Err(e) => {
                        let e = TransferError::io("reading read payload", e);
                        sh.finish(job, Err(e.clone()));
                        break e;
                    }
                    Ok(Some(e)) => Err(e),
                    Ok(None) => {
                        Metrics::add(&seg.metrics.bytes_read, h.len);
                        Ok(())
                    }
                }
            }
            (got, _) => {
                let e =
                    TransferError::Frame(format!("unexpected {got:?} for a {:?} request", job.op));
                sh.finish(job, Err(e.clone()));
                break e;
            }
        };
        sh.finish(job, result);
    };
    sh.close(err);
}

pub(super) fn status_result(segment: &str, h: &Header, len: usize) -> Result<(), TransferError> {
    match h.status {
        status::OK => Ok(()),
        status::OUT_OF_REGION => Err(TransferError::OutOfRegion {
            segment: segment.to_string(),
            addr: h.addr,
            len: len as u64,
        }),
        status::FORBIDDEN => Err(TransferError::Forbidden(format!(
            "{segment} refused a request of {len} bytes at {:#x}: this process's tenant holds no valid grant for it",
            h.addr
        ))),
        status::CHECKSUM => Err(TransferError::Checksum(format!(
            "write of {len} bytes at {:#x} to {segment}",
            h.addr
        ))),
        other => Err(TransferError::InvalidRequest(format!(
            "{segment} refused the request (status {other})"
        ))),
    }
}
