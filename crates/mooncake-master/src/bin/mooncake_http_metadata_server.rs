//! `mooncake_http_metadata_server`: the HTTP metadata server on its own, for
//! deployments that keep it apart from the master.
//!
//! `mooncake_http_metadata_server [--host 0.0.0.0] [--port 8080] [--auth_token_file F]
//! [--tls_cert_file C --tls_key_file K [--tls_ca_file CA]]` (also `--name=value`).
//! Serves until SIGTERM/SIGINT; a bad flag, a token file that cannot be read or holds
//! no token, a TLS file that cannot be used or a port that cannot be bound exits 1
//! naming the flag or file.
//!
//! With `--auth_token_file` (the master's format and flag: `tenant:token` or bare
//! tokens, one per line) every request but `/health` needs `Authorization: Bearer
//! <token>` with a token of the file (401 otherwise), exactly as the master's embedded
//! metadata server; the file is re-read when it changes, so tokens rotate without a
//! restart.
//!
//! The `--tls_*` flags are the master's, with the same meaning and the same code
//! behind them: with a certificate and key the port serves HTTPS only (clients use an
//! `https://` metadata URL and `MOONCAKE_TLS_CA_FILE`), with `--tls_ca_file` every
//! client must also present a certificate one of those CAs signed. All three files are
//! read again when they change.

use mooncake_http::auth::protect_if;
use mooncake_master::app::stop_signal;
use mooncake_master::auth::MasterAuth;
use mooncake_master::config::MasterConfig;
use mooncake_master::http::metadata::{router, MetadataStore, OPEN_PATHS};
use std::process::ExitCode;

const USAGE: &str = "Usage: mooncake_http_metadata_server [--host <addr>] [--port <port>] [--auth_token_file <file>] [--tls_cert_file <file> --tls_key_file <file> [--tls_ca_file <file>]]\n\
  --host             bind address (default: \"0.0.0.0\")\n\
  --port             port (default: \"8080\")\n\
  --auth_token_file  tokens a request must bear (one per line, or tenant:token; default: none, no authentication)\n\
  --tls_cert_file    PEM certificate (chain): the port serves HTTPS only (with --tls_key_file; default: none, plain HTTP)\n\
  --tls_key_file     PEM private key of --tls_cert_file\n\
  --tls_ca_file      PEM CA certificates: clients must present a certificate one of them signed (mutual TLS)\n";

struct Args {
    host: String,
    port: u16,
    auth_token_file: String,
    tls_cert_file: String,
    tls_key_file: String,
    tls_ca_file: String,
}

impl Args {
    /// The master's settings these flags stand for (the rest at their defaults).
    fn master_config(&self) -> MasterConfig {
        MasterConfig {
            auth_token_file: self.auth_token_file.clone(),
            tls_cert_file: self.tls_cert_file.clone(),
            tls_key_file: self.tls_key_file.clone(),
            tls_ca_file: self.tls_ca_file.clone(),
            ..Default::default()
        }
    }
}

const FLAGS: &[&str] = &[
    "host",
    "port",
    "auth_token_file",
    "tls_cert_file",
    "tls_key_file",
    "tls_ca_file",
];

/// Parses the flags in the gflags forms the master accepts.
fn parse(args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut out = Args {
        host: "0.0.0.0".into(),
        port: 8080,
        auth_token_file: String::new(),
        tls_cert_file: String::new(),
        tls_key_file: String::new(),
        tls_ca_file: String::new(),
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
        if !arg.starts_with('-') || !FLAGS.contains(&name) {
            return Err(format!("unknown argument {arg:?}\n{USAGE}"));
        }
        let value = match inline.or_else(|| args.next()) {
            Some(v) => v,
            None => return Err(format!("flag --{name} needs a value")),
        };
        if let Some(field) = match name {
            "tls_cert_file" => Some(&mut out.tls_cert_file),
            "tls_key_file" => Some(&mut out.tls_key_file),
            "tls_ca_file" => Some(&mut out.tls_ca_file),
            _ => None,
        } {
            // As the master's flags: an empty value leaves TLS off.
            *field = value.trim().to_string();
        } else if name == "auth_token_file" {
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
    let cfg = args.master_config();
    // The master's checks of the `--tls_*` pairing and files, word for word.
    let tls = match cfg.validate().and_then(|()| cfg.tls_acceptor()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("mooncake_http_metadata_server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let auth = match MasterAuth::open(&cfg) {
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
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!("metadata server listening on {scheme}://{bound}/metadata");
        let app = protect_if(
            router(MetadataStore::new()),
            auth.as_ref()
                .map(|a| a.bearer("metadata server", OPEN_PATHS)),
        );
        if let Some(a) = auth {
            tokio::spawn(a.run_reloader(stop_signal()));
        }
        match mooncake_master::http::serve(listener, app, stop_signal(), tls).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("metadata server failed: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
