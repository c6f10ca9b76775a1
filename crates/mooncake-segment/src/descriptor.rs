//! What the master tells peers about a process's segment. The fields that matter here
//! are the ones only the owner knows: where the mapping sits in its address space
//! (`base`, which replica offsets are relative to), and the file plus host identity a
//! same-host peer needs to map it instead of going through the transfer engine.

use crate::memory::SegmentMemory;
use mooncake_proto::SegmentDesc;

impl SegmentMemory {
    /// The descriptor to mount at the master. A process contributes one segment, named
    /// after itself (`name` is both the segment's name and its owner's, `host:port`);
    /// `transport_endpoint` is where its transfer engine serves the memory, `host_id`
    /// this host's [`crate::host_id`]. A memfd-backed segment publishes no file, so
    /// every peer uses the transfer engine.
    pub fn descriptor(
        &self,
        name: &str,
        protocol: &str,
        transport_endpoint: String,
        host_id: String,
    ) -> SegmentDesc {
        SegmentDesc {
            name: name.to_string(),
            owner: name.to_string(),
            base: self.addr() as u64,
            size: self.len() as u64,
            protocol: protocol.to_string(),
            transport_endpoint,
            shm_path: self
                .shm_path()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            host_id,
            generation: self.generation().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_backed_segment_publishes_its_file_and_a_memfd_none() {
        let dir = std::env::temp_dir().join(format!("mc-desc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let seg = SegmentMemory::create("h:1", 1 << 16, dir.to_str(), false).unwrap();
        let d = seg.descriptor("h:1", "tcp", "10.0.0.1:4000".into(), "boot".into());
        assert_eq!((d.name.as_str(), d.owner.as_str()), ("h:1", "h:1"));
        assert_eq!((d.base, d.size), (seg.addr() as u64, 1 << 16));
        assert_eq!(d.shm_path, seg.shm_path().unwrap().to_string_lossy());
        assert_eq!((d.protocol.as_str(), d.host_id.as_str()), ("tcp", "boot"));
        assert_eq!(d.transport_endpoint, "10.0.0.1:4000");
        let anon = SegmentMemory::create("h:1", 8192, Some("/nonexistent-dir-mc"), false).unwrap();
        assert!(anon
            .descriptor("h:1", "tcp", String::new(), "boot".into())
            .shm_path
            .is_empty());
        drop(seg);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
