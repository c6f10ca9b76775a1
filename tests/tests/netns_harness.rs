//! The cross-host harness's network (benches/netns/topology.sh): hosts in their own
//! namespaces reach each other only through the switch, and the user-space switch
//! (`netns_switch`) adds its delay to every crossing, so a round trip costs at least
//! two crossings. Needs root (network namespaces); elsewhere the test says it skipped.

use mooncake_tests::bin_dir;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

fn topology() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../benches/netns/topology.sh")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs topology.sh with its own namespace prefix; panics with its output on failure.
fn topo(prefix: &str, args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(topology())
        .args(args)
        .env("NETNS_PREFIX", prefix)
        .env("BIN", bin_dir())
        .output()
        .expect("run topology.sh");
    assert!(
        out.status.success(),
        "topology.sh {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Tears the topology down even when an assertion fails.
struct Down(&'static str);
impl Drop for Down {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(topology())
            .arg("down")
            .env("NETNS_PREFIX", self.0)
            .status();
    }
}

/// p50 of a 4 KiB round trip from the client to store1's echo server.
fn rtt_p50(prefix: &str) -> f64 {
    let store = topo(prefix, &["addr", "store1"]).trim().to_string();
    let mut echo = Command::new("bash")
        .arg(topology())
        .args(["exec", "store1"])
        .arg(bin_dir().join("tcp_rtt"))
        .args(["serve", &format!("{store}:7100")])
        .env("NETNS_PREFIX", prefix)
        .stderr(Stdio::null())
        .spawn()
        .expect("start the echo server");
    std::thread::sleep(Duration::from_millis(500));
    let ping = topo(
        prefix,
        &[
            "exec",
            "client",
            bin_dir().join("tcp_rtt").to_str().unwrap(),
            "ping",
            &format!("{store}:7100"),
            "4096",
            "300",
        ],
    );
    let _ = echo.kill();
    let _ = echo.wait();
    let at = ping.find("\"p50_us\": ").expect("p50 in tcp_rtt output") + 10;
    ping[at..]
        .split([',', '}'])
        .next()
        .unwrap()
        .trim()
        .parse()
        .expect("p50 is a number")
}

#[test]
fn hosts_talk_through_the_switch_and_every_crossing_pays_the_delay() {
    if !is_root() {
        eprintln!("SKIPPED: network namespaces need root");
        return;
    }
    for name in ["tcp_rtt", "netns_switch"] {
        mooncake_tests::bin(name);
    }
    let prefix = "mct";
    let _down = Down(prefix);

    let up = topo(prefix, &["up", "--stores", "1"]);
    assert!(
        up.contains("(bridge)"),
        "no delay means the kernel bridge: {up}"
    );
    let plain = rtt_p50(prefix);

    // 2 ms per crossing: far above anything this machine adds by itself, so the
    // bound below holds however loaded it is.
    let up = topo(prefix, &["up", "--stores", "1", "--delay", "2000us"]);
    assert!(
        up.contains("(switch)"),
        "a delay uses the delaying switch: {up}"
    );
    let delayed = rtt_p50(prefix);
    assert!(
        delayed >= 4000.0,
        "a round trip crosses the switch twice at 2 ms each, yet took {delayed} µs (without delay: {plain} µs)"
    );

    // Bad input is refused with a message, and leaves nothing half built.
    let out = Command::new("bash")
        .arg(topology())
        .args(["up", "--delay", "fast"])
        .env("NETNS_PREFIX", prefix)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--delay must be microseconds"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
