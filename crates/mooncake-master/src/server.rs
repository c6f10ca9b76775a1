//! Serving the gRPC service on a listener the caller bound (tests bind 127.0.0.1:0
//! and read the port back; the binary binds `--rpc_address:--rpc_port`).
//!
//! The generated service is served by hyper's HTTP/2 server directly rather than by
//! `tonic::transport::Server`. Every client of the master speaks HTTP/2 with prior
//! knowledge, so tonic's HTTP/1-or-2 detection, its router (one service here) and the
//! boxed layers it wraps around every call are per-call work with nothing to do; on a
//! 2-core host a unary call's cost is mostly such fixed overhead. Answers carry no
//! `date` header (nobody reads it; hyper would format and HPACK-encode it per call).

use crate::framed;
use crate::master::Master;
use crate::service::MasterService;
use hyper::server::conn::http2::Builder;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mooncake_proto::master_server::MasterServer;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::codegen::Service;

/// The largest request or answer the master accepts (a batch of many keys).
pub const MAX_MESSAGE: usize = mooncake_proto::frame::MAX_MESSAGE;

/// Serves the gRPC service on `listener` (HTTP/2, and the framed protocol of
/// `mooncake_proto::frame` on connections that start with its magic) until `shutdown` resolves, then lets every
/// connection finish its in-flight calls (HTTP/2 GOAWAY) and returns. Connections get
/// `TCP_NODELAY`: control-plane messages are small and latency-bound, and Nagle's
/// delay would add milliseconds to every round trip.
pub async fn serve_grpc(
    master: Arc<Master>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Read (and complain about a bad value) at start, not at the first connection.
    let _ = framed::poll_window();
    let svc = MasterServer::new(MasterService::new(master.clone()))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let mut builder = Builder::new(TokioExecutor::new());
    builder.auto_date_header(false);
    let (stop, stopping) = watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let svc = svc.clone();
                    let direct = master.clone();
                    let builder = builder.clone();
                    let mut stopping = stopping.clone();
                    conns.spawn(async move {
                        let framed = tokio::select! {
                            f = framed::is_framed(&stream) => f,
                            _ = stopping.wait_for(|s| *s) => return,
                        };
                        if framed {
                            return framed::serve_connection(stream, svc, direct, stopping).await;
                        }
                        let handler = hyper::service::service_fn(move |req| {
                            let mut svc = svc.clone();
                            async move { svc.call(req).await }
                        });
                        let conn = builder.serve_connection(TokioIo::new(stream), handler);
                        tokio::pin!(conn);
                        let stop_asked = async move {
                            let _ = stopping.wait_for(|s| *s).await;
                        };
                        tokio::select! {
                            _ = conn.as_mut() => return,
                            _ = stop_asked => {}
                        }
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    });
                }
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: keep
                    // serving the connections we have and try again shortly.
                    tracing::warn!("gRPC accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        }
    }
    let _ = stop.send(true);
    while conns.join_next().await.is_some() {}
    Ok(())
}
