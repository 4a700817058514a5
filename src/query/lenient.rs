//! Lenient decoding of Mashup values: numbers that come as strings or
//! floats, nulls and blanks.

use serde_json::Value;

/// A string, number or boolean as text; `None` for null, blanks and the rest.
pub(super) fn lenient_string(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => format!("{f:.0}"),
            _ => n.to_string(),
        },
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    (!s.is_empty()).then_some(s)
}

/// A whole number from an integer, an integral float or a numeric string.
pub(super) fn lenient_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| float_to_i64(n.as_f64()?)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| float_to_i64(s.parse::<f64>().ok()?))
        }
        _ => None,
    }
}

pub(super) fn float_to_i64(f: f64) -> Option<i64> {
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e18).then_some(f as i64)
}

/// A non-negative whole number, read as [`lenient_i64`] does (and beyond
/// `i64::MAX` for plain integers).
pub(super) fn lenient_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) if n.as_u64().is_some() => n.as_u64(),
        Value::String(s) if s.trim().parse::<u64>().is_ok() => s.trim().parse().ok(),
        _ => lenient_i64(v).and_then(|i| u64::try_from(i).ok()),
    }
}
