//! This host's identity for the same-host fast path: a segment's `shm_path` is only
//! meaningful on the host whose boot id matches ours.

/// The kernel's boot id (unique per boot of a machine), or the hostname when absent.
pub fn host_id() -> String {
    if let Ok(s) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") {
        let s = s.trim();
        if !s.is_empty() {
            return s.to_string();
        }
    }
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn stable_and_non_empty() {
        let a = super::host_id();
        assert!(!a.is_empty());
        assert_eq!(a, super::host_id());
    }
}
