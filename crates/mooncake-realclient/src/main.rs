//! `mooncake_client`: the standalone real client (see the crate docs). Mounts this
//! node's segment, then serves dummy clients on `--port` until SIGINT or SIGTERM,
//! when it unmounts and exits 0.

use mooncake_client::{CallMode, Client, ClientConfig};
use mooncake_realclient::config::ClientArgs;
use mooncake_realclient::server::{self, Service};
use std::net::TcpListener;

fn fail(code: i32, msg: String) -> ! {
    eprintln!("mooncake_client: {msg}");
    std::process::exit(code);
}

fn main() {
    let args = match ClientArgs::from_argv(std::env::args().collect()) {
        Ok(a) => a,
        Err(e) => {
            // clap's own output for --help / --version, an error otherwise.
            let help = e.contains("Usage:") && !e.starts_with("error");
            if help {
                println!("{e}");
                std::process::exit(0);
            }
            fail(2, e.trim_start_matches("error: ").to_string())
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let s = args
        .settings()
        .unwrap_or_else(|e| fail(2, format!("configuration error: {e}")));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(s.threads.max(1))
        .thread_name("mooncake-client")
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(1, format!("cannot start the runtime: {e}")));
    // Bind before mounting: a port already taken is a configuration error, found
    // before the segment is offered to the pool.
    let tcp = TcpListener::bind((s.bind_host.as_str(), s.port)).unwrap_or_else(|e| {
        fail(
            1,
            format!("cannot listen on {}:{}: {e}", s.bind_host, s.port),
        )
    });
    let ipc_name = mooncake_realclient::fdpass::ipc_name(s.port);
    let ipc = server::bind_ipc(&ipc_name).unwrap_or_else(|e| {
        fail(
            1,
            format!("cannot listen on the unix socket @{ipc_name}: {e}"),
        )
    });
    let http = s.http_port.map(|port| {
        TcpListener::bind((s.bind_host.as_str(), port)).unwrap_or_else(|e| {
            fail(
                1,
                format!("--http_port: cannot listen on {}:{port}: {e}", s.bind_host),
            )
        })
    });
    let mut cfg = ClientConfig::new(s.node.clone());
    // Connection threads drive their calls with `block_on`: master calls do their
    // socket I/O on that thread.
    cfg.tuning.master_call_mode = CallMode::Blocking;
    let client = rt
        .block_on(Client::connect(cfg))
        .unwrap_or_else(|e| fail(1, format!("setup failed: {e}")));
    // The workers below start on this runtime.
    let entered = rt.enter();
    // Copies this node's objects out when the master drains its segment (a rolling
    // update of the node), as a store does; it ends with the client.
    let _drain = client.spawn_drain_worker(&s.node.master_server_address);
    // The SSD tier: MOONCAKE_OFFLOAD_FILE_STORAGE_PATH names its directory, as for a
    // store; `--enable_offload` insists on one. A bad path or capacity unmounts and
    // exits with the reason.
    let tier = client.start_tier_with(
        &s.node.master_server_address,
        None,
        s.enable_offload.then_some(true),
    );
    drop(entered);
    match tier {
        Ok(true) => tracing::info!("SSD tier open"),
        Ok(false) => {}
        Err(e) => {
            let _ = rt.block_on(client.close());
            let flag = if s.enable_offload {
                " (--enable_offload)"
            } else {
                ""
            };
            fail(1, format!("SSD tier{flag}: {e}"));
        }
    }
    tracing::info!(
        hostname = %client.hostname(),
        size = s.node.global_segment_size,
        port = s.port,
        "real client up: segment mounted, serving dummy clients"
    );
    let svc = Service::new(
        client.clone(),
        rt.handle().clone(),
        s.port,
        s.limits.clone(),
    );
    let started = server::spawn_tcp(svc.clone(), tcp)
        .and_then(|_| server::spawn_ipc(svc.clone(), ipc))
        .and_then(|_| server::spawn_reaper(svc.clone()));
    if let Err(e) = started {
        fail(1, format!("cannot start the service threads: {e}"));
    }
    if let Some(l) = http {
        let app = mooncake_realclient::http::router(client.clone());
        let served = rt.block_on(async {
            l.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(l)
        });
        match served {
            Ok(l) => {
                tracing::info!(addr = ?l.local_addr().ok(), "health and metrics port up");
                rt.spawn(async move {
                    let never = std::future::pending::<()>();
                    let limits = mooncake_http::Limits::DEFAULT;
                    if let Err(e) = mooncake_http::serve(l, app, never, limits).await {
                        tracing::error!(error = %e, "health and metrics port stopped");
                    }
                });
            }
            Err(e) => fail(1, format!("--http_port: {e}")),
        }
    }
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    });
    tracing::info!("stopping: unmounting the segment");
    svc.stop();
    if let Err(e) = rt.block_on(client.close()) {
        tracing::warn!(error = %e, "unmount at exit failed; the master drops the segment after client_ttl");
    }
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    std::process::exit(0);
}
