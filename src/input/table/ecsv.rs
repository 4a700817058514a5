//! The astropy ECSV table: the `# %ECSV` header (of its YAML only the
//! `delimiter` and the `datatype` names), then a space- or comma-delimited
//! body whose first row names the columns, split as astropy (Python's
//! `csv`) splits it.

use super::{check_width, position, shown, Columns, DATA_URI};
use crate::input::{Entry, InputError};

/// Reads an astropy ECSV table (`# %ECSV 1.0` header, YAML-ish `# ---`
/// metadata, then a CSV/space-delimited body).
///
/// Of the YAML header only `delimiter` (space, the default, or comma) and the
/// `datatype` column names are read; the body's first row, the column names
/// the spec requires, is the truth about the columns. Values may be quoted
/// with `"` (a doubled `""` inside is a quote); runs of spaces separate fields
/// in a space-delimited body, as astropy reads it. Masked values are empty.
pub(crate) fn parse_ecsv(file: &str, text: &str) -> Result<Vec<Entry>, InputError> {
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
    use super::super::test_util::*;
    use super::*;

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
            "t.ecsv:3: No `dataURI` column (nor a MastMissions `uri` column); the columns are: a"
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
            "t.ecsv:6: No `dataURI` column (nor a MastMissions `uri` column); the columns are: obs_id, dataURL"
        );
    }

    #[test]
    fn an_ecsv_without_its_column_row_says_so() {
        let text = "# %ECSV 1.0\n# ---\n# datatype:\n# - {name: obs_id, datatype: string}\n# - {name: dataURI, datatype: string}\nA mast:A/b.fits\n";
        let err = parse_ecsv("t.ecsv", text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.ecsv:6: No `dataURI` column (nor a MastMissions `uri` column); the columns are: A, mast:A/b.fits \
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
        let e = crate::input::read::read_text("t.ecsv", text).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].uri, "mast:A/b.fits");
        assert_eq!(e[0].origin.line, 6);
    }
}
