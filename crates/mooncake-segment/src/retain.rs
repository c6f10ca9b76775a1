//! Segment files that outlive their process, so that a restarted owner takes its
//! memory (and the objects the master placed in it) back.
//!
//! Beside each segment file lies a small record, `<file>.gen`: the owner's identity
//! (what a restarted owner is recognised by: its configured hostname, and a store's
//! HTTP port), the segment's size, and a generation drawn when the file was created.
//! The generation goes to the master with the segment's descriptor; the master only
//! gives a returning owner its objects back when it matches, so a file is never
//! trusted by its name or its identity alone.
//!
//! A starting owner ([`adopt`]) takes the unlocked file of its own identity and size
//! back, removes its own identity's other leftovers (and files without a record, as
//! before), and leaves other identities' files alone (their owners may be restarting
//! too). A file whose size does not match is removed and the owner starts empty.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Suffix of the record beside a segment file.
pub const RECORD_SUFFIX: &str = ".gen";

const MAGIC: &str = "mooncake-segment-file v1";

/// What the record beside a segment file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub identity: String,
    pub size: u64,
    pub generation: String,
}

impl Record {
    fn encode(&self) -> String {
        format!(
            "{MAGIC}\nidentity={}\nsize={}\ngeneration={}\n",
            self.identity.replace('\n', " "),
            self.size,
            self.generation
        )
    }

    fn decode(text: &str) -> Option<Record> {
        let mut lines = text.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let (mut identity, mut size, mut generation) = (None, None, None);
        for l in lines {
            match l.split_once('=') {
                Some(("identity", v)) => identity = Some(v.to_string()),
                Some(("size", v)) => size = v.parse().ok(),
                Some(("generation", v)) if !v.is_empty() => generation = Some(v.to_string()),
                _ => {}
            }
        }
        Some(Record {
            identity: identity?,
            size: size?,
            generation: generation?,
        })
    }
}

/// The record's path for a segment file.
pub fn record_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(RECORD_SUFFIX);
    PathBuf::from(s)
}

/// Writes the record beside `file` (a temporary file renamed over it, so a reader
/// never sees half of one).
pub fn write_record(file: &Path, r: &Record) -> std::io::Result<()> {
    let path = record_path(file);
    let mut tmp = path.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    f.write_all(r.encode().as_bytes())?;
    drop(f);
    std::fs::rename(&tmp, &path)
}

/// The record beside `file`, if there is a valid one.
pub fn read_record(file: &Path) -> Option<Record> {
    Record::decode(&std::fs::read_to_string(record_path(file)).ok()?)
}

/// Removes a segment file and its record.
pub fn remove(file: &Path) {
    let _ = std::fs::remove_file(file);
    let _ = std::fs::remove_file(record_path(file));
}

/// A file taken back: locked by us, with its path and generation.
pub struct Adopted {
    pub file: File,
    pub path: PathBuf,
    pub generation: String,
}

/// Whether a name is a segment file (not its record).
fn is_segment_file(name: &str) -> bool {
    name.starts_with(crate::SHM_PREFIX) && !name.ends_with(RECORD_SUFFIX) && !name.ends_with(".tmp")
}

/// Takes back the file `identity` left in `dir` if its size is `len`, and sweeps the
/// leftovers that belong to nobody (see the module docs). `None`: start a new file.
pub fn adopt(dir: &Path, identity: &str, len: u64) -> Option<Adopted> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut adopted = None;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if name.starts_with(crate::SHM_PREFIX) && name.ends_with(RECORD_SUFFIX) {
            // A record whose segment file is gone.
            let seg = PathBuf::from(path.to_string_lossy().trim_end_matches(RECORD_SUFFIX));
            if !seg.exists() {
                let _ = std::fs::remove_file(&path);
            }
            continue;
        }
        if !is_segment_file(&name) {
            continue;
        }
        let Ok(f) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
        else {
            continue;
        };
        // Safety: probing a lock on a descriptor we own.
        let free = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if !free {
            continue; // a live owner
        }
        let record = read_record(&path);
        match record {
            Some(r) if r.identity == identity => {
                let file_len = f.metadata().map(|m| m.len()).unwrap_or(0);
                if adopted.is_none() && r.size == len && file_len == len {
                    tracing::info!(path = %path.display(), generation = %r.generation, "taking the segment file of the previous run back");
                    adopted = Some(Adopted {
                        file: f,
                        path,
                        generation: r.generation,
                    });
                } else {
                    if r.size != len {
                        tracing::warn!(
                            path = %path.display(),
                            "the previous run's segment file has {} bytes and this one asks for {len}: removing it, the segment starts empty",
                            r.size
                        );
                    } else {
                        tracing::info!(path = %path.display(), "removing an older segment file of this identity");
                    }
                    remove(&path);
                }
            }
            // Another owner's file: it may be restarting too.
            Some(_) => {}
            None => {
                tracing::info!(path = %path.display(), "removing stale segment file");
                remove(&path);
            }
        }
    }
    adopted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mc-retain-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn leftover(d: &Path, name: &str, r: Option<Record>, len: u64) -> PathBuf {
        let p = d.join(format!("{}{name}", crate::SHM_PREFIX));
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(len).unwrap();
        if let Some(r) = r {
            write_record(&p, &r).unwrap();
        }
        p
    }

    fn rec(identity: &str, size: u64, generation: &str) -> Record {
        Record {
            identity: identity.into(),
            size,
            generation: generation.into(),
        }
    }

    #[test]
    fn records_round_trip_and_foreign_text_is_no_record() {
        let r = rec("127.0.0.1@8080", 1 << 20, "abc");
        assert_eq!(Record::decode(&r.encode()), Some(r));
        assert_eq!(Record::decode("identity=x\nsize=1\ngeneration=g\n"), None);
        assert_eq!(
            Record::decode(&format!("{MAGIC}\nidentity=x\nsize=1\n")),
            None
        );
    }

    #[test]
    fn takes_its_own_file_back_and_leaves_other_identities_alone() {
        let d = dir("own");
        let mine = leftover(&d, "a-1", Some(rec("me", 4096, "g1")), 4096);
        let theirs = leftover(&d, "b-1", Some(rec("them", 4096, "g2")), 4096);
        let stale = leftover(&d, "c-1", None, 4096);
        let a = adopt(&d, "me", 4096).expect("adopted");
        assert_eq!(
            (a.path.as_path(), a.generation.as_str()),
            (mine.as_path(), "g1")
        );
        assert!(theirs.exists() && record_path(&theirs).exists());
        assert!(!stale.exists());
        // Locked while adopted: nobody else takes it.
        assert!(adopt(&d, "me", 4096).is_none());
        assert!(mine.exists());
    }

    #[test]
    fn a_file_of_another_size_is_removed_not_adopted() {
        let d = dir("size");
        let old = leftover(&d, "a-1", Some(rec("me", 8192, "g1")), 8192);
        assert!(adopt(&d, "me", 4096).is_none());
        assert!(!old.exists() && !record_path(&old).exists());
    }
}
