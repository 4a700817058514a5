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
//!
//! `.mastdl` is shared by every shard writing into DEST, so nothing in it
//! is trusted: a symlinked `.mastdl` is refused, and every file in it is
//! opened without following a symlink and without blocking (a FIFO), must
//! be a regular file, and is read line by line within a size bound. The
//! state record is read into an index of a hash and a size per path, not
//! a copy of every line, so a million-file DEST costs tens of MiB. Whole
//! records (`verify`, `--update`) are copied into an unnamed temporary file
//! as they are read and read back one at a time from where the index says.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::UsageError;
use crate::manifest::Source;
use crate::plan::{hash128, hash64, Shard, U128Map, U64Map};

pub(crate) use crate::layout::META_DIR;

/// What was known about a file when it was completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StateRecord {
    /// The path below DEST, `/`-separated.
    pub(crate) path: String,
    pub(crate) uri: String,
    pub(crate) size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_modified: Option<String>,
    pub(crate) source: Source,
    /// The MD5 of the file's bytes as they were written (lowercase hex),
    /// for `mastdl verify`; absent in records written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) md5: Option<String>,
}

/// DEST is held by another running mastdl.
#[derive(Debug, thiserror::Error)]
#[error("`{}` is in use by another running mastdl{}", dest.display(), shard.map(|s| format!(" (shard {s})")).unwrap_or_default())]
pub(crate) struct Locked {
    pub(crate) dest: PathBuf,
    pub(crate) shard: Option<Shard>,
}

/// Returns true if and only if a run of `shard` holds its lock in `root` now.
pub(crate) fn shard_running(root: &Path, shard: Shard) -> bool {
    let path = root.join(META_DIR).join(format!("lock.{}", shard.tag()));
    let is_file = fs::symlink_metadata(&path).is_ok_and(|m| m.is_file());
    is_file && matches!(try_lock(&path, false), Ok(None))
}

/// An open, locked DEST.
pub(crate) struct Dest {
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

/// Opens a file under `.mastdl` with `o`: never through a symlink, never
/// blocking on a FIFO, and only when it is a regular file. A file that is
/// none of these is a usage error (exit 2) naming it.
fn open_meta(path: &Path, o: &mut OpenOptions) -> anyhow::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let planted = || {
        UsageError(format!(
            "`{}` is not a regular file (a symbolic link, FIFO or device was put there): \
             mastdl keeps only its own files in `.mastdl`; remove it and run again",
            path.display()
        ))
    };
    let f = match o.open(path) {
        Ok(f) => f,
        #[cfg(unix)]
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENXIO)) => {
            return Err(planted().into())
        }
        Err(e) => return Err(unwritable(path, e)),
    };
    if !f.metadata().map_err(|e| unwritable(path, e))?.is_file() {
        return Err(planted().into());
    }
    Ok(f)
}

fn try_lock(path: &Path, shared: bool) -> anyhow::Result<Option<File>> {
    let mut o = OpenOptions::new();
    o.create(true).truncate(false).write(true);
    let f = open_meta(path, &mut o)?;
    let r = if shared {
        f.try_lock_shared()
    } else {
        f.try_lock()
    };
    match r {
        Ok(()) => Ok(Some(f)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(unwritable(path, e)),
    }
}

/// Creates `DEST/.mastdl` if needed; refuses one that is a symlink or not
/// a folder (exit 2), so the lock and the state record stay inside DEST.
fn meta_dir(root: &Path) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(root).map_err(|e| unwritable(root, e))?;
    let meta = root.join(META_DIR);
    for _ in 0..2 {
        match fs::symlink_metadata(&meta) {
            Ok(m) if m.is_dir() => return Ok(meta),
            Ok(m) => {
                let what = if m.file_type().is_symlink() {
                    "a symbolic link"
                } else {
                    "not a folder"
                };
                return Err(UsageError(format!(
                    "`{}` is {what}: mastdl keeps its lock and state record only in a real \
                     folder inside DEST; remove it and run again",
                    meta.display()
                ))
                .into());
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::create_dir(&meta) {
                Ok(()) => return Ok(meta),
                // Made by a twin shard meanwhile: look again.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(unwritable(&meta, e)),
            },
            Err(e) => return Err(unwritable(&meta, e)),
        }
    }
    Err(unwritable(
        &meta,
        io::Error::other("it keeps changing under mastdl"),
    ))
}

impl Dest {
    /// Creates DEST if needed and takes its lock.
    pub(crate) fn open(root: &Path, shard: Option<Shard>) -> anyhow::Result<Dest> {
        let meta = meta_dir(root)?;
        let locked = || Locked {
            dest: root.to_path_buf(),
            shard,
        };
        let mut locks = Vec::new();
        let whole = try_lock(&meta.join("lock"), shard.is_some())?.ok_or_else(locked)?;
        locks.push(whole);
        if let Some(s) = shard {
            // Shards of one count share DEST; shards of another count would
            // split the files differently and touch the same ones: every
            // shard run holds its count's lock shared and checks that no
            // other count's lock is held.
            let count =
                try_lock(&meta.join(format!("lock.count-{}", s.n)), true)?.ok_or_else(locked)?;
            locks.push(count);
            let dir = fs::read_dir(&meta).map_err(|e| unwritable(&meta, e))?;
            for other in dir.flatten() {
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
                reserved: false,
            }),
            _locks: locks,
        })
    }

    /// Returns DEST for reading its records only (`mastdl verify`): no
    /// folder is created, no lock taken, and — as nothing is recorded
    /// through it — nothing is ever written.
    pub(crate) fn read_only(root: &Path) -> Dest {
        Dest {
            root: root.to_path_buf(),
            shard: None,
            state: Mutex::new(StateWriter {
                file: None,
                pending: Vec::new(),
                last: Instant::now(),
                reserved: false,
            }),
            _locks: Vec::new(),
        }
    }

    /// Returns DEST.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Returns the manifest's file stem: `MANIFEST`, or `MANIFEST.K-of-N` for a shard.
    pub(crate) fn manifest_stem(&self) -> String {
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

    /// Reads every state record in DEST (all shards'), the last per path
    /// winning, into an index: each path's recorded size, and with
    /// `records` its whole record too (for `--update`). `files` is the
    /// number of files in the plan: a state record far larger than that
    /// many records can be is refused. A state file that is a symlink, a
    /// FIFO or a device, or too large, is a usage error naming it.
    pub(crate) fn load_state(&self, files: usize, records: bool) -> anyhow::Result<StateIndex> {
        let mut index = StateIndex {
            sizes: U64Map::default(),
            spots: U128Map::default(),
            kept: None,
        };
        let meta = self.root.join(META_DIR);
        let dir = match fs::read_dir(&meta) {
            // Nothing recorded yet (`verify` of a folder fetch never filled).
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(index),
            r => r.map_err(|e| unwritable(&meta, e))?,
        };
        let mut names: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("state") && n.ends_with(".jsonl"))
            })
            .collect();
        names.sort();
        if !names.is_empty() {
            // Room for a record of every planned file from the start: no
            // growing (rehashing) a million-entry index step by step.
            index.sizes.reserve(files.min(1 << 24));
        }
        let bound = max_state_bytes(files);
        // With `records`, each whole record read is kept in an unnamed
        // temporary file and indexed by where it lies: memory holds no copy
        // of a line (`verify` and `--update` of a million files).
        let kept = |e: io::Error| anyhow::Error::new(e).context(KEEP_FAILED);
        let mut spill = match records {
            true => Some(Spill::new().map_err(|e| {
                anyhow::Error::new(e).context("Cannot make a temporary file for the state records")
            })?),
            false => None,
        };
        for path in names {
            let f = open_meta(&path, OpenOptions::new().read(true))?;
            let len = f.metadata().map_err(|e| unwritable(&path, e))?.len();
            if len > bound {
                return Err(UsageError(format!(
                    "`{}` holds {len} bytes, more than the state record of {files} files can \
                     (at most {bound}): it is not mastdl's; remove it (the next run then checks \
                     the files on disk by their size alone)",
                    path.display()
                ))
                .into());
            }
            let Some(spill) = spill.as_mut() else {
                index_sizes(f.take(bound), &mut index.sizes).map_err(|e| {
                    anyhow::Error::new(e).context(format!("Cannot read `{}`", path.display()))
                })?;
                continue;
            };
            let mut reader = BufReader::with_capacity(1 << 16, f.take(bound));
            let mut line = Vec::with_capacity(512);
            loop {
                line.clear();
                match read_line_bounded(&mut reader, &mut line) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        return Err(anyhow::Error::new(e)
                            .context(format!("Cannot read `{}`", path.display())))
                    }
                }
                // Only a whole record counts: `verify` and `--update` read
                // it back.
                let Ok(r) = serde_json::from_slice::<StateRecord>(&line) else {
                    continue;
                };
                // Whole records are told apart by 128 bits of the path (two
                // 64-bit hashes), not 64: two paths taken for one, a file
                // never verified, would take a deliberately crafted pair.
                let key = hash128(r.path.as_bytes());
                let spot = spill.keep(&line).map_err(kept)?;
                index.spots.insert(key, (spot, r.size));
                // The low half of a hash128 is the path's hash64.
                index.sizes.insert(key as u64, r.size);
            }
        }
        if let Some(spill) = spill {
            index.kept = Some(spill.done().map_err(kept)?);
        }
        Ok(index)
    }

    /// Sets aside room past the end of the state record (when `files`
    /// are to be fetched), and keeps it set aside after every write, so
    /// that a disk filled by the files themselves cannot cost the record
    /// of a completed one (where the file system can reserve space: Linux).
    pub(crate) fn reserve(&self, files: usize) {
        let Ok(mut w) = self.state.lock() else {
            return;
        };
        if files == 0 || self.open_writer(&mut w).is_err() {
            return;
        }
        if let Some(f) = w.file.as_ref() {
            w.reserved = allocate_beyond_end(f, RESERVE_AHEAD);
        }
    }

    /// Appends one record. Records are written in batches (every
    /// [`STATE_BATCH`] bytes or [`STATE_INTERVAL`], and by [`Dest::flush`]),
    /// so a crash loses at most the last batch: those files stay complete
    /// by construction and are only missing their recorded validators. A
    /// failure here loses only records, never a file.
    pub(crate) fn record(&self, r: &StateRecord) -> io::Result<()> {
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
    pub(crate) fn flush(&self) -> io::Result<()> {
        let mut w = self
            .state
            .lock()
            .map_err(|_| io::Error::other("state lock poisoned"))?;
        self.write_pending(&mut w)
    }

    /// Opens the state record for appending, once.
    fn open_writer(&self, w: &mut StateWriter) -> io::Result<()> {
        if w.file.is_some() {
            return Ok(());
        }
        let path = self.state_path();
        let mut f = open_meta(
            &path,
            OpenOptions::new().create(true).append(true).read(true),
        )
        .map_err(io::Error::other)?;
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
        Ok(())
    }

    fn write_pending(&self, w: &mut StateWriter) -> io::Result<()> {
        w.last = Instant::now();
        if w.pending.is_empty() {
            return Ok(());
        }
        self.open_writer(w)?;
        if let Some(f) = w.file.as_mut() {
            let before = f.metadata()?.len();
            if let Err(e) = f.write_all(&w.pending) {
                // A write cut short (a full disk) leaves no torn record:
                // the batch stays pending and is tried again, whole.
                let _ = f.set_len(before);
                return Err(e);
            }
            if w.reserved {
                allocate_beyond_end(f, RESERVE_AHEAD);
            }
        }
        w.pending.clear();
        Ok(())
    }
}

/// Reads the path and size of every record of `state` into `sizes`, the
/// last per path winning, line by line as [`read_line_bounded`] reads them
/// (a line longer than [`MAX_STATE_LINE`] is skipped). Blocks of whole
/// lines are parsed on two threads in turn while this thread reads the
/// next and indexes the last, in order; a few blocks at a time.
fn index_sizes(mut state: impl Read, sizes: &mut U64Map<u64>) -> io::Result<()> {
    const BLOCK: usize = 1 << 20;
    const LANES: usize = 2;
    std::thread::scope(|s| {
        let mut lanes = Vec::with_capacity(LANES);
        for _ in 0..LANES {
            let (to, blocks) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
            let (back, found) = std::sync::mpsc::sync_channel::<Vec<(u64, u64)>>(2);
            s.spawn(move || {
                for block in blocks {
                    let mut out = Vec::with_capacity(block.len() / 128);
                    for line in block.split(|&b| b == b'\n') {
                        if line.len() > MAX_STATE_LINE {
                            continue;
                        }
                        if let Some((path, size)) = path_size(line) {
                            out.push((hash64(path.as_bytes()), size));
                        }
                    }
                    if back.send(out).is_err() {
                        break;
                    }
                }
            });
            lanes.push((to, found));
        }
        // Lanes of the blocks sent and not yet indexed, oldest first.
        let mut pending = std::collections::VecDeque::new();
        let mut index_oldest = |pending: &mut std::collections::VecDeque<usize>| -> io::Result<()> {
            if let Some(lane) = pending.pop_front() {
                let found = lanes[lane]
                    .1
                    .recv()
                    .map_err(|_| io::Error::other("a state reader thread ended early"))?;
                for (hash, size) in found {
                    sizes.insert(hash, size);
                }
            }
            Ok(())
        };
        let mut carry: Vec<u8> = Vec::new();
        // A line too long to keep: the rest of it is skipped.
        let mut skipping = false;
        let mut next = 0;
        loop {
            let mut block = std::mem::take(&mut carry);
            let from = block.len();
            block.resize(from + BLOCK, 0);
            let mut got = 0;
            while got < BLOCK {
                match state.read(&mut block[from + got..]) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            block.truncate(from + got);
            let end = got == 0;
            if skipping {
                match block.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        block.drain(..=i);
                        skipping = false;
                    }
                    None => block.clear(),
                }
            }
            if !end {
                match block.iter().rposition(|&b| b == b'\n') {
                    Some(i) => carry = block.split_off(i + 1),
                    None => {
                        // No line ends in it yet: keep it (up to the longest line).
                        if block.len() > MAX_STATE_LINE {
                            skipping = true;
                        } else {
                            carry = block;
                        }
                        continue;
                    }
                }
            }
            if !block.is_empty() {
                if pending.len() >= 2 * LANES {
                    index_oldest(&mut pending)?;
                }
                let lane = next % LANES;
                next += 1;
                lanes[lane]
                    .0
                    .send(block)
                    .map_err(|_| io::Error::other("a state reader thread ended early"))?;
                pending.push_back(lane);
            }
            if end {
                break;
            }
        }
        while !pending.is_empty() {
            index_oldest(&mut pending)?;
        }
        Ok(())
    })
}

/// Reads one line (its `\n` dropped) into `line`, at most
/// [`MAX_STATE_LINE`] bytes of it: a longer line is skipped to its end and
/// read as empty. Returns the bytes consumed (0 at the end).
fn read_line_bounded(r: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<usize> {
    let mut used = 0;
    let mut long = false;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if !long && line.len() + chunk.len() <= MAX_STATE_LINE {
            line.extend_from_slice(chunk);
        } else {
            long = true;
            line.clear();
        }
        let n = done.unwrap_or(buf.len());
        r.consume(n);
        used += n;
        if done.is_some() {
            break;
        }
    }
    Ok(used)
}

/// Reserves `bytes` past the end of `f` without changing its length.
/// Returns true if and only if the file system did.
fn allocate_beyond_end(f: &File, bytes: u64) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        let Ok(len) = f.metadata().map(|m| m.len()) else {
            return false;
        };
        // SAFETY: fallocate only acts on the open descriptor given.
        let r = unsafe {
            libc::fallocate(
                f.as_raw_fd(),
                libc::FALLOC_FL_KEEP_SIZE,
                len as libc::off_t,
                bytes as libc::off_t,
            )
        };
        r == 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (f, bytes);
        false
    }
}

/// Gives back the space [`Dest::reserve`] set aside and did not use.
fn release_beyond_end(f: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        let Ok(len) = f.metadata().map(|m| m.len()) else {
            return;
        };
        // SAFETY: as above; punching a hole past the end frees only the
        // blocks reserved there.
        unsafe {
            libc::fallocate(
                f.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                len as libc::off_t,
                RESERVE_AHEAD as libc::off_t,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = f;
}

/// Returns the path and size of a state record line, as serde_json reads
/// them ([`PathSize`]). The lines mastdl writes (`{"path":"…","uri":"…",
/// "size":N,…}`, no escape in the path or URI) are read by a fast path that
/// looks at nothing past the size but the closing brace: a line torn after
/// its size (whose path and size are whole) may be read where serde_json
/// refuses it; anything else goes to serde_json.
fn path_size(line: &[u8]) -> Option<(std::borrow::Cow<'_, str>, u64)> {
    if let Some((path, size)) = plain_path_size(line) {
        return Some((std::borrow::Cow::Borrowed(path), size));
    }
    serde_json::from_slice::<PathSize>(line)
        .ok()
        .map(|r| (r.path, r.size))
}

/// The fast path of [`path_size`]: `None` for any line not of the shape
/// mastdl writes.
fn plain_path_size(line: &[u8]) -> Option<(&str, u64)> {
    // A JSON string without escapes or control characters: up to its quote.
    let string = |s: &[u8]| -> Option<usize> {
        let end = s
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        (s[end] == b'"').then_some(end)
    };
    if !line.trim_ascii_end().ends_with(b"}") {
        return None;
    }
    let rest = line.strip_prefix(b"{\"path\":\"")?;
    let end = string(rest)?;
    let path = std::str::from_utf8(&rest[..end]).ok()?;
    let rest = rest[end + 1..].strip_prefix(b",\"uri\":\"")?;
    let end = string(rest)?;
    std::str::from_utf8(&rest[..end]).ok()?;
    let rest = rest[end + 1..].strip_prefix(b",\"size\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    // No leading zero (JSON has none), no more digits than a u64 holds.
    if digits == 0 || digits > 19 || (digits > 1 && rest[0] == b'0') {
        return None;
    }
    if !matches!(rest.get(digits), Some(b',' | b'}')) {
        return None;
    }
    let size = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    Some((path, size))
}

/// The part of a state record line a plain run needs, read without
/// copying (a path with escapes is copied).
#[derive(Deserialize)]
struct PathSize<'a> {
    #[serde(borrow)]
    path: std::borrow::Cow<'a, str>,
    size: u64,
}

/// What the state record says of DEST's files, indexed by path.
pub(crate) struct StateIndex {
    /// Hash of a path -> its recorded size.
    sizes: U64Map<u64>,
    /// 128-bit hash of a path -> where its whole record lies in `kept`, and
    /// its size (only when asked for).
    spots: U128Map<(Spot, u64)>,
    /// The whole records read, one line each, in an unnamed temporary file.
    kept: Option<File>,
}

/// Where a whole state record lies in [`StateIndex`]'s temporary file:
/// its offset and length, packed (`offset << 17 | length`; a line is at
/// most [`MAX_STATE_LINE`] bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Spot(u64);

// Every line kept fits the length's bits.
const _: () = assert!(MAX_STATE_LINE < 1 << Spot::LEN_BITS);

impl Spot {
    const LEN_BITS: u32 = 17;

    fn offset(self) -> u64 {
        self.0 >> Self::LEN_BITS
    }

    fn len(self) -> usize {
        (self.0 & ((1 << Self::LEN_BITS) - 1)) as usize
    }
}

/// Fills `buf` from `f` at `offset`, leaving the file's position alone.
fn read_at(f: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt as _;
        f.read_exact_at(buf, offset)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt as _;
        let mut done = 0;
        while done < buf.len() {
            match f.seek_read(&mut buf[done..], offset + done as u64)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => done += n,
            }
        }
        Ok(())
    }
    #[cfg(not(any(unix, windows)))]
    {
        let mut f = f;
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(buf)
    }
}

/// What a failure to keep the whole state records says.
const KEEP_FAILED: &str = "Cannot keep the state records in a temporary file";

/// The temporary file whole records are copied into as they are read.
struct Spill {
    out: io::BufWriter<File>,
    len: u64,
}

impl Spill {
    fn new() -> io::Result<Spill> {
        Ok(Spill {
            out: io::BufWriter::with_capacity(1 << 16, tempfile::tempfile()?),
            len: 0,
        })
    }

    /// Appends one record's line; returns where it lies.
    fn keep(&mut self, line: &[u8]) -> io::Result<Spot> {
        if line.len() > MAX_STATE_LINE || self.len >= 1 << (64 - Spot::LEN_BITS) {
            return Err(io::Error::other("more state records than can be indexed"));
        }
        let spot = Spot(self.len << Spot::LEN_BITS | line.len() as u64);
        self.out.write_all(line)?;
        self.len += line.len() as u64;
        Ok(spot)
    }

    fn done(self) -> io::Result<File> {
        self.out
            .into_inner()
            .map_err(io::IntoInnerError::into_error)
    }
}

impl StateIndex {
    /// Returns the size recorded for `rel`.
    pub(crate) fn size(&self, rel: &str) -> Option<u64> {
        self.size_of(hash64(rel.as_bytes()))
    }

    /// Returns the size recorded for the path whose [`hash64`] is `key`.
    pub(crate) fn size_of(&self, key: u64) -> Option<u64> {
        self.sizes.get(&key).copied()
    }

    /// Returns true if and only if a whole record lists `rel` (loaded with
    /// `records`).
    pub(crate) fn lists(&self, rel: &str) -> bool {
        self.spots.contains_key(&hash128(rel.as_bytes()))
    }

    /// Returns the number of paths whole records list (loaded with
    /// `records`).
    pub(crate) fn len(&self) -> usize {
        self.spots.len()
    }

    /// Returns the sizes whole records list, summed (saturating: a hostile
    /// record's size must not overflow).
    pub(crate) fn total_size(&self) -> u64 {
        self.spots
            .values()
            .fold(0, |n, (_, s)| n.saturating_add(*s))
    }

    /// Takes the whole record of `rel` (loaded with `records`). An error
    /// is the temporary file failing to give it back.
    pub(crate) fn take(&mut self, rel: &str) -> io::Result<Option<StateRecord>> {
        let Some((spot, _)) = self.spots.remove(&hash128(rel.as_bytes())) else {
            return Ok(None);
        };
        // Another path of the same hash is not this one's record.
        Ok(Some(self.read(spot)?).filter(|r| r.path == rel))
    }

    /// Returns the temporary file of the whole records (loaded with
    /// `records`).
    fn kept(&self) -> io::Result<&File> {
        self.kept
            .as_ref()
            .ok_or_else(|| io::Error::other("no state records were kept"))
    }

    /// Reads back the whole record at `spot`.
    pub(crate) fn read(&self, spot: Spot) -> io::Result<StateRecord> {
        let mut line = vec![0; spot.len()];
        read_at(self.kept()?, &mut line, spot.offset())?;
        serde_json::from_slice(&line).map_err(io::Error::other)
    }

    /// Returns where every whole record lies (loaded with `records`), the
    /// last per path, in the order they were recorded.
    pub(crate) fn spots(&self) -> Vec<Spot> {
        let mut spots: Vec<Spot> = self.spots.values().map(|(s, _)| *s).collect();
        spots.sort_unstable();
        spots
    }

    /// Reads back the records at `spots` (in order, ascending), one after
    /// another through a buffer.
    pub(crate) fn records<'a>(
        &self,
        spots: &'a [Spot],
    ) -> io::Result<impl Iterator<Item = io::Result<(Spot, StateRecord)>> + 'a> {
        let mut reader = BufReader::with_capacity(1 << 16, self.kept()?.try_clone()?);
        let mut at: Option<u64> = None;
        Ok(spots.iter().map(move |&spot| {
            if at != Some(spot.offset()) {
                match at {
                    Some(now) if spot.offset() > now => {
                        reader.seek_relative((spot.offset() - now) as i64)?
                    }
                    _ => {
                        reader.seek(SeekFrom::Start(spot.offset()))?;
                    }
                }
            }
            let mut line = vec![0; spot.len()];
            reader.read_exact(&mut line)?;
            at = Some(spot.offset() + spot.len() as u64);
            let r = serde_json::from_slice(&line).map_err(io::Error::other)?;
            Ok((spot, r))
        }))
    }
}

/// The longest state record line read; a longer one is skipped.
const MAX_STATE_LINE: usize = 64 << 10;
/// Bytes kept set aside past the end of the state record
/// ([`Dest::reserve`]): two batches, more than the records of the files in
/// flight when the disk fills.
const RESERVE_AHEAD: u64 = 2 * STATE_BATCH as u64;

/// Returns the largest state record accepted for a plan of `files`: room
/// for many runs' records of every file, but not for unbounded input.
fn max_state_bytes(files: usize) -> u64 {
    (256u64 << 20).saturating_add((files as u64).saturating_mul(16 << 10))
}

impl Drop for Dest {
    fn drop(&mut self) {
        let _ = self.flush();
        if let Ok(w) = self.state.lock() {
            if let (Some(f), true) = (w.file.as_ref(), w.reserved) {
                release_beyond_end(f);
            }
        }
    }
}

/// The state record's pending writes.
struct StateWriter {
    file: Option<File>,
    pending: Vec<u8>,
    last: Instant,
    /// Room is kept set aside past the end of the file.
    reserved: bool,
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
pub(crate) fn fit_open_files(jobs: usize) -> usize {
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
pub(crate) const STATE_BATCH: usize = 64 << 10;
/// The longest a state record waits before it is written.
pub(crate) const STATE_INTERVAL: Duration = Duration::from_millis(500);

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
    fn state_lines_read_fast_as_serde_json_reads_them() {
        let serde = |line: &[u8]| {
            serde_json::from_slice::<PathSize>(line)
                .ok()
                .map(|r| (r.path.into_owned(), r.size))
        };
        let fast = |line: &[u8]| path_size(line).map(|(p, n)| (p.into_owned(), n));
        let mut lines: Vec<Vec<u8>> = Vec::new();
        for path in [
            "SCALE/o00000/o00000_0000001.fits",
            "a \"quoted\" name",
            "back\\slash",
            "ü/é.fits",
            "tab\there",
            "",
        ] {
            for size in [0, 7, 1024, u64::MAX] {
                let mut r = rec(path, size);
                lines.push(serde_json::to_vec(&r).unwrap());
                r.etag = Some("\"v}1\"".into());
                r.md5 = Some("53fc83e51ea299cb12bbbb0f1288b1bf".into());
                lines.push(serde_json::to_vec(&r).unwrap());
            }
        }
        for odd in [
            r#"{"path":"a","uri":"u","size":01}"#,
            r#"{"path":"a","uri":"u","size":-1}"#,
            r#"{"path":"a","uri":"u","size":1.5}"#,
            r#"{"path":"a","uri":"u","size":1e3}"#,
            r#"{"path":"a","uri":"u","size":18446744073709551616}"#,
            r#"{"path":"a","uri":"u","size":99999999999999999999}"#,
            r#"{ "path":"a","uri":"u","size":1}"#,
            r#"{"uri":"u","path":"a","size":1}"#,
            r#"{"path":"a","size":1}"#,
            r#"{"path":"a","uri":"u\"v","size":2}"#,
            r#"{"path":"a","uri":"u","size":3,"source":"mast"}  "#,
            "{\"path\":\"a\u{1}b\",\"uri\":\"u\",\"size\":4}",
            "{\"path\":\"a\",\"uri\":\"u\u{1f}\",\"size\":5}",
        ] {
            lines.push(odd.as_bytes().to_vec());
        }
        for line in &lines {
            let text = String::from_utf8_lossy(line);
            assert_eq!(fast(line), serde(line), "{text}");
            // Torn anywhere: nothing, or what the whole line says.
            for cut in 0..line.len() {
                let got = fast(&line[..cut]);
                assert!(got.is_none() || got == serde(line), "{text} cut at {cut}");
            }
        }
        assert!(
            plain_path_size(&lines[0]).is_some(),
            "the fast path is taken"
        );
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
    fn sizes_are_indexed_in_blocks_as_lines_are_read_one_by_one() {
        // Records across block ends, a torn line, lines too long to read
        // (inside the text and at its end), blank lines, a last line
        // without its line break; the same path recorded again later.
        let mut text = Vec::new();
        for i in 0..30_000u64 {
            let r = rec(&format!("HST/o{}/f_{i}.fits", i % 7), i);
            text.extend_from_slice(&serde_json::to_vec(&r).unwrap());
            text.push(b'\n');
            if i % 9_999 == 0 {
                text.extend_from_slice(b"{\"path\":\"torn\",\"si\n\n");
            }
            if i == 12_345 {
                text.extend_from_slice(
                    format!(
                        "{{\"path\":\"long\",\"size\":1,\"x\":\"{}\"}}\n",
                        "y".repeat(3 << 20)
                    )
                    .as_bytes(),
                );
            }
        }
        text.extend_from_slice(&serde_json::to_vec(&rec("HST/o1/f_7.fits", 77)).unwrap());
        text.push(b'\n');
        text.extend_from_slice(&serde_json::to_vec(&rec("last", 9)).unwrap());
        let mut sizes = U64Map::default();
        index_sizes(&text[..], &mut sizes).unwrap();
        let mut want = U64Map::default();
        let mut r = BufReader::new(&text[..]);
        let mut line = Vec::new();
        loop {
            line.clear();
            if read_line_bounded(&mut r, &mut line).unwrap() == 0 {
                break;
            }
            if let Ok(p) = serde_json::from_slice::<PathSize>(&line) {
                want.insert(hash64(p.path.as_bytes()), p.size);
            }
        }
        assert_eq!(sizes, want);
        assert_eq!(sizes.len(), 30_002);
        assert_eq!(sizes.get(&hash64(b"HST/o1/f_7.fits")), Some(&77));
        assert_eq!(sizes.get(&hash64(b"last")), Some(&9));
        assert_eq!(sizes.get(&hash64(b"long")), None);
        let mut long = text.clone();
        long.extend_from_slice(&vec![b'z'; 3 << 20]);
        let mut sizes = U64Map::default();
        index_sizes(&long[..], &mut sizes).unwrap();
        assert_eq!(sizes.len(), 30_001);
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
        let mut s = dest.load_state(3, true).unwrap();
        assert_eq!(s.size("a"), Some(5));
        assert_eq!(s.size("c"), Some(3));
        assert_eq!(s.size("b"), None);
        assert_eq!(s.take("a").unwrap().map(|r| r.size), Some(5));
    }

    #[test]
    fn whole_records_are_read_back_from_disk_the_last_per_path() {
        let d = tempfile::tempdir().unwrap();
        let dest = Dest::open(d.path(), None).unwrap();
        for (path, size) in [("a", 1), ("b", 2), ("a", 3), ("c", u64::MAX)] {
            dest.record(&StateRecord {
                etag: Some(format!("\"{path}{size}\"")),
                ..rec(path, size)
            })
            .unwrap();
        }
        dest.flush().unwrap();
        // A line that is JSON with a path and size but not a whole record
        // counts for neither `--update` nor `verify`.
        let p = d.path().join(META_DIR).join("state.jsonl");
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"path\":\"b\",\"size\":9}\n").unwrap();
        drop(f);
        let mut s = dest.load_state(4, true).unwrap();
        assert_eq!((s.len(), s.total_size()), (3, u64::MAX));
        assert!(s.lists("a") && s.lists("b") && !s.lists("d"));
        let spots = s.spots();
        let read: Vec<(String, u64, Option<String>)> = s
            .records(&spots)
            .unwrap()
            .map(|r| r.map(|(_, r)| (r.path, r.size, r.etag)).unwrap())
            .collect();
        let want = |p: &str, n: u64| (p.to_string(), n, Some(format!("\"{p}{n}\"")));
        // In the order recorded, the last line per path.
        assert_eq!(read, [want("b", 2), want("a", 3), want("c", u64::MAX)]);
        assert_eq!(s.read(spots[1]).unwrap().size, 3);
        assert_eq!(s.take("b").unwrap().map(|r| r.size), Some(2));
        assert!(s.take("b").unwrap().is_none(), "taken once");
        assert!(s.take("d").unwrap().is_none());
        // Without `records`, nothing is kept.
        let mut s = dest.load_state(4, false).unwrap();
        assert_eq!(s.size("b"), Some(9));
        assert!(s.spots().is_empty() && s.take("a").unwrap().is_none());
    }
}
