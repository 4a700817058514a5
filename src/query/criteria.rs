//! The search criteria: which columns a search filters on, as Mashup
//! filters (`mashup_filters`), and the product filters applied to rows.

use anyhow::bail;
use serde_json::{Map, Value};

use super::{Product, DEFAULT_CHUNK_SIZE};
use crate::input::filter::ProductFilter;

/// Search criteria; each non-empty field becomes one Mashup filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Criteria {
    /// obs_collection, e.g. JWST (repeatable)
    pub(crate) collection: Vec<String>,
    /// proposal_id, e.g. 1073 (repeatable)
    pub(crate) proposal: Vec<String>,
    /// instrument_name, e.g. NIRCAM/IMAGE or NIRCAM* (repeatable; * is a wildcard)
    pub(crate) instrument: Vec<String>,
    /// target_name (repeatable; * is a wildcard)
    pub(crate) target: Vec<String>,
    /// obs_id, e.g. jw01073-o001_t001_nircam_clear-f150w (repeatable; * is a wildcard)
    pub(crate) obs_id: Vec<String>,
    /// filters, e.g. F150W (repeatable)
    pub(crate) filters: Vec<String>,
    /// dataproduct_type, e.g. image, spectrum, cube (repeatable)
    pub(crate) dataproduct_type: Vec<String>,
    /// Keep products whose productType is TYPE, e.g. SCIENCE (repeatable, any case)
    pub(crate) product_type: Vec<String>,
    /// Keep products whose calib_level is N, e.g. 2 (repeatable)
    pub(crate) calib_level: Vec<i64>,
    /// Keep only "Minimum Recommended Products"
    pub(crate) mrp_only: bool,
    /// Observations per product-list request
    pub(crate) chunk_size: usize,
}

impl Default for Criteria {
    fn default() -> Criteria {
        Criteria {
            collection: Vec::new(),
            proposal: Vec::new(),
            instrument: Vec::new(),
            target: Vec::new(),
            obs_id: Vec::new(),
            filters: Vec::new(),
            dataproduct_type: Vec::new(),
            product_type: Vec::new(),
            calib_level: Vec::new(),
            mrp_only: false,
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }
}

impl Criteria {
    /// Whether no observation criterion is given (product filters and the
    /// chunk size do not count): such a search would ask for all of MAST.
    pub(crate) fn is_empty(&self) -> bool {
        self.observation_columns()
            .iter()
            .all(|(_, values, _)| values.iter().all(|v| v.trim().is_empty()))
    }

    /// The observation columns, their values and their separators, in the
    /// order the filters are sent.
    pub(super) fn observation_columns(
        &self,
    ) -> [(&'static str, &[String], Option<&'static str>); 7] {
        [
            ("obs_collection", &self.collection, Some(";")),
            ("proposal_id", &self.proposal, None),
            ("instrument_name", &self.instrument, None),
            ("target_name", &self.target, None),
            ("obs_id", &self.obs_id, None),
            ("filters", &self.filters, Some(";")),
            ("dataproduct_type", &self.dataproduct_type, None),
        ]
    }

    /// The `filters` list of `Mast.Caom.Filtered`.
    pub(super) fn mashup_filters(&self) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::new();
        for (column, values, separator) in self.observation_columns() {
            let mut exact = Vec::new();
            let mut free: Option<String> = None;
            for v in values.iter().map(|v| v.trim()).filter(|v| !v.is_empty()) {
                if v.contains('*') || v.contains('%') {
                    if let Some(first) = &free {
                        bail!(
                            "{column}: only one wildcard value per criterion is allowed \
                             (got {first:?} and {v:?})"
                        );
                    }
                    free = Some(v.replace('*', "%"));
                } else {
                    exact.push(Value::String(v.to_string()));
                }
            }
            if exact.is_empty() && free.is_none() {
                continue;
            }
            let mut entry = Map::new();
            entry.insert("paramName".into(), column.into());
            entry.insert("values".into(), Value::Array(exact));
            if let Some(sep) = separator {
                entry.insert("separator".into(), sep.into());
            }
            if let Some(pattern) = free {
                entry.insert("freeText".into(), pattern.into());
            }
            out.push(Value::Object(entry));
        }
        Ok(out)
    }

    /// Returns true if and only if `p` passes the product filters (the
    /// planner's own, [`ProductFilter`]).
    pub(super) fn keeps(&self, p: &Product) -> bool {
        ProductFilter {
            product_types: &self.product_type,
            calib_levels: &self.calib_level,
            mrp_only: self.mrp_only,
        }
        .keeps(p.product_type.as_deref(), p.calib_level, p.group.as_deref())
    }
}
