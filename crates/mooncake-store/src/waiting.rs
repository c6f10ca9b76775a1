//! What a store says while the master has not mounted its segment yet: which master
//! it waits for and why, every few seconds, so that a store started before its master
//! (or pointed at the wrong address) never waits in silence.
//!
//! The reason is found by asking the network, not the client: a TCP connect to the
//! master's address tells "nothing listens there" (refused), "no route / no answer"
//! (timed out) and "the name does not resolve" apart, and a port that accepts
//! connections but has not mounted the segment is a master that answers and refuses
//! (or the wrong port). An `etcd://` address names the etcd cluster that elects the
//! master, whose leader the client follows: the wait is for an election.

use mooncake_client::Client;
use std::path::Path;
use std::time::{Duration, Instant};

/// First report after this long (a master started together with the store usually
/// answers well within it), then one every [`REPORT_EVERY`].
const FIRST_REPORT: Duration = Duration::from_secs(3);
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// The connect probe's bound.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Waits until the heartbeat task has mounted the segment, reporting why not every
/// few seconds; writes the ready file. `Err` after `max_wait`, naming the master.
pub async fn wait_mounted(
    client: &Client,
    master: &str,
    max_wait: Option<Duration>,
    ready_file: Option<&Path>,
) -> Result<(), String> {
    let t0 = Instant::now();
    let mut next_report = FIRST_REPORT;
    while !client.is_mounted() {
        let waited = t0.elapsed();
        if let Some(m) = max_wait {
            if waited > m {
                return Err(format!(
                    "the master at {master} did not mount the segment within {}s \
                     (--max_wait_time; 0 waits forever): {}",
                    m.as_secs_f64(),
                    reason(master).await
                ));
            }
        }
        if waited >= next_report {
            tracing::warn!(
                "waiting for the master at {master} to mount the segment ({}s so far): {}",
                waited.as_secs(),
                reason(master).await
            );
            next_report = waited + REPORT_EVERY;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(p) = ready_file {
        if let Err(e) = std::fs::write(p, client.hostname()) {
            tracing::warn!(path = %p.display(), error = %e, "cannot write the ready file");
        }
    }
    Ok(())
}

/// Why a master at `master` (`MOONCAKE_MASTER`) has not mounted the segment, in words
/// that say what to check.
pub async fn reason(master: &str) -> String {
    let master = master.trim();
    if let Some(etcd) = master.strip_prefix("etcd://") {
        return format!(
            "no elected master answers yet (the leader is read from etcd at {etcd}); \
             is a mooncake_master running with --enable_ha, --etcd_endpoints {etcd} \
             and a --cluster_id equal to this store's MOONCAKE_CLUSTER_ID?"
        );
    }
    let probe = tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(master)).await;
    match probe {
        Ok(Ok(_)) => format!(
            "{master} accepts connections but has not mounted the segment; is it the \
             master's --rpc_port (not its HTTP metadata or metrics port), and does the \
             master's log say why?"
        ),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => format!(
            "nothing listens at {master} (connection refused); start mooncake_master \
             there or set MOONCAKE_MASTER to where it runs"
        ),
        Ok(Err(e)) => format!(
            "cannot connect to {master}: {e}; check MOONCAKE_MASTER (host:port of the \
             master's --rpc_port)"
        ),
        Err(_) => format!(
            "no answer from {master} within {}s (a firewall, a wrong host, or a master \
             that is not running); check MOONCAKE_MASTER",
            PROBE_TIMEOUT.as_secs()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_port_names_the_address_and_what_to_start() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let r = reason(&addr).await;
        assert!(r.contains(&addr) && r.contains("connection refused"), "{r}");
        assert!(r.contains("MOONCAKE_MASTER"), "{r}");
    }

    #[tokio::test]
    async fn a_listening_port_that_does_not_mount_is_told_apart() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let r = reason(&addr).await;
        assert!(
            r.contains("accepts connections") && r.contains("--rpc_port"),
            "{r}"
        );
    }

    #[tokio::test]
    async fn an_etcd_address_waits_for_an_election() {
        let r = reason("etcd://127.0.0.1:2379").await;
        assert!(
            r.contains("etcd at 127.0.0.1:2379") && r.contains("--enable_ha"),
            "{r}"
        );
    }

    #[tokio::test]
    async fn an_unresolvable_name_says_it_cannot_connect() {
        let r = reason("no-such-host.invalid:50051").await;
        assert!(
            r.contains("no-such-host.invalid:50051") && r.contains("MOONCAKE_MASTER"),
            "{r}"
        );
    }
}
