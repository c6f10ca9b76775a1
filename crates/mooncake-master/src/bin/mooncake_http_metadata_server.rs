//! `mooncake_http_metadata_server`: the HTTP metadata server (CONTRACT §6) on its own,
//! for deployments that keep it apart from the master.
//!
//! `mooncake_http_metadata_server [--host 0.0.0.0] [--port 8080]` (also `--name=value`).
//! Serves until SIGTERM/SIGINT; a bad flag or a port that cannot be bound exits 1
//! naming the flag.

use mooncake_master::app::stop_signal;
use mooncake_master::http::metadata::{router, MetadataStore};
use std::process::ExitCode;

const USAGE: &str = "Usage: mooncake_http_metadata_server [--host <addr>] [--port <port>]\n\
  --host  bind address (default: \"0.0.0.0\")\n\
  --port  port (default: \"8080\")\n";

struct Args {
    host: String,
    port: u16,
}

/// Parses `--host`/`--port` in the gflags forms the master accepts.
fn parse(args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut out = Args {
        host: "0.0.0.0".into(),
        port: 8080,
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let body = arg.trim_start_matches('-');
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        if matches!(name, "help" | "h") {
            return Ok(None);
        }
        if !arg.starts_with('-') || !matches!(name, "host" | "port") {
            return Err(format!("unknown argument {arg:?}\n{USAGE}"));
        }
        let value = match inline.or_else(|| args.next()) {
            Some(v) => v,
            None => return Err(format!("flag --{name} needs a value")),
        };
        if name == "host" {
            if value.trim().is_empty() {
                return Err("invalid value for --host: empty address".into());
            }
            out.host = value.trim().to_string();
        } else {
            out.port = value
                .trim()
                .parse()
                .map_err(|_| format!("invalid value for --port: {value:?} (expected 0-65535)"))?;
        }
    }
    Ok(Some(out))
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("mooncake_http_metadata_server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mooncake_http_metadata_server: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let addr = if args.host.contains(':') && !args.host.starts_with('[') {
            format!("[{}]:{}", args.host, args.port)
        } else {
            format!("{}:{}", args.host, args.port)
        };
        let listener = match tokio::net::TcpListener::bind(&addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("mooncake_http_metadata_server: cannot listen on {addr} (--port): {e}");
                return ExitCode::FAILURE;
            }
        };
        let bound = listener.local_addr().map(|a| a.to_string()).unwrap_or(addr);
        tracing::info!("metadata server listening on http://{bound}/metadata");
        let app = router(MetadataStore::new());
        match mooncake_master::http::serve(listener, app, stop_signal(), None).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("metadata server failed: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
