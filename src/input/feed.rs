//! MAST's change feed: the JSON files the subscription service sends,
//! listing new, public and reprocessed products — a JSON array of objects
//! with `mission`, `fileset` (or `dataset`), `filename`, optionally `uri`,
//! and an event type. astroquery's `MastMissions.download_products` reads
//! the same files; each row is fetched and laid out as it does:
//! `mission/FILESET/FILENAME` below DEST (`mission` lowercased, FILENAME
//! the last segment of `filename`); HST, JWST and Roman files from the
//! mission search's `retrieve_product?product_name=…` (the row's `uri`, or
//! else its `filename`, percent-encoded with no safe characters, as
//! Python's `quote(uri, safe='')`), other missions' `mast:` URIs from the
//! archive's download endpoint.
//!
//! A row whose event says the product was reprocessed (a string field whose
//! name contains `event` — `event`, `event_type`, `eventType`… — or is
//! `type` or `status`, holding "reprocess" in any case) is marked so that
//! the run asks the source whether the local copy differs and replaces it
//! when it does, as `--update` does, without `--update`. astroquery ignores
//! the event, so its field's name is not pinned down anywhere public: any
//! of these spellings is taken. A product the file lists more than once
//! (`new`, then `reprocessed`) is reprocessed when any of its rows says so:
//! every row of it carries the flag, whichever one the plan keeps.
//!
//! Every error names the file and the 1-based row: a file that is not a
//! JSON array of objects, a row without `filename`, a `..` segment in any
//! field, a mission or fileset holding a path separator. A row without
//! `fileset`/`dataset` is refused by the plan unless `--flat` (see
//! [`LocalHint::Feed`]).

use std::collections::HashSet;

use percent_encoding::utf8_percent_encode;
use serde_json::{Map, Value};

use super::table::{MISSIONS_ROOT, PRODUCT_NAME, RETRIEVE_PRODUCT};
use super::{Entry, InputError, LocalHint, Origin, ProductMeta};

/// The largest feed file read (64 MiB, some 300,000 rows): a feed is
/// parsed whole.
pub(crate) const MAX_FEED_BYTES: usize = 64 << 20;

/// Returns true if and only if a field named `name` may carry the row's
/// event type.
fn is_event_field(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.contains("event") || name == "type" || name == "status"
}

/// Returns true if and only if `text` (a BOM and whitespace aside) opens a
/// JSON array of objects or a JSON object: `[` then `{` or `]`, or `{` then
/// `"` or `}`. No URI list or table starts so, nor a script (whose `[ -d x ]`
/// test has no `{` after its `[`).
pub(crate) fn looks_like_json(text: &str) -> bool {
    opens_json(text.as_bytes())
}

/// [`looks_like_json`] on the first bytes of an input; false when they end
/// before deciding.
pub(crate) fn opens_json(bytes: &[u8]) -> bool {
    let bytes = super::read::strip_bom(bytes);
    let mut it = bytes.iter().filter(|b| !b.is_ascii_whitespace());
    matches!(
        (it.next(), it.next()),
        (Some(b'['), Some(b'{' | b']')) | (Some(b'{'), Some(b'"' | b'}'))
    )
}

/// Reads a change-feed file named `file`.
pub(crate) fn parse(file: &str, text: &str) -> Result<Vec<Entry>, InputError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        InputError::new(
            file,
            e.line(),
            format!("Not valid JSON ({e}): a change-feed file is a JSON array of product rows"),
        )
    })?;
    let Value::Array(rows) = value else {
        return Err(InputError::new(
            file,
            1,
            format!(
                "Expected a JSON array of product rows (as MAST's subscription service sends), found {}",
                kind_of(&value)
            ),
        ));
    };
    let mut entries = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let origin = Origin {
                file: file.to_string(),
                line: i + 1,
            };
            match row {
                Value::Object(fields) => entry(fields, origin),
                other => Err(InputError {
                    message: format!("Row {} is {}, not an object", i + 1, kind_of(other)),
                    origin,
                }),
            }
        })
        .collect::<Result<Vec<Entry>, InputError>>()?;
    merge_reprocessed(&mut entries);
    Ok(entries)
}

/// Marks every row of a product reprocessed when any row of it is: a feed
/// may list one product twice (`new`, then `reprocessed`), and the plan
/// keeps only the first row of a URI, so the flag of a later one would be
/// lost and a changed product SKIPPED unasked.
fn merge_reprocessed(entries: &mut [Entry]) {
    let changed: HashSet<String> = entries
        .iter()
        .filter(|e| is_reprocessed(e))
        .map(|e| e.uri.clone())
        .collect();
    if changed.is_empty() {
        return;
    }
    for e in entries.iter_mut() {
        if let LocalHint::Feed { reprocessed, .. } = &mut e.local {
            *reprocessed |= changed.contains(&e.uri);
        }
    }
}

/// Returns true if and only if `e` is a reprocessed row.
fn is_reprocessed(e: &Entry) -> bool {
    matches!(
        e.local,
        LocalHint::Feed {
            reprocessed: true,
            ..
        }
    )
}

/// Builds the entry of one row.
fn entry(fields: &Map<String, Value>, origin: Origin) -> Result<Entry, InputError> {
    let row = origin.line;
    let fail = |message: String| InputError {
        origin: origin.clone(),
        message: format!("Row {row}: {message}"),
    };
    let text = |name: &str| -> Result<Option<String>, InputError> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(other) => Err(fail(format!(
                "`{name}` is {}, not a string",
                kind_of(other)
            ))),
        }
    };
    let filename = text("filename")?.ok_or_else(|| fail("no `filename`".into()))?;
    let mission = text("mission")?.map(|m| m.to_ascii_lowercase());
    let fileset = match text("fileset")? {
        Some(f) => Some(f),
        None => text("dataset")?,
    };
    let uri = text("uri")?;
    for (name, value) in [
        ("filename", Some(&filename)),
        ("mission", mission.as_ref()),
        ("fileset", fileset.as_ref()),
        ("uri", uri.as_ref()),
    ] {
        if let Some(v) = value {
            if v.split(['/', '\\']).any(|seg| seg == "..") {
                return Err(fail(format!("`{name}` holds `..`: `{}`", shown(v))));
            }
        }
    }
    for (name, value) in [("mission", mission.as_ref()), ("fileset", fileset.as_ref())] {
        if let Some(v) = value.filter(|v| v.contains(['/', '\\'])) {
            return Err(fail(format!(
                "`{name}` names one folder and holds a path separator: `{}`",
                shown(v)
            )));
        }
    }
    let Some(mission) = mission else {
        return Err(fail(
            "no `mission`: it says where the file comes from (`hst`, `jwst`, `roman`…)".into(),
        ));
    };
    let reprocessed = fields
        .iter()
        .filter(|(name, _)| is_event_field(name))
        .filter_map(|(_, v)| v.as_str())
        .any(|e| e.to_ascii_lowercase().contains("reprocess"));
    // What the archive knows the product by: the row's `uri`, else its
    // `filename` (astroquery's `download_products`).
    let product = uri.unwrap_or_else(|| filename.clone());
    let is_mast = crate::layout::is_mast_uri(&product);
    let url = if RETRIEVE_PRODUCT.contains(&mission.as_str()) {
        Some(format!(
            "{MISSIONS_ROOT}{mission}/api/v0.1/retrieve_product?product_name={}",
            utf8_percent_encode(&product, PRODUCT_NAME)
        ))
    } else if is_mast {
        None
    } else {
        return Err(fail(format!(
            "mission `{}` serves its files by `mast:` URI, and this row's `uri` (or `filename`) is `{}`",
            shown(&mission),
            shown(&product)
        )));
    };
    let name = filename.rsplit('/').next().unwrap_or(&filename).to_string();
    Ok(Entry {
        uri: url.clone().unwrap_or(product),
        url,
        local: LocalHint::Feed {
            mission,
            fileset,
            filename: name,
            reprocessed,
        },
        size: None,
        meta: ProductMeta::default(),
        origin,
    })
}

/// Returns what a JSON value is, for messages.
fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Returns a value for a message: at most 80 characters, escaped.
fn shown(s: &str) -> String {
    s.chars().take(80).flat_map(char::escape_default).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(rows: &str) -> Result<Vec<Entry>, InputError> {
        parse("events.json", rows)
    }

    #[test]
    fn rows_are_laid_out_and_fetched_as_astroquery_does() {
        let e = feed(
            r#"[
 {"mission": "JWST", "fileset": "jw01234001001_02101_00001_nrca1",
  "filename": "jw01234001001_02101_00001_nrca1_cal.fits", "event": "new"},
 {"mission": "hst", "dataset": "IB1F01020", "filename": "ib1f01020_raw.fits",
  "uri": "IB1F01020/ib1f01020_raw.fits", "event_type": "REPROCESSED"},
 {"mission": "classy", "fileset": "ds1", "filename": "a_b.fits",
  "uri": "mast:HLSP/classy/a_b.fits", "eventType": "public"}
]"#,
        )
        .unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(
            e[0].url.as_deref(),
            Some(
                "https://mast.stsci.edu/search/jwst/api/v0.1/retrieve_product?\
                 product_name=jw01234001001_02101_00001_nrca1_cal.fits"
            )
        );
        assert_eq!(
            e[0].local,
            LocalHint::Feed {
                mission: "jwst".into(),
                fileset: Some("jw01234001001_02101_00001_nrca1".into()),
                filename: "jw01234001001_02101_00001_nrca1_cal.fits".into(),
                reprocessed: false,
            }
        );
        // `quote(uri, safe='')`: the slash too.
        assert!(e[1]
            .uri
            .ends_with("product_name=IB1F01020%2Fib1f01020_raw.fits"));
        assert!(matches!(
            &e[1].local,
            LocalHint::Feed { fileset: Some(f), reprocessed: true, .. } if f == "IB1F01020"
        ));
        assert_eq!(e[2].uri, "mast:HLSP/classy/a_b.fits");
        assert_eq!(e[2].url, None);
        assert_eq!(
            e.iter().map(|e| e.origin.line).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert!(looks_like_json("\u{feff}\n  [ \n{") && !looks_like_json("mast:X/y"));
        assert!(looks_like_json("[]") && looks_like_json("{\"a\": 1}"));
        assert!(!looks_like_json(
            "[ -d HST ] || mkdir HST\ncurl -o a https://x/a\n"
        ));
    }

    #[test]
    fn a_one_line_feed_longer_than_a_line_may_be_is_read_whole() {
        let row = r#"{"mission": "hst", "fileset": "A", "filename": "a_raw.fits"},"#;
        let mut text = String::from("\u{feff}[");
        while text.len() <= crate::input::read::MAX_LINE_BYTES + 10 {
            text.push_str(row);
        }
        text.push_str(r#"{"mission": "hst", "fileset": "B", "filename": "b_raw.fits"}]"#);
        let parsed = crate::input::read::read_input("e.json", text.as_bytes(), &mut |_| {
            panic!("not a URI list")
        })
        .unwrap();
        assert!(parsed.items.len() > 10_000);
    }

    #[test]
    fn malformed_feeds_name_the_file_and_row() {
        let e = feed(r#"{"mission": "hst"}"#).unwrap_err();
        assert!(e.message.contains("Expected a JSON array"), "{e}");
        assert!(e.to_string().starts_with("events.json:1:"), "{e}");
        let e = feed(r#"[{"mission": "hst", "fileset": "a", "filename": "x.fits"}, {"mission": "hst", "fileset": "a"}]"#)
            .unwrap_err();
        assert_eq!(e.origin.line, 2);
        assert!(e.message.contains("Row 2: no `filename`"), "{e}");
        for bad in [
            r#"[{"mission": "hst", "fileset": "..", "filename": "x.fits"}]"#,
            r#"[{"mission": "hst", "fileset": "a", "filename": "../../etc/passwd"}]"#,
            r#"[{"mission": "hst", "fileset": "a", "filename": "x.fits", "uri": "a/../b"}]"#,
            r#"[{"mission": "..", "fileset": "a", "filename": "x.fits"}]"#,
        ] {
            let e = feed(bad).unwrap_err();
            assert!(e.message.contains("`..`"), "{bad}: {e}");
        }
        let e = feed(r#"[1]"#).unwrap_err();
        assert!(e.message.contains("Row 1 is a number"), "{e}");
        let e = feed("[\n{\"a\": }").unwrap_err();
        assert_eq!(e.origin.line, 2);
        let e = feed(r#"[{"mission": "iue", "fileset": "a", "filename": "x.fits"}]"#).unwrap_err();
        assert!(e.message.contains("by `mast:` URI"), "{e}");
    }
}
