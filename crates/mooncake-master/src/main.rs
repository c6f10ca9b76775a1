//! `mooncake_master`: parses the gflags-style command line, sets up logging, and runs
//! the master until SIGTERM/SIGINT. Exit codes: 0 after a clean stop or `--help`,
//! 1 on a bad flag, a port that cannot be bound, or a server failing.

use mooncake_master::{app, flags};
use std::io::IsTerminal;
use std::process::ExitCode;

/// mimalloc instead of glibc malloc: every request decodes one `String` per key and
/// HTTP/2 allocates per frame; glibc's malloc/free was ~15% of the master's profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let parsed = match flags::parse(std::env::args().skip(1)) {
        Ok(flags::Command::Run(p)) => p,
        Ok(flags::Command::Help(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Ok(flags::Command::Version) => {
            println!("mooncake_master {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("mooncake_master: {e}");
            return ExitCode::FAILURE;
        }
    };
    init_logging();
    for name in &parsed.ignored {
        tracing::warn!(
            "--{name} is accepted for compatibility with the C++ master and has no effect"
        );
    }
    let threads = parsed.rpc_threads.unwrap_or_else(default_threads);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .thread_name("mooncake-master")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mooncake_master: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(app::run(parsed.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("mooncake_master: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The reference's default for `--rpc_thread_num`: the cores, at most 4.
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// Logs go to stderr, which is unbuffered: every line reaches a redirected log file
/// as soon as it is written (operators tail it, checks grep it). `RUST_LOG` filters;
/// the default is `info`.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
