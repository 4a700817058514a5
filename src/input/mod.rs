//! Inputs: every kind of list a user has, read into the same [`Entry`] values.
//!
//! The kind is detected from the content, never from the file name
//! ([`detect`]): an astropy ECSV header, a CSV header with a `dataURI`
//! column, a bash script with `curl` commands, or else a plain URI list.
//! Each kind lives in its own file and is a pure function of the text.

pub mod list;
pub mod script;
pub mod table;

use std::fmt;

/// Where an entry came from, for error messages: `uris.txt:12`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The input's name as the user gave it (`<stdin>` for standard input).
    pub file: String,
    /// The 1-based line number.
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Where an entry's file should land, as the input says (the plan decides
/// when the input says nothing).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LocalHint {
    /// Nothing: the contract layout `COLL/OBS_ID/FILENAME` from the URI.
    #[default]
    None,
    /// A product table's columns; each one present overrides the URI's part.
    Parts {
        collection: Option<String>,
        obs_id: Option<String>,
        filename: Option<String>,
    },
    /// A download script's `--output` path, relative to its download folder,
    /// `/`-separated and not yet validated.
    Path(String),
}

/// Product metadata a table (or a query) carries, used by filters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProductMeta {
    /// `productType`: SCIENCE, CALIBRATION, AUXILIARY, ...
    pub product_type: Option<String>,
    /// `calib_level`.
    pub calib_level: Option<i64>,
    /// `productGroupDescription`, e.g. "Minimum Recommended Products".
    pub group: Option<String>,
}

/// One requested file, as read from any input kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The `mast:` URI. For a script URL that names no `uri=`, the URL itself.
    pub uri: String,
    /// The URL to fetch, when the input gives one (scripts); otherwise the
    /// plan builds it from the URI and the base URL.
    pub url: Option<String>,
    /// Where the file should land.
    pub local: LocalHint,
    /// The expected size in bytes (a table's `size` column).
    pub size: Option<u64>,
    /// Table metadata for filters.
    pub meta: ProductMeta,
    /// Where the entry was read.
    pub origin: Origin,
}

impl Entry {
    /// Returns an entry for `uri` read at `origin`, with nothing else known.
    pub fn from_uri(uri: String, origin: Origin) -> Entry {
        Entry {
            uri,
            url: None,
            local: LocalHint::None,
            size: None,
            meta: ProductMeta::default(),
            origin,
        }
    }
}

/// An input that cannot be read: exit 2, nothing downloaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct InputError {
    pub origin: Origin,
    pub message: String,
}

impl InputError {
    pub fn new(file: &str, line: usize, message: impl Into<String>) -> InputError {
        InputError {
            origin: Origin {
                file: file.to_string(),
                line,
            },
            message: message.into(),
        }
    }
}

/// The kinds of input mastdl reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    UriList,
    Script,
    Csv,
    Ecsv,
}

/// Returns the kind of `text`, judged from its content alone.
pub fn detect(text: &str) -> Kind {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let Some(first) = lines.next() else {
        return Kind::UriList;
    };
    if first.starts_with("# %ECSV") {
        return Kind::Ecsv;
    }
    if first.starts_with("#!") && (first.contains("sh") || first.contains("bash")) {
        return Kind::Script;
    }
    if text
        .lines()
        .any(|l| l.trim_start().starts_with("curl ") || l.trim_start() == "curl")
    {
        return Kind::Script;
    }
    // A CSV header: the first line that is not a comment names `dataURI`.
    let header = std::iter::once(first)
        .chain(lines)
        .find(|l| !l.starts_with('#'))
        .unwrap_or("");
    if header.contains(',')
        && header
            .split(',')
            .any(|c| c.trim().trim_matches('"').eq_ignore_ascii_case("dataURI"))
    {
        return Kind::Csv;
    }
    if !header.starts_with("mast:") && header.contains(',') {
        // A CSV without a `dataURI` column: the table reader names the columns.
        return Kind::Csv;
    }
    Kind::UriList
}

/// Reads one input (named `file` in messages) and hands each entry to `f`,
/// in order. A URI list is read line by line, so its size does not count
/// against memory; the other kinds are read whole.
pub fn stream<R: std::io::BufRead>(
    file: &str,
    mut reader: R,
    f: &mut dyn FnMut(Entry) -> Result<(), InputError>,
) -> std::io::Result<Result<(), InputError>> {
    let head = String::from_utf8_lossy(reader.fill_buf()?).into_owned();
    if detect(&head) != Kind::UriList {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes)?;
        let text = String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        return Ok(parse(file, &text).and_then(|entries| entries.into_iter().try_for_each(&mut *f)));
    }
    let mut buf = Vec::with_capacity(256);
    let mut line = 0;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            return Ok(Ok(()));
        }
        line += 1;
        let text = String::from_utf8_lossy(&buf);
        match list::parse_line(file, line, &text) {
            Ok(Some(e)) => {
                if let Err(err) = f(e) {
                    return Ok(Err(err));
                }
            }
            Ok(None) => {}
            Err(err) => return Ok(Err(err)),
        }
    }
}

/// Reads `text` (named `file` in messages) as whatever kind it is.
pub fn parse(file: &str, text: &str) -> Result<Vec<Entry>, InputError> {
    match detect(text) {
        Kind::UriList => list::parse(file, text),
        Kind::Script => script::parse(file, text),
        Kind::Csv => table::parse_csv(file, text),
        Kind::Ecsv => table::parse_ecsv(file, text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_kind_from_content() {
        assert_eq!(detect("mast:HST/product/a_b.fits\n"), Kind::UriList);
        assert_eq!(
            detect("# my list\n\nmast:HST/product/a_b.fits\n"),
            Kind::UriList
        );
        assert_eq!(detect(""), Kind::UriList);
        assert_eq!(detect("#!/bin/bash\necho hi\n"), Kind::Script);
        assert_eq!(detect("curl -o x 'https://x'\n"), Kind::Script);
        assert_eq!(detect("# %ECSV 1.0\n# ---\n"), Kind::Ecsv);
        assert_eq!(
            detect("\u{feff}obsID,dataURI\n1,mast:X/y.fits\n"),
            Kind::Csv
        );
        assert_eq!(detect("# comment\n\"obs_id\",\"dataURI\"\n"), Kind::Csv);
        assert_eq!(detect("a,b,c\n1,2,3\n"), Kind::Csv);
    }
}
