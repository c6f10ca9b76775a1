//! The tier's files in its directory:
//! - `tier.data`: one file, as long as its furthest record (never longer than the
//!   tier's capacity; its blocks allocated at most 64 MiB ahead of the records, not
//!   for the whole capacity, so a full file system shows as a failed write of one
//!   record, which the master answers by keeping the object in DRAM). Each record
//!   sits at the offset the master allocated for it, so space comes back the moment the
//!   master frees an extent; a stale record under a newer one is simply replaced.
//! - `tier.index`: an append-only log of the extents written (offset, length, CRC), so
//!   a restarted owner finds its records without scanning terabytes. Rewritten compact
//!   at every open.
//!
//! Every read is checked against the per-block CRCs kept in memory (taken from the
//! record's header when it was written or recovered): a block that changed on disk
//! after the write is a miss, counted, and the record is dropped; bytes are never
//! returned unless they are the bytes that were written.

use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::config::{DirectWrites, TierConfig};
use crate::errors::TierError;
use crate::io;
use crate::metrics::{TierMetrics, TierStats};
use crate::record::{Header, BLOCK};

const DATA: &str = "tier.data";
const ID: &str = "tier.id";
const INDEX: &str = "tier.index";
const INDEX_ENTRY: usize = 24;
/// How far past the furthest record the file's blocks are allocated ahead of writes.
const PREALLOC_STEP: u64 = 64 << 20;
/// The length bit of an index entry that says the extent was discarded.
const TOMBSTONE: u64 = 1 << 63;

/// Bytes read from the tier and checked: a view into the buffer they were read into.
pub struct TierBytes {
    buf: io::AlignedBuf,
    start: usize,
    len: usize,
}

impl AsRef<[u8]> for TierBytes {
    fn as_ref(&self) -> &[u8] {
        &self.buf.as_slice(self.start + self.len)[self.start..]
    }
}

/// A record the tier holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordInfo {
    pub key: String,
    /// Where the record starts in the tier (the master's extent).
    pub offset: u64,
    /// Bytes of header + value.
    pub len: u64,
    /// Where the value starts (what readers address).
    pub value_offset: u64,
    pub value_len: u64,
    pub generation: u64,
}

#[derive(Debug)]
struct Record {
    offset: u64,
    header_len: u64,
    key: String,
    value_len: u64,
    generation: u64,
    crcs: Vec<u32>,
}

impl Record {
    fn end(&self) -> u64 {
        self.offset + self.header_len + self.value_len
    }
    fn value_offset(&self) -> u64 {
        self.offset + self.header_len
    }
    fn info(&self) -> RecordInfo {
        RecordInfo {
            key: self.key.clone(),
            offset: self.offset,
            len: self.header_len + self.value_len,
            value_offset: self.value_offset(),
            value_len: self.value_len,
            generation: self.generation,
        }
    }
}

/// One owner's SSD tier.
pub struct DiskTier {
    dir: PathBuf,
    /// Names this tier across restarts of its owner (kept in `tier.id`).
    id: String,
    data_path: PathBuf,
    data: File,
    /// `tier.data` opened with O_DIRECT for reads the page cache cannot serve; `None`
    /// where the file system refuses O_DIRECT (tmpfs): plain reads then.
    direct: Option<File>,
    index: Mutex<File>,
    /// Held while record bytes are written (see `write_prepared`), with the page
    /// the last direct write ended in.
    writing: Mutex<io::LastPage>,
    capacity: u64,
    /// When records go around the page cache (`MOONCAKE_TIER_DIRECT_WRITES`).
    direct_writes: DirectWrites,
    /// Records by start offset.
    records: RwLock<BTreeMap<u64, Arc<Record>>>,
    /// The value bytes of `records`, changed under its write lock with every record
    /// added or dropped: the owner reports its tier's figures on every call to the
    /// master (one per batch of demotions), and summing them there walked every
    /// record under the lock that writes and reads of records wait for.
    value_bytes: AtomicU64,
    /// The file's blocks are allocated up to here ([`PREALLOC_STEP`]).
    allocated_to: AtomicU64,
    metrics: TierMetrics,
}

/// A record laid out for a direct write ([`DiskTier::prepare`]).
pub struct PreparedRecord {
    offset: u64,
    header: Header,
    w: io::DirectWrite,
}

impl DiskTier {
    /// Opens (or creates) the tier in `cfg.dir`, finding the records a previous run left.
    pub fn open(cfg: &TierConfig) -> Result<DiskTier, TierError> {
        let dir = &cfg.dir;
        let md = std::fs::metadata(dir).map_err(|e| {
            TierError::Config(format!(
                "{}={}: {e}",
                crate::config::ENV_PATH,
                dir.display()
            ))
        })?;
        if !md.is_dir() {
            return Err(TierError::Config(format!(
                "{}={} is not a directory",
                crate::config::ENV_PATH,
                dir.display()
            )));
        }
        let data_path = dir.join(DATA);
        let data = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&data_path)
            .map_err(|e| {
                TierError::Config(format!(
                    "{}={} is not writable ({}: {e})",
                    crate::config::ENV_PATH,
                    dir.display(),
                    data_path.display()
                ))
            })?;
        // Blocks past the furthest record were allocated ahead of writes, or are holes.
        let length = data.metadata().map(|m| m.len()).unwrap_or(0);
        let index_path = dir.join(INDEX);
        let found = read_index(&index_path);
        let id = tier_id(dir)?;
        let tier = DiskTier {
            dir: dir.clone(),
            id,
            direct: io::open_direct(&data_path),
            data_path,
            data,
            index: Mutex::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&index_path)
                    .map_err(TierError::io("open", &index_path))?,
            ),
            writing: Mutex::new(io::LastPage::default()),
            capacity: cfg.capacity,
            direct_writes: cfg.direct_writes,
            records: RwLock::new(BTreeMap::new()),
            value_bytes: AtomicU64::new(0),
            allocated_to: AtomicU64::new(length),
            metrics: TierMetrics::default(),
        };
        let mut dropped = 0u64;
        for (offset, len) in found {
            if len & TOMBSTONE != 0 {
                tier.remove_range(offset, len & !TOMBSTONE);
                continue;
            }
            match tier.load_header(offset, len) {
                Ok(r) => tier.insert(r),
                Err(e) => {
                    // Also a record a later one overwrote in part: not an alarm.
                    dropped += 1;
                    tracing::debug!(
                        offset,
                        len,
                        "SSD tier: a record of the last run is unusable: {e}"
                    );
                }
            }
        }
        if dropped > 0 {
            tracing::info!(
                dropped,
                "SSD tier: records of the last run that are no longer whole were dropped"
            );
        }
        tier.rewrite_index()?;
        Ok(tier)
    }

    /// What names this tier across its owner's restarts (drawn at its creation).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Writes `value` as the record of `key` at `offset` (the start of an extent of
    /// [`record_len`](crate::record_len) bytes), replacing any record it overlaps.
    pub fn write(
        &self,
        offset: u64,
        key: &str,
        generation: u64,
        value: &[u8],
    ) -> Result<RecordInfo, TierError> {
        let header_len = crate::record::header_len(key.len(), value.len() as u64);
        let total = header_len + value.len() as u64;
        if offset
            .checked_add(total)
            .is_none_or(|end| end > self.capacity)
        {
            return Err(TierError::OutOfSpace {
                offset,
                len: total,
                capacity: self.capacity,
            });
        }
        if let Some(p) = self.prepare(offset, key, generation, value) {
            return self.write_prepared(p);
        }
        // The overlapped records are gone whatever happens next.
        self.remove_range(offset, total);
        self.allocate_ahead(offset, total);
        let h = Header::of(key, generation, value);
        {
            let mut last = self.writing.lock();
            last.forget();
            let head = h.encode();
            self.data
                .write_all_at(&head, offset)
                .and_then(|_| self.data.write_all_at(value, offset + header_len))
                .map_err(TierError::io("write", &self.data_path))?;
        }
        self.written(offset, header_len, h)
    }

    /// The record of `key` made ready for a direct write, when records are written
    /// around the page cache now (while the kernel's writeback lags,
    /// [`io::writeback_pressure`], and the file system takes O_DIRECT) and it fits
    /// with its whole pages; `None` otherwise (write it with [`DiskTier::write`]).
    /// Made ahead of its turn, by another thread, so that the copy of the value and
    /// its checksums overlap the device's write of the record before it.
    pub fn prepare(
        &self,
        offset: u64,
        key: &str,
        generation: u64,
        value: &[u8],
    ) -> Option<PreparedRecord> {
        let header_len = crate::record::header_len(key.len(), value.len() as u64) as usize;
        let total = header_len + value.len();
        // Whole pages: the last one may reach past the record, but never past the
        // capacity (the file stays within it); a record there takes the page cache.
        let end = offset.checked_add(total as u64)?;
        let within = end.div_ceil(io::ALIGN) * io::ALIGN <= self.capacity;
        if self.direct.is_none() || !within || !go_direct(self.direct_writes) {
            return None;
        }
        let mut header = None;
        // (A demoted value left the CPU's cache long ago: summed as it is copied.)
        let w = io::DirectWrite::new(offset, total, |dst| {
            let (head, body) = dst.split_at_mut(header_len);
            let h = Header::of_copied(key, generation, value, body);
            head.copy_from_slice(&h.encode());
            header = Some(h);
        });
        Some(PreparedRecord {
            offset,
            header: header.expect("the record was laid out"),
            w,
        })
    }

    /// Writes a record made by [`DiskTier::prepare`] (replacing any record it
    /// overlaps), with O_DIRECT, or through the page cache where the file refuses it.
    pub fn write_prepared(&self, mut p: PreparedRecord) -> Result<RecordInfo, TierError> {
        let header_len = p.header.len();
        let total = header_len + p.header.value_len;
        self.remove_range(p.offset, total);
        // (No allocation ahead: see `allocate_ahead`.)
        {
            // One writer at a time: a direct write rewrites the bytes its first and
            // last pages share with neighbouring records, and a write to those in
            // between would be undone.
            let mut last = self.writing.lock();
            let direct = self.direct.as_ref().expect("prepared for a direct write");
            match io::write_direct(direct, &self.data, &mut last, &mut p.w) {
                Ok(()) => TierMetrics::add(&self.metrics.direct_writes, 1),
                // Refused for this file after all: the page cache takes it.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    last.forget();
                    self.data
                        .write_all_at(p.w.bytes(), p.offset)
                        .map_err(TierError::io("write", &self.data_path))?;
                }
                Err(e) => return Err(TierError::io("write", &self.data_path)(e)),
            }
        }
        self.written(p.offset, header_len, p.header)
    }

    /// Records a record written at `offset`: in the index file, in the map, in the
    /// metrics.
    fn written(&self, offset: u64, header_len: u64, h: Header) -> Result<RecordInfo, TierError> {
        let rec = Record {
            offset,
            header_len,
            key: h.key,
            value_len: h.value_len,
            generation: h.generation,
            crcs: h.crcs,
        };
        let info = rec.info();
        self.append_index(offset, header_len + rec.value_len)?;
        let value_len = rec.value_len;
        self.insert(rec);
        TierMetrics::add(&self.metrics.writes, 1);
        TierMetrics::add(&self.metrics.write_bytes, value_len);
        Ok(info)
    }

    /// Allocates the file's blocks up to [`PREALLOC_STEP`] past the end of a record
    /// written beyond what is allocated already (and within a step of it).
    ///
    /// Why: a write into blocks the file does not have yet is the file system's
    /// delayed allocation, block by block (reserving space and quota, recording each
    /// page's pending extent), which cost more CPU than the copy of the bytes into
    /// the page cache; into blocks allocated beforehand (unwritten, read as zeros)
    /// the same write takes a third less. The master places a fresh tier's records
    /// one after another, so one call covers the next 64 records of 1 MiB; a record
    /// placed further out than a step allocates as it is written, so a sparse tier
    /// never holds more than a step of blocks it does not use. A file system that
    /// cannot (no room, no support) is left as it was: the write then allocates as
    /// it goes and fails on its own if the disk is full. The file's length does not
    /// change (`FALLOC_FL_KEEP_SIZE`); a discard still gives its blocks back.
    ///
    /// Direct writes do not allocate ahead: ext4 turns each allocated-but-unwritten
    /// extent a direct write lands in into a written one when the write ends, and
    /// that wrote 1.2 GB/s where a direct write past the end of the file wrote 1.7
    /// and one over written blocks 2.7 (`dd oflag=direct`, docs/benchmarks/tier.md).
    fn allocate_ahead(&self, offset: u64, len: u64) {
        use std::os::fd::AsRawFd;
        let end = offset + len;
        let mark = self.allocated_to.load(Ordering::Relaxed);
        if end <= mark || offset > mark.saturating_add(PREALLOC_STEP) {
            return;
        }
        let from = offset.min(mark);
        let to = end.saturating_add(PREALLOC_STEP).min(self.capacity);
        self.allocated_to.fetch_max(to, Ordering::Relaxed);
        // SAFETY: plain syscall on an open fd; a failure only means no allocation ahead.
        unsafe {
            libc::fallocate(
                self.data.as_raw_fd(),
                libc::FALLOC_FL_KEEP_SIZE,
                from as libc::off_t,
                (to - from) as libc::off_t,
            );
        }
    }

    /// Fills `buf` with the value bytes at `value_offset` (an address inside one
    /// record's value), checking every block it touches.
    pub fn read(&self, value_offset: u64, buf: &mut [u8]) -> Result<(), TierError> {
        let b = self.read_bytes(value_offset, buf.len() as u64)?;
        buf.copy_from_slice(b.as_ref());
        Ok(())
    }

    /// The `len` value bytes at `value_offset` (an address inside one record's value),
    /// every block they touch checked, in a buffer of the tier's (read once, from the
    /// page cache when it holds them whole, else with O_DIRECT; see [`crate::io`]).
    pub fn read_bytes(&self, value_offset: u64, len: u64) -> Result<TierBytes, TierError> {
        // Never `Err(None)`: that is a cached-only read's "not cached".
        self.read_span(value_offset, len, false).map_err(|e| {
            e.unwrap_or(TierError::Missing {
                offset: value_offset,
                len,
            })
        })
    }

    /// As [`read_bytes`](Self::read_bytes) if the page cache holds the bytes (no
    /// blocking I/O: fit for an async task); `None` when the device would be read.
    pub fn read_bytes_cached(
        &self,
        value_offset: u64,
        len: u64,
    ) -> Option<Result<TierBytes, TierError>> {
        match self.read_span(value_offset, len, true) {
            Ok(b) => Some(Ok(b)),
            Err(Some(e)) => Some(Err(e)),
            Err(None) => None,
        }
    }

    /// The checked bytes; `Err(None)`: not in the page cache (only when `cached_only`).
    fn read_span(
        &self,
        value_offset: u64,
        len: u64,
        cached_only: bool,
    ) -> Result<TierBytes, Option<TierError>> {
        let missing = TierError::Missing {
            offset: value_offset,
            len,
        };
        let rec = {
            let map = self.records.read();
            let Some((_, r)) = map.range(..=value_offset).next_back() else {
                return Err(Some(missing));
            };
            if value_offset < r.value_offset()
                || value_offset.checked_add(len).is_none_or(|e| e > r.end())
            {
                return Err(Some(missing));
            }
            r.clone()
        };
        let rel = value_offset - rec.value_offset();
        let first = rel / BLOCK;
        let last = if len == 0 {
            first
        } else {
            (rel + len - 1) / BLOCK
        };
        let span_start = first * BLOCK;
        let span_end = ((last + 1) * BLOCK).min(rec.value_len);
        let span_len = (span_end - span_start) as usize;
        let at = rec.value_offset() + span_start;
        // Room for the aligned span a device read takes around the bytes, so that a
        // miss reads into this buffer instead of trading it for a larger one (a
        // value rarely starts on an aligned offset).
        let mut buf = io::AlignedBuf::take(io::direct_span(at, span_len));
        // Asked before it is read: a NOWAIT read of a miss would start readahead of
        // bytes that are then read again with O_DIRECT (see `io::cached_whole`).
        let cached = io::cached_whole(&self.data, at, span_len) != Some(false)
            && io::read_cached(&self.data, &mut buf, at, span_len) == Some(span_len);
        let read = if cached {
            Ok(0)
        } else if cached_only {
            return Err(None);
        } else {
            match &self.direct {
                Some(d) => match io::read_direct(d, &mut buf, at, span_len) {
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        io::read_buffered(&self.data, &mut buf, at, span_len).map(|_| 0)
                    }
                    r => r,
                },
                None => io::read_buffered(&self.data, &mut buf, at, span_len).map(|_| 0),
            }
        };
        let from = match read {
            Ok(from) => from,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                // The file was cut short under the record: it is torn for good.
                TierMetrics::add(&self.metrics.checksum_failures, 1);
                self.drop_record(rec.offset);
                return Err(Some(TierError::Checksum {
                    key: rec.key.clone(),
                    offset: rec.offset,
                }));
            }
            Err(e) => return Err(Some(TierError::io("read", &self.data_path)(e))),
        };
        let span = &buf.as_slice(from + span_len)[from..];
        for (i, chunk) in span.chunks(BLOCK as usize).enumerate() {
            if crc32c::crc32c(chunk) != rec.crcs[first as usize + i] {
                TierMetrics::add(&self.metrics.checksum_failures, 1);
                self.drop_record(rec.offset);
                return Err(Some(TierError::Checksum {
                    key: rec.key.clone(),
                    offset: rec.offset,
                }));
            }
        }
        TierMetrics::add(&self.metrics.reads, 1);
        TierMetrics::add(&self.metrics.read_bytes, len);
        Ok(TierBytes {
            buf,
            start: from + (rel - span_start) as usize,
            len: len as usize,
        })
    }

    /// Reads a whole value, checked.
    pub fn read_value(&self, value_offset: u64, value_len: u64) -> Result<Vec<u8>, TierError> {
        let mut v = vec![0u8; value_len as usize];
        self.read(value_offset, &mut v)?;
        Ok(v)
    }

    /// The record whose value starts at `value_offset`.
    pub fn record_at(&self, value_offset: u64) -> Option<RecordInfo> {
        let map = self.records.read();
        let (_, r) = map.range(..=value_offset).next_back()?;
        (r.value_offset() == value_offset).then(|| r.info())
    }

    /// Forgets the records overlapping `[offset, offset+len)` and gives their disk
    /// blocks back to the file system.
    pub fn discard(&self, offset: u64, len: u64) {
        if self.remove_range(offset, len) > 0 {
            let mut last = self.writing.lock();
            punch_hole(&self.data, offset, len);
            last.forget();
            drop(last);
            if let Err(e) = self.append_index(offset, len | TOMBSTONE) {
                tracing::warn!(
                    "SSD tier: {e}; a discarded record may be found again after a restart"
                );
            }
        }
    }

    /// Every record held, by offset.
    pub fn records(&self) -> Vec<RecordInfo> {
        self.records.read().values().map(|r| r.info()).collect()
    }

    pub fn stats(&self) -> TierStats {
        let map = self.records.read();
        self.metrics.snapshot(
            map.len() as u64,
            self.value_bytes.load(Ordering::Relaxed),
            self.capacity,
        )
    }

    pub fn metrics(&self) -> &TierMetrics {
        &self.metrics
    }

    fn insert(&self, r: Record) {
        let (start, len) = (r.offset, r.header_len + r.value_len);
        self.remove_range(start, len);
        let added = r.value_len;
        let mut map = self.records.write();
        let old = map.insert(start, Arc::new(r));
        self.value_bytes.fetch_add(added, Ordering::Relaxed);
        if let Some(o) = old {
            self.value_bytes.fetch_sub(o.value_len, Ordering::Relaxed);
        }
    }

    /// Drops records overlapping the range; returns how many.
    fn remove_range(&self, offset: u64, len: u64) -> usize {
        let end = offset.saturating_add(len);
        let mut map = self.records.write();
        let doomed: Vec<u64> = map
            .range(..end)
            .rev()
            .take_while(|(_, r)| r.end() > offset)
            .map(|(k, _)| *k)
            .collect();
        // `take_while` stops at the first record ending before `offset`: records do not
        // overlap each other, so none further left can reach into the range.
        for k in &doomed {
            if let Some(r) = map.remove(k) {
                self.value_bytes.fetch_sub(r.value_len, Ordering::Relaxed);
            }
        }
        doomed.len()
    }

    fn drop_record(&self, offset: u64) {
        if let Some(r) = self.records.write().remove(&offset) {
            self.value_bytes.fetch_sub(r.value_len, Ordering::Relaxed);
        }
    }

    fn load_header(&self, offset: u64, len: u64) -> Result<Record, TierError> {
        if offset.checked_add(len).is_none_or(|e| e > self.capacity) {
            return Err(TierError::OutOfSpace {
                offset,
                len,
                capacity: self.capacity,
            });
        }
        let mut fixed = vec![0u8; Header::FIXED_LEN];
        self.data
            .read_exact_at(&mut fixed, offset)
            .map_err(TierError::io("read", &self.data_path))?;
        let hlen = Header::peek_len(&fixed).map_err(TierError::Config)?;
        if hlen > len {
            return Err(TierError::Config("header longer than its extent".into()));
        }
        let mut b = vec![0u8; hlen as usize];
        self.data
            .read_exact_at(&mut b, offset)
            .map_err(TierError::io("read", &self.data_path))?;
        let h = Header::decode(&b)?;
        if hlen + h.value_len != len {
            return Err(TierError::Config(
                "record length does not match its index entry".into(),
            ));
        }
        Ok(Record {
            offset,
            header_len: hlen,
            key: h.key,
            value_len: h.value_len,
            generation: h.generation,
            crcs: h.crcs,
        })
    }

    fn append_index(&self, offset: u64, len: u64) -> Result<(), TierError> {
        let e = index_entry(offset, len);
        self.index
            .lock()
            .write_all(&e)
            .map_err(TierError::io("append", &self.dir.join(INDEX)))
    }

    fn rewrite_index(&self) -> Result<(), TierError> {
        let path = self.dir.join(INDEX);
        let tmp = self.dir.join("tier.index.tmp");
        let mut buf = Vec::new();
        for r in self.records.read().values() {
            buf.extend_from_slice(&index_entry(r.offset, r.header_len + r.value_len));
        }
        std::fs::write(&tmp, &buf).map_err(TierError::io("write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(TierError::io("rename", &path))?;
        *self.index.lock() = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(TierError::io("open", &path))?;
        Ok(())
    }
}

#[cfg(test)]
thread_local! {
    /// Tests: this thread's writes go around the page cache whatever the pressure.
    pub(crate) static FORCE_DIRECT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether a record is written around the page cache now, as `mode` says. `auto`
/// in unit tests only when the test asks: their expectations of what the page cache
/// holds must not depend on how much other work on the machine left dirty.
fn go_direct(mode: DirectWrites) -> bool {
    match mode {
        DirectWrites::Always => true,
        DirectWrites::Never => false,
        #[cfg(test)]
        DirectWrites::Auto => FORCE_DIRECT.with(|f| f.get()),
        #[cfg(not(test))]
        DirectWrites::Auto => io::writeback_pressure(),
    }
}

/// The tier's id: read from `tier.id`, or drawn and written there.
fn tier_id(dir: &Path) -> Result<String, TierError> {
    let path = dir.join(ID);
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim();
        if s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(s.to_string());
        }
    }
    let mut b = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(TierError::io("read", Path::new("/dev/urandom")))?;
    let id: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let tmp = dir.join("tier.id.tmp");
    std::fs::write(&tmp, format!("{id}\n")).map_err(TierError::io("write", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(TierError::io("rename", &path))?;
    Ok(id)
}

fn index_entry(offset: u64, len: u64) -> [u8; INDEX_ENTRY] {
    let mut e = [0u8; INDEX_ENTRY];
    e[0..8].copy_from_slice(&offset.to_le_bytes());
    e[8..16].copy_from_slice(&len.to_le_bytes());
    let c = crc32c::crc32c(&e[0..16]);
    e[16..20].copy_from_slice(&c.to_le_bytes());
    e
}

/// The extents in the index, oldest first; a torn or corrupt entry ends the log.
fn read_index(path: &Path) -> Vec<(u64, u64)> {
    let mut b = Vec::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_end(&mut b);
    }
    let mut out = Vec::new();
    for e in b.chunks(INDEX_ENTRY) {
        if e.len() < INDEX_ENTRY
            || crc32c::crc32c(&e[0..16]) != u32::from_le_bytes(e[16..20].try_into().unwrap())
        {
            tracing::warn!(path = %path.display(), "SSD tier: the index ends in a torn entry; later records are not recovered");
            break;
        }
        out.push((
            u64::from_le_bytes(e[0..8].try_into().unwrap()),
            u64::from_le_bytes(e[8..16].try_into().unwrap()),
        ));
    }
    out
}

/// Gives whole file-system pages inside the range back (best effort).
fn punch_hole(f: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let page = 4096;
    let start = offset.div_ceil(page) * page;
    let end = (offset + len) / page * page;
    if end <= start {
        return;
    }
    // SAFETY: plain syscall on an open fd; failure (e.g. no hole support) is harmless.
    unsafe {
        libc::fallocate(
            f.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            start as libc::off_t,
            (end - start) as libc::off_t,
        );
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
