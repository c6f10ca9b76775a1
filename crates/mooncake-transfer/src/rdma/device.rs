//! RDMA device discovery through libibverbs.

use crate::errors::TransferError;

/// Names of the RDMA devices present on this host.
pub fn list_devices() -> Vec<String> {
    let mut n: std::os::raw::c_int = 0;
    // SAFETY: ibv_get_device_list returns an array of `n` device pointers (or null),
    // freed below with ibv_free_device_list.
    let list = unsafe { rdma_sys::ibv_get_device_list(&mut n) };
    if list.is_null() {
        return Vec::new();
    }
    let mut names = Vec::new();
    for i in 0..n.max(0) as usize {
        // SAFETY: i < n, entries are valid devices; names are C strings they own.
        unsafe {
            let dev = *list.add(i);
            if dev.is_null() {
                continue;
            }
            let name = rdma_sys::ibv_get_device_name(dev);
            if !name.is_null() {
                names.push(
                    std::ffi::CStr::from_ptr(name)
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    // SAFETY: `list` came from ibv_get_device_list.
    unsafe { rdma_sys::ibv_free_device_list(list) };
    names
}

/// The devices to use: those named in `devices` (comma-separated), or all. Fails with
/// a message naming what is missing when none can be used.
pub fn select(devices: &str, present: &[String]) -> Result<Vec<String>, TransferError> {
    if present.is_empty() {
        return Err(TransferError::Rdma(
            "no RDMA device found (ibv_get_device_list is empty); use protocol tcp, or enable the TCP fallback".into(),
        ));
    }
    let wanted: Vec<&str> = devices
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if wanted.is_empty() {
        return Ok(present.to_vec());
    }
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|w| !present.iter().any(|p| p == w))
        .collect();
    if !missing.is_empty() {
        return Err(TransferError::Rdma(format!(
            "RDMA device(s) {missing:?} from MOONCAKE_DEVICE not present (have {present:?})"
        )));
    }
    Ok(wanted.iter().map(|s| s.to_string()).collect())
}

/// The devices an RDMA engine would use here.
pub fn probe(devices: &str) -> Result<Vec<String>, TransferError> {
    select(devices, &list_devices())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_names_what_is_missing() {
        let present = vec!["mlx5_0".to_string(), "mlx5_1".to_string()];
        assert_eq!(select("", &present).unwrap(), present);
        assert_eq!(select("mlx5_1", &present).unwrap(), vec!["mlx5_1"]);
        let e = select("mlx5_0,mlx5_9", &present).unwrap_err();
        assert!(e.to_string().contains("mlx5_9"), "{e}");
        let e = select("", &[]).unwrap_err();
        assert!(e.to_string().contains("no RDMA device"), "{e}");
    }
}
