//! Local network interfaces: which addresses outgoing data connections bind to.
//!
//! `MOONCAKE_DEVICE` lists interface names or addresses, comma-separated. Names that are
//! not IP interfaces (e.g. `mlx5_0`, an RDMA device given to a TCP engine) are skipped
//! with a warning, so an RDMA manifest still runs over TCP. Empty means every interface
//! that is up, not loopback, and has an IPv4 address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::errors::TransferError;

/// One address of one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub ip: IpAddr,
    pub up: bool,
    pub loopback: bool,
}

/// Every interface address of this host (getifaddrs).
pub fn list_interfaces() -> Result<Vec<Interface>, TransferError> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(TransferError::Config(format!(
            "getifaddrs failed: {}",
            std::io::Error::last_os_error()
        )));
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: non-null name is a C string; the address family tells the sockaddr type.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        let family = unsafe { (*ifa.ifa_addr).sa_family } as i32;
        let ip = match family {
            libc::AF_INET => {
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
            }
            libc::AF_INET6 => {
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
            }
            _ => continue,
        };
        let flags = ifa.ifa_flags;
        out.push(Interface {
            name,
            ip,
            up: flags & libc::IFF_UP as u32 != 0,
            loopback: flags & libc::IFF_LOOPBACK as u32 != 0,
        });
    }
    // SAFETY: `head` came from getifaddrs.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// The local addresses selected by a `MOONCAKE_DEVICE` value.
pub fn select(devices: &str, all: &[Interface]) -> Vec<(String, IpAddr)> {
    let mut out: Vec<(String, IpAddr)> = Vec::new();
    let mut push = |n: &str, ip: IpAddr| {
        if !out.iter().any(|(_, i)| *i == ip) {
            out.push((n.to_string(), ip));
        }
    };
    let tokens: Vec<&str> = devices
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    if tokens.is_empty() {
        for i in all.iter().filter(|i| i.up && !i.loopback && i.ip.is_ipv4()) {
            push(&i.name, i.ip);
        }
        return out;
    }
    for t in tokens {
        if let Ok(ip) = t.parse::<IpAddr>() {
            let name = all
                .iter()
                .find(|i| i.ip == ip)
                .map(|i| i.name.as_str())
                .unwrap_or(t);
            push(name, ip);
            continue;
        }
        let mut found = false;
        for i in all.iter().filter(|i| i.name == t && i.ip.is_ipv4()) {
            push(&i.name, i.ip);
            found = true;
        }
        if !found {
            tracing::warn!(
                device = t,
                "MOONCAKE_DEVICE entry is not an IP interface here; skipped for TCP"
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, ip: &str, up: bool, lo: bool) -> Interface {
        Interface {
            name: name.into(),
            ip: ip.parse().unwrap(),
            up,
            loopback: lo,
        }
    }

    #[test]
    fn selects_by_name_address_or_discovery() {
        let all = vec![
            iface("lo", "127.0.0.1", true, true),
            iface("eth0", "10.0.0.5", true, false),
            iface("eth1", "10.1.0.5", false, false),
            iface("eth2", "10.2.0.5", true, false),
        ];
        let d = select("", &all);
        assert_eq!(
            d.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["eth0", "eth2"]
        );
        let s = select("eth1, 10.2.0.5 ,mlx5_0", &all);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].0, "eth1");
        assert_eq!(s[1].0, "eth2");
        assert!(!list_interfaces().unwrap().is_empty());
    }
}
