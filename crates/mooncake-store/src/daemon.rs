//! The daemon's life: start the client (engine + segment), serve HTTP, wait for the
//! mount (then write `MOONCAKE_READY_FILE`), and on SIGTERM/SIGINT leave to be
//! restarted: the segment is not unmounted and its file stays, so that the same store
//! started again (same `MOONCAKE_SHM_DIR`, hostname and `--port`) takes its memory
//! back and the master gives it its objects back (the master's restart grace). A
//! store leaving for good is drained first (the master's drain API), so that nothing
//! is left in it.

use crate::config::StoreArgs;
use mooncake_client::{Client, ClientConfig};
use mooncake_common::config::NodeConfig;
use std::path::PathBuf;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// Runs the daemon until a signal; returns the process exit code. `ready_file` is
/// written with the store's hostname once the segment is mounted, and removed at exit.
pub async fn run(args: StoreArgs, node: NodeConfig, ready_file: Option<PathBuf>) -> i32 {
    // Before anything starts: a REST port that cannot serve what was asked for stops
    // the store with the variable or file named.
    let tls = match crate::http::tls_from_env() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("mooncake_store: {e}");
            return 1;
        }
    };
    let mut cfg = ClientConfig::new(node);
    cfg.tuning.hugepages |= args.hugepages;
    // What the next run of this store is recognised by (module docs).
    cfg.tuning.segment_identity = Some(format!("{}@{}", cfg.node.local_hostname, args.port));
    let master_addr = cfg.node.master_server_address.clone();
    let client = match Client::start(cfg).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mooncake_store: cannot start: {e}");
            return 1;
        }
    };
    // Pages ahead of the writes are faulted in while the store is idle, not inside
    // the puts (`mooncake_client::WarmAhead`).
    let _warm = client.spawn_warm_ahead(args.warm_ahead);
    // Copies this store's objects out when the master drains its segment.
    let _drain = client.spawn_drain_worker(&master_addr);
    // The SSD tier, when MOONCAKE_OFFLOAD_FILE_STORAGE_PATH names one: a bad path or
    // capacity stops the store with the reason.
    let _tier = match client.start_tier_from_env(&master_addr) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("mooncake_store: {e}");
            let _ = client.close().await;
            return 1;
        }
    };
    let seg = client.segment_desc().unwrap_or_default();
    tracing::info!(
        hostname = %client.hostname(),
        size = seg.size,
        shm_path = %seg.shm_path,
        endpoint = %seg.transport_endpoint,
        "segment mapped; mounting"
    );
    let addr = format!("{}:{}", args.http_host, args.port);
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mooncake_store: cannot bind HTTP port {addr}: {e}");
            let _ = client.close().await;
            return 1;
        }
    };
    if let Ok(a) = listener.local_addr() {
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!("REST API listening on {scheme}://{a}");
    }
    // The REST API answers only to the token this store proves to the master.
    let cred = mooncake_common::config::credential_from_env()
        .ok()
        .flatten();
    let app = crate::http::protect(crate::http::router(client.clone()), cred);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let stop = async move {
            let _ = stop_rx.await;
        };
        let _ = crate::http::serve_tls(listener, app, stop, tls).await;
    });
    let code = tokio::select! {
        r = crate::waiting::wait_mounted(&client, &master_addr, args.max_wait(), ready_file.as_deref()) => match r {
            Ok(()) => {
                tracing::info!("store ready");
                wait_signal().await;
                0
            }
            Err(msg) => {
                eprintln!("mooncake_store: {msg}");
                1
            }
        },
        _ = wait_signal() => 0,
    };
    if code == 0 {
        tracing::info!("shutting down: the segment file is kept for the restart");
        client.leave_for_restart(&master_addr).await;
    } else {
        tracing::info!("shutting down: unmounting the segment");
        if let Err(e) = client.close().await {
            tracing::warn!(error = %e, "unmount failed; the master drops the segment after client_ttl");
        }
    }
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    if let Some(p) = &ready_file {
        let _ = std::fs::remove_file(p);
    }
    code
}

async fn wait_signal() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
}
