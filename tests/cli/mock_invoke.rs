//! A stand-in for MAST's Mashup endpoint `POST /api/v0/invoke`, for tests.
//!
//! It speaks the same shapes as the real service (see `src/query.rs`): a
//! form body `request=<JSON>`, and a JSON reply with `status`, `msg`,
//! `fields`, `data` and `paging`. It serves two services:
//!
//! * `Mast.Caom.Filtered`: the observation rows given to [`MockInvoke::new`]
//!   that match every filter of `params.filters` (exact values, `min`/`max`
//!   ranges, `freeText` with `%` wildcards, `separator`-split cells; all
//!   case-insensitive), paged by the request's `pagesize` (capped by
//!   [`MockInvoke::page_size`]).
//! * `Mast.Caom.Products`: the product rows of each id in `params.obsid`
//!   (comma-separated), in that order, paged the same way.
//!
//! Mount it with its state:
//!
//! ```ignore
//! let mock = Arc::new(MockInvoke::new(observations, products).page_size(2));
//! let app = axum::Router::new()
//!     .route("/api/v0/invoke", axum::routing::post(mock_invoke::invoke))
//!     .with_state(mock.clone());
//! // or, inside a router with another state:
//! //  .route("/api/v0/invoke", axum::routing::post(mock_invoke::invoke).with_state(mock.clone()))
//! ```
//!
//! and read back what arrived with [`MockInvoke::requests`],
//! [`MockInvoke::authorizations`] and [`MockInvoke::cookies`].

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// The mock's data, its scripted misbehaviour, and what it has seen.
#[derive(Debug, Default)]
pub struct MockInvoke {
    observations: Vec<Value>,
    products: Vec<(String, Vec<Value>)>,
    page_size: Option<usize>,
    executing: AtomicUsize,
    fail_products: AtomicUsize,
    filtered_error: Option<String>,
    requests: Mutex<Vec<Value>>,
    authorizations: Mutex<Vec<Option<String>>>,
    cookies: Mutex<Vec<Option<String>>>,
}

impl MockInvoke {
    /// Returns a mock serving `observations` (rows of `Mast.Caom.Filtered`,
    /// each a JSON object with at least `obsid`) and `products` (for each
    /// `obsid`, the rows `Mast.Caom.Products` returns for it, in order).
    pub fn new(observations: Vec<Value>, products: Vec<(String, Vec<Value>)>) -> MockInvoke {
        MockInvoke {
            observations,
            products,
            ..MockInvoke::default()
        }
    }

    /// Caps every page at `n` rows, whatever `pagesize` the request asks.
    pub fn page_size(mut self, n: usize) -> MockInvoke {
        self.page_size = Some(n.max(1));
        self
    }

    /// Answers the first `n` `Mast.Caom.Filtered` requests with `EXECUTING`.
    pub fn executing(self, n: usize) -> MockInvoke {
        self.executing.store(n, Ordering::SeqCst);
        self
    }

    /// Answers the first `n` `Mast.Caom.Products` requests with HTTP 503.
    pub fn fail_products(self, n: usize) -> MockInvoke {
        self.fail_products.store(n, Ordering::SeqCst);
        self
    }

    /// Answers every `Mast.Caom.Filtered` request with `status: ERROR` and `msg`.
    pub fn filtered_error(mut self, msg: &str) -> MockInvoke {
        self.filtered_error = Some(msg.to_string());
        self
    }

    /// The decoded `request` JSON of every request, in arrival order.
    pub fn requests(&self) -> Vec<Value> {
        lock(&self.requests).clone()
    }

    /// The `Authorization` header of every request (`None` when absent).
    pub fn authorizations(&self) -> Vec<Option<String>> {
        lock(&self.authorizations).clone()
    }

    /// The `Cookie` header of every request (`None` when absent).
    pub fn cookies(&self) -> Vec<Option<String>> {
        lock(&self.cookies).clone()
    }
}

/// The axum handler for `POST /api/v0/invoke`; state `Arc<MockInvoke>`.
pub async fn invoke(
    State(mock): State<Arc<MockInvoke>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    lock(&mock.authorizations).push(header("authorization"));
    lock(&mock.cookies).push(header("cookie"));

    let Some(raw) = url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "request")
        .map(|(_, v)| v.into_owned())
    else {
        return (StatusCode::BAD_REQUEST, "missing request= form field").into_response();
    };
    let request: Value = match serde_json::from_str(&raw) {
        Ok(v) => v,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("request is not JSON: {e}")).into_response()
        }
    };
    lock(&mock.requests).push(request.clone());

    if request["format"] != "json" {
        return error_reply("this mock only speaks format=json");
    }
    let page = request["page"].as_u64().unwrap_or(1).max(1) as usize;
    let asked = request["pagesize"].as_u64().unwrap_or(1000).max(1) as usize;
    let size = mock.page_size.map_or(asked, |cap| cap.min(asked));

    let rows: Vec<Value> = match request["service"].as_str() {
        Some("Mast.Caom.Filtered") => {
            if let Some(msg) = &mock.filtered_error {
                return error_reply(msg);
            }
            if take_one(&mock.executing) {
                return Json(json!({"status": "EXECUTING", "msg": "", "fields": [], "data": []}))
                    .into_response();
            }
            let filters = request["params"]["filters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            mock.observations
                .iter()
                .filter(|row| filters.iter().all(|f| matches(row, f)))
                .cloned()
                .collect()
        }
        Some("Mast.Caom.Products") => {
            if take_one(&mock.fail_products) {
                return (StatusCode::SERVICE_UNAVAILABLE, "busy, try again").into_response();
            }
            let ids = request["params"]["obsid"].as_str().unwrap_or("");
            ids.split(',')
                .map(str::trim)
                .flat_map(|id| {
                    mock.products
                        .iter()
                        .filter(move |(obsid, _)| obsid == id)
                        .flat_map(|(_, rows)| rows.iter().cloned())
                })
                .collect()
        }
        other => return error_reply(&format!("unknown service {other:?}")),
    };

    let total = rows.len();
    let data: Vec<Value> = rows
        .into_iter()
        .skip((page - 1) * size)
        .take(size)
        .collect();
    let fields: Vec<Value> = data
        .first()
        .and_then(Value::as_object)
        .map(|o| {
            o.keys()
                .map(|k| json!({"name": k, "type": "string"}))
                .collect()
        })
        .unwrap_or_default();
    Json(json!({
        "status": "COMPLETE",
        "msg": "",
        "fields": fields,
        "paging": {
            "page": page,
            "pageSize": size,
            "pagesFiltered": total.div_ceil(size),
            "rows": data.len(),
            "rowsFiltered": total,
            "rowsTotal": total,
        },
        "data": data,
    }))
    .into_response()
}

fn error_reply(msg: &str) -> Response {
    Json(json!({"status": "ERROR", "msg": msg, "fields": [], "data": []})).into_response()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes one from `n` if it is above zero.
fn take_one(n: &AtomicUsize) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Whether `row` passes one Mashup filter entry.
fn matches(row: &Value, filter: &Value) -> bool {
    let Some(cell) = filter["paramName"].as_str().and_then(|n| text(&row[n])) else {
        return false;
    };
    let parts: Vec<&str> = match filter["separator"].as_str() {
        Some(sep) if !sep.is_empty() => cell.split(sep).map(str::trim).collect(),
        _ => vec![cell.trim()],
    };
    let exact = filter["values"].as_array().is_some_and(|values| {
        values.iter().any(|v| match v {
            Value::Object(range) => cell.trim().parse::<f64>().is_ok_and(|x| {
                range
                    .get("min")
                    .and_then(Value::as_f64)
                    .is_none_or(|m| x >= m)
                    && range
                        .get("max")
                        .and_then(Value::as_f64)
                        .is_none_or(|m| x <= m)
            }),
            other => {
                text(other).is_some_and(|want| parts.iter().any(|p| p.eq_ignore_ascii_case(&want)))
            }
        })
    });
    let free = filter["freeText"]
        .as_str()
        .is_some_and(|pat| parts.iter().any(|p| like(pat, p)));
    exact || free
}

/// SQL `LIKE` with `%` only, case-insensitive.
fn like(pattern: &str, s: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let s = s.to_ascii_lowercase();
    let pieces: Vec<&str> = pattern.split('%').collect();
    let [first, middle @ .., last] = pieces.as_slice() else {
        return pattern == s;
    };
    if !s.starts_with(first) {
        return false;
    }
    let mut pos = first.len();
    for piece in middle {
        match s[pos..].find(piece) {
            Some(i) => pos += i + piece.len(),
            None => return false,
        }
    }
    s.len() >= pos + last.len() && s.ends_with(last)
}
