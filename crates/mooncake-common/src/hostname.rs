//! `local_hostname` handling: the name a process registers. A name without a port gets
//! one (the reference appends a free port), so two processes on one host never collide.

/// Splits `host:port` (IPv6 in brackets allowed). Returns the host and the port if any.
pub fn split_host_port(s: &str) -> (&str, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            let host = &rest[..end];
            let port = rest[end + 1..]
                .strip_prefix(':')
                .and_then(|p| p.parse().ok());
            return (host, port);
        }
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h, Some(port)),
            Err(_) => (s, None),
        },
        _ => (s, None),
    }
}

/// Returns `host:port`, adding `port` when `name` has none.
pub fn with_port(name: &str, port: u16) -> String {
    match split_host_port(name) {
        (_, Some(_)) => name.to_string(),
        (host, None) if host.contains(':') => format!("[{host}]:{port}"),
        (host, None) => format!("{host}:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_adds_ports() {
        assert_eq!(split_host_port("a:1"), ("a", Some(1)));
        assert_eq!(split_host_port("a"), ("a", None));
        assert_eq!(split_host_port("[::1]:5"), ("::1", Some(5)));
        assert_eq!(with_port("node1", 123), "node1:123");
        assert_eq!(with_port("node1:9", 123), "node1:9");
        assert_eq!(with_port("::1", 7), "[::1]:7");
    }
}
