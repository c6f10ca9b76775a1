//! `mooncake_cli`: the operator's tool. A pure client (contributes no memory): each
//! command connects, does one thing, and exits 0, or non-zero after printing
//! `error: NAME (code): message`.

mod args;
mod config;
mod run;

use clap::Parser;

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
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        }
    });
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    std::process::exit(code);
}
