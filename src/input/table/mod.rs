//! Product tables: the CSV and astropy ECSV files that astroquery's
//! `Observations.get_product_list` or `MastMissions.get_product_list`
//! (saved with `Table.write`) or the MAST Portal export, read into [`Entry`]
//! values. This module owns finding the columns (the names astroquery
//! spells, then any case), the masked-cell rules (empty, `--`, and `nan` in
//! number columns mean "not given") and the entry a row makes; [`csv`] and
//! [`ecsv`] own the two file formats, each with the 1-based physical line
//! numbers every entry and error carries. All are pure functions of the
//! text.

mod csv;
mod ecsv;
mod missions;

pub(crate) use self::csv::parse_csv;
pub(crate) use ecsv::parse_ecsv;
pub(crate) use missions::{MISSIONS_ROOT, PRODUCT_NAME, RETRIEVE_PRODUCT};

use super::{Entry, InputError, LocalHint, Origin, ProductMeta};

/// The one column a product table must have.
const DATA_URI: &str = "dataURI";

/// Fails when a row's field count differs from the header's.
pub(super) fn check_width(
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

pub(super) fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// A cell as shown in a message: escaped, at most 80 characters.
pub(super) fn shown(cell: &str) -> String {
    cell.chars()
        .take(80)
        .flat_map(char::escape_default)
        .collect()
}

/// The columns this reader uses, as indexes into a row, and the header's
/// names as written (for messages).
pub(super) struct Columns {
    pub(super) names: Vec<String>,
    uri: usize,
    collection: Option<usize>,
    obs_id: Option<usize>,
    filename: Option<usize>,
    size: Option<usize>,
    product_type: Option<usize>,
    calib_level: Option<usize>,
    group: Option<usize>,
    /// Set for a MastMissions product list (a `uri` column, no `dataURI`).
    missions: Option<missions::Columns>,
}

impl Columns {
    /// Finds the columns in a header row read at `line`; an error names the
    /// columns found when none is `dataURI`.
    pub(super) fn find(file: &str, line: usize, header: &[&str]) -> Result<Columns, InputError> {
        let names: Vec<String> = header.iter().map(|n| n.trim().to_string()).collect();
        let Some(uri) = position(&names, DATA_URI) else {
            if let Some((uri, m)) = missions::Columns::find(&names) {
                return Ok(Columns {
                    uri,
                    collection: None,
                    obs_id: None,
                    filename: None,
                    size: position(&names, "size"),
                    product_type: None,
                    calib_level: None,
                    group: None,
                    missions: Some(m),
                    names,
                });
            }
            let found: Vec<&str> = names
                .iter()
                .map(String::as_str)
                .filter(|n| !n.is_empty())
                .collect();
            let message = if found.is_empty() {
                "No `dataURI` column (nor a MastMissions `uri` column); the header row names no columns".to_string()
            } else {
                format!(
                    "No `dataURI` column (nor a MastMissions `uri` column); the columns are: {}",
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
            missions: None,
            names,
        })
    }

    /// Builds the entry for a row read at `line`; `row` has one cell per
    /// column.
    pub(super) fn entry(&self, file: &str, line: usize, row: &[&str]) -> Result<Entry, InputError> {
        let cell = |i: usize| row.get(i).map_or("", |c| c.trim());
        let text = |i: Option<usize>| i.and_then(|i| masked(cell(i))).map(str::to_string);

        let column = self.names.get(self.uri).map_or(DATA_URI, String::as_str);
        let uri = cell(self.uri);
        if masked(uri).is_none() {
            return Err(InputError::new(file, line, format!("Empty `{column}`")));
        }
        if uri.contains(['\n', '\r']) {
            return Err(InputError::new(
                file,
                line,
                format!(
                    "The `{column}` cell spans lines (is a quote left open?): `{}`",
                    shown(uri)
                ),
            ));
        }

        let size = number(file, line, self.size, &self.names, row, "a size in bytes")?;
        if let Some(m) = &self.missions {
            let origin = Origin {
                file: file.to_string(),
                line,
            };
            return m.entry(uri, &|i| text(Some(i)), size, origin);
        }
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
                judged: self.product_type.is_some()
                    || self.calib_level.is_some()
                    || self.group.is_some(),
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
pub(super) fn position(names: &[String], want: &str) -> Option<usize> {
    names
        .iter()
        .position(|n| n == want)
        .or_else(|| names.iter().position(|n| n.eq_ignore_ascii_case(want)))
}

/// Names for a message, comma-separated.
pub(super) fn shown_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| shown(n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A text cell, or `None` when it is masked: empty, or astropy's `--`.
pub(super) fn masked(cell: &str) -> Option<&str> {
    let cell = cell.trim();
    (!cell.is_empty() && cell != "--").then_some(cell)
}

/// Reads the whole number in column `col` of `row`, `None` when the table has
/// no such column or the cell is masked; anything else that is not a whole
/// number fitting `T` is an error naming the column and `what` it should be.
pub(super) fn number<T: TryFrom<i128>>(
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
pub(super) fn whole_number(cell: &str) -> Result<Option<i128>, ()> {
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

/// Helpers for the tests of the table readers.
#[cfg(test)]
mod test_util {
    pub(super) use crate::input::{Entry, LocalHint, Origin, ProductMeta};

    pub(super) const ASTROQUERY_CSV: &str =
        include_str!("../../../tests/fixtures/tables/astroquery_products.csv");
    pub(super) const PORTAL_CSV: &str =
        include_str!("../../../tests/fixtures/tables/portal_products.csv");
    pub(super) const NO_DATAURI_CSV: &str =
        include_str!("../../../tests/fixtures/tables/observations_no_datauri.csv");
    pub(super) const SPACE_ECSV: &str =
        include_str!("../../../tests/fixtures/tables/products_space.ecsv");
    pub(super) const COMMA_ECSV: &str =
        include_str!("../../../tests/fixtures/tables/products_comma.ecsv");

    pub(super) fn parts(
        collection: Option<&str>,
        obs_id: Option<&str>,
        filename: Option<&str>,
    ) -> LocalHint {
        LocalHint::Parts {
            collection: collection.map(str::to_string),
            obs_id: obs_id.map(str::to_string),
            filename: filename.map(str::to_string),
        }
    }

    pub(super) fn meta(
        product_type: Option<&str>,
        calib_level: Option<i64>,
        group: Option<&str>,
    ) -> ProductMeta {
        ProductMeta {
            product_type: product_type.map(str::to_string),
            calib_level,
            group: group.map(str::to_string),
            judged: true,
        }
    }

    pub(super) fn lines(entries: &[Entry]) -> Vec<usize> {
        entries.iter().map(|e| e.origin.line).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;

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
