//! Framed calls answered without the gRPC detour.
//!
//! Every other framed call becomes an `http::Request` and goes through tonic's
//! generated service. For `BatchExist`, the call an inference engine makes for every
//! prefix lookup, that detour was most of the master's work per 1024-key batch: a
//! `String` allocated, copied and freed per key by prost's decode, plus the request,
//! body and boxed futures around it. Here the keys are borrowed from the frame itself
//! and the same `Master::batch_exist` answers; counters, the HA fence and error
//! answers are the same as on the gRPC path.

use crate::master::Master;
use crate::service::batch::{count_codes, CodeKind};
use mooncake_proto::frame;
use mooncake_proto::BatchCodeResponse;
use prost::Message;
use std::sync::Arc;
use tonic::Status;

/// What may answer a direct call now.
pub trait Direct {
    /// Runs `f` with the master allowed to answer; `Err` is the refusal to send
    /// instead (HA: not the leader, or the lease lapsed while `f` ran).
    fn with_master<R>(&self, f: impl FnOnce(&Master) -> R) -> Result<R, Status>;
}

/// A master without HA always answers.
impl Direct for Arc<Master> {
    fn with_master<R>(&self, f: impl FnOnce(&Master) -> R) -> Result<R, Status> {
        Ok(f(self))
    }
}

const BATCH_EXIST: &str = "/mooncake.v1.Master/BatchExist";

/// Answers `frame` into `out` if its method is served directly (`None`: it is not;
/// the caller takes the gRPC path). `Err` is the status to answer with instead.
pub fn call<D: Direct>(d: &D, frame: &[u8], out: &mut Vec<u8>) -> Option<Result<(), Status>> {
    let req = frame::decode_request(frame).ok()?;
    if req.path != BATCH_EXIST {
        return None;
    }
    Some(batch_exist(d, &frame[req.message_at..], out))
}

fn batch_exist<D: Direct>(d: &D, msg: &[u8], out: &mut Vec<u8>) -> Result<(), Status> {
    let keys = borrowed_keys(msg)
        .map_err(|e| Status::invalid_argument(format!("BatchExist request: {e}")))?;
    let codes = d.with_master(|m| {
        let codes = m.batch_exist(&keys);
        count_codes(m, &codes, CodeKind::Exist);
        codes
    })?;
    let answer = BatchCodeResponse { codes }.encode_to_vec();
    frame::encode_answer(0, 0, "", &answer, out)
        .map_err(|e| Status::resource_exhausted(format!("framed rpc: {e}")))
}

/// The keys of a `BatchKeyRequest` (`repeated string keys = 1`), borrowed from the
/// message. Other fields are skipped, as prost skips unknown fields; what prost would
/// refuse (a truncated field, a key that is not UTF-8, field 1 not length-delimited)
/// is an error.
fn borrowed_keys(mut b: &[u8]) -> Result<Vec<&str>, &'static str> {
    let mut keys = Vec::new();
    while !b.is_empty() {
        let tag = prost::encoding::decode_varint(&mut b).map_err(|_| "bad field tag")?;
        let (field, wire) = (tag >> 3, tag & 7);
        if field == 0 {
            return Err("field number 0");
        }
        if field == 1 && wire != 2 {
            return Err("keys (field 1) is not length-delimited");
        }
        match wire {
            0 => {
                prost::encoding::decode_varint(&mut b).map_err(|_| "truncated varint")?;
            }
            1 => b = b.get(8..).ok_or("truncated fixed64")?,
            5 => b = b.get(4..).ok_or("truncated fixed32")?,
            2 => {
                let len = prost::encoding::decode_varint(&mut b).map_err(|_| "bad length")?;
                let len = usize::try_from(len).map_err(|_| "bad length")?;
                if len > b.len() {
                    return Err("truncated field");
                }
                let (v, rest) = b.split_at(len);
                b = rest;
                if field == 1 {
                    keys.push(std::str::from_utf8(v).map_err(|_| "a key is not UTF-8")?);
                }
            }
            _ => return Err("unsupported wire type"),
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mooncake_proto::BatchKeyRequest;

    #[test]
    fn keys_are_read_as_prost_encodes_them() {
        let keys: Vec<String> = ["", "a", "ключ", &"k".repeat(300)]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let msg = BatchKeyRequest { keys: keys.clone() }.encode_to_vec();
        assert_eq!(borrowed_keys(&msg).unwrap(), keys);
        assert!(borrowed_keys(b"").unwrap().is_empty());
        // Unknown fields of every wire type are skipped.
        let mut m = vec![0x10, 0x96, 0x01]; // field 2, varint
        m.extend_from_slice(&[0x19, 1, 2, 3, 4, 5, 6, 7, 8]); // field 3, fixed64
        m.extend_from_slice(&[0x25, 1, 2, 3, 4]); // field 4, fixed32
        m.extend_from_slice(&[0x2a, 2, b'x', b'y']); // field 5, bytes
        m.extend_from_slice(&msg);
        assert_eq!(borrowed_keys(&m).unwrap(), keys);
    }

    #[test]
    fn what_prost_refuses_is_an_error() {
        for (bad, why) in [
            (&b"\x0a\x05ab"[..], "truncated field"),
            (&b"\x0a\x02\xff\xfe"[..], "a key is not UTF-8"),
            (&b"\x08\x01"[..], "keys (field 1) is not length-delimited"),
            (&b"\x19\x01"[..], "truncated fixed64"),
            (&b"\x0a"[..], "bad length"),
            (&b"\x00"[..], "field number 0"),
            (&b"\x13"[..], "unsupported wire type"),
        ] {
            assert_eq!(borrowed_keys(bad).unwrap_err(), why, "{bad:?}");
            // Prost refuses the same bytes.
            assert!(BatchKeyRequest::decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn batch_exist_answers_like_the_grpc_path_and_honours_the_refusal() {
        struct Refuses;
        impl Direct for Refuses {
            fn with_master<R>(&self, _f: impl FnOnce(&Master) -> R) -> Result<R, Status> {
                Err(Status::unavailable("not the leader"))
            }
        }
        let m = Master::new(Default::default());
        let keys = vec!["nope".to_string(), String::new()];
        let mut f = Vec::new();
        let msg = BatchKeyRequest { keys: keys.clone() }.encode_to_vec();
        frame::encode_request(BATCH_EXIST, &msg, &mut f).unwrap();
        let body = &f[frame::LEN_BYTES..];
        let mut out = Vec::new();
        call(&m, body, &mut out).unwrap().unwrap();
        let ab = &out[frame::LEN_BYTES..];
        let a = frame::decode_answer(ab).unwrap();
        assert_eq!(a.code, 0);
        let got = BatchCodeResponse::decode(&ab[a.message_at..]).unwrap();
        assert_eq!(got.codes, m.batch_exist(&keys));
        assert_eq!(got.codes, vec![0, -600]);
        let st = call(&Refuses, body, &mut out).unwrap().unwrap_err();
        assert_eq!(st.code(), tonic::Code::Unavailable);
        // The path is the generated service's.
        use tonic::server::NamedService;
        type Generated = mooncake_proto::master_server::MasterServer<crate::service::MasterService>;
        assert_eq!(BATCH_EXIST, format!("/{}/BatchExist", Generated::NAME));
        // Another method is not answered here.
        f.clear();
        frame::encode_request("/mooncake.v1.Master/GetStats", b"", &mut f).unwrap();
        assert!(call(&m, &f[frame::LEN_BYTES..], &mut out).is_none());
    }
}
