//! `mooncake_cli`: the operator's tool. A pure client (contributes no memory): each
//! command connects and does one thing. Exit codes: 0 done; 1 after printing
//! `error: NAME (code): message`; 2 a bad command line; 3 `put` kept the value already
//! stored under the key (`--upsert` replaces it).

mod args;
mod config;
mod drain;
mod run;

use clap::Parser;

/// `put` left an existing key's value in place (distinct from errors, 1, and clap's
/// usage errors, 2).
const EXIT_KEPT: i32 = 3;

fn main() {
    let cli = args::Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(async {
        match run::run(cli).await {
            Ok(run::Outcome::Done) => 0,
            Ok(run::Outcome::Kept) => EXIT_KEPT,
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        }
    });
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    std::process::exit(code);
}
