//! Typed calls to the master over either protocol. [`MasterCalls`] has one method per
//! unary method of the `Master` service, named and typed like tonic's generated
//! `MasterClient` (so call sites read the same): over the framed protocol the request
//! message is encoded straight into its frame and the answer decoded from its frame
//! (`FramedChannel::unary`), with no HTTP request or response in between; over gRPC
//! the call goes through the generated client on a `DirectChannel`. A failed call is
//! the same `Status` either way (code, message, `mc-error-code`).

use crate::framed::{CallMode, FramedChannel};
use crate::transport::{DirectChannel, MasterChannel, PreEncoded};
use bytes::Bytes;
use mooncake_proto::master_client::MasterClient;
use mooncake_proto::*;
use std::sync::Arc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::http::Uri;
use tonic::{Response, Status};

/// Typed calls on one master connection handle. Cheap to clone; clones share the
/// connections.
#[derive(Clone)]
pub struct MasterCalls {
    to: To,
}

#[derive(Clone)]
enum To {
    Framed(FramedChannel),
    /// Shared: a handle is cloned per call, and gRPC's is large.
    Grpc(Arc<Grpc>),
}

struct Grpc {
    client: MasterClient<DirectChannel>,
    ch: DirectChannel,
    origin: Uri,
}

impl MasterCalls {
    /// Calls on `ch`; fails when the address does not make a URI (gRPC only).
    pub fn new(ch: MasterChannel) -> Result<Self, String> {
        let to = match ch {
            MasterChannel::Framed(f) => To::Framed(f),
            MasterChannel::Grpc(ch) => {
                let origin = ch.origin()?;
                To::Grpc(Arc::new(Grpc {
                    client: MasterClient::with_origin(ch.clone(), origin.clone()),
                    ch,
                    origin,
                }))
            }
        };
        Ok(Self { to })
    }

    /// These calls with framed I/O done in `mode` (gRPC calls are always
    /// asynchronous); the connections stay shared with `self`.
    pub fn with_mode(self, mode: CallMode) -> Self {
        match self.to {
            To::Framed(f) => Self {
                to: To::Framed(f.with_mode(mode)),
            },
            grpc => Self { to: grpc },
        }
    }

    /// Sends `body`, a request message encoded beforehand, to the unary method `path`
    /// (e.g. `/mooncake.v1.Master/BatchExist`) and decodes the answer as `U`.
    pub async fn unary_encoded<U>(&mut self, path: &'static str, body: Bytes) -> Result<U, Status>
    where
        U: prost::Message + Default + Send + 'static,
    {
        match &self.to {
            To::Framed(f) => f.unary_encoded(path, &body).await,
            To::Grpc(g) => {
                let mut grpc = tonic::client::Grpc::with_origin(g.ch.clone(), g.origin.clone());
                grpc.ready().await?;
                grpc.unary(
                    tonic::Request::new(body),
                    PathAndQuery::from_static(path),
                    PreEncoded::<U>::default(),
                )
                .await
                .map(Response::into_inner)
            }
        }
    }
}

/// The `Master` service's unary methods: name, request, answer, and the method path.
macro_rules! master_methods {
    ($($name:ident($req:ty) -> $resp:ty = $method:literal;)*) => {
        impl MasterCalls {
            $(
                pub async fn $name(&mut self, req: $req) -> Result<Response<$resp>, Status> {
                    match &self.to {
                        To::Framed(f) => f
                            .unary(concat!("/mooncake.v1.Master/", $method), &req)
                            .await
                            .map(Response::new),
                        To::Grpc(g) => g.client.clone().$name(req).await,
                    }
                }
            )*
        }

        /// Every method path, for tests.
        #[cfg(test)]
        const PATHS: &[&str] = &[$(concat!("/mooncake.v1.Master/", $method)),*];
    };
}

master_methods! {
    mount_segment(MountSegmentRequest) -> MountSegmentResponse = "MountSegment";
    remount_segment(MountSegmentRequest) -> MountSegmentResponse = "RemountSegment";
    unmount_segment(UnmountSegmentRequest) -> UnmountSegmentResponse = "UnmountSegment";
    heartbeat(HeartbeatRequest) -> HeartbeatResponse = "Heartbeat";
    verify_proof(VerifyProofRequest) -> VerifyProofResponse = "VerifyProof";
    list_segments(ListSegmentsRequest) -> ListSegmentsResponse = "ListSegments";
    put_start(PutStartRequest) -> PutStartResponse = "PutStart";
    batch_put_start(BatchPutStartRequest) -> BatchPutStartResponse = "BatchPutStart";
    put_end(PutEndRequest) -> CodeResponse = "PutEnd";
    batch_put_end(BatchPutEndRequest) -> BatchCodeResponse = "BatchPutEnd";
    put_revoke(PutEndRequest) -> CodeResponse = "PutRevoke";
    batch_put_revoke(BatchPutEndRequest) -> BatchCodeResponse = "BatchPutRevoke";
    upsert_start(PutStartRequest) -> PutStartResponse = "UpsertStart";
    batch_upsert_start(BatchPutStartRequest) -> BatchPutStartResponse = "BatchUpsertStart";
    upsert_end(PutEndRequest) -> CodeResponse = "UpsertEnd";
    batch_upsert_end(BatchPutEndRequest) -> BatchCodeResponse = "BatchUpsertEnd";
    upsert_revoke(PutEndRequest) -> CodeResponse = "UpsertRevoke";
    batch_upsert_revoke(BatchPutEndRequest) -> BatchCodeResponse = "BatchUpsertRevoke";
    get_replica_list(KeyRequest) -> GetReplicaListResponse = "GetReplicaList";
    batch_get_replica_list(BatchKeyRequest) -> BatchGetReplicaListResponse = "BatchGetReplicaList";
    exist(KeyRequest) -> CodeResponse = "Exist";
    batch_exist(BatchKeyRequest) -> BatchCodeResponse = "BatchExist";
    remove(RemoveRequest) -> CodeResponse = "Remove";
    batch_remove(BatchRemoveRequest) -> BatchCodeResponse = "BatchRemove";
    remove_by_regex(RemoveByRegexRequest) -> CountResponse = "RemoveByRegex";
    remove_all(RemoveAllRequest) -> CountResponse = "RemoveAll";
    query_key(KeyRequest) -> QueryKeyResponse = "QueryKey";
    get_stats(GetStatsRequest) -> GetStatsResponse = "GetStats";
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The framed paths are the gRPC method paths the master routes on, one per
    /// method of the service definition.
    #[test]
    fn method_paths_match_the_service_definition() {
        let proto = include_str!("../../../proto/mooncake.proto");
        let service = proto
            .split("service Master {")
            .nth(1)
            .and_then(|s| s.split('}').next())
            .expect("the Master service");
        let mut defined: Vec<String> = service
            .lines()
            .filter_map(|l| l.trim().strip_prefix("rpc "))
            .map(|l| {
                format!(
                    "/mooncake.v1.Master/{}",
                    l.split('(').next().unwrap().trim()
                )
            })
            .collect();
        let mut ours: Vec<String> = PATHS.iter().map(|p| p.to_string()).collect();
        defined.sort();
        ours.sort();
        assert_eq!(ours, defined);
    }
}
