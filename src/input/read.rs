//! Getting an input's text: opening files and standard input, reading
//! lines with a cap on their length ([`MAX_LINE_BYTES`]) and on the size of
//! what is read whole ([`MAX_DOCUMENT_BYTES`]), refusing binary data, and
//! deciding the kind from the first lines (or, when they do not say, the
//! whole text) exactly as [`super::detect`] does; a UTF-8 byte-order mark
//! is dropped here, once, for every kind. A URI list is streamed
//! line by line, so it has no size limit; scripts and tables are read
//! whole. [`Reading`] hands every entry on, expands recursive wget lines
//! ([`Lister`]) and says once per input what a script does that mastdl does
//! not.

use std::fs;
use std::io::{self, BufRead, IsTerminal, Read};

use super::feed;
use super::listing::Lister;
use super::InputSource;
use super::{line_hint, list, parse_items, Entry, InputError, Item, Kind, LineHint, Parsed};
use crate::error::UsageError;
use crate::progress::{Level, Reporter};

/// The longest line read from any input (1 MiB): a longer one is an input
/// error, so a file with no line breaks (`/dev/zero`) cannot fill memory.
pub(crate) const MAX_LINE_BYTES: usize = 1 << 20;

/// The largest script or table (256 MiB), which are read whole. URI lists
/// are read line by line and have no such limit.
pub(crate) const MAX_DOCUMENT_BYTES: usize = 256 << 20;

/// A UTF-8 byte-order mark (spreadsheets save CSV with one).
const BOM: &[u8] = b"\xef\xbb\xbf";

/// Returns `bytes` without a leading UTF-8 byte-order mark: the one rule
/// for it, used by the line reader and the whole-file readers.
pub(crate) fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(BOM).unwrap_or(bytes)
}

/// Reads lines from an input, with the caps.
struct LineReader<'a, R> {
    file: &'a str,
    reader: R,
    /// The 1-based number of the last line read.
    line: usize,
    buf: Vec<u8>,
}

impl<R: BufRead> LineReader<'_, R> {
    /// Returns the next line with its line break, or `None` at the end.
    fn next(&mut self) -> anyhow::Result<Option<String>> {
        Ok(self
            .fill()?
            .then(|| String::from_utf8_lossy(&self.buf).into_owned()))
    }

    /// Reads the next line with its line break into `buf`; returns false at
    /// the end.
    fn fill(&mut self) -> anyhow::Result<bool> {
        self.buf.clear();
        let limit = MAX_LINE_BYTES as u64 + 1;
        let n = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| UsageError(format!("Cannot read `{}`: {e}", self.file)))?;
        if n == 0 {
            return Ok(false);
        }
        self.line += 1;
        // The one place a UTF-8 byte-order mark is dropped: no reader
        // after this one sees it.
        if self.line == 1 {
            let bom = self.buf.len() - strip_bom(&self.buf).len();
            self.buf.drain(..bom);
        }
        if self.buf.contains(&0) {
            return Err(InputError::new(
                self.file,
                self.line,
                "Binary data (a NUL byte): mastdl reads text inputs, that is URI lists, download scripts and CSV/ECSV product tables",
            )
            .into());
        }
        let len = self.buf.len() - usize::from(self.buf.ends_with(b"\n"));
        if len > MAX_LINE_BYTES {
            return Err(InputError::new(
                self.file,
                self.line,
                format!(
                    "This line is longer than {} MiB, the most mastdl reads: is this file a URI list, a download script or a product table?",
                    MAX_LINE_BYTES >> 20
                ),
            )
            .into());
        }
        Ok(true)
    }
}

/// Reads one input named `file`: a URI list's entries go to `push` as they
/// are read (and the result is empty); any other kind is read whole and
/// returned.
pub(crate) fn read_input<R: BufRead>(
    file: &str,
    mut reader: R,
    push: &mut dyn FnMut(Entry) -> Result<(), InputError>,
) -> anyhow::Result<Parsed> {
    if starts_like_json(&mut reader, file)? {
        return read_feed(file, reader);
    }
    let mut lines = LineReader {
        file,
        reader,
        line: 0,
        buf: Vec::with_capacity(256),
    };
    let mut text = String::new();
    let mut first = true;
    while let Some(line) = lines.next()? {
        match line_hint(line.trim(), first) {
            LineHint::Undecided => {}
            LineHint::Kind(Kind::UriList) => return stream_list(lines, &line, push),
            LineHint::Kind(_) | LineHint::Whole => {
                text.push_str(&line);
                return read_whole(lines, text);
            }
        }
        first &= line.trim().is_empty();
        // A blank or comment line before the first that decides: every kind
        // skips it, so only its line break is kept (for the line numbers).
        text.push('\n');
        if text.len() > MAX_DOCUMENT_BYTES {
            return Err(too_large(&lines));
        }
    }
    Ok(Parsed::default())
}

/// Returns true if and only if the input's first bytes that are not a BOM
/// or whitespace open JSON (MAST's change feed), looking only at what is
/// buffered: nothing is consumed.
fn starts_like_json<R: BufRead>(reader: &mut R, file: &str) -> anyhow::Result<bool> {
    let buf = reader
        .fill_buf()
        .map_err(|e| UsageError(format!("Cannot read `{file}`: {e}")))?;
    Ok(feed::opens_json(buf))
}

/// Reads a change feed whole (a JSON document may be one long line), up
/// to [`feed::MAX_FEED_BYTES`].
fn read_feed<R: BufRead>(file: &str, reader: R) -> anyhow::Result<Parsed> {
    let mut bytes = Vec::new();
    reader
        .take(feed::MAX_FEED_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| UsageError(format!("Cannot read `{file}`: {e}")))?;
    if bytes.len() > feed::MAX_FEED_BYTES {
        let message = format!(
            "This JSON file is larger than {} MiB, the most mastdl reads as a change feed: split it",
            feed::MAX_FEED_BYTES >> 20
        );
        return Err(InputError::new(file, 1, message).into());
    }
    let text = String::from_utf8(strip_bom(&bytes).to_vec())
        .map_err(|e| InputError::new(file, 1, format!("This JSON file is not UTF-8 text: {e}")))?;
    Ok(Parsed {
        items: feed::parse(file, &text)?
            .into_iter()
            .map(Item::Entry)
            .collect(),
        note: None,
    })
}

/// Reads a URI list from its first URI (`line`, just read) on.
fn stream_list<R: BufRead>(
    mut lines: LineReader<'_, R>,
    line: &str,
    push: &mut dyn FnMut(Entry) -> Result<(), InputError>,
) -> anyhow::Result<Parsed> {
    if let Some(e) = list::parse_line(lines.file, lines.line, line)? {
        push(e)?;
    }
    // Each further line is read into the reader's buffer and looked at
    // there: no copy of a line besides its entry's URI.
    while lines.fill()? {
        // UTF-8 (every list mastdl is given) is checked in one fast pass.
        let line = match std::str::from_utf8(&lines.buf) {
            Ok(s) => std::borrow::Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(&lines.buf),
        };
        if let Some(e) = list::parse_line(lines.file, lines.line, &line)? {
            push(e)?;
        }
    }
    Ok(Parsed::default())
}

/// Returns the entries of `text` read as a file named `file` is read
/// (tests: the byte-order mark and the line numbers as a user's file has them).
#[cfg(test)]
pub(crate) fn read_text(file: &str, text: &str) -> Result<Vec<Entry>, InputError> {
    let mut got = Vec::new();
    let parsed = read_input(file, text.as_bytes(), &mut |e| {
        got.push(e);
        Ok(())
    })
    .map_err(|e| match e.downcast::<InputError>() {
        Ok(e) => e,
        Err(e) => InputError::new(file, 0, e.to_string()),
    })?;
    got.extend(parsed.items.into_iter().filter_map(|i| match i {
        Item::Entry(e) => Some(e),
        Item::Listing(_) => None,
    }));
    Ok(got)
}

/// Reads the rest of a script or table after `text` and parses it.
fn read_whole<R: BufRead>(
    mut lines: LineReader<'_, R>,
    mut text: String,
) -> anyhow::Result<Parsed> {
    while let Some(line) = lines.next()? {
        if text.len() + line.len() > MAX_DOCUMENT_BYTES {
            return Err(too_large(&lines));
        }
        text.push_str(&line);
    }
    Ok(parse_items(lines.file, &text)?)
}

fn too_large<R>(lines: &LineReader<'_, R>) -> anyhow::Error {
    InputError::new(
        lines.file,
        lines.line,
        format!(
            "This script or table is larger than {} MiB, the most mastdl reads whole: split it, or make a URI list of it (URI lists have no size limit)",
            MAX_DOCUMENT_BYTES >> 20
        ),
    )
    .into()
}

/// Where [`Reading::each_entry`] hands the entries it reads.
pub(crate) trait Sink {
    /// Takes the next entry. An error refuses it, or an entry taken before
    /// it that was not judged yet; either way the reading ends with it.
    fn push(&mut self, e: Entry) -> Result<(), InputError>;
    /// Judges every entry taken so far (an error refuses one of them), so
    /// the next `push` answers for its own entry.
    fn settle(&mut self) -> Result<(), InputError>;
}

/// Reads the run's inputs into entries, with what the run needs for that:
/// the client for listings and the run's reporter for notes.
pub(crate) struct Reading<'a> {
    lister: Lister,
    notes: &'a dyn Reporter,
}

impl<'a> Reading<'a> {
    /// Returns the reading that lists directories with `lister` and says
    /// what it skipped to the run's reporter.
    pub(crate) fn new(lister: Lister, notes: &'a dyn Reporter) -> Reading<'a> {
        Reading { lister, notes }
    }

    /// Feeds every entry of every input in `sources` to `push`, in order,
    /// listing the directories of recursive wget lines where they stand.
    /// Every line of a script (wget and curl lines alike) is checked
    /// before any of them makes a request. Returns the notes the run's manifest keeps (links a listing
    /// skipped), each said once on stderr as it comes.
    pub(crate) async fn each_entry(
        &self,
        sources: &[InputSource],
        sink: &mut dyn Sink,
    ) -> anyhow::Result<Vec<String>> {
        let mut notes = Vec::new();
        for src in sources {
            let (name, parsed) = match src {
                InputSource::Stdin => {
                    if io::stdin().is_terminal() {
                        return Err(UsageError(
                            "No input: name a URI list, script or table, or pipe one into `mastdl`"
                                .into(),
                        )
                        .into());
                    }
                    let stdin = io::stdin();
                    let reader = io::BufReader::with_capacity(1 << 16, stdin.lock());
                    // A refused entry names `<stdin>` and its line, as
                    // one in a file names the file (and may be found
                    // only once the input is read: see `Sink::push`).
                    let parsed =
                        read_input("<stdin>", reader, &mut |e| sink.push(e)).map_err(|e| {
                            match e.is::<InputError>() {
                                true => e,
                                false => e.context("Cannot read standard input"),
                            }
                        })?;
                    ("<stdin>".to_string(), parsed)
                }
                InputSource::File(p) => {
                    let name = p.display().to_string();
                    let file = fs::File::open(p)
                        .map_err(|e| UsageError(format!("Cannot read `{name}`: {e}")))?;
                    let reader = io::BufReader::with_capacity(1 << 16, file);
                    let parsed = read_input(&name, reader, &mut |e| sink.push(e))?;
                    (name, parsed)
                }
            };
            if let Some(note) = &parsed.note {
                self.notes.message(Level::Info, &format!("{name}: {note}"));
            }
            for item in &parsed.items {
                match item {
                    Item::Listing(l) => drop(self.lister.check(l)?),
                    Item::Entry(e) => self.lister.check_entry(e)?,
                }
            }
            for item in parsed.items {
                match item {
                    Item::Entry(e) => sink.push(e)?,
                    Item::Listing(l) => {
                        // A listing skips a link the plan refuses: each
                        // is judged before the next (and any entry before
                        // the listing, whose refusal is the run's).
                        sink.settle()?;
                        let listed = self
                            .lister
                            .expand(&l, &mut |e| {
                                sink.push(e)?;
                                sink.settle()
                            })
                            .await?;
                        if let Some(note) = listed.note(&l) {
                            self.notes.message(Level::Warn, &note);
                            notes.push(note);
                        }
                        if listed.kept == 0 && listed.skipped_count == 0 {
                            let text = format!(
                                "{}: Listed `{}` and kept no file: check this wget line's `-A`, `-R` and `-l`",
                                l.origin,
                                crate::layout::escape(&l.url)
                            );
                            self.notes.message(Level::Warn, &text);
                        }
                    }
                }
            }
        }
        Ok(notes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(text: &[u8]) -> anyhow::Result<(Vec<Entry>, Parsed)> {
        let mut got = Vec::new();
        let parsed = read_input("in.txt", text, &mut |e| {
            got.push(e);
            Ok(())
        })?;
        Ok((got, parsed))
    }

    fn input_error(r: anyhow::Result<(Vec<Entry>, Parsed)>) -> InputError {
        r.unwrap_err().downcast::<InputError>().unwrap()
    }

    #[test]
    fn a_uri_list_is_streamed_with_its_line_numbers() {
        let (got, parsed) =
            entries(b"\xef\xbb\xbf# head\n\nmast:A/b_c.fits\nmast:A/d_e.fits").unwrap();
        assert!(parsed.items.is_empty());
        let lines: Vec<_> = got.iter().map(|e| e.origin.line).collect();
        assert_eq!(lines, [3, 4]);
        let e = input_error(entries(b"mast:A/b_c.fits\nhttp://x\n"));
        assert_eq!(e.origin.line, 2);
    }

    #[test]
    fn the_kind_does_not_depend_on_where_a_read_buffer_ends() {
        // 300 KB of heredoc before the first curl line and no `#!` line.
        let mut text = String::from("cat >MANIFEST.HTML<<EOT\n");
        while text.len() < 300_000 {
            text.push_str("<tr><td>mast:HST/product/f_flt.fits</td></tr>\n");
        }
        text.push_str("EOT\ncurl -o a.fits 'https://x.org/f?uri=mast:HST/product/a_flt.fits'\n");
        for capacity in [16, 1 << 16] {
            let reader = io::BufReader::with_capacity(capacity, text.as_bytes());
            let parsed = read_input("b.sh", reader, &mut |_| panic!("not a URI list")).unwrap();
            assert_eq!(parsed.items.len(), 1);
        }
    }

    #[test]
    fn leading_comments_keep_the_line_numbers_of_a_table_and_a_script() {
        let (_, parsed) =
            entries(b"# saved by me\n\n# --\nobs_id,dataURI\n1,mast:A/b_c.fits\n").unwrap();
        let Some(Item::Entry(e)) = parsed.items.first() else {
            panic!("{parsed:?}");
        };
        assert_eq!(e.origin.line, 5);
        let (_, parsed) = entries(b"\n# a comment\ncurl -o a https://x.org/a\n").unwrap();
        let Some(Item::Entry(e)) = parsed.items.first() else {
            panic!("{parsed:?}");
        };
        assert_eq!(e.origin.line, 3);
    }

    #[test]
    fn long_lines_and_binary_data_are_input_errors() {
        let mut long = b"mast:A/b_c.fits\n".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_LINE_BYTES + 1));
        let e = input_error(entries(&long));
        assert_eq!(e.origin.line, 2);
        assert!(e.message.contains("longer than 1 MiB"), "{e}");
        // Exactly the cap is fine (and then not a URI).
        let mut ok = vec![b'x'; MAX_LINE_BYTES];
        ok.push(b'\n');
        let e = input_error(entries(&ok));
        assert!(e.message.starts_with("Not a `mast:` URI"), "{e}");
        let e = input_error(entries(b"a,b\n1,\0\n"));
        assert_eq!(e.origin.line, 2);
        assert!(e.message.starts_with("Binary data"), "{e}");
    }
}
