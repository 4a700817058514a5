//! Inputs: every kind of list a user has, read into the same [`Entry`] values.
//!
//! The kind is detected from the content, never from the file name
//! ([`detect`]): an astropy ECSV header, a CSV header (a product table with
//! a `dataURI` column, or a MastMissions product list with a `uri` column),
//! a shell script with `curl` or `wget` commands, a JSON array (MAST's
//! change feed, [`feed`]), or else a plain URI list.
//! Each kind lives in its own module and is a pure function of the text;
//! [`read`] owns getting the text (bounded: [`read::MAX_LINE_BYTES`],
//! [`read::MAX_DOCUMENT_BYTES`]) and [`listing`] expands recursive wget
//! lines over HTTP.

pub(crate) mod feed;
pub(crate) mod filter;
pub(crate) mod list;
pub(crate) mod listing;
pub(crate) mod read;
pub(crate) mod script;
pub(crate) mod table;

use std::fmt;

/// Where an entry came from, for error messages: `uris.txt:12`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Origin {
    /// The input's name as the user gave it (`<stdin>` for standard input).
    pub(crate) file: String,
    /// The 1-based line number.
    pub(crate) line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Where an entry's file should land, as the input says (the plan decides
/// when the input says nothing).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum LocalHint {
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
    /// A change-feed row ([`feed`]): `MISSION/FILESET/FILENAME`; a row
    /// without a fileset can only go straight into DEST (`--flat`).
    Feed {
        mission: String,
        fileset: Option<String>,
        filename: String,
        /// The row says the product was reprocessed: replace the local
        /// copy when it differs, as `--update` does.
        reprocessed: bool,
    },
}

/// Product metadata a table (or a query) carries, used by filters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ProductMeta {
    /// `productType`: SCIENCE, CALIBRATION, AUXILIARY, ...
    pub(crate) product_type: Option<String>,
    /// `calib_level`.
    pub(crate) calib_level: Option<i64>,
    /// `productGroupDescription`, e.g. "Minimum Recommended Products".
    pub(crate) group: Option<String>,
    /// The source states product facts (a table with a `productType`,
    /// `calib_level` or `productGroupDescription` column, a query): the
    /// product filters judge the entry, a blank fact failing the filter
    /// that needs it. False for URI lists, scripts, feeds and tables
    /// without those columns, whose entries the product filters pass.
    pub(crate) judged: bool,
}

/// One requested file, as read from any input kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The `mast:` URI. For a script URL that names no `uri=`, the URL itself.
    pub(crate) uri: String,
    /// The URL to fetch, when the input gives one (scripts); otherwise the
    /// plan builds it from the URI and the base URL.
    pub(crate) url: Option<String>,
    /// Where the file should land.
    pub(crate) local: LocalHint,
    /// The expected size in bytes (a table's `size` column).
    pub(crate) size: Option<u64>,
    /// Table metadata for filters.
    pub(crate) meta: ProductMeta,
    /// Where the entry was read.
    pub(crate) origin: Origin,
}

impl Entry {
    /// Returns an entry for `uri` read at `origin`, with nothing else known.
    pub(crate) fn from_uri(uri: String, origin: Origin) -> Entry {
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

/// One input to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InputSource {
    /// Standard input (`-`, or no INPUT).
    Stdin,
    File(std::path::PathBuf),
}

/// An input that cannot be read: exit 2, nothing downloaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {message}")]
pub(crate) struct InputError {
    pub(crate) origin: Origin,
    pub(crate) message: String,
}

impl InputError {
    pub(crate) fn new(file: &str, line: usize, message: impl Into<String>) -> InputError {
        InputError {
            origin: Origin {
                file: file.to_string(),
                line,
            },
            message: message.into(),
        }
    }
}

/// What an input asks for: a file, or a directory listing to expand.
#[derive(Debug)]
pub(crate) enum Item {
    Entry(Entry),
    /// A recursive `wget` line, expanded by [`listing::Lister`].
    Listing(listing::Listing),
}

/// An input read whole: its items in order, and a note for the user about
/// what it holds that mastdl does not do.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub(crate) items: Vec<Item>,
    pub(crate) note: Option<String>,
}

/// The kinds of input mastdl reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    UriList,
    Script,
    Csv,
    Ecsv,
    /// A JSON array of product rows: MAST's change feed.
    Feed,
}

/// What one of the first lines of an input says about its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineHint {
    /// Blank or a comment: read on.
    Undecided,
    /// The kind is known.
    Kind(Kind),
    /// The first line that is neither blank nor a comment, and not a
    /// `mast:` URI: the whole text decides ([`body_kind`]).
    Whole,
}

/// Judges line `text` (trimmed), `first` when no non-blank line came before.
pub(crate) fn line_hint(text: &str, first: bool) -> LineHint {
    if text.is_empty() {
        return LineHint::Undecided;
    }
    if first {
        let ecsv = text
            .strip_prefix('#')
            .is_some_and(|rest| rest.trim_start().starts_with("%ECSV"));
        if ecsv {
            return LineHint::Kind(Kind::Ecsv);
        }
        if text.starts_with("#!") && text.contains("sh") {
            return LineHint::Kind(Kind::Script);
        }
    }
    if text.starts_with('#') {
        LineHint::Undecided
    } else if crate::layout::is_mast_uri(text) {
        LineHint::Kind(Kind::UriList)
    } else {
        LineHint::Whole
    }
}

/// Returns the kind of a whole text whose first meaningful line is not a
/// `mast:` URI: a script when any line runs `curl` or `wget`, a table when
/// that first line has commas, else a URI list (whose reader says what is
/// wrong with the line).
fn body_kind(text: &str) -> Kind {
    if text.lines().any(runs_download) {
        return Kind::Script;
    }
    let header = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or("");
    if header.contains(',') {
        Kind::Csv
    } else {
        Kind::UriList
    }
}

/// Returns true if and only if `line` starts (after shell keywords) with a
/// `curl` or `wget` command.
fn runs_download(line: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "if", "then", "do", "else", "time", "nohup", "!", "{", "command", "exec",
    ];
    line.split_whitespace()
        .find(|w| !KEYWORDS.contains(w))
        .is_some_and(|w| {
            let name = w.rsplit('/').next().unwrap_or(w);
            name == "curl" || name == "wget"
        })
}

/// Returns the kind of `text`, judged from its content alone: the first
/// lines that are not blank decide (an `# %ECSV` or `#!…sh` first line, a
/// `mast:` URI), else the whole text ([`body_kind`]). The answer does not
/// depend on how the text is read or how long it is.
pub(crate) fn detect(text: &str) -> Kind {
    if feed::looks_like_json(text) {
        return Kind::Feed;
    }
    let mut first = true;
    for line in text.lines() {
        match line_hint(line.trim(), first) {
            LineHint::Undecided => {}
            LineHint::Kind(kind) => return kind,
            LineHint::Whole => return body_kind(text),
        }
        first &= line.trim().is_empty();
    }
    Kind::UriList
}

/// Reads `text` (named `file` in messages) as whatever kind it is.
pub(crate) fn parse_items(file: &str, text: &str) -> Result<Parsed, InputError> {
    let entries = |r: Result<Vec<Entry>, InputError>| {
        r.map(|e| Parsed {
            items: e.into_iter().map(Item::Entry).collect(),
            note: None,
        })
    };
    match detect(text) {
        Kind::UriList => entries(list::parse(file, text)),
        Kind::Script => script::read(file, text).map(|s| Parsed {
            items: s.items,
            note: s.note,
        }),
        Kind::Csv => entries(table::parse_csv(file, text)),
        Kind::Ecsv => entries(table::parse_ecsv(file, text)),
        Kind::Feed => entries(feed::parse(file, text)),
    }
}

/// Reads `text` as whatever kind it is; only its entries (a script's
/// listings need the network: see [`read`]).
#[cfg(test)]
pub(crate) fn parse(file: &str, text: &str) -> Result<Vec<Entry>, InputError> {
    Ok(parse_items(file, text)?
        .items
        .into_iter()
        .filter_map(|i| match i {
            Item::Entry(e) => Some(e),
            Item::Listing(_) => None,
        })
        .collect())
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
        assert_eq!(detect("mkdir a\ncd a\nwget -r https://x/\n"), Kind::Script);
        assert_eq!(detect("# %ECSV 1.0\n# ---\n"), Kind::Ecsv);
        assert_eq!(detect("obsID,dataURI\n1,mast:X/y.fits\n"), Kind::Csv);
        assert_eq!(detect("# comment\n\"obs_id\",\"dataURI\"\n"), Kind::Csv);
        assert_eq!(detect("a,b,c\n1,2,3\n"), Kind::Csv);
        assert_eq!(detect("http://x/y\n"), Kind::UriList);
        assert_eq!(detect("\n  [{\"mission\": \"hst\"}]"), Kind::Feed);
        assert_eq!(
            detect("[ -d a ] || mkdir a\ncurl -o a/b https://x/b\n"),
            Kind::Script
        );
    }

    #[test]
    fn a_late_curl_line_makes_a_script_whatever_the_size() {
        // A Portal bundle without its `#!` line: a long manifest heredoc,
        // then the curl lines.
        for rows in [10, 100_000] {
            let mut text = String::from("cat >MANIFEST.HTML<<EOT\n");
            for i in 0..rows {
                text.push_str(&format!(
                    "<tr><td>mast:HST/product/f{i}_flt.fits</td></tr>\n"
                ));
            }
            text.push_str("EOT\ncurl -o a.fits 'https://mast.stsci.edu/api/v0.1/Download/file?uri=mast:HST/product/a_flt.fits'\n");
            assert_eq!(detect(&text), Kind::Script, "{rows} rows");
        }
    }
}
