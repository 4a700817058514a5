//! MastMissions product lists (astroquery's `MastMissions.get_product_list`
//! saved as CSV or ECSV): a `uri` column such as `Z14Z0104T/z14z0104t_shf.fits`
//! and no `dataURI`. Each row is fetched as astroquery's
//! `MastMissions.download_products` fetches it: HST, JWST and Roman files
//! from the mission search's `retrieve_product?product_name=URI` endpoint,
//! other missions' `mast:` URIs from the archive's download endpoint; and
//! laid out as it lays them out: `MISSION/DATASET/FILENAME` (the mission in
//! lower case, the `dataset` or `fileset` column, the `filename` column's
//! last segment).

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::{position, shown};
use crate::input::{Entry, InputError, LocalHint, Origin, ProductMeta};

/// The mission search's root on the archive (re-rooted by `--base-url` as
/// script URLs are).
pub(crate) const MISSIONS_ROOT: &str = "https://mast.stsci.edu/search/";

/// Missions whose files come from `retrieve_product` (astroquery's
/// `_get_download_url`).
pub(crate) const RETRIEVE_PRODUCT: &[&str] =
    &["hst", "jwst", "roman", "roman_spectra", "roman_cgi"];

/// What Python's `quote(uri, safe='')` leaves alone: letters, digits, `_.-~`.
pub(crate) const PRODUCT_NAME: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The MastMissions columns, as indexes into a row.
#[derive(Debug)]
pub(super) struct Columns {
    filename: Option<usize>,
    dataset: Option<usize>,
    mission: Option<usize>,
}

impl Columns {
    /// Returns the `uri` column's index and the other columns, when `names`
    /// hold a `uri` column.
    pub(super) fn find(names: &[String]) -> Option<(usize, Columns)> {
        let uri = position(names, "uri")?;
        Some((
            uri,
            Columns {
                filename: position(names, "filename"),
                dataset: position(names, "dataset").or_else(|| position(names, "fileset")),
                mission: position(names, "mission"),
            },
        ))
    }

    /// Builds the entry for `uri`; `text(i)` is column `i`'s cell, `None`
    /// when masked.
    pub(super) fn entry(
        &self,
        uri: &str,
        text: &dyn Fn(usize) -> Option<String>,
        size: Option<u64>,
        origin: Origin,
    ) -> Result<Entry, InputError> {
        let mission = self.mission.and_then(text).map(|m| m.to_ascii_lowercase());
        let mission = mission.or_else(|| guess_mission(uri));
        let is_mast = crate::layout::is_mast_uri(uri);
        let name = self
            .filename
            .and_then(text)
            .unwrap_or_else(|| uri.to_string());
        let name = name.rsplit('/').next().unwrap_or(&name).to_string();
        let dataset = self.dataset.and_then(text);
        let fail = |message: String| InputError {
            origin: origin.clone(),
            message,
        };
        let url = match mission.as_deref() {
            _ if is_mast => None,
            Some(m) if RETRIEVE_PRODUCT.contains(&m) => Some(format!(
                "{MISSIONS_ROOT}{m}/api/v0.1/retrieve_product?product_name={}",
                utf8_percent_encode(uri, PRODUCT_NAME)
            )),
            Some(m) => {
                return Err(fail(format!(
                    "Mission `{}` serves its files by `mast:` URI, and this `uri` is `{}`: save the product list with its full `mast:` URIs",
                    shown(m),
                    shown(uri)
                )))
            }
            None => {
                return Err(fail(format!(
                    "Cannot tell which mission `{}` belongs to: add a `mission` column (`hst`, `jwst`, `roman`…)",
                    shown(uri)
                )))
            }
        };
        Ok(Entry {
            uri: url.clone().unwrap_or_else(|| uri.to_string()),
            url,
            local: LocalHint::Parts {
                collection: mission,
                obs_id: dataset,
                filename: Some(name),
            },
            size,
            meta: ProductMeta::default(),
            origin,
        })
    }
}

/// The mission of a `uri` without a `mission` column: its first segment
/// when that names a mission (`JWST/…`), `jwst` for a `jw…` file, `hst`
/// for an HST dataset (nine letters and digits, `Z14Z0104T/…`).
fn guess_mission(uri: &str) -> Option<String> {
    let (first, rest) = uri.split_once('/')?;
    let lower = first.to_ascii_lowercase();
    if RETRIEVE_PRODUCT.contains(&lower.as_str()) {
        return Some(lower);
    }
    let name = rest.rsplit('/').next().unwrap_or(rest);
    if name.to_ascii_lowercase().starts_with("jw") {
        Some("jwst".into())
    } else if first.len() == 9 && first.chars().all(|c| c.is_ascii_alphanumeric()) {
        Some("hst".into())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::{parse_csv, parse_ecsv};

    const HST_CSV: &str = include_str!("../../../tests/fixtures/tables/missions_hst_products.csv");
    const JWST_ECSV: &str =
        include_str!("../../../tests/fixtures/tables/missions_jwst_products.ecsv");

    #[test]
    fn reads_an_hst_missions_product_list() {
        let e = parse_csv("hst.csv", HST_CSV).unwrap();
        assert_eq!(e.len(), 3);
        let url = "https://mast.stsci.edu/search/hst/api/v0.1/retrieve_product?\
                   product_name=Z14Z0104T%2Fz14z0104t_shf.fits";
        assert_eq!(e[0].uri, url);
        assert_eq!(e[0].url.as_deref(), Some(url));
        assert_eq!(
            e[0].local,
            parts(Some("hst"), Some("Z14Z0104T"), Some("z14z0104t_shf.fits"))
        );
        assert_eq!(e[0].size, Some(31680));
        assert_eq!(lines(&e), [3, 4, 5]);
    }

    #[test]
    fn reads_a_jwst_missions_ecsv_with_a_mission_column() {
        let e = parse_ecsv("jw.ecsv", JWST_ECSV).unwrap();
        assert_eq!(e.len(), 2);
        assert!(e[0].uri.starts_with(
            "https://mast.stsci.edu/search/jwst/api/v0.1/retrieve_product?product_name=JWST%2Fjw01234"
        ), "{}", e[0].uri);
        assert_eq!(
            e[1].local,
            parts(
                Some("jwst"),
                Some("jw01234001001_02101_00001_nrca1"),
                Some("jw01234001001_02101_00001_nrca1_cal.fits")
            )
        );
        assert_eq!(crate::input::detect(JWST_ECSV), crate::input::Kind::Ecsv);
    }

    #[test]
    fn missions_rows_without_a_mission_or_mast_uri_are_errors() {
        let e = parse_csv("t.csv", "uri,filename\nsome_dir/x.fits,x.fits\n").unwrap_err();
        assert_eq!(e.origin.line, 2);
        assert!(e.message.contains("add a `mission` column"), "{e}");
        let e = parse_csv("t.csv", "uri,mission\nx/y.fits,classy\n").unwrap_err();
        assert!(e.message.contains("`mast:` URI"), "{e}");
        let e = parse_csv(
            "t.csv",
            "uri,mission,dataset\nmast:HLSP/classy/a_b.fits,classy,ds1\n",
        )
        .unwrap();
        assert_eq!(e[0].uri, "mast:HLSP/classy/a_b.fits");
        assert_eq!(e[0].url, None);
        assert_eq!(
            e[0].local,
            parts(Some("classy"), Some("ds1"), Some("a_b.fits"))
        );
    }
}
