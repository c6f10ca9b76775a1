//! What each command does.

use crate::args::{Cli, Cmd};
use mooncake_client::{Client, ClientConfig, MooncakeError, ReplicateConfig};
use mooncake_common::size::format_size;
use std::io::Write;
use std::time::Duration;

fn io_err(what: &str, e: std::io::Error) -> MooncakeError {
    MooncakeError::invalid(format!("{what}: {e}"))
}

async fn connect(cli: &Cli) -> Result<Client, MooncakeError> {
    let master = cli
        .master
        .clone()
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| {
            MooncakeError::invalid("no master: pass --master HOST:PORT or set MOONCAKE_MASTER")
        })?;
    let mut cfg = ClientConfig::new(crate::config::node_config(master));
    cfg.rpc_timeout = Duration::from_millis(cli.timeout_ms.max(1));
    Client::connect(cfg).await
}

/// How a command that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// `put` found the key stored already and left its value as it was.
    Kept,
}

pub async fn run(cli: Cli) -> Result<Outcome, MooncakeError> {
    if let Cmd::Drain {
        segment,
        wait,
        admin,
    } = &cli.cmd
    {
        let addr = crate::drain::admin_addr(admin.as_deref(), cli.master.as_deref())?;
        let (segment, wait) = (segment.clone(), *wait);
        return tokio::task::spawn_blocking(move || crate::drain::run(&addr, &segment, wait))
            .await
            .map_err(|e| MooncakeError::invalid(e.to_string()))?
            .map(|()| Outcome::Done);
    }
    let client = connect(&cli).await?;
    let r = command(&client, &cli.cmd).await;
    let _ = client.close().await;
    r
}

async fn command(client: &Client, cmd: &Cmd) -> Result<Outcome, MooncakeError> {
    match cmd {
        Cmd::Put {
            key,
            file,
            value,
            replicas,
            upsert,
        } => {
            let bytes = match (file, value) {
                (Some(f), _) => {
                    std::fs::read(f).map_err(|e| io_err(&format!("cannot read {f}"), e))?
                }
                (None, Some(v)) => v.clone().into_bytes(),
                (None, None) => return Err(MooncakeError::invalid("put needs --file or --value")),
            };
            if *replicas == 0 {
                return Err(MooncakeError::invalid("--replicas must be at least 1"));
            }
            let rc = ReplicateConfig::replicas(*replicas);
            if *upsert {
                client.upsert(key, &bytes, &rc).await?;
                eprintln!("stored {key:?} ({} bytes)", bytes.len());
                return Ok(Outcome::Done);
            }
            // A put of a stored key succeeds without writing (first writer wins, as
            // for every client), so the key is looked up first to say so. A writer
            // that gets in between the two calls still wins silently.
            if client.exist(key).await? {
                eprintln!(
                    "kept {key:?}: the key is already stored and put never replaces a \
                     value; pass --upsert to replace it (or remove it first)"
                );
                return Ok(Outcome::Kept);
            }
            client.put(key, &bytes, &rc).await?;
            eprintln!("stored {key:?} ({} bytes)", bytes.len());
        }
        Cmd::Get { key, out } => {
            let v = client.get(key).await?;
            match out {
                Some(path) => {
                    std::fs::write(path, &v)
                        .map_err(|e| io_err(&format!("cannot write {path}"), e))?;
                    eprintln!("wrote {} bytes to {path}", v.len());
                }
                None => {
                    let mut so = std::io::stdout().lock();
                    so.write_all(&v)
                        .and_then(|_| so.flush())
                        .map_err(|e| io_err("stdout", e))?;
                }
            }
        }
        Cmd::Exist { key } => println!("{}", client.exist(key).await?),
        Cmd::Remove { key, force } => {
            client.remove(key, *force).await?;
            eprintln!("removed {key:?}");
        }
        Cmd::Segments => {
            let segs = client.segments().await?;
            println!(
                "{:<32} {:>12} {:>12} {:>7}",
                "OWNER", "USED", "TOTAL", "USE%"
            );
            for s in segs {
                let d = s.segment.unwrap_or_default();
                let pct = if d.size == 0 {
                    0.0
                } else {
                    100.0 * s.used as f64 / d.size as f64
                };
                println!(
                    "{:<32} {:>12} {:>12} {:>6.2}%",
                    d.owner,
                    format_size(s.used),
                    format_size(d.size),
                    pct
                );
            }
        }
        Cmd::Stats => {
            let s = client.stats().await?;
            println!("role:                 {}", s.role);
            println!("keys:                 {}", s.key_count);
            println!("soft-pinned keys:     {}", s.soft_pin_key_count);
            println!(
                "allocated:            {} ({} bytes)",
                format_size(s.allocated_bytes),
                s.allocated_bytes
            );
            println!(
                "capacity:             {} ({} bytes)",
                format_size(s.total_capacity_bytes),
                s.total_capacity_bytes
            );
            println!("segments:             {}", s.segment_count);
            println!("active clients:       {}", s.active_clients);
            println!("evicted objects:      {}", s.evicted_objects);
            println!("view id:              {}", s.view_id);
        }
        // Talks to the admin port, not through a client (`run`).
        Cmd::Drain { .. } => {}
    }
    Ok(Outcome::Done)
}
