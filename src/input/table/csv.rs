//! The CSV product table: a header row naming the columns, then one row per
//! product, read with the `csv` crate; and the physical line of each
//! record, which the crate does not give for rows after comment lines.

use super::{check_width, Columns};
use crate::input::{Entry, InputError};

/// Reads a CSV product table (header row naming a `dataURI` column).
///
/// Handles (after the reader dropped any byte-order mark) CRLF line ends, quoted fields (commas,
/// doubled quotes, line breaks), `#` comment lines before and among the rows,
/// and blank lines. A row with a different number of fields than the header
/// is an error naming its line.
pub(crate) fn parse_csv(file: &str, text: &str) -> Result<Vec<Entry>, InputError> {
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

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

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
        // The reader drops the byte-order mark, as for every input.
        let e = crate::input::read::read_text("portal.csv", PORTAL_CSV).unwrap();
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
                "No `dataURI` column (nor a MastMissions `uri` column); the columns are: intentType, obs_collection, provenance_name,"
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
}
