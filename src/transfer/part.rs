//! The `.part` file beside each final path, and what is known about its bytes.
//!
//! A `.part`'s length never stands for its content. What a later attempt
//! may keep is written in a sidecar (`NAME.part.meta`, JSON): the validator
//! (ETag or Last-Modified) and total length of the answer the bytes came
//! from, and — for a pre-sized `.part` filled by parallel ranges — which
//! ranges are done. A `.part` without a sidecar that matches is discarded.
//!
//! Files are opened without following a final symlink (`O_NOFOLLOW`), a
//! symlink found at a `.part` is removed (never written through), and
//! [`commit`] renames a `.part` into place only when it is still the very
//! file that was written (same device and inode, not a symlink).
//!
//! Names: `NAME.part` and `NAME.part.meta`, or — when those would pass the
//! 255-byte limit of common file systems — a shortened stem with a hash of
//! the name, so every product name that fits a file system can be fetched.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The longest file name most file systems allow, in bytes.
pub(crate) const NAME_MAX: usize = 255;
/// The longest suffix added to a final name (`.part.meta`).
const LONGEST_SUFFIX: usize = ".part.meta".len();

/// What identifies the version of a file the bytes came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Validator {
    /// A strong or weak ETag, as sent.
    Etag(String),
    /// A Last-Modified date, as sent.
    LastModified(String),
}

impl Validator {
    /// Returns the validator of an answer: its ETag, else its Last-Modified.
    pub(crate) fn of(etag: Option<&str>, last_modified: Option<&str>) -> Option<Validator> {
        etag.map(|e| Validator::Etag(e.to_string()))
            .or_else(|| last_modified.map(|l| Validator::LastModified(l.to_string())))
    }

    /// Returns the `If-Range` value for this validator: a strong ETag or a
    /// date (a weak ETag cannot be used, RFC 9110 §13.1.5).
    pub(crate) fn if_range(&self) -> Option<&str> {
        match self {
            Validator::Etag(e) if !e.starts_with("W/") => Some(e),
            Validator::Etag(_) => None,
            Validator::LastModified(d) => Some(d),
        }
    }

    /// Returns true if and only if an answer with these validators may be
    /// a continuation of the bytes this validator describes: the same
    /// ETag, or (without ETags) the same Last-Modified; an answer without
    /// the kind of validator that was recorded does not match.
    pub(crate) fn matches(&self, etag: Option<&str>, last_modified: Option<&str>) -> bool {
        match self {
            Validator::Etag(e) => etag == Some(e.as_str()),
            Validator::LastModified(d) => last_modified == Some(d.as_str()),
        }
    }
}

/// The sidecar's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Meta {
    /// The validator of the answer the bytes came from, if it had one.
    pub(crate) validator: Option<Validator>,
    /// The whole file's length, when announced.
    pub(crate) total: Option<u64>,
    /// For a pre-sized `.part` filled by ranges: the range size and the
    /// ranges done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ranged: Option<Ranges>,
}

/// The ranges of a pre-sized `.part` that hold their bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ranges {
    pub(crate) chunk: u64,
    pub(crate) done: Vec<usize>,
}

/// The `.part` of one final path and its sidecar.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    /// The `.part` file.
    pub(crate) path: PathBuf,
    /// The sidecar.
    pub(crate) meta: PathBuf,
}

impl Part {
    /// Returns the `.part` and sidecar paths for `final_path`.
    pub(crate) fn of(final_path: &Path) -> Part {
        let name = final_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = if name.len() + LONGEST_SUFFIX <= NAME_MAX {
            name
        } else {
            // Deterministic, so a later run finds the same `.part`.
            let hash = fnv1a(name.as_bytes());
            let keep = NAME_MAX - LONGEST_SUFFIX - 17;
            let mut cut = keep;
            while !name.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}~{hash:016x}", &name[..cut])
        };
        let dir = final_path.parent().unwrap_or(Path::new(""));
        Part {
            path: dir.join(format!("{stem}.part")),
            meta: dir.join(format!("{stem}.part.meta")),
        }
    }

    /// Returns the sidecar, when it can be read and parsed.
    pub(crate) fn load(&self) -> Option<Meta> {
        let text = read_nofollow(&self.meta, 1 << 20).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Writes the sidecar atomically (never through a symlink).
    pub(crate) fn save(&self, meta: &Meta) -> io::Result<()> {
        let json = serde_json::to_vec(meta).map_err(io::Error::other)?;
        crate::manifest::write_atomic(&self.meta, &json)
    }

    /// Returns the length of the `.part` when it is a regular file (not a
    /// symlink); removes anything else found there.
    pub(crate) fn file_len(&self) -> Option<u64> {
        self.look().flatten()
    }

    /// What is at the `.part`: `None` when nothing is; else its length
    /// when it is a regular file, `Some(None)` when it was something else
    /// (removed now).
    pub(crate) fn look(&self) -> Option<Option<u64>> {
        match fs::symlink_metadata(&self.path) {
            Ok(m) if m.file_type().is_file() => Some(Some(m.len())),
            Ok(_) => {
                let _ = fs::remove_file(&self.path);
                Some(None)
            }
            Err(_) => None,
        }
    }

    /// Removes the `.part` and its sidecar (and a 0.1.0 `.part.ranges`).
    pub(crate) fn discard(&self) {
        let _ = fs::remove_file(&self.path);
        let _ = fs::remove_file(&self.meta);
        let mut old = self.path.clone().into_os_string();
        old.push(".ranges");
        let _ = fs::remove_file(PathBuf::from(old));
    }

    /// Opens the `.part` for writing, creating it; `truncate` starts a new
    /// one. Never follows a symlink: one planted there is removed first.
    pub(crate) fn open(&self, truncate: bool) -> io::Result<File> {
        if truncate {
            // What an old sidecar says is about bytes that are gone; one
            // left without its `.part` (a crash) must never be paired with
            // the new bytes, so it is removed even where none was read.
            let _ = fs::remove_file(&self.meta);
            return self.create_new();
        }
        if let Ok(m) = fs::symlink_metadata(&self.path) {
            if !m.file_type().is_file() {
                fs::remove_file(&self.path)?;
            }
        }
        let mut o = OpenOptions::new();
        o.create(true).write(true);
        nofollow(&mut o);
        let f = o.open(&self.path)?;
        own_file(&f)?;
        Ok(f)
    }

    /// Creates the `.part` as a new, empty file of our own (`O_EXCL`: never
    /// an inode someone else planted, a symlink, a hard link or a FIFO);
    /// whatever is at its name is removed first. One path lookup when
    /// nothing is there, a first run's every file.
    fn create_new(&self) -> io::Result<File> {
        let mut o = OpenOptions::new();
        o.create_new(true).write(true);
        nofollow(&mut o);
        let mut tries = 0;
        loop {
            match o.open(&self.path) {
                Ok(f) => {
                    own_file(&f)?;
                    return Ok(f);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 3 => {
                    tries += 1;
                    match fs::remove_file(&self.path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Opens the existing `.part` for appending (never through a symlink,
    /// never a file with other names: a planted hard link).
    pub(crate) fn open_append(&self) -> io::Result<File> {
        let mut o = OpenOptions::new();
        o.append(true);
        nofollow(&mut o);
        let f = o.open(&self.path)?;
        own_file(&f)?;
        Ok(f)
    }

    /// Opens the `.part` for reading (never through a symlink).
    pub(crate) fn open_read(&self) -> io::Result<File> {
        let mut o = OpenOptions::new();
        o.read(true);
        nofollow(&mut o);
        let f = o.open(&self.path)?;
        own_file(&f)?;
        Ok(f)
    }
}

/// Returns the 64-bit FNV-1a hash of `bytes` (stable across builds).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Makes `o` refuse to open a final symlink.
pub(crate) fn nofollow(o: &mut OpenOptions) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.custom_flags(libc::O_NOFOLLOW);
    }
    #[cfg(not(unix))]
    let _ = o;
}

/// Returns an error unless `f` is a regular file with one name (not a
/// FIFO, a device, or a hard link planted to a file elsewhere).
fn own_file(f: &File) -> io::Result<()> {
    let m = f.metadata()?;
    #[cfg(unix)]
    let single = {
        use std::os::unix::fs::MetadataExt;
        m.nlink() == 1
    };
    #[cfg(not(unix))]
    let single = true;
    if m.file_type().is_file() && single {
        Ok(())
    } else {
        Err(io::Error::other(
            "not a regular file of mastdl's own (a FIFO, a device or a hard link was planted there)",
        ))
    }
}

/// Reads at most `limit` bytes of a regular file at `path`: never through
/// a symlink, and without blocking on a FIFO planted there.
pub(crate) fn read_nofollow(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut o = OpenOptions::new();
    o.read(true);
    nofollow(&mut o);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let f = o.open(path)?;
    if !f.metadata()?.file_type().is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let mut buf = Vec::new();
    f.take(limit).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Creates the folders of `rel_dir` (`/`-separated) below `root`, refusing
/// any that is a symlink: a planted `DEST/JWST -> /elsewhere` must not send
/// files outside DEST.
pub(crate) fn create_dirs(root: &Path, rel_dir: &str) -> io::Result<()> {
    let mut at = root.to_path_buf();
    // DEST itself is looked at only when a folder in it is missing (or the
    // file goes right into it): a path lookup less for every file.
    let mut root_made = false;
    let mut segs = rel_dir.split('/').filter(|s| !s.is_empty()).peekable();
    if segs.peek().is_none() {
        fs::create_dir_all(&at)?;
    }
    for seg in segs {
        at.push(seg);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "`{}` is not a folder of DEST's own (a symlink or a file); mastdl does not write through it",
                    at.display()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => match make_dir(root, &at, &mut root_made) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if !fs::symlink_metadata(&at)?.file_type().is_dir() {
                        return Err(io::Error::other("a folder was replaced while it was made"));
                    }
                }
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Makes the folder `at` below `root`, making `root` first (once) when it
/// is missing.
fn make_dir(root: &Path, at: &Path, root_made: &mut bool) -> io::Result<()> {
    match fs::create_dir(at) {
        Err(e) if e.kind() == io::ErrorKind::NotFound && !*root_made => {
            *root_made = true;
            fs::create_dir_all(root)?;
            fs::create_dir(at)
        }
        r => r,
    }
}

/// Returns the first folder on the way from `root` to the file at `rel`
/// (`/`-separated) that exists and is not a folder of DEST's own (a
/// symlink, or a file): [`create_dirs`]'s rule, for readers (`verify`)
/// that must not follow one out of DEST either. `None` when every
/// existing one is a real folder.
pub(crate) fn foreign_folder(root: &Path, rel: &str) -> Option<String> {
    let mut at = root.to_path_buf();
    let mut segs: Vec<&str> = rel.split('/').collect();
    segs.pop();
    for (i, seg) in segs.iter().enumerate() {
        at.push(seg);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => return Some(segs[..=i].join("/")),
            Err(_) => return None,
        }
    }
    None
}

/// The identity of an open file, to check it is still the one at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    #[cfg(unix)]
    dev: u64,
    #[cfg(unix)]
    ino: u64,
}

impl FileId {
    /// Returns the identity of an open file.
    pub(crate) fn of(f: &File) -> io::Result<FileId> {
        let m = f.metadata()?;
        Ok(FileId::from_meta(&m))
    }

    fn from_meta(m: &fs::Metadata) -> FileId {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            FileId {
                dev: m.dev(),
                ino: m.ino(),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = m;
            FileId {}
        }
    }
}

/// Renames the `.part` over `final_path`, only when the `.part` is still a
/// regular file and (when `id` is given) the very file that was written;
/// then removes the sidecar (when one may be there: `sidecar`).
pub(crate) fn commit(
    part: &Part,
    final_path: &Path,
    id: Option<FileId>,
    sidecar: bool,
) -> io::Result<()> {
    let m = fs::symlink_metadata(&part.path)?;
    if !m.file_type().is_file() || id.is_some_and(|id| FileId::from_meta(&m) != id) {
        let _ = fs::remove_file(&part.path);
        return Err(io::Error::other(
            "the `.part` file was replaced while it was written (a symlink or another file); discarded",
        ));
    }
    fs::rename(&part.path, final_path)?;
    if sidecar {
        let _ = fs::remove_file(&part.meta);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_get_a_short_deterministic_part_name() {
        let d = Path::new("/x");
        let short = Part::of(&d.join("a.fits"));
        assert_eq!(short.path, d.join("a.fits.part"));
        assert_eq!(short.meta, d.join("a.fits.part.meta"));
        for len in [245usize, 251, 255] {
            let name = "é".repeat(len / 2) + &"a".repeat(len % 2);
            assert_eq!(name.len(), len);
            let p = Part::of(&d.join(&name));
            let n = p.meta.file_name().unwrap().to_str().unwrap().len();
            assert!(n <= NAME_MAX, "{len}: {n}");
            assert_eq!(p.path, Part::of(&d.join(&name)).path);
        }
        let a = Part::of(&d.join("a".repeat(250)));
        let b = Part::of(&d.join(format!("{}b", "a".repeat(249))));
        assert_ne!(a.path, b.path);
    }

    #[test]
    fn validators_match_only_their_own_kind() {
        let v = Validator::Etag("\"a\"".into());
        assert!(v.matches(Some("\"a\""), None));
        assert!(!v.matches(Some("\"b\""), None));
        assert!(!v.matches(None, Some("Tue")));
        assert_eq!(v.if_range(), Some("\"a\""));
        assert_eq!(Validator::Etag("W/\"a\"".into()).if_range(), None);
        let d = Validator::LastModified("Tue".into());
        assert!(d.matches(None, Some("Tue")));
        assert!(!d.matches(None, Some("Wed")));
        assert_eq!(
            Validator::of(Some("e"), Some("d")),
            Some(Validator::Etag("e".into()))
        );
        assert_eq!(Validator::of(None, None), None);
    }

    #[cfg(unix)]
    #[test]
    fn a_planted_symlink_is_never_written_through_nor_committed() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        fs::write(&outside, b"precious").unwrap();
        let fin = d.path().join("f.fits");
        let part = Part::of(&fin);
        std::os::unix::fs::symlink(&outside, &part.path).unwrap();
        assert!(part.open_append().is_err(), "append followed a symlink");
        assert_eq!(part.file_len(), None);
        let f = part.open(true).unwrap();
        let id = FileId::of(&f).unwrap();
        drop(f);
        assert_eq!(fs::read(&outside).unwrap(), b"precious");
        // Swapped for a symlink after writing: not committed.
        fs::remove_file(&part.path).unwrap();
        std::os::unix::fs::symlink(&outside, &part.path).unwrap();
        assert!(commit(&part, &fin, Some(id), true).is_err());
        assert!(fs::symlink_metadata(&fin).is_err());
        assert_eq!(fs::read(&outside).unwrap(), b"precious");
    }

    #[cfg(unix)]
    #[test]
    fn a_new_part_replaces_whatever_was_planted_at_its_name() {
        use std::io::Write;
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        fs::write(&outside, b"precious").unwrap();
        let fin = d.path().join("f.fits");
        let part = Part::of(&fin);
        let plants: [(&str, &dyn Fn()); 4] = [
            ("symlink", &|| {
                std::os::unix::fs::symlink(&outside, &part.path).unwrap()
            }),
            ("hard link", &|| {
                fs::hard_link(&outside, &part.path).unwrap()
            }),
            ("fifo", &|| {
                let c = std::ffi::CString::new(part.path.as_os_str().as_encoded_bytes()).unwrap();
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            }),
            ("old part", &|| fs::write(&part.path, b"old bytes").unwrap()),
        ];
        for (what, plant) in plants {
            plant();
            fs::write(&part.meta, b"{}").unwrap();
            let mut f = part.open(true).unwrap();
            f.write_all(b"new").unwrap();
            drop(f);
            let m = fs::symlink_metadata(&part.path).unwrap();
            assert!(m.file_type().is_file() && m.nlink() == 1, "{what}");
            assert_eq!(fs::read(&part.path).unwrap(), b"new", "{what}");
            assert!(!part.meta.exists(), "{what}: the old sidecar stays");
            assert_eq!(fs::read(&outside).unwrap(), b"precious", "{what}");
            fs::remove_file(&part.path).unwrap();
        }
    }

    #[cfg(unix)]
    #[test]
    fn folders_are_made_below_a_missing_dest_and_never_through_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("dest/deeper");
        create_dirs(&root, "JWST/jw01").unwrap();
        assert!(root.join("JWST/jw01").is_dir());
        create_dirs(&root, "JWST/jw01").unwrap();
        create_dirs(&d.path().join("flat"), "").unwrap();
        assert!(d.path().join("flat").is_dir());
        std::os::unix::fs::symlink(d.path(), root.join("HST")).unwrap();
        assert!(create_dirs(&root, "HST/ib1").is_err());
        assert!(!d.path().join("ib1").exists());
        fs::write(root.join("TESS"), b"").unwrap();
        assert!(create_dirs(&root, "TESS/s0001").is_err());
    }

    #[test]
    fn sidecar_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let part = Part::of(&d.path().join("f"));
        let meta = Meta {
            validator: Some(Validator::Etag("\"x\"".into())),
            total: Some(10),
            ranged: Some(Ranges {
                chunk: 4,
                done: vec![0, 2],
            }),
        };
        part.save(&meta).unwrap();
        assert_eq!(part.load(), Some(meta));
        part.discard();
        assert_eq!(part.load(), None);
    }
}
