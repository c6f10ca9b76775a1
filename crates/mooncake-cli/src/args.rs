//! Command-line shape of `mooncake_cli`.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "mooncake_cli",
    about = "Operate a Mooncake store pool: put, get, inspect"
)]
pub struct Cli {
    /// Master address `host:port` (default: MOONCAKE_MASTER).
    #[arg(long, env = "MOONCAKE_MASTER", global = true)]
    pub master: Option<String>,
    /// Per-call timeout in milliseconds.
    #[arg(
        long = "timeout_ms",
        alias = "timeout-ms",
        default_value_t = 5000,
        global = true
    )]
    pub timeout_ms: u64,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Store a value. Put-if-absent: an existing key keeps its value (exit code 3)
    /// unless --upsert is given.
    Put {
        key: String,
        /// Read the value from this file.
        #[arg(long, conflicts_with = "value", required_unless_present = "value")]
        file: Option<String>,
        /// The value itself.
        #[arg(long)]
        value: Option<String>,
        /// Number of replicas (on distinct segment owners, best effort).
        #[arg(long, default_value_t = 1)]
        replicas: usize,
        /// Replace the value of an existing key instead of keeping it.
        #[arg(long)]
        upsert: bool,
    },
    /// Read a value (to stdout without --out).
    Get {
        key: String,
        #[arg(long)]
        out: Option<String>,
    },
    /// Print whether a complete object is stored under KEY.
    Exist { key: String },
    /// Remove an object.
    Remove {
        key: String,
        /// Remove even while a reader holds a lease.
        #[arg(long)]
        force: bool,
    },
    /// List mounted segments with owner, used and total bytes.
    Segments,
    /// Print the master's statistics.
    Stats,
    /// Move every object out of SEGMENT (a name from `segments`) to the other
    /// segments, store to store, so that its store can leave with nothing lost.
    Drain {
        segment: String,
        /// Follow the job until it ends (exit code 1 unless it succeeded).
        #[arg(long)]
        wait: bool,
        /// The master's admin port HOST:PORT (default: the master's host on 9003).
        #[arg(long)]
        admin: Option<String>,
    },
}
