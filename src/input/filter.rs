//! The product filters, written once for every caller: the planner (product
//! tables, `fetch --query`) and `query` (before it prints) judge a product
//! by the same [`ProductFilter`] and a file name by the same
//! [`has_extension`], as astroquery's `filter_products` does.

use super::ProductMeta;

/// The product group `--mrp-only` keeps, matched whole.
pub(crate) const MRP: &str = "Minimum Recommended Products";

/// `--product-type`, `--calib-level` and `--mrp-only`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProductFilter<'a> {
    /// `productType` values to keep (trimmed, any case; blank ones ignored).
    pub(crate) product_types: &'a [String],
    /// `calib_level` values to keep.
    pub(crate) calib_levels: &'a [i64],
    /// Keep only the "Minimum Recommended Products" group.
    pub(crate) mrp_only: bool,
}

impl ProductFilter<'_> {
    /// Returns true if and only if a product with these facts passes every
    /// filter given: its type is one of the wanted ones (both trimmed, any
    /// case), its calibration level one of the wanted ones, and, with
    /// `mrp_only`, its group is exactly "Minimum Recommended Products" (any
    /// case, trimmed; "Not Minimum Recommended Products" is not it). A fact
    /// a filter needs and the product lacks fails that filter.
    pub(crate) fn keeps(
        &self,
        product_type: Option<&str>,
        calib_level: Option<i64>,
        group: Option<&str>,
    ) -> bool {
        let mut wanted = self
            .product_types
            .iter()
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
            .peekable();
        let type_ok = wanted.peek().is_none()
            || product_type.is_some_and(|t| wanted.any(|w| w.eq_ignore_ascii_case(t.trim())));
        let level_ok = self.calib_levels.is_empty()
            || calib_level.is_some_and(|l| self.calib_levels.contains(&l));
        let mrp_ok = !self.mrp_only || group.is_some_and(|g| g.trim().eq_ignore_ascii_case(MRP));
        type_ok && level_ok && mrp_ok
    }

    /// [`ProductFilter::keeps`] for an entry's metadata.
    pub(crate) fn keeps_meta(&self, meta: &ProductMeta) -> bool {
        self.keeps(
            meta.product_type.as_deref(),
            meta.calib_level,
            meta.group.as_deref(),
        )
    }
}

/// Returns true if and only if `name` ends with one of `extensions` (any
/// case); every name passes when there are none.
pub(crate) fn has_extension(name: &str, extensions: &[String]) -> bool {
    if extensions.is_empty() {
        return true;
    }
    let name = name.to_ascii_lowercase();
    extensions
        .iter()
        .any(|x| name.ends_with(&x.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_trimmed_and_the_mrp_group_matched_whole() {
        let types = vec![" science ".to_string(), " ".to_string()];
        let f = ProductFilter {
            product_types: &types,
            calib_levels: &[],
            mrp_only: true,
        };
        assert!(f.keeps(Some("SCIENCE"), None, Some("Minimum Recommended Products")));
        assert!(f.keeps(
            Some("Science "),
            Some(3),
            Some(" minimum recommended products")
        ));
        assert!(!f.keeps(
            Some("SCIENCE"),
            None,
            Some("Not Minimum Recommended Products")
        ));
        assert!(!f.keeps(Some("AUXILIARY"), None, Some(MRP)));
        assert!(!f.keeps(None, None, Some(MRP)));
        let blank = vec![" ".to_string()];
        let f = ProductFilter {
            product_types: &blank,
            calib_levels: &[2],
            mrp_only: false,
        };
        assert!(f.keeps(None, Some(2), None));
        assert!(!f.keeps(None, Some(3), None) && !f.keeps(None, None, None));
    }

    #[test]
    fn extensions_are_case_insensitive_suffixes() {
        let ext = vec!["_I2D.fits".to_string()];
        assert!(has_extension("jw1_t2_i2d.FITS", &ext));
        assert!(!has_extension("jw1_t2_cal.fits", &ext));
        assert!(has_extension("anything", &[]));
    }
}
