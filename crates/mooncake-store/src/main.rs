//! `mooncake_store`: see the crate docs of `mooncake_store`.

use clap::Parser;
use mooncake_store::config::{env_vars, ready_file, StoreArgs};

fn main() {
    let args = StoreArgs::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let node = match args.node_config(env_vars()) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("mooncake_store: configuration error: {e}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mooncake_store: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(mooncake_store::daemon::run(args, node, ready_file()));
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    std::process::exit(code);
}
