//! Two network namespaces joined by two veth pairs (root and `ip` required):
//! A has 10.201.1.1 and 10.201.2.1, B has 10.201.1.2 and 10.201.2.2. Removed on drop.

use std::process::{Command, Stdio};

pub struct TwoLinks {
    pub ns_a: String,
    pub ns_b: String,
    /// Interface names in A (link 1, link 2).
    pub a_if: [String; 2],
    pub b_if: [String; 2],
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

impl TwoLinks {
    /// `None` (with the reason) when this host cannot build namespaces.
    pub fn create(tag: &str) -> Result<TwoLinks, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root".into());
        }
        if Command::new("ip").arg("-V").output().is_err() {
            return Err("no `ip` command".into());
        }
        let id = format!("{}{}", tag, std::process::id() % 100_000);
        let t = TwoLinks {
            ns_a: format!("mcte-a-{id}"),
            ns_b: format!("mcte-b-{id}"),
            a_if: [format!("mxa0{id}"), format!("mxa1{id}")],
            b_if: [format!("mxb0{id}"), format!("mxb1{id}")],
        };
        t.setup().inspect_err(|_| t.teardown())?;
        Ok(t)
    }

    fn setup(&self) -> Result<(), String> {
        run(&["ip", "netns", "add", &self.ns_a])?;
        run(&["ip", "netns", "add", &self.ns_b])?;
        for ns in [&self.ns_a, &self.ns_b] {
            run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        for i in 0..2 {
            let (a, b) = (&self.a_if[i], &self.b_if[i]);
            run(&[
                "ip", "link", "add", a, "netns", &self.ns_a, "type", "veth", "peer", "name", b,
                "netns", &self.ns_b,
            ])?;
            run(&[
                "ip",
                "-n",
                &self.ns_a,
                "addr",
                "add",
                &format!("10.201.{}.1/24", i + 1),
                "dev",
                a,
            ])?;
            run(&[
                "ip",
                "-n",
                &self.ns_b,
                "addr",
                "add",
                &format!("10.201.{}.2/24", i + 1),
                "dev",
                b,
            ])?;
            run(&["ip", "-n", &self.ns_a, "link", "set", a, "up"])?;
            run(&["ip", "-n", &self.ns_b, "link", "set", b, "up"])?;
        }
        Ok(())
    }

    /// Bytes sent by an interface of a namespace.
    pub fn tx_bytes(&self, ns: &str, ifname: &str) -> u64 {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "cat",
                &format!("/sys/class/net/{ifname}/statistics/tx_bytes"),
            ])
            .output()
            .expect("read counters");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }

    fn teardown(&self) {
        let _ = run(&["ip", "netns", "del", &self.ns_a]);
        let _ = run(&["ip", "netns", "del", &self.ns_b]);
    }
}

impl Drop for TwoLinks {
    fn drop(&mut self) {
        self.teardown();
    }
}
