//! Serving the gRPC service on a listener the caller bound (tests bind 127.0.0.1:0
//! and read the port back; the binary binds `--rpc_address:--rpc_port`).

use crate::master::Master;
use crate::service::MasterService;
use mooncake_proto::master_server::MasterServer;
use std::future::Future;
use std::sync::Arc;
use tonic::transport::server::TcpIncoming;

/// Serves the gRPC service on `listener` until `shutdown` resolves. Connections get
/// `TCP_NODELAY`: control-plane messages are small and latency-bound, and Nagle's
/// delay would add milliseconds to every round trip.
pub async fn serve_grpc(
    master: Arc<Master>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let svc = MasterServer::new(MasterService::new(master))
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024);
    tonic::transport::Server::builder()
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
