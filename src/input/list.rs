//! URI lists: one `mast:` URI per line; blank lines and `#` comments skipped.

use super::{Entry, InputError, Origin};

/// Reads a URI list. A line that is not a `mast:` URI is an error naming
/// `file` and its line; the URI's own checks happen in the plan.
pub fn parse(file: &str, text: &str) -> Result<Vec<Entry>, InputError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !line
            .get(..5)
            .is_some_and(|p| p.eq_ignore_ascii_case("mast:"))
        {
            let shown: String = line
                .chars()
                .take(80)
                .flat_map(char::escape_default)
                .collect();
            return Err(InputError::new(
                file,
                i + 1,
                format!("Not a `mast:` URI: `{shown}`"),
            ));
        }
        out.push(Entry::from_uri(
            line.to_string(),
            Origin {
                file: file.to_string(),
                line: i + 1,
            },
        ));
    }
    Ok(out)
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
