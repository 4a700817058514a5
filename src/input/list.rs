//! URI lists: one `mast:` URI per line; blank lines and `#` comments skipped.

use super::{Entry, InputError, Origin};

/// Reads a URI list. A line that is not a `mast:` URI is an error naming
/// `file` and its line; the URI's own checks happen in the plan.
pub(crate) fn parse(file: &str, text: &str) -> Result<Vec<Entry>, InputError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if let Some(e) = parse_line(file, i + 1, raw)? {
            out.push(e);
        }
    }
    Ok(out)
}

/// Reads line `line` (1-based) of a URI list: `None` for a blank or
/// comment line.
pub(crate) fn parse_line(file: &str, line: usize, raw: &str) -> Result<Option<Entry>, InputError> {
    let text = raw.trim();
    if text.is_empty() || text.starts_with('#') {
        return Ok(None);
    }
    if !crate::layout::is_mast_uri(text) {
        let shown: String = text
            .chars()
            .take(80)
            .flat_map(char::escape_default)
            .collect();
        return Err(InputError::new(
            file,
            line,
            format!("Not a `mast:` URI: `{shown}`"),
        ));
    }
    Ok(Some(Entry::from_uri(
        text.to_string(),
        Origin {
            file: file.to_string(),
            line,
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_blanks_and_comments_and_trims() {
        let e = parse(
            "u.txt",
            "# head\n\n  mast:HST/product/a_b.fits  \r\n#x\nmast:JWST/product/c_d.fits",
        )
        .unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].uri, "mast:HST/product/a_b.fits");
        assert_eq!(e[0].origin.line, 3);
        assert_eq!(e[1].origin.line, 5);
    }

    #[test]
    fn names_file_and_line_of_a_bad_line() {
        let err = parse("u.txt", "mast:A/b_c.fits\nhttp://x/y\n").unwrap_err();
        assert_eq!(err.origin.line, 2);
        assert_eq!(err.to_string(), "u.txt:2: Not a `mast:` URI: `http://x/y`");
    }
}
