use super::*;
use crate::record::record_len;

fn cfg(dir: &Path, capacity: u64) -> TierConfig {
    TierConfig {
        dir: dir.to_path_buf(),
        capacity,
        direct_writes: Default::default(),
    }
}

fn value(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn writes_read_back_whole_and_in_ranges() {
    let d = tempfile::tempdir().unwrap();
    let t = DiskTier::open(&cfg(d.path(), 8 << 20)).unwrap();
    let v = value(300_000, 1);
    let r = t.write(4096, "a", 7, &v).unwrap();
    assert_eq!(r.len, record_len(1, v.len() as u64));
    assert_eq!(t.read_value(r.value_offset, v.len() as u64).unwrap(), v);
    for (from, len) in [
        (0usize, 1usize),
        (65535, 2),
        (65536, 65536),
        (100, 250_000),
        (299_999, 1),
    ] {
        let mut b = vec![0u8; len];
        t.read(r.value_offset + from as u64, &mut b).unwrap();
        assert_eq!(b, v[from..from + len], "range {from}+{len}");
    }
    let mut b = vec![0u8; 2];
    assert!(matches!(
        t.read(r.value_offset + 299_999, &mut b),
        Err(TierError::Missing { .. })
    ));
    assert!(matches!(t.read(0, &mut b), Err(TierError::Missing { .. })));
    let s = t.stats();
    assert_eq!((s.objects, s.bytes, s.writes), (1, v.len() as u64, 1));
}

#[test]
fn a_reopened_tier_finds_its_records() {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (value(70_000, 2), value(10, 3));
    let (ra, rb) = {
        let t = DiskTier::open(&cfg(d.path(), 1 << 20)).unwrap();
        (
            t.write(0, "a", 1, &a).unwrap(),
            t.write(200_000, "b", 2, &b).unwrap(),
        )
    };
    let first_id = DiskTier::open(&cfg(d.path(), 1 << 20))
        .unwrap()
        .id()
        .to_string();
    let t = DiskTier::open(&cfg(d.path(), 1 << 20)).unwrap();
    assert_eq!(t.id(), first_id, "the id survives restarts");
    assert_eq!(t.id().len(), 32);
    assert_eq!(t.records(), vec![ra.clone(), rb.clone()]);
    assert_eq!(t.read_value(ra.value_offset, a.len() as u64).unwrap(), a);
    assert_eq!(t.read_value(rb.value_offset, b.len() as u64).unwrap(), b);
    // And again, after the index was rewritten compact.
    drop(t);
    let t = DiskTier::open(&cfg(d.path(), 1 << 20)).unwrap();
    assert_eq!(t.records().len(), 2);
}

#[test]
fn an_overlapping_write_replaces_the_old_record() {
    let d = tempfile::tempdir().unwrap();
    let t = DiskTier::open(&cfg(d.path(), 1 << 20)).unwrap();
    let old = t.write(0, "old", 1, &value(100_000, 4)).unwrap();
    let new = t.write(50_000, "new", 2, &value(1000, 5)).unwrap();
    assert!(t.record_at(old.value_offset).is_none());
    assert_eq!(t.records(), vec![new.clone()]);
    drop(t);
    let t = DiskTier::open(&cfg(d.path(), 1 << 20)).unwrap();
    assert_eq!(t.records(), vec![new]);
}

#[test]
fn a_value_changed_on_disk_is_a_counted_miss_never_bytes() {
    let d = tempfile::tempdir().unwrap();
    let t = DiskTier::open(&cfg(d.path(), 1 << 20)).unwrap();
    let v = value(200_000, 6);
    let r = t.write(0, "k", 1, &v).unwrap();
    // Overwrite one byte in the third block behind the tier's back.
    let f = OpenOptions::new()
        .write(true)
        .open(d.path().join(DATA))
        .unwrap();
    f.write_all_at(&[v[140_000] ^ 1], r.value_offset + 140_000)
        .unwrap();
    // A range that does not touch the block still reads.
    let mut b = vec![0u8; 1000];
    t.read(r.value_offset, &mut b).unwrap();
    assert_eq!(b, v[..1000]);
    let mut b = vec![0u8; 10];
    assert!(matches!(
        t.read(r.value_offset + 139_995, &mut b),
        Err(TierError::Checksum { .. })
    ));
    assert_eq!(t.stats().checksum_failures, 1);
    assert!(matches!(
        t.read(r.value_offset, &mut b),
        Err(TierError::Missing { .. })
    ));
}

#[test]
fn a_corrupt_header_or_torn_index_loses_only_that_record() {
    let d = tempfile::tempdir().unwrap();
    let (good, bad) = {
        let t = DiskTier::open(&cfg(d.path(), 1 << 20)).unwrap();
        (
            t.write(0, "good", 1, &value(5000, 7)).unwrap(),
            t.write(8192, "bad", 1, &value(5000, 8)).unwrap(),
        )
    };
    let f = OpenOptions::new()
        .write(true)
        .open(d.path().join(DATA))
        .unwrap();
    f.write_all_at(b"XX", bad.offset + 41).unwrap();
    // A torn index entry at the end (a crash mid-append).
    let mut idx = OpenOptions::new()
        .append(true)
        .open(d.path().join(INDEX))
        .unwrap();
    idx.write_all(&[1, 2, 3]).unwrap();
    let t = DiskTier::open(&cfg(d.path(), 1 << 20)).unwrap();
    assert_eq!(t.records(), vec![good.clone()]);
    assert_eq!(
        t.read_value(good.value_offset, 5000).unwrap(),
        value(5000, 7)
    );
}

#[test]
fn a_truncated_file_is_an_error_not_a_panic() {
    let d = tempfile::tempdir().unwrap();
    let t = DiskTier::open(&cfg(d.path(), 1 << 20)).unwrap();
    let r = t.write(500_000, "k", 1, &value(100_000, 9)).unwrap();
    OpenOptions::new()
        .write(true)
        .open(d.path().join(DATA))
        .unwrap()
        .set_len(520_000)
        .unwrap();
    let e = t.read_value(r.value_offset, 100_000).unwrap_err();
    assert!(
        matches!(e, TierError::Io { .. } | TierError::Checksum { .. }),
        "{e}"
    );
    drop(t);
    // Reopened: the header survived, so the record is found, and its first read is
    // an error (the value's end is gone), never bytes.
    let t = DiskTier::open(&cfg(d.path(), 1 << 20)).unwrap();
    let e = t.read_value(r.value_offset, 100_000).unwrap_err();
    assert!(
        matches!(e, TierError::Io { .. } | TierError::Checksum { .. }),
        "{e}"
    );
    assert!(t.records().is_empty());
}

#[test]
fn writes_past_capacity_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let t = DiskTier::open(&cfg(d.path(), 1 << 20)).unwrap();
    let e = t
        .write((1 << 20) - 100, "k", 1, &value(200, 1))
        .unwrap_err();
    assert!(e.to_string().contains("does not fit"), "{e}");
    assert!(t.write(u64::MAX - 10, "k", 1, &value(200, 1)).is_err());
    assert!(t.records().is_empty());
}

#[test]
fn bad_directories_are_named() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("nope");
    let e = DiskTier::open(&cfg(&missing, 1 << 20))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("nope") && e.contains(crate::config::ENV_PATH),
        "{e}"
    );
    let file = d.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let e = DiskTier::open(&cfg(&file, 1 << 20))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a directory"), "{e}");
    // A read-only directory (root writes anyway, so only check when it bites).
    let ro = d.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o500)).unwrap();
    if std::fs::write(ro.join("probe"), b"x").is_err() {
        let e = DiskTier::open(&cfg(&ro, 1 << 20))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not writable"), "{e}");
    }
}

#[test]
fn discard_forgets_and_frees() {
    let d = tempfile::tempdir().unwrap();
    let t = DiskTier::open(&cfg(d.path(), 4 << 20)).unwrap();
    let r = t.write(0, "k", 1, &value(1 << 20, 1)).unwrap();
    t.discard(r.offset, r.len);
    assert!(t.records().is_empty());
    assert!(t.read_value(r.value_offset, 1 << 20).is_err());
    drop(t);
    assert!(DiskTier::open(&cfg(d.path(), 4 << 20))
        .unwrap()
        .records()
        .is_empty());
}

#[test]
fn a_discarded_record_stays_gone_after_a_restart_even_with_its_bytes_intact() {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = {
        let t = DiskTier::open(&cfg(d.path(), 1 << 20)).unwrap();
        let a = t.write(0, "a", 1, &value(10_000, 1)).unwrap();
        let b = t.write(16_384, "b", 1, &value(10_000, 2)).unwrap();
        // Only a part of `a`'s page range: punching leaves its header in place.
        t.discard(a.offset, 100);
        (a, b)
    };
    let t = DiskTier::open(&cfg(d.path(), 1 << 20)).unwrap();
    assert!(t.record_at(a.value_offset).is_none());
    assert_eq!(t.records(), vec![b]);
}

/// Pushes the file's pages out of the page cache, so that the next read needs the
/// device (the O_DIRECT path).
fn drop_cached(t: &DiskTier) {
    use std::os::fd::AsRawFd;
    t.data.sync_all().unwrap();
    // SAFETY: plain syscall on an open fd.
    let rc = unsafe { libc::posix_fadvise(t.data.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0);
}

#[test]
fn records_out_of_the_page_cache_read_back_in_any_range_and_stay_checked() {
    let d = tempfile::tempdir().unwrap();
    let t = DiskTier::open(&cfg(d.path(), 8 << 20)).unwrap();
    // Odd offsets and lengths: the value starts and ends off O_DIRECT's alignment.
    let v = value(1_000_003, 5);
    let r = t.write(4096 * 3 + 8, "k/odd", 1, &v).unwrap();
    let w = value(5, 6);
    let r2 = t.write(r.offset + r.len, "tiny", 2, &w).unwrap();
    for (from, len) in [
        (0usize, v.len()),
        (1, 70_000),
        (65_536, 4096),
        (999_000, 1003),
    ] {
        drop_cached(&t);
        let b = t
            .read_bytes(r.value_offset + from as u64, len as u64)
            .unwrap();
        assert_eq!(b.as_ref(), &v[from..from + len], "range {from}+{len}");
    }
    drop_cached(&t);
    assert_eq!(t.read_value(r2.value_offset, 5).unwrap(), w);
    // Warm: the same bytes again, now from wherever the read found them.
    assert_eq!(t.read_value(r.value_offset, v.len() as u64).unwrap(), v);
    // A byte changed behind the tier's back is caught on the device path too.
    let f = OpenOptions::new()
        .write(true)
        .open(d.path().join(DATA))
        .unwrap();
    f.write_all_at(&[0x5a ^ v[500_000]], r.value_offset + 500_000)
        .unwrap();
    drop_cached(&t);
    assert!(matches!(
        t.read_bytes(r.value_offset + 499_000, 2000),
        Err(TierError::Checksum { .. })
    ));
    assert_eq!(t.stats().checksum_failures, 1);
    assert_eq!(t.read_value(r2.value_offset, 5).unwrap(), w);
}

#[test]
fn a_cached_only_read_answers_from_the_page_cache_or_not_at_all() {
    let d = tempfile::tempdir().unwrap();
    let t = DiskTier::open(&cfg(d.path(), 8 << 20)).unwrap();
    let v = value(200_000, 9);
    let r = t.write(0, "c", 1, &v).unwrap();
    // Just written: in the page cache.
    let b = t
        .read_bytes_cached(r.value_offset + 10, 100_000)
        .unwrap()
        .unwrap();
    assert_eq!(b.as_ref(), &v[10..100_010]);
    drop_cached(&t);
    assert!(t.read_bytes_cached(r.value_offset, 1000).is_none());
    assert!(matches!(
        t.read_bytes_cached(r.value_offset + 199_999, 2),
        Some(Err(TierError::Missing { .. }))
    ));
    assert_eq!(t.read_value(r.value_offset, v.len() as u64).unwrap(), v);
}

/// A record the page cache does not hold is read from the device once: asking the
/// cache first starts no readahead, and the O_DIRECT read leaves nothing behind (a
/// NOWAIT read of the miss used to pull the whole record and more into the cache
/// before it was read again with O_DIRECT).
#[test]
fn a_read_from_the_device_does_not_fill_the_page_cache() {
    let d = tempfile::tempdir().unwrap();
    let t = DiskTier::open(&cfg(d.path(), 8 << 20)).unwrap();
    let v = value(1 << 20, 4);
    let r = t.write(8192, "big", 1, &v).unwrap();
    let span = (r.value_offset, v.len());
    let Some(true) = io::cached_whole(&t.data, span.0, span.1) else {
        return; // no cachestat on this kernel: nothing to tell the paths apart with
    };
    if t.direct.is_none() {
        return; // no O_DIRECT here (tmpfs): reads go through the cache on purpose
    }
    drop_cached(&t);
    assert_eq!(io::cached_whole(&t.data, span.0, span.1), Some(false));
    assert!(t.read_bytes_cached(span.0, span.1 as u64).is_none());
    let b = t.read_bytes(span.0, span.1 as u64).unwrap();
    assert_eq!(b.as_ref(), &v[..]);
    assert_eq!(io::cached_whole(&t.data, span.0, span.1), Some(false));
}

/// The figures an owner reports (objects, value bytes) follow every write, overwrite,
/// discard and reopen without a walk over the records.
#[test]
fn the_reported_bytes_follow_writes_overwrites_discards_and_reopens() {
    let d = tempfile::tempdir().unwrap();
    let sum = |t: &DiskTier| -> (u64, u64) {
        let s = t.stats();
        let walked: u64 = t.records().iter().map(|r| r.value_len).sum();
        assert_eq!(s.bytes, walked, "running count against a walk");
        (s.objects, s.bytes)
    };
    {
        let t = DiskTier::open(&cfg(d.path(), 4 << 20)).unwrap();
        let a = t.write(0, "a", 1, &value(70_000, 1)).unwrap();
        t.write(200_000, "b", 2, &value(10, 2)).unwrap();
        t.write(400_000, "c", 3, &value(5_000, 3)).unwrap();
        assert_eq!(sum(&t), (3, 75_010));
        // Over "b" and "c": both go, the new record counts.
        t.write(150_000, "d", 4, &value(300_000, 4)).unwrap();
        assert_eq!(sum(&t), (2, 370_000));
        t.discard(a.offset, a.len);
        assert_eq!(sum(&t), (1, 300_000));
        t.discard(a.offset, a.len);
        assert_eq!(sum(&t), (1, 300_000), "a second discard changes nothing");
    }
    let t = DiskTier::open(&cfg(d.path(), 4 << 20)).unwrap();
    assert_eq!(sum(&t), (1, 300_000), "after a reopen");
}

/// A fresh tier's blocks are allocated a step ahead of its records (writes then skip
/// the file system's per-block delayed allocation), without the file growing longer
/// than its furthest record; a record placed more than a step beyond allocates only
/// itself, and a discard still gives blocks back.
#[test]
fn blocks_are_allocated_a_step_ahead_of_the_records() {
    use std::os::unix::fs::MetadataExt;
    let d = tempfile::tempdir().unwrap();
    let t = DiskTier::open(&cfg(d.path(), 512 << 20)).unwrap();
    let blocks = || std::fs::metadata(d.path().join(DATA)).unwrap().blocks() * 512;
    let v = value(300_000, 1);
    let a = t.write(0, "a", 1, &v).unwrap();
    let md = std::fs::metadata(d.path().join(DATA)).unwrap();
    assert_eq!(
        md.len(),
        a.len,
        "the file is as long as its furthest record"
    );
    if blocks() < PREALLOC_STEP {
        return; // this file system does not allocate ahead (no fallocate)
    }
    // The next records land in blocks allocated already.
    let before = blocks();
    let b = t.write(a.len, "b", 2, &v).unwrap();
    assert_eq!(blocks(), before);
    // Far beyond the allocated blocks: only the record itself.
    let far = 400 << 20;
    let c = t.write(far, "c", 3, &v).unwrap();
    assert!(
        blocks() < before + 2 * c.len + 2 * io::ALIGN,
        "{} {before}",
        blocks()
    );
    assert_eq!(t.read_value(b.value_offset, v.len() as u64).unwrap(), v);
    assert_eq!(t.read_value(c.value_offset, v.len() as u64).unwrap(), v);
    let with_c = blocks();
    t.discard(c.offset, c.len);
    assert!(blocks() < with_c);
    // Reopened: the blocks up to the furthest record count as allocated.
    drop(t);
    let t = DiskTier::open(&cfg(d.path(), 512 << 20)).unwrap();
    assert_eq!(t.allocated_to.load(Ordering::Relaxed), far + c.len);
}

/// Direct writes (O_DIRECT, whole pages) next to records written either way, at
/// offsets and lengths that share pages with them: every record reads back, a
/// direct overwrite leaves its neighbours whole, and a reopened tier finds them.
#[test]
fn direct_writes_keep_the_bytes_they_share_pages_with() {
    let d = tempfile::tempdir().unwrap();
    let t = DiskTier::open(&cfg(d.path(), 8 << 20)).unwrap();
    let direct = t.direct.is_some();
    let (a, b, c, b2) = (
        value(5_000, 1),
        value(70_001, 2),
        value(3, 3),
        value(70_001, 9),
    );
    // `a` through the page cache (still dirty there), `b` and `c` around it.
    let ra = t.write(100, "a", 1, &a).unwrap();
    FORCE_DIRECT.with(|f| f.set(true));
    let rb = t.write(ra.offset + ra.len, "b", 2, &b).unwrap();
    let rc = t.write(rb.offset + rb.len, "c", 3, &c).unwrap();
    assert_eq!(t.read_value(ra.value_offset, 5_000).unwrap(), a);
    assert_eq!(t.read_value(rb.value_offset, 70_001).unwrap(), b);
    assert_eq!(t.read_value(rc.value_offset, 3).unwrap(), c);
    // Overwritten in place, around the cache: the neighbours keep their bytes.
    let rb2 = t.write(rb.offset, "b", 4, &b2).unwrap();
    FORCE_DIRECT.with(|f| f.set(false));
    drop_cached(&t);
    assert_eq!(t.read_value(ra.value_offset, 5_000).unwrap(), a);
    assert_eq!(t.read_value(rb2.value_offset, 70_001).unwrap(), b2);
    assert_eq!(t.read_value(rc.value_offset, 3).unwrap(), c);
    let s = t.stats();
    assert_eq!(s.checksum_failures, 0);
    // Where the file system refuses O_DIRECT (tmpfs) the page cache took them all.
    assert_eq!(s.direct_writes, if direct { 3 } else { 0 });
    drop(t);
    let t = DiskTier::open(&cfg(d.path(), 8 << 20)).unwrap();
    assert_eq!(t.records().len(), 3);
    assert_eq!(t.read_value(ra.value_offset, 5_000).unwrap(), a);
    assert_eq!(t.read_value(rb2.value_offset, 70_001).unwrap(), b2);
    assert_eq!(t.read_value(rc.value_offset, 3).unwrap(), c);
}

/// A direct write takes the bytes its first page shares with the record before from
/// the page the previous direct write left, unless another write landed in that
/// page since: a record written through the page cache between the two keeps its
/// bytes.
#[test]
fn a_record_written_in_between_is_not_undone_by_the_next_direct_write() {
    let d = tempfile::tempdir().unwrap();
    let t = DiskTier::open(&cfg(d.path(), 8 << 20)).unwrap();
    let direct = t.direct.is_some();
    let (a, b, c, e) = (
        value(6_000, 1),
        value(700, 2),
        value(9_000, 3),
        value(2_000, 4),
    );
    FORCE_DIRECT.with(|f| f.set(true));
    let ra = t.write(10, "a", 1, &a).unwrap();
    // Right after `a`, inside its last page, through the page cache.
    FORCE_DIRECT.with(|f| f.set(false));
    let rb = t.write(ra.offset + ra.len, "b", 2, &b).unwrap();
    FORCE_DIRECT.with(|f| f.set(true));
    // Shares that page with `a` and `b`.
    let rc = t.write(rb.offset + rb.len, "c", 3, &c).unwrap();
    // Shares its first page with `c` only: taken from what `c`'s write left.
    let re = t.write(rc.offset + rc.len, "e", 4, &e).unwrap();
    FORCE_DIRECT.with(|f| f.set(false));
    drop_cached(&t);
    for (r, v) in [(&ra, &a), (&rb, &b), (&rc, &c), (&re, &e)] {
        assert_eq!(&t.read_value(r.value_offset, v.len() as u64).unwrap(), v);
    }
    assert_eq!(t.stats().checksum_failures, 0);
    assert_eq!(t.stats().direct_writes, if direct { 3 } else { 0 });
}

/// A record laid out ahead of its turn takes its neighbours' bytes when it is
/// written, not when it was laid out: a record written in between into the page
/// they share keeps its bytes.
#[test]
fn a_record_prepared_ahead_keeps_what_was_written_beside_it_meanwhile() {
    let d = tempfile::tempdir().unwrap();
    let t = DiskTier::open(&cfg(d.path(), 8 << 20)).unwrap();
    if t.direct.is_none() {
        return; // (tmpfs: nothing is written around the page cache)
    }
    let (a, x, b) = (value(6_000, 1), value(700, 2), value(9_000, 3));
    let ra_len = crate::record_len(1, 6_000);
    let rx_len = crate::record_len(1, 700);
    let (at_a, at_x) = (10, 10 + ra_len);
    let at_b = at_x + rx_len;
    FORCE_DIRECT.with(|f| f.set(true));
    let pb = t.prepare(at_b, "b", 3, &b).expect("laid out");
    let ra = t.write(at_a, "a", 1, &a).unwrap();
    FORCE_DIRECT.with(|f| f.set(false));
    let rx = t.write(at_x, "x", 2, &x).unwrap();
    let rb = t.write_prepared(pb).unwrap();
    drop_cached(&t);
    for (r, v) in [(&ra, &a), (&rx, &x), (&rb, &b)] {
        assert_eq!(&t.read_value(r.value_offset, v.len() as u64).unwrap(), v);
    }
    assert_eq!(t.stats().direct_writes, 2);
    assert_eq!(t.stats().checksum_failures, 0);
    // Without direct writes asked for, nothing is laid out.
    assert!(t.prepare(at_b + rb.len, "c", 4, &b).is_none());
}

/// A direct write at the end of the file, inside one page: the file grows by whole
/// pages of zeros past the record, and the record reads back.
#[test]
fn a_direct_write_inside_one_page_at_the_end_of_the_file() {
    let d = tempfile::tempdir().unwrap();
    let t = DiskTier::open(&cfg(d.path(), 1 << 20)).unwrap();
    let v = value(10, 5);
    FORCE_DIRECT.with(|f| f.set(true));
    let r = t.write(4096 + 7, "k", 1, &v).unwrap();
    FORCE_DIRECT.with(|f| f.set(false));
    drop_cached(&t);
    assert_eq!(t.read_value(r.value_offset, 10).unwrap(), v);
    assert_eq!(t.stats().checksum_failures, 0);
}

/// A record whose last page would reach past the capacity is written through the
/// page cache even when direct writes are asked for: the file stays within it.
#[test]
fn a_direct_write_never_grows_the_file_past_the_capacity() {
    let d = tempfile::tempdir().unwrap();
    // Not a whole number of pages: the record's last page would end past it.
    let cap = (1 << 20) + 100;
    let t = DiskTier::open(&cfg(d.path(), cap)).unwrap();
    let v = value(100, 6);
    let len = record_len(1, 100);
    FORCE_DIRECT.with(|f| f.set(true));
    let r = t.write(cap - len, "k", 1, &v).unwrap();
    FORCE_DIRECT.with(|f| f.set(false));
    assert_eq!(t.stats().direct_writes, 0);
    assert!(std::fs::metadata(d.path().join(DATA)).unwrap().len() <= cap);
    assert_eq!(t.read_value(r.value_offset, 100).unwrap(), v);
}
