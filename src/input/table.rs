//! Product tables: the CSV and astropy ECSV files that astroquery's
//! `Observations.get_product_list` (saved with `Table.write`) or the MAST
//! Portal export, read into [`Entry`] values. This file owns finding the
//! columns (the names astroquery spells, then any case), the masked-cell
//! rules (empty, `--`, and `nan` in number columns mean "not given"), a small
//! reader for the ECSV header and its space- or comma-delimited body, and the
//! 1-based physical line numbers every entry and error carries. Both readers
//! are pure functions of the text.

use super::{Entry, InputError, LocalHint, Origin, ProductMeta};

/// The one column a product table must have.
const DATA_URI: &str = "dataURI";

/// Reads a CSV product table (header row naming a `dataURI` column).
///
/// Handles a UTF-8 byte-order mark, CRLF line ends, quoted fields (commas,
/// doubled quotes, line breaks), `#` comment lines before and among the rows,
/// and blank lines. A row with a different number of fields than the header
/// is an error naming its line.
pub fn parse_csv(file: &str, text: &str) -> Result<Vec<Entry>, InputError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let lines = LineIndex::new(text);
    let mut record = csv::StringRecord::new();
    let mut columns: Option<(Columns, usize)> = None;
    let mut out = Vec::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let at = e.position().unwrap_or_else(|| reader.position());
                let line = lines.record_line(at);
                return Err(InputError::new(file, line, format!("Unreadable CSV: {e}")));
            }
        }
        let line = record.position().map_or(1, |p| lines.record_line(p));
        let fields: Vec<&str> = record.iter().collect();
        if fields.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        match &columns {
            None => columns = Some((Columns::find(file, line, &fields)?, line)),
            Some((cols, header_line)) => {
                check_width(file, line, fields.len(), cols, *header_line)?;
                out.push(cols.entry(file, line, &fields)?);
            }
        }
    }
    if columns.is_none() {
        return Err(InputError::new(
            file,
            1,
            "No header row: a product table needs a header naming a `dataURI` column",
        ));
    }
    Ok(out)
}

/// Reads an astropy ECSV table (`# %ECSV 1.0` header, YAML-ish `# ---`
/// metadata, then a CSV/space-delimited body).
///
/// Of the YAML header only `delimiter` (space, the default, or comma) and the
/// `datatype` column names are read; the body's first row, the column names
/// the spec requires, is the truth about the columns. Values may be quoted
/// with `"` (a doubled `""` inside is a quote); runs of spaces separate fields
/// in a space-delimited body, as astropy reads it. Masked values are empty.
pub fn parse_ecsv(file: &str, text: &str) -> Result<Vec<Entry>, InputError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().collect();
    let header = EcsvHeader::read(file, &lines)?;
    let mut body = EcsvBody {
        lines: &lines,
        next: header.body_start,
        delimiter: header.delimiter,
    };
    let Some((header_line, names)) = body.next_record(file)? else {
        // No column-name row: an empty table; the `datatype` list names its
        // columns.
        let names: Vec<&str> = header.names.iter().map(String::as_str).collect();
        if names.is_empty() {
            return Err(InputError::new(
                file,
                lines.len().max(1),
                "No column-name row after the ECSV header",
            ));
        }
        Columns::find(file, header.names_line, &names)?;
        return Ok(Vec::new());
    };
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let cols = Columns::find(file, header_line, &names).map_err(|mut e| {
        if position(&header.names, DATA_URI).is_some() {
            e.message.push_str(
                " (the header's `datatype` list names `dataURI`: is the column-name row missing?)",
            );
        }
        e
    })?;
    let mut out = Vec::new();
    while let Some((line, fields)) = body.next_record(file)? {
        let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
        if fields.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        check_width(file, line, fields.len(), &cols, header_line)?;
        out.push(cols.entry(file, line, &fields)?);
    }
    Ok(out)
}

/// Finds the physical line where a csv record starts. A record's
/// `csv::Position` is where the reader began looking for it, before the blank
/// and `#` comment lines it skipped (and `Position::line` does not count
/// comment lines), so the start is found from the byte offset instead.
struct LineIndex<'a> {
    text: &'a str,
    /// The byte offset of every `\n`.
    newlines: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> LineIndex<'a> {
        LineIndex {
            text,
            newlines: text.match_indices('\n').map(|(i, _)| i).collect(),
        }
    }

    /// The 1-based line of the first byte at or after `position` that is not
    /// in a blank line or a `#` comment line.
    fn record_line(&self, position: &csv::Position) -> usize {
        let bytes = self.text.as_bytes();
        let mut at = usize::try_from(position.byte()).map_or(bytes.len(), |b| b.min(bytes.len()));
        while let Some(&b) = bytes.get(at) {
            match b {
                b'\r' | b'\n' => at += 1,
                b'#' => {
                    at = self.newlines[self.newlines.partition_point(|&n| n < at)..]
                        .first()
                        .map_or(bytes.len(), |n| n + 1);
                }
                _ => break,
            }
        }
        1 + self.newlines.partition_point(|&n| n < at)
    }
}

/// Fails when a row's field count differs from the header's.
fn check_width(
    file: &str,
    line: usize,
    width: usize,
    cols: &Columns,
    header_line: usize,
) -> Result<(), InputError> {
    if width == cols.names.len() {
        return Ok(());
    }
    Err(InputError::new(
        file,
        line,
        format!(
            "This row has {width} field{} but the header (line {header_line}) names {} column{}",
            plural(width),
            cols.names.len(),
            plural(cols.names.len()),
        ),
    ))
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// A cell as shown in a message: escaped, at most 80 characters.
fn shown(cell: &str) -> String {
    cell.chars()
        .take(80)
        .flat_map(char::escape_default)
        .collect()
}

/// The columns this reader uses, as indexes into a row, and the header's
/// names as written (for messages).
struct Columns {
    names: Vec<String>,
    uri: usize,
    collection: Option<usize>,
    obs_id: Option<usize>,
    filename: Option<usize>,
    size: Option<usize>,
    product_type: Option<usize>,
    calib_level: Option<usize>,
    group: Option<usize>,
}

impl Columns {
    /// Finds the columns in a header row read at `line`; an error names the
    /// columns found when none is `dataURI`.
    fn find(file: &str, line: usize, header: &[&str]) -> Result<Columns, InputError> {
        let names: Vec<String> = header.iter().map(|n| n.trim().to_string()).collect();
        let Some(uri) = position(&names, DATA_URI) else {
            let found: Vec<&str> = names
                .iter()
                .map(String::as_str)
                .filter(|n| !n.is_empty())
                .collect();
            let message = if found.is_empty() {
                "No `dataURI` column; the header row names no columns".to_string()
            } else {
                format!(
                    "No `dataURI` column; the columns are: {}",
                    shown_list(&found)
                )
            };
            return Err(InputError::new(file, line, message));
        };
        Ok(Columns {
            uri,
            collection: position(&names, "obs_collection"),
            obs_id: position(&names, "obs_id"),
            filename: position(&names, "productFilename"),
            size: position(&names, "size"),
            product_type: position(&names, "productType"),
            calib_level: position(&names, "calib_level"),
            group: position(&names, "productGroupDescription"),
            names,
        })
    }

    /// Builds the entry for a row read at `line`; `row` has one cell per
    /// column.
    fn entry(&self, file: &str, line: usize, row: &[&str]) -> Result<Entry, InputError> {
        let cell = |i: usize| row.get(i).map_or("", |c| c.trim());
        let text = |i: Option<usize>| i.and_then(|i| masked(cell(i))).map(str::to_string);

        let uri = cell(self.uri);
        if masked(uri).is_none() {
            return Err(InputError::new(file, line, "Empty `dataURI`"));
        }
        if uri.contains(['\n', '\r']) {
            return Err(InputError::new(
                file,
                line,
                format!(
                    "The `dataURI` cell spans lines (is a quote left open?): `{}`",
                    shown(uri)
                ),
            ));
        }

        let size = number(file, line, self.size, &self.names, row, "a size in bytes")?;
        let calib_level = number(
            file,
            line,
            self.calib_level,
            &self.names,
            row,
            "an integer calibration level",
        )?;

        let (collection, obs_id, filename) = (
            text(self.collection),
            text(self.obs_id),
            text(self.filename),
        );
        let local = if collection.is_none() && obs_id.is_none() && filename.is_none() {
            LocalHint::None
        } else {
            LocalHint::Parts {
                collection,
                obs_id,
                filename,
            }
        };
        Ok(Entry {
            uri: uri.to_string(),
            url: None,
            local,
            size,
            meta: ProductMeta {
                product_type: text(self.product_type),
                calib_level,
                group: text(self.group),
            },
            origin: Origin {
                file: file.to_string(),
                line,
            },
        })
    }
}

/// The index of the column named `want`: the exact spelling first, then any
/// case.
fn position(names: &[String], want: &str) -> Option<usize> {
    names
        .iter()
        .position(|n| n == want)
        .or_else(|| names.iter().position(|n| n.eq_ignore_ascii_case(want)))
}

/// Names for a message, comma-separated.
fn shown_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| shown(n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A text cell, or `None` when it is masked: empty, or astropy's `--`.
fn masked(cell: &str) -> Option<&str> {
    let cell = cell.trim();
    (!cell.is_empty() && cell != "--").then_some(cell)
}

/// Reads the whole number in column `col` of `row`, `None` when the table has
/// no such column or the cell is masked; anything else that is not a whole
/// number fitting `T` is an error naming the column and `what` it should be.
fn number<T: TryFrom<i128>>(
    file: &str,
    line: usize,
    col: Option<usize>,
    names: &[String],
    row: &[&str],
    what: &str,
) -> Result<Option<T>, InputError> {
    let Some(i) = col else {
        return Ok(None);
    };
    let cell = row.get(i).map_or("", |c| c.trim());
    let fail = || {
        let name = names.get(i).map_or("", String::as_str);
        InputError::new(
            file,
            line,
            format!("Column `{name}` is `{}`, not {what}", shown(cell)),
        )
    };
    match whole_number(cell) {
        Ok(None) => Ok(None),
        Ok(Some(n)) => T::try_from(n).map(Some).map_err(|_| fail()),
        Err(()) => Err(fail()),
    }
}

/// Parses a whole number as astropy or pandas write one: `1234`, or a float
/// with no fraction (`1234.0`, `1.2e9`). A masked cell (empty, `--`, or a
/// float column's `nan`) is `Ok(None)`.
fn whole_number(cell: &str) -> Result<Option<i128>, ()> {
    let Some(cell) = masked(cell) else {
        return Ok(None);
    };
    if cell.eq_ignore_ascii_case("nan") {
        return Ok(None);
    }
    if let Ok(n) = cell.parse::<i128>() {
        return Ok(Some(n));
    }
    match cell.parse::<f64>() {
        // A whole float below 2^64 (more than any size or level) converts
        // exactly.
        Ok(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 18_446_744_073_709_551_616.0 => {
            Ok(Some(f as i128))
        }
        _ => Err(()),
    }
}

/// What the ECSV header says that this reader uses.
struct EcsvHeader {
    /// The body's field delimiter: `' '` (the default) or `','`.
    delimiter: char,
    /// The column names of the `datatype` list, in order.
    names: Vec<String>,
    /// The line of the `datatype:` key (for messages about `names`).
    names_line: usize,
    /// The index in the lines of the first line after the header.
    body_start: usize,
}

impl EcsvHeader {
    /// Reads the header: the `# %ECSV <version>` line, then every blank or
    /// `#` line up to the first other line. Its YAML is read only as far as
    /// the top-level `delimiter` and the names in the `datatype` list.
    fn read(file: &str, lines: &[&str]) -> Result<EcsvHeader, InputError> {
        let mut i = lines
            .iter()
            .position(|l| !l.trim().is_empty())
            .unwrap_or(lines.len());
        let first = lines.get(i).map_or("", |l| l.trim());
        let is_ecsv = first
            .strip_prefix('#')
            .is_some_and(|rest| rest.trim_start().starts_with("%ECSV"));
        if !is_ecsv {
            return Err(InputError::new(
                file,
                i + 1,
                "Not an ECSV table: the first line should be `# %ECSV 1.0`",
            ));
        }
        i += 1;

        let mut header = EcsvHeader {
            delimiter: ' ',
            names: Vec::new(),
            names_line: 1,
            body_start: lines.len(),
        };
        // The current top-level key, and the indentation of its list items.
        let mut section = "";
        let mut item_indent: Option<usize> = None;
        while let Some(raw) = lines.get(i) {
            let trimmed = raw.trim_start();
            if trimmed.is_empty() {
                i += 1;
                continue;
            }
            let Some(rest) = trimmed.strip_prefix('#') else {
                break;
            };
            let yaml = rest.strip_prefix(' ').unwrap_or(rest).trim_end();
            let body = yaml.trim_start();
            let indent = yaml.len() - body.len();
            if body.is_empty() || body.starts_with('#') || body == "---" {
                // Blank YAML, a `##` comment, or the document marker.
            } else if indent == 0 && !body.starts_with('-') {
                let (key, value) = body.split_once(':').unwrap_or((body, ""));
                section = key.trim();
                item_indent = None;
                match section {
                    "delimiter" => {
                        header.delimiter = match yaml_unquote(value.trim()).as_str() {
                            " " | "" => ' ',
                            "," => ',',
                            other => {
                                return Err(InputError::new(
                                    file,
                                    i + 1,
                                    format!(
                                        "The ECSV delimiter must be a space or a comma, not `{}`",
                                        shown(other)
                                    ),
                                ))
                            }
                        }
                    }
                    "datatype" => header.names_line = i + 1,
                    _ => {}
                }
            } else if section == "datatype"
                && (body.starts_with("- ") || body == "-")
                && *item_indent.get_or_insert(indent) == indent
            {
                if let Some(name) = datatype_name(&body[1..]) {
                    header.names.push(name);
                }
            }
            i += 1;
        }
        header.body_start = i;
        Ok(header)
    }
}

/// The `name` of a `datatype` item, written `{name: a, datatype: int64}` or
/// `name: a` (astropy writes `name` first).
fn datatype_name(item: &str) -> Option<String> {
    let item = item.trim_start();
    let item = item.strip_prefix('{').unwrap_or(item).trim_start();
    let value = item.strip_prefix("name:")?.trim_start();
    let scalar = match value.chars().next() {
        Some(q @ ('\'' | '"')) => {
            // A quoted scalar: up to the closing quote (`''` is a quote in
            // single-quoted YAML).
            let mut out = String::new();
            let mut chars = value[1..].chars().peekable();
            loop {
                match chars.next() {
                    None => break,
                    Some(c) if c == q => {
                        if q == '\'' && chars.peek() == Some(&'\'') {
                            chars.next();
                            out.push('\'');
                        } else {
                            break;
                        }
                    }
                    Some(c) => out.push(c),
                }
            }
            out
        }
        _ => value
            .split([',', '}'])
            .next()
            .unwrap_or("")
            .trim()
            .to_string(),
    };
    (!scalar.is_empty()).then_some(scalar)
}

/// A YAML scalar without its quotes (`','` → `,`).
fn yaml_unquote(value: &str) -> String {
    for q in ['\'', '"'] {
        if let Some(inner) = value.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
            return if q == '\'' {
                inner.replace("''", "'")
            } else {
                inner.to_string()
            };
        }
    }
    value.to_string()
}

/// The ECSV body: the column-name row, then the data rows.
struct EcsvBody<'a> {
    lines: &'a [&'a str],
    /// The index of the next line to read.
    next: usize,
    delimiter: char,
}

impl EcsvBody<'_> {
    /// Reads the next record, skipping blank and `#` comment lines, and
    /// returns it with the line where it starts. Each line is trimmed, as
    /// astropy does; after a delimiter, spaces are skipped (so runs of spaces
    /// separate one field in a space-delimited body); a field that starts
    /// with `"` runs to the closing quote, with `""` standing for a quote and
    /// line breaks kept.
    fn next_record(&mut self, file: &str) -> Result<Option<(usize, Vec<String>)>, InputError> {
        while self
            .lines
            .get(self.next)
            .is_some_and(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            self.next += 1;
        }
        let Some(first) = self.lines.get(self.next) else {
            return Ok(None);
        };
        let start = self.next + 1;
        self.next += 1;

        let d = self.delimiter;
        let mut line: &str = first.trim();
        let mut pos = 0;
        let mut fields = Vec::new();
        // Whether a delimiter was just read, so a field must follow.
        let mut pending = false;
        loop {
            pos += line[pos..].len() - line[pos..].trim_start_matches(' ').len();
            if pos >= line.len() {
                if pending && d != ' ' {
                    fields.push(String::new());
                }
                break;
            }
            let mut field = String::new();
            if line[pos..].starts_with('"') {
                pos += 1;
                loop {
                    if let Some(k) = line[pos..].find('"') {
                        field.push_str(&line[pos..pos + k]);
                        pos += k + 1;
                        if line[pos..].starts_with('"') {
                            field.push('"');
                            pos += 1;
                        } else {
                            break;
                        }
                    } else {
                        field.push_str(&line[pos..]);
                        let Some(next) = self.lines.get(self.next) else {
                            return Err(InputError::new(
                                file,
                                start,
                                "A quoted field is never closed",
                            ));
                        };
                        self.next += 1;
                        field.push('\n');
                        line = next;
                        pos = 0;
                    }
                }
            }
            // Up to the delimiter (after a closing quote, the rest of the
            // field is kept, as Python's csv does).
            let rest = &line[pos..];
            let end = rest.find(d).unwrap_or(rest.len());
            field.push_str(&rest[..end]);
            pos += end;
            fields.push(field);
            if pos >= line.len() {
                break;
            }
            pos += d.len_utf8();
            pending = true;
        }
        Ok(Some((start, fields)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASTROQUERY_CSV: &str =
        include_str!("../../tests/fixtures/tables/astroquery_products.csv");
    const PORTAL_CSV: &str = include_str!("../../tests/fixtures/tables/portal_products.csv");
    const NO_DATAURI_CSV: &str =
        include_str!("../../tests/fixtures/tables/observations_no_datauri.csv");
    const SPACE_ECSV: &str = include_str!("../../tests/fixtures/tables/products_space.ecsv");
    const COMMA_ECSV: &str = include_str!("../../tests/fixtures/tables/products_comma.ecsv");

    fn parts(collection: Option<&str>, obs_id: Option<&str>, filename: Option<&str>) -> LocalHint {
        LocalHint::Parts {
            collection: collection.map(str::to_string),
            obs_id: obs_id.map(str::to_string),
            filename: filename.map(str::to_string),
        }
    }

    fn meta(
        product_type: Option<&str>,
        calib_level: Option<i64>,
        group: Option<&str>,
    ) -> ProductMeta {
        ProductMeta {
            product_type: product_type.map(str::to_string),
            calib_level,
            group: group.map(str::to_string),
        }
    }

    fn lines(entries: &[Entry]) -> Vec<usize> {
        entries.iter().map(|e| e.origin.line).collect()
    }

    // --- CSV ---

    #[test]
    fn reads_an_astroquery_csv() {
        let e = parse_csv("products.csv", ASTROQUERY_CSV).unwrap();
        assert_eq!(e.len(), 8);
        assert_eq!(lines(&e), [2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(
            e[0],
            Entry {
                uri: "mast:JWST/product/jw02736-o001_t001_nircam_clear-f090w_i2d.fits".into(),
                url: None,
                local: parts(
                    Some("JWST"),
                    Some("jw02736-o001_t001_nircam_clear-f090w"),
                    Some("jw02736-o001_t001_nircam_clear-f090w_i2d.fits"),
                ),
                size: Some(1_913_779_200),
                meta: meta(
                    Some("SCIENCE"),
                    Some(3),
                    Some("Minimum Recommended Products")
                ),
                origin: Origin {
                    file: "products.csv".into(),
                    line: 2,
                },
            }
        );
        // The quoted description with a comma keeps the row's columns aligned.
        assert_eq!(
            e[1].uri,
            "mast:JWST/product/jw02736-o001_t001_nircam_clear-f090w_cat.ecsv"
        );
        assert_eq!(e[1].size, Some(2_145_632));
        // Empty productGroupDescription is no group.
        assert_eq!(e[2].meta, meta(Some("PREVIEW"), Some(3), None));
        assert_eq!(e[3].meta, meta(Some("SCIENCE"), Some(2), None));
        assert_eq!(e[4].meta.calib_level, Some(1));
        assert_eq!(
            e[5].local,
            parts(Some("HST"), Some("U9O40504M"), Some("u9o40504m_c0f.fits"))
        );
        assert_eq!(e[7].meta, meta(Some("AUXILIARY"), Some(1), None));
        assert_eq!(e[7].size, Some(34_560));
    }

    #[test]
    fn reads_a_portal_csv_with_bom_crlf_quotes_and_comments() {
        assert!(PORTAL_CSV.starts_with('\u{feff}'));
        assert!(PORTAL_CSV.contains("\r\n"));
        let e = parse_csv("portal.csv", PORTAL_CSV).unwrap();
        // Line 1 is a `#@` type comment, 2 the header, 4 blank, 5 a comment;
        // the record at line 7 spans lines 7 and 8.
        assert_eq!(lines(&e), [3, 6, 7, 9]);
        assert_eq!(
            e[0].local,
            parts(
                Some("JWST"),
                Some("jw02736-o001_t001_nircam_clear-f090w"),
                Some("jw02736-o001_t001_nircam_clear-f090w_cat.ecsv"),
            )
        );
        assert_eq!(e[0].size, Some(2_145_632));
        assert_eq!(
            e[0].meta,
            meta(
                Some("SCIENCE"),
                Some(3),
                Some("Minimum Recommended Products")
            )
        );
        // `--` is a masked size; the doubled quotes were in the description.
        assert_eq!(
            e[1].uri,
            "mast:JWST/product/jw02736-o007_s06355_nirspec_f290lp-g395m_x1d.fits"
        );
        assert_eq!(e[1].size, None);
        // A float size; a padded URI is trimmed; empty calib_level and group.
        assert_eq!(
            e[2].uri,
            "mast:JWST/product/jw02736-o007_s06355_nirspec_f290lp-g395m_s2d.fits"
        );
        assert_eq!(e[2].size, Some(5_428_800));
        assert_eq!(e[2].meta, meta(Some("SCIENCE"), None, None));
        // Only the collection is given.
        assert_eq!(e[3].local, parts(Some("HST"), None, None));
        assert_eq!(e[3].size, None);
        assert_eq!(e[3].meta, meta(Some("AUXILIARY"), Some(1), None));
    }

    #[test]
    fn a_csv_without_datauri_names_its_columns() {
        let err = parse_csv("obs.csv", NO_DATAURI_CSV).unwrap_err();
        assert_eq!(err.origin.line, 2);
        assert!(
            err.message.starts_with(
                "No `dataURI` column; the columns are: intentType, obs_collection, provenance_name,"
            ),
            "{}",
            err.message
        );
        assert!(err.message.contains("dataURL"), "{}", err.message);
        assert!(err
            .to_string()
            .starts_with("obs.csv:2: No `dataURI` column"));
    }

    #[test]
    fn column_names_match_exactly_first_then_in_any_case() {
        let e = parse_csv(
            "t.csv",
            "DATAURI,OBS_COLLECTION,Obs_Id,productfilename,Size,PRODUCTTYPE,Calib_Level,productgroupdescription\n\
             mast:HST/product/a_b.fits,HST,A,a_b.fits,10,SCIENCE,2,Minimum Recommended Products\n",
        )
        .unwrap();
        assert_eq!(e[0].uri, "mast:HST/product/a_b.fits");
        assert_eq!(e[0].local, parts(Some("HST"), Some("A"), Some("a_b.fits")));
        assert_eq!(e[0].size, Some(10));
        assert_eq!(
            e[0].meta,
            meta(
                Some("SCIENCE"),
                Some(2),
                Some("Minimum Recommended Products")
            )
        );

        // The exact spelling wins over an earlier case variant.
        let e = parse_csv(
            "t.csv",
            "datauri,dataURI\nmast:X/wrong.fits,mast:X/right.fits\n",
        )
        .unwrap();
        assert_eq!(e[0].uri, "mast:X/right.fits");
    }

    #[test]
    fn only_datauri_is_required_and_extra_columns_are_ignored() {
        let e = parse_csv("t.csv", "note,dataURI\nhello,mast:HST/product/a_b.fits\n").unwrap();
        assert_eq!(
            e,
            [Entry::from_uri(
                "mast:HST/product/a_b.fits".into(),
                Origin {
                    file: "t.csv".into(),
                    line: 2
                },
            )]
        );
    }

    #[test]
    fn all_empty_location_cells_give_no_hint() {
        let e = parse_csv(
            "t.csv",
            "dataURI,obs_collection,obs_id,productFilename\nmast:HST/product/a_b.fits,,--,\n",
        )
        .unwrap();
        assert_eq!(e[0].local, LocalHint::None);
    }

    #[test]
    fn a_ragged_row_is_an_error_at_its_line() {
        let err = parse_csv(
            "t.csv",
            "# c\ndataURI,size\nmast:A/b.fits,1\n\nmast:A/c.fits\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.csv:5: This row has 1 field but the header (line 2) names 2 columns"
        );
        let err = parse_csv("t.csv", "dataURI,size\nmast:A/b.fits,1,2\n").unwrap_err();
        assert_eq!(err.origin.line, 2);
        assert!(err.message.contains("has 3 fields"), "{}", err.message);
    }

    #[test]
    fn an_empty_datauri_is_an_error() {
        let err = parse_csv("t.csv", "obs_id,dataURI\nA,mast:A/b.fits\nB,\n").unwrap_err();
        assert_eq!(err.to_string(), "t.csv:3: Empty `dataURI`");
        let err = parse_csv("t.csv", "obs_id,dataURI\nA,\"  \"\n").unwrap_err();
        assert_eq!(err.origin.line, 2);
        let err = parse_csv("t.csv", "obs_id,dataURI\nA,--\n").unwrap_err();
        assert_eq!(err.message, "Empty `dataURI`");
    }

    #[test]
    fn rows_with_every_cell_empty_are_skipped() {
        // Spreadsheets save trailing rows of bare commas.
        let e = parse_csv("t.csv", "obs_id,dataURI\nA,mast:A/b.fits\n,\n , \n").unwrap();
        assert_eq!(e.len(), 1);
    }

    #[test]
    fn an_open_quote_is_reported() {
        let err = parse_csv(
            "t.csv",
            "obs_id,dataURI\nA,\"mast:A/b.fits\nB,mast:A/c.fits\n",
        )
        .unwrap_err();
        assert_eq!(err.origin.line, 2);
    }

    #[test]
    fn sizes_and_levels_accept_whole_floats_and_masks_but_nothing_else() {
        let table = |size: &str, level: &str| {
            parse_csv(
                "t.csv",
                &format!("dataURI,size,calib_level\nmast:A/b.fits,{size},{level}\n"),
            )
        };
        let got = |size: &str, level: &str| {
            let e = table(size, level).unwrap();
            (e[0].size, e[0].meta.calib_level)
        };
        assert_eq!(got("1234", "2"), (Some(1234), Some(2)));
        assert_eq!(got("1234.0", "3.0"), (Some(1234), Some(3)));
        assert_eq!(got("1.9137792e9", "-1"), (Some(1_913_779_200), Some(-1)));
        assert_eq!(got(" 7 ", " 1 "), (Some(7), Some(1)));
        assert_eq!(got("", ""), (None, None));
        assert_eq!(got("--", "--"), (None, None));
        assert_eq!(got("nan", "NaN"), (None, None));
        assert_eq!(got("18446744073709551615", "0"), (Some(u64::MAX), Some(0)));

        let err = table("12kB", "1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.csv:2: Column `size` is `12kB`, not a size in bytes"
        );
        assert!(table("1234.5", "1").is_err());
        assert!(table("-5", "1").is_err());
        assert!(table("inf", "1").is_err());
        assert!(table("18446744073709551616", "1").is_err());
        let err = table("1", "two").unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.csv:2: Column `calib_level` is `two`, not an integer calibration level"
        );
        // The message names the column as the header spells it.
        let err = parse_csv("t.csv", "dataURI,Size\nmast:A/b.fits,x\n").unwrap_err();
        assert!(err.message.starts_with("Column `Size`"), "{}", err.message);
    }

    #[test]
    fn a_csv_with_no_header_is_an_error() {
        let err = parse_csv("t.csv", "# only a comment\n\n").unwrap_err();
        assert_eq!(err.origin.line, 1);
        assert!(err.message.starts_with("No header row"), "{}", err.message);
    }

    #[test]
    fn a_header_only_csv_is_empty() {
        assert_eq!(parse_csv("t.csv", "obsID,dataURI\n").unwrap(), []);
    }

    // --- ECSV ---

    #[test]
    fn reads_a_space_delimited_ecsv() {
        let e = parse_ecsv("products.ecsv", SPACE_ECSV).unwrap();
        assert_eq!(lines(&e), [26, 27, 28, 29]);
        assert_eq!(
            e[0],
            Entry {
                uri: "mast:JWST/product/jw02736-o001_t001_nircam_clear-f090w_i2d.fits".into(),
                url: None,
                local: parts(
                    Some("JWST"),
                    Some("jw02736-o001_t001_nircam_clear-f090w"),
                    Some("jw02736-o001_t001_nircam_clear-f090w_i2d.fits"),
                ),
                size: Some(1_913_779_200),
                meta: meta(
                    Some("SCIENCE"),
                    Some(3),
                    Some("Minimum Recommended Products")
                ),
                origin: Origin {
                    file: "products.ecsv".into(),
                    line: 26,
                },
            }
        );
        // `""` is a masked value.
        assert_eq!(e[1].meta, meta(Some("SCIENCE"), Some(2), None));
        assert_eq!(e[1].size, Some(117_538_560));
        // A quoted value with doubled quotes does not shift the columns;
        // masked size and calib_level.
        assert_eq!(
            e[2].uri,
            "mast:JWST/product/jw02736001001_02101_00001_nrca1_uncal.fits"
        );
        assert_eq!(
            e[2].local,
            parts(
                Some("JWST"),
                Some("jw02736001001_02101_00001_nrca1"),
                Some("jw02736001001_02101_00001_nrca1_uncal.fits"),
            )
        );
        assert_eq!(e[2].size, None);
        assert_eq!(e[2].meta, meta(Some("SCIENCE"), None, None));
        assert_eq!(
            e[3].local,
            parts(Some("HST"), Some("U9O40504M"), Some("u9o40504m_drz.fits"))
        );
        assert_eq!(e[3].size, Some(27_227_520));
    }

    #[test]
    fn reads_a_comma_delimited_ecsv_with_masked_values() {
        let e = parse_ecsv("products.ecsv", COMMA_ECSV).unwrap();
        // Line 20 is blank and 21 a comment among the rows.
        assert_eq!(lines(&e), [19, 22, 23]);
        assert_eq!(
            e[0].local,
            parts(
                Some("JWST"),
                Some("jw02736-o001_t001_nircam_clear-f200w"),
                Some("jw02736-o001_t001_nircam_clear-f200w_i2d.fits"),
            )
        );
        assert_eq!(e[0].size, Some(1_913_779_200));
        assert_eq!(
            e[0].meta,
            meta(
                Some("SCIENCE"),
                Some(3),
                Some("Minimum Recommended Products")
            )
        );
        // Empty cells are masked.
        assert_eq!(e[1].size, None);
        assert_eq!(e[1].meta, meta(Some("AUXILIARY"), None, None));
        assert_eq!(
            e[2].uri,
            "mast:JWST/product/jw02736-o001_t001_nircam_clear-f200w_cat.ecsv"
        );
        assert_eq!(e[2].local, parts(Some("JWST"), None, None));
        assert_eq!(e[2].size, Some(2_145_632));
        assert_eq!(e[2].meta, meta(Some("SCIENCE"), None, None));
    }

    #[test]
    fn the_ecsv_header_gives_the_delimiter_and_the_datatype_names() {
        let lines: Vec<&str> = COMMA_ECSV.lines().collect();
        let h = EcsvHeader::read("t.ecsv", &lines).unwrap();
        assert_eq!(h.delimiter, ',');
        assert_eq!(h.names_line, 4);
        assert_eq!(h.body_start, 17);
        // The meta section's `- {name: not_a_column}` is not a column.
        assert_eq!(
            h.names,
            [
                "obs_collection",
                "obs_id",
                "dataURI",
                "productType",
                "productGroupDescription",
                "productFilename",
                "size",
                "calib_level",
                "description"
            ]
        );
        let lines: Vec<&str> = SPACE_ECSV.lines().collect();
        let h = EcsvHeader::read("t.ecsv", &lines).unwrap();
        assert_eq!(h.delimiter, ' ');
        assert_eq!(h.names.len(), 20);
        assert_eq!(h.body_start, 24);
    }

    #[test]
    fn datatype_items_may_be_block_mappings_or_quoted() {
        let text = "# %ECSV 1.0\n# ---\n# datatype:\n# - name: dataURI\n#   datatype: string\n#   meta:\n#   - name: nested\n# - {name: 'it''s', datatype: int64}\n# - {name: \"size\", unit: byte}\n";
        let lines: Vec<&str> = text.lines().collect();
        let h = EcsvHeader::read("t.ecsv", &lines).unwrap();
        assert_eq!(h.names, ["dataURI", "it's", "size"]);
        // With no column-name row the table is empty, and fine when the
        // datatype list has `dataURI`.
        assert_eq!(parse_ecsv("t.ecsv", text).unwrap(), []);
    }

    #[test]
    fn an_ecsv_with_no_column_row_and_no_datauri_is_an_error() {
        let err = parse_ecsv(
            "t.ecsv",
            "# %ECSV 1.0\n# ---\n# datatype:\n# - {name: a, datatype: string}\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.ecsv:3: No `dataURI` column; the columns are: a"
        );
        let err = parse_ecsv("t.ecsv", "# %ECSV 1.0\n# ---\n").unwrap_err();
        assert_eq!(err.message, "No column-name row after the ECSV header");
    }

    #[test]
    fn space_delimited_rows_collapse_runs_of_spaces_and_keep_quoted_spaces() {
        let text = "# %ECSV 1.0\n# ---\n# datatype:\n# - {name: obs_id, datatype: string}\n# - {name: dataURI, datatype: string}\n# - {name: productGroupDescription, datatype: string}\n# - {name: size, datatype: int64}\n\
                    obs_id   dataURI productGroupDescription size\n\
                    \x20 A    mast:HST/product/a_b.fits   \"Minimum Recommended Products\"   12  \n\
                    \"\" mast:HST/product/c_d.fits \"\" \"\"\r\n";
        let e = parse_ecsv("t.ecsv", text).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].local, parts(None, Some("A"), None));
        assert_eq!(
            e[0].meta.group.as_deref(),
            Some("Minimum Recommended Products")
        );
        assert_eq!(e[0].size, Some(12));
        assert_eq!(e[1].uri, "mast:HST/product/c_d.fits");
        assert_eq!(e[1].local, LocalHint::None);
        assert_eq!(e[1].size, None);
        assert_eq!(lines(&e), [9, 10]);
    }

    #[test]
    fn ecsv_records_split_like_pythons_csv() {
        let split = |delimiter: char, text: &str| {
            let lines: Vec<&str> = text.lines().collect();
            let mut body = EcsvBody {
                lines: &lines,
                next: 0,
                delimiter,
            };
            let mut out = Vec::new();
            while let Some((line, fields)) = body.next_record("t").unwrap() {
                out.push((line, fields));
            }
            out
        };
        let rec = |line: usize, fields: &[&str]| {
            (
                line,
                fields.iter().map(|f| f.to_string()).collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            split(' ', "a  b \"c d\" \"\"\n"),
            [rec(1, &["a", "b", "c d", ""])]
        );
        assert_eq!(
            split(' ', "\"say \"\"hi\"\"\" x\n"),
            [rec(1, &["say \"hi\"", "x"])]
        );
        assert_eq!(split(',', "a,,b,\n"), [rec(1, &["a", "", "b", ""])]);
        assert_eq!(split(',', "a, b,\"c,d\"\n"), [rec(1, &["a", "b", "c,d"])]);
        // A quoted field may span lines; the record starts on its first.
        assert_eq!(
            split(',', "\n# c\n\"two\nlines\",x\ny,z\n"),
            [rec(3, &["two\nlines", "x"]), rec(5, &["y", "z"])]
        );
    }

    #[test]
    fn an_ecsv_missing_datauri_names_its_columns() {
        let text = "# %ECSV 1.0\n# ---\n# datatype:\n# - {name: obs_id, datatype: string}\n# - {name: dataURL, datatype: string}\nobs_id dataURL\nA mast:A/b.fits\n";
        let err = parse_ecsv("t.ecsv", text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.ecsv:6: No `dataURI` column; the columns are: obs_id, dataURL"
        );
    }

    #[test]
    fn an_ecsv_without_its_column_row_says_so() {
        let text = "# %ECSV 1.0\n# ---\n# datatype:\n# - {name: obs_id, datatype: string}\n# - {name: dataURI, datatype: string}\nA mast:A/b.fits\n";
        let err = parse_ecsv("t.ecsv", text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.ecsv:6: No `dataURI` column; the columns are: A, mast:A/b.fits \
             (the header's `datatype` list names `dataURI`: is the column-name row missing?)"
        );
    }

    #[test]
    fn ecsv_row_errors_name_their_line() {
        let head = "# %ECSV 1.0\n# ---\n# delimiter: ','\n# datatype:\n# - {name: dataURI, datatype: string}\n# - {name: size, datatype: int64}\ndataURI,size\n";
        let err =
            parse_ecsv("t.ecsv", &format!("{head}mast:A/b.fits,1\nmast:A/c.fits\n")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.ecsv:9: This row has 1 field but the header (line 7) names 2 columns"
        );
        let err = parse_ecsv("t.ecsv", &format!("{head}\"\",1\n")).unwrap_err();
        assert_eq!(err.to_string(), "t.ecsv:8: Empty `dataURI`");
        let err = parse_ecsv("t.ecsv", &format!("{head}mast:A/b.fits,big\n")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.ecsv:8: Column `size` is `big`, not a size in bytes"
        );
        let err = parse_ecsv("t.ecsv", &format!("{head}\"mast:A/b.fits,1\n")).unwrap_err();
        assert_eq!(err.to_string(), "t.ecsv:8: A quoted field is never closed");
    }

    #[test]
    fn ecsv_needs_its_first_line_and_a_known_delimiter() {
        let err = parse_ecsv("t.ecsv", "\ndataURI\nmast:A/b.fits\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.ecsv:2: Not an ECSV table: the first line should be `# %ECSV 1.0`"
        );
        let err =
            parse_ecsv("t.ecsv", "# %ECSV 1.0\n# ---\n# delimiter: '|'\ndataURI\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.ecsv:3: The ECSV delimiter must be a space or a comma, not `|`"
        );
    }

    #[test]
    fn ecsv_handles_a_bom_and_crlf() {
        let text = "\u{feff}# %ECSV 1.0\r\n# ---\r\n# datatype:\r\n# - {name: dataURI, datatype: string}\r\ndataURI\r\nmast:A/b.fits\r\n";
        let e = parse_ecsv("t.ecsv", text).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].uri, "mast:A/b.fits");
        assert_eq!(e[0].origin.line, 6);
    }

    #[test]
    fn the_fixtures_are_read_through_detect() {
        use super::super::{detect, Kind};
        assert_eq!(detect(ASTROQUERY_CSV), Kind::Csv);
        assert_eq!(detect(PORTAL_CSV), Kind::Csv);
        assert_eq!(detect(NO_DATAURI_CSV), Kind::Csv);
        assert_eq!(detect(SPACE_ECSV), Kind::Ecsv);
        assert_eq!(detect(COMMA_ECSV), Kind::Ecsv);
    }
}
