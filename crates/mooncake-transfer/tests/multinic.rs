//! One large transfer uses both links between two hosts. Builds two network namespaces
//! joined by two veth pairs (needs root and `ip`; skips cleanly otherwise), runs the
//! `transfer_bench` target in one and the initiator in the other, and reads the byte
//! counters of each link.

#[path = "common/netns.rs"]
mod netns;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn one_large_transfer_is_striped_over_both_links() {
    let links = match netns::TwoLinks::create("t") {
        Ok(l) => l,
        Err(why) => {
            eprintln!("skipping the two-link test: {why}");
            return;
        }
    };
    let bench = env!("CARGO_BIN_EXE_transfer_bench");
    let mut target = Kill(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &links.ns_b,
                bench,
                "--mode",
                "target",
                "--listen",
                "0.0.0.0:0",
                "--segment-size",
                "64mb",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start target"),
    );
    let mut line = String::new();
    BufReader::new(target.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let endpoints = line
        .split("endpoints=")
        .nth(1)
        .expect("target ready line")
        .trim()
        .to_string();
    assert!(
        endpoints.contains("10.201.1.2") && endpoints.contains("10.201.2.2"),
        "{endpoints}"
    );
    let first = endpoints
        .split(',')
        .find(|e| e.starts_with("10.201.1.2"))
        .unwrap()
        .to_string();

    let before: Vec<u64> = links
        .a_if
        .iter()
        .map(|i| links.tx_bytes(&links.ns_a, i))
        .collect();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &links.ns_a,
            bench,
            "--mode",
            "initiator",
            "--target",
            &first,
            "--devices",
            "10.201.1.1,10.201.2.1",
            "--op",
            "write",
            "--block-size",
            "64mb",
            "--batch",
            "1",
            "--duration",
            "1",
        ])
        .output()
        .expect("run initiator");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "initiator failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after: Vec<u64> = links
        .a_if
        .iter()
        .map(|i| links.tx_bytes(&links.ns_a, i))
        .collect();
    let sent: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let total: u64 = sent.iter().sum();
    eprintln!("bytes per link: {sent:?} ({stdout})");
    assert!(total > 64 << 20, "too little traffic: {sent:?}");
    for s in &sent {
        assert!(
            *s as f64 > 0.3 * total as f64,
            "one link carried almost nothing: {sent:?}"
        );
    }
}
