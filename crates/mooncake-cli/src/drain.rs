//! `mooncake_cli drain SEGMENT [--wait]`: starts a drain job on the master's admin
//! port (`POST /api/v1/drain_jobs`) and, with `--wait`, follows it until it ends.
//! The admin port is `--admin HOST:PORT`, by default the master's host on 9003 (the
//! master's `--metrics_port` default).
//!
//! With `MOONCAKE_AUTH_TOKEN_FILE` or `MOONCAKE_AUTH_TOKEN` set, every request carries
//! `Authorization: Bearer <token>` (a master with `--auth_token_file` refuses the
//! admin API without one, and drains are the `cluster` tenant's).

use mooncake_client::MooncakeError;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn err(msg: impl Into<String>) -> MooncakeError {
    MooncakeError::invalid(msg.into())
}

/// One HTTP/1.1 request; the status and the JSON body.
fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, Value), MooncakeError> {
    let mut s = TcpStream::connect(addr)
        .map_err(|e| err(format!("cannot reach the master's admin port {addr}: {e} (pass --admin HOST:PORT, the master's --metrics_port)")))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let auth = match mooncake_common::config::credential_from_env() {
        Ok(Some(c)) => format!("Authorization: {}\r\n", c.bearer()),
        Ok(None) => String::new(),
        Err(e) => return Err(err(format!("cannot read the credential: {e}"))),
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|_| s.write_all(body.as_bytes()))
        .map_err(|e| err(format!("{addr}: {e}")))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .map_err(|e| err(format!("{addr}: {e}")))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| err(format!("{addr} did not answer in HTTP")))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| err(format!("{addr}: bad status line")))?;
    if status == 401 || status == 403 {
        return Err(err(format!(
            "{addr}{path} answered {status}: {} (set MOONCAKE_AUTH_TOKEN_FILE or MOONCAKE_AUTH_TOKEN to a cluster token)",
            body.trim()
        )));
    }
    let json = serde_json::from_str(body.trim()).map_err(|_| {
        err(format!(
            "{addr}{path} answered {status} without JSON: is this the master's admin port?"
        ))
    })?;
    Ok((status, json))
}

/// The admin address: `--admin`, else the master's host on port 9003.
pub fn admin_addr(admin: Option<&str>, master: Option<&str>) -> Result<String, MooncakeError> {
    if let Some(a) = admin.filter(|a| !a.trim().is_empty()) {
        return Ok(a.trim().to_string());
    }
    let m = master
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| err("no admin address: pass --admin HOST:PORT (or --master HOST:PORT)"))?;
    if m.trim().starts_with("etcd://") {
        // Under HA the job runs on the leader, whose admin port etcd does not name.
        return Err(err(
            "with an etcd:// master, pass --admin HOST:PORT: the leader's admin port (its --metrics_port; a standby answers 503)",
        ));
    }
    let host = m.trim().rsplit_once(':').map_or(m.trim(), |(h, _)| h);
    Ok(format!("{host}:9003"))
}

fn show(v: &Value) -> String {
    format!(
        "job {} {}: {} moved, {} failed, {} bytes{}",
        v["job_id"].as_str().unwrap_or("?"),
        v["status_name"].as_str().unwrap_or("?"),
        v["succeeded_units"],
        v["failed_units"],
        v["migrated_bytes"],
        match v["message"].as_str() {
            Some(m) if !m.is_empty() => format!(" ({m})"),
            _ => String::new(),
        }
    )
}

/// Starts the drain of `segment`; with `wait`, follows the job until it ends (an
/// error unless it SUCCEEDED).
pub fn run(admin: &str, segment: &str, wait: bool) -> Result<(), MooncakeError> {
    let body =
        serde_json::json!({"segments": [segment], "target_segments": [], "max_concurrency": 4});
    let (status, v) = request(admin, "POST", "/api/v1/drain_jobs", &body.to_string())?;
    if status != 200 || v["success"] != Value::Bool(true) {
        return Err(err(format!(
            "drain of {segment} refused: {}",
            v["error"].as_str().unwrap_or("unknown error")
        )));
    }
    let job = v["job_id"].as_str().unwrap_or_default().to_string();
    println!("{}", show(&v));
    if !wait {
        return Ok(());
    }
    let mut last = v;
    loop {
        match last["status_name"].as_str() {
            Some("SUCCEEDED") => return Ok(()),
            Some("FAILED") | Some("CANCELED") => {
                return Err(err(format!("drain of {segment} ended: {}", show(&last))))
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(500));
        let (_, v) = request(
            admin,
            "GET",
            &format!("/api/v1/drain_jobs/query?job_id={job}"),
            "",
        )?;
        if v["status_name"] != last["status_name"]
            || v["succeeded_units"] != last["succeeded_units"]
        {
            println!("{}", show(&v));
        }
        last = v;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_admin_port_defaults_to_the_masters_host_on_9003() {
        assert_eq!(
            super::admin_addr(None, Some("10.0.0.5:50051")).unwrap(),
            "10.0.0.5:9003"
        );
        assert_eq!(super::admin_addr(Some("h:1"), Some("x:2")).unwrap(), "h:1");
        assert!(super::admin_addr(None, None).is_err());
        let e = super::admin_addr(None, Some("etcd://h1:2379;h2:2379")).unwrap_err();
        assert!(e.message.contains("--admin"), "{e}");
    }
}
