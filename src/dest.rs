//! The payload folder's own bookkeeping, under `DEST/.mastdl/`: the lock
//! that keeps two runs apart, and the state record of completed files.
//!
//! The lock is an OS file lock (`flock`/`LockFileEx` via std), so it dies
//! with the process: a run killed with `kill -9` leaves nothing stale. A
//! whole run locks `lock` exclusively; a shard run locks it shared and its
//! own `lock.K-of-N` exclusively, so shards can share DEST but never with a
//! whole run or a twin of themselves.
//!
//! The state record is append-only JSON lines (`state.jsonl`, or
//! `state.K-of-N.jsonl` for a shard), one line per file completed, written
//! with one `write` each. A crash mid-write leaves at most a torn last
//! line, which reading skips. The last record for a path wins.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::plan::{Shard, Source};

pub use crate::layout::META_DIR;

/// What was known about a file when it was completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRecord {
    /// The path below DEST, `/`-separated.
    pub path: String,
    pub uri: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    pub source: Source,
    /// The MD5 of the file's bytes as they were written (lowercase hex),
    /// for `mastdl verify`; absent in records written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
}

/// DEST is held by another running mastdl.
#[derive(Debug, thiserror::Error)]
#[error("`{}` is in use by another running mastdl{}", dest.display(), shard.map(|s| format!(" (shard {s})")).unwrap_or_default())]
pub struct Locked {
    pub dest: PathBuf,
    pub shard: Option<Shard>,
}

/// Returns true if and only if a run of `shard` holds its lock in `root` now.
pub fn shard_running(root: &Path, shard: Shard) -> bool {
    let path = root.join(META_DIR).join(format!("lock.{}", shard.tag()));
    path.exists() && matches!(try_lock(&path, false), Ok(None))
}

/// An open, locked DEST.
pub struct Dest {
    root: PathBuf,
    shard: Option<Shard>,
    state: Mutex<StateWriter>,
    _locks: Vec<File>,
}

/// Returns the error for a DEST that cannot be written: a usage error
/// (exit 2) when it is read-only or not ours, else a plain error.
fn unwritable(path: &Path, e: io::Error) -> anyhow::Error {
    let message = format!("Cannot write in `{}`: {e}", path.display());
    match e.kind() {
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
            crate::error::UsageError(format!("{message}; choose a writable DEST with `-d`")).into()
        }
        _ => anyhow::anyhow!(message),
    }
}

fn try_lock(path: &Path, shared: bool) -> io::Result<Option<File>> {
    let mut o = OpenOptions::new();
    o.create(true).truncate(false).write(true);
    crate::fetch::part::nofollow(&mut o);
    let f = o.open(path)?;
    let r = if shared {
        f.try_lock_shared()
    } else {
        f.try_lock()
    };
    match r {
        Ok(()) => Ok(Some(f)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

impl Dest {
    /// Creates DEST if needed and takes its lock.
    pub fn open(root: &Path, shard: Option<Shard>) -> anyhow::Result<Dest> {
        let meta = root.join(META_DIR);
        fs::create_dir_all(&meta).map_err(|e| unwritable(&meta, e))?;
        let locked = || Locked {
            dest: root.to_path_buf(),
            shard,
        };
        let mut locks = Vec::new();
        let whole = try_lock(&meta.join("lock"), shard.is_some())
            .map_err(|e| unwritable(&meta, e))?
            .ok_or_else(locked)?;
        locks.push(whole);
        if let Some(s) = shard {
            // Shards of one count share DEST; shards of another count would
            // split the files differently and touch the same ones: every
            // shard run holds its count's lock shared and checks that no
            // other count's lock is held.
            let count =
                try_lock(&meta.join(format!("lock.count-{}", s.n)), true)?.ok_or_else(locked)?;
            locks.push(count);
            for other in fs::read_dir(&meta)?.flatten() {
                let name = other.file_name().to_string_lossy().into_owned();
                let Some(n) = name.strip_prefix("lock.count-") else {
                    continue;
                };
                if n != s.n.to_string() && try_lock(&other.path(), false)?.is_none() {
                    return Err(anyhow::Error::new(locked()).context(format!(
                        "Shards of another count (N = {n}) are running in `{}`",
                        root.display()
                    )));
                }
            }
            let own =
                try_lock(&meta.join(format!("lock.{}", s.tag())), false)?.ok_or_else(locked)?;
            locks.push(own);
        }
        Ok(Dest {
            root: root.to_path_buf(),
            shard,
            state: Mutex::new(StateWriter {
                file: None,
                pending: Vec::new(),
                last: Instant::now(),
            }),
            _locks: locks,
        })
    }

    /// Returns DEST for reading its records only (`mastdl verify`): no
    /// folder is created, no lock taken, and — as nothing is recorded
    /// through it — nothing is ever written.
    pub fn read_only(root: &Path) -> Dest {
        Dest {
            root: root.to_path_buf(),
            shard: None,
            state: Mutex::new(StateWriter {
                file: None,
                pending: Vec::new(),
                last: Instant::now(),
            }),
            _locks: Vec::new(),
        }
    }

    /// Returns DEST.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Returns the manifest's file stem: `MANIFEST`, or `MANIFEST.K-of-N` for a shard.
    pub fn manifest_stem(&self) -> String {
        match self.shard {
            None => "MANIFEST".into(),
            Some(s) => format!("MANIFEST.{}", s.tag()),
        }
    }

    fn state_path(&self) -> PathBuf {
        let name = match self.shard {
            None => "state.jsonl".to_string(),
            Some(s) => format!("state.{}.jsonl", s.tag()),
        };
        self.root.join(META_DIR).join(name)
    }

    /// Reads every state record in DEST (all shards'), the last per path winning.
    pub fn load_state(&self) -> HashMap<String, StateRecord> {
        let mut out = HashMap::new();
        let Ok(dir) = fs::read_dir(self.root.join(META_DIR)) else {
            return out;
        };
        let mut files: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("state") && n.ends_with(".jsonl"))
            })
            .collect();
        files.sort();
        for f in files {
            let Ok(text) = fs::read_to_string(&f) else {
                continue;
            };
            for line in text.lines() {
                if let Ok(r) = serde_json::from_str::<StateRecord>(line) {
                    out.insert(r.path.clone(), r);
                }
            }
        }
        out
    }

    /// Appends one record. Records are written in batches (every
    /// [`STATE_BATCH`] bytes or [`STATE_INTERVAL`], and by [`Dest::flush`]),
    /// so a crash loses at most the last batch: those files stay complete
    /// by construction and are only missing their recorded validators. A
    /// failure here loses only records, never a file.
    pub fn record(&self, r: &StateRecord) -> io::Result<()> {
        let mut line = serde_json::to_vec(r).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut w = self
            .state
            .lock()
            .map_err(|_| io::Error::other("state lock poisoned"))?;
        w.pending.extend_from_slice(&line);
        if w.pending.len() >= STATE_BATCH || w.last.elapsed() >= STATE_INTERVAL {
            self.write_pending(&mut w)?;
        }
        Ok(())
    }

    /// Writes the records not yet written.
    pub fn flush(&self) -> io::Result<()> {
        let mut w = self
            .state
            .lock()
            .map_err(|_| io::Error::other("state lock poisoned"))?;
        self.write_pending(&mut w)
    }

    fn write_pending(&self, w: &mut StateWriter) -> io::Result<()> {
        w.last = Instant::now();
        if w.pending.is_empty() {
            return Ok(());
        }
        if w.file.is_none() {
            let mut o = OpenOptions::new();
            o.create(true).append(true).read(true);
            crate::fetch::part::nofollow(&mut o);
            let mut f = o.open(self.state_path())?;
            // A torn last line from a crash must not swallow the next record.
            let len = f.metadata()?.len();
            if len > 0 {
                let mut last = [0u8; 1];
                f.seek(SeekFrom::Start(len - 1))?;
                f.read_exact(&mut last)?;
                if last[0] != b'\n' {
                    w.pending.insert(0, b'\n');
                }
            }
            w.file = Some(f);
        }
        if let Some(f) = w.file.as_mut() {
            f.write_all(&w.pending)?;
        }
        w.pending.clear();
        Ok(())
    }
}

impl Drop for Dest {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// The state record's pending writes.
struct StateWriter {
    file: Option<File>,
    pending: Vec<u8>,
    last: Instant,
}

/// File descriptors a run needs besides its transfers (the lock, the
/// state record, the bucket's connections, the runtime).
const FD_RESERVE: u64 = 96;
/// File descriptors one transfer may hold at once (a socket, the `.part`,
/// a sidecar being written).
const FD_PER_TRANSFER: u64 = 3;

/// Raises the soft limit on open files towards the hard one, and returns
/// how many transfers fit in it: `jobs`, or fewer when the limit is too
/// low (the caller says so).
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
pub fn fit_open_files(jobs: usize) -> usize {
    #[cfg(unix)]
    {
        let want = FD_RESERVE + FD_PER_TRANSFER * jobs as u64;
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return jobs;
        }
        if (lim.rlim_cur as u64) < want {
            let raised = libc::rlimit {
                rlim_cur: (want as libc::rlim_t).min(lim.rlim_max),
                rlim_max: lim.rlim_max,
            };
            // SAFETY: as above.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                lim.rlim_cur = raised.rlim_cur;
            }
        }
        let fit = (lim.rlim_cur as u64).saturating_sub(FD_RESERVE) / FD_PER_TRANSFER;
        jobs.min(fit.max(1) as usize)
    }
    #[cfg(not(unix))]
    jobs
}

/// Bytes of state records gathered before a write.
pub const STATE_BATCH: usize = 64 << 10;
/// The longest a state record waits before it is written.
pub const STATE_INTERVAL: Duration = Duration::from_millis(500);

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(path: &str, size: u64) -> StateRecord {
        StateRecord {
            path: path.into(),
            uri: format!("mast:X/{path}"),
            size,
            etag: None,
            last_modified: None,
            source: Source::Mast,
            md5: None,
        }
    }

    #[test]
    fn second_open_is_locked_and_shards_coexist() {
        let d = tempfile::tempdir().unwrap();
        let a = Dest::open(d.path(), None).unwrap();
        let err = Dest::open(d.path(), None).err().unwrap();
        assert!(err.downcast_ref::<Locked>().is_some());
        drop(a);
        let s0 = Dest::open(d.path(), Some(Shard { k: 0, n: 2 })).unwrap();
        let _s1 = Dest::open(d.path(), Some(Shard { k: 1, n: 2 })).unwrap();
        assert!(Dest::open(d.path(), Some(Shard { k: 0, n: 2 })).is_err());
        assert!(Dest::open(d.path(), None).is_err());
        let other_count = Dest::open(d.path(), Some(Shard { k: 0, n: 3 }))
            .err()
            .unwrap();
        assert!(
            other_count.downcast_ref::<Locked>().is_some(),
            "{other_count:#}"
        );
        drop(s0);
    }

    #[test]
    fn state_survives_a_torn_line() {
        let d = tempfile::tempdir().unwrap();
        let dest = Dest::open(d.path(), None).unwrap();
        dest.record(&rec("a", 1)).unwrap();
        drop(dest);
        let p = d.path().join(META_DIR).join("state.jsonl");
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"path\":\"b\",\"si").unwrap();
        drop(f);
        let dest = Dest::open(d.path(), None).unwrap();
        dest.record(&rec("c", 3)).unwrap();
        dest.record(&rec("a", 5)).unwrap();
        dest.flush().unwrap();
        let s = dest.load_state();
        assert_eq!(s.len(), 2);
        assert_eq!(s["a"].size, 5);
        assert_eq!(s["c"].size, 3);
    }
}
