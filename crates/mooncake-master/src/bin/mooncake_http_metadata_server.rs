//! `mooncake_http_metadata_server`: the HTTP metadata server (CONTRACT §6) on its own,
//! for deployments that keep it apart from the master.
//!
//! `mooncake_http_metadata_server [--host 0.0.0.0] [--port 8080] [--auth_token_file F]`
//! (also `--name=value`). Serves until SIGTERM/SIGINT; a bad flag, a token file that
//! cannot be read or holds no token, or a port that cannot be bound exits 1 naming the
//! flag.
//!
//! With `--auth_token_file` (the master's format and flag: `tenant:token` or bare
//! tokens, one per line) every request but `/health` needs `Authorization: Bearer
//! <token>` with a token of the file (401 otherwise), exactly as the master's embedded
//! metadata server; the file is re-read when it changes, so tokens rotate without a
//! restart.

use mooncake_http::auth::protect_if;
use mooncake_master::app::stop_signal;
use mooncake_master::auth::MasterAuth;
use mooncake_master::config::MasterConfig;
use mooncake_master::http::metadata::{router, MetadataStore, OPEN_PATHS};
use std::process::ExitCode;

const USAGE: &str = "Usage: mooncake_http_metadata_server [--host <addr>] [--port <port>] [--auth_token_file <file>]\n\
  --host             bind address (default: \"0.0.0.0\")\n\
  --port             port (default: \"8080\")\n\
  --auth_token_file  tokens a request must bear (one per line, or tenant:token; default: none, no authentication)\n";

struct Args {
    host: String,
    port: u16,
    auth_token_file: String,
}

/// Parses `--host`/`--port` in the gflags forms the master accepts.
fn parse(args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut out = Args {
        host: "0.0.0.0".into(),
        port: 8080,
        auth_token_file: String::new(),
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
        if !arg.starts_with('-') || !matches!(name, "host" | "port" | "auth_token_file") {
            return Err(format!("unknown argument {arg:?}\n{USAGE}"));
        }
        let value = match inline.or_else(|| args.next()) {
            Some(v) => v,
            None => return Err(format!("flag --{name} needs a value")),
        };
        if name == "auth_token_file" {
            if value.trim().is_empty() {
                return Err("invalid value for --auth_token_file: empty path".into());
            }
            out.auth_token_file = value.trim().to_string();
        } else if name == "host" {
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
    let auth = match MasterAuth::open(&MasterConfig {
        auth_token_file: args.auth_token_file.clone(),
        ..Default::default()
    }) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mooncake_http_metadata_server: {e}");
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
        let app = protect_if(
            router(MetadataStore::new()),
            auth.as_ref()
                .map(|a| a.bearer("metadata server", OPEN_PATHS)),
        );
        if let Some(a) = auth {
            tokio::spawn(a.run_reloader(stop_signal()));
        }
        match mooncake_master::http::serve(listener, app, stop_signal(), None).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("metadata server failed: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
