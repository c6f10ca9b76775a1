//! The master under test as a separate process: started here on free loopback ports
//! (or given by address and pid), and observed through /proc (resident memory, CPU)
//! and its admin port (`/metrics`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A master this run observes; killed on drop when this run started it.
pub struct MasterProc {
    pub addr: String,
    pub pid: u32,
    pub metrics: Option<String>,
    child: Option<Child>,
}

impl Drop for MasterProc {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> Result<u16, String> {
    mooncake_common::ports::free_loopback_port().map_err(|e| format!("no free port: {e}"))
}

impl MasterProc {
    /// Starts `bin` on free loopback ports with `extra` flags and waits for its port.
    pub fn spawn(bin: &str, extra: &[String]) -> Result<Self, String> {
        let (rpc, met) = (free_port()?, free_port()?);
        let mut cmd = Command::new(bin);
        cmd.args([
            "--rpc_address=127.0.0.1",
            &format!("--rpc_port={rpc}"),
            "--metrics_host=127.0.0.1",
            &format!("--metrics_port={met}"),
            "--enable_metric_reporting=false",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start the master {bin:?}: {e}"))?;
        let me = MasterProc {
            addr: format!("127.0.0.1:{rpc}"),
            pid: child.id(),
            metrics: Some(format!("127.0.0.1:{met}")),
            child: Some(child),
        };
        let t = Instant::now();
        while TcpStream::connect(&me.addr).is_err() {
            if t.elapsed() > Duration::from_secs(30) {
                return Err(format!("the master did not open {} in 30 s", me.addr));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(me)
    }

    /// A master started elsewhere.
    pub fn existing(addr: &str, pid: u32, metrics: Option<String>) -> Self {
        MasterProc {
            addr: addr.to_string(),
            pid,
            metrics,
            child: None,
        }
    }

    /// Resident memory in bytes (`VmRSS`).
    pub fn rss(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
        Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
    }

    /// One gauge from the admin port's `/metrics` (None without an admin port).
    pub fn gauge(&self, name: &str) -> Option<u64> {
        let addr = self.metrics.as_ref()?;
        let mut s = TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
    }
}
