//! The MAST search client: turns [`Criteria`] into the list of [`Product`]s
//! to download, speaking MAST's Mashup API the way astroquery's
//! `Observations.query_criteria` → `get_product_list` → `filter_products`
//! does. [`products`] asks `Mast.Caom.Filtered` for the observations, then
//! `Mast.Caom.Products` for their products in chunks of observations, keeps
//! the rows that pass the product filters and drops repeated file names;
//! [`write_table`] writes the result as a CSV product table.
//!
//! # Wire shapes relied on, and where they come from
//!
//! **Request** (astroquery `astroquery/mast/discovery_portal.py`:
//! `_prepare_service_request_string`, `service_request_async`, `_request`;
//! MAST "Using the API with Python", <https://mast.stsci.edu/api/v0/pyex.html>;
//! `MashupRequest` class reference,
//! <https://mast.stsci.edu/api/v0/class_mashup_1_1_mashup_request.html>):
//! `POST {base}/api/v0/invoke`, `Content-Type:
//! application/x-www-form-urlencoded`, `Accept: text/plain`, body
//! `request=<percent-encoded JSON>`:
//!
//! ```text
//! {"service": "Mast.Caom.Filtered", "format": "json", "pagesize": 50000, "page": 1,
//!  "cacheBreaker": "<random, fixed for one search>",
//!  "params": {"columns": "*", "filters": [
//!     {"paramName": "obs_collection", "values": ["JWST"], "separator": ";"},
//!     {"paramName": "proposal_id", "values": ["1073"]},
//!     {"paramName": "instrument_name", "values": [], "freeText": "NIRCAM%"}]}}
//! ```
//!
//! * `format` must be `"json"` (the service default is `extjs`). `pagesize`
//!   defaults to 1000 on the server; astroquery sends 50000 (its
//!   `conf.pagesize`), as we do. `timeout` (default 20 s, the server's
//!   long-poll wait), `clearcache`, `removecache` and `removenullcolumns`
//!   (all default false) are left to their defaults: nulls are parsed
//!   leniently instead.
//! * `cacheBreaker` is what astroquery adds so MAST's server-side cache does
//!   not answer a new search with an old result; the API docs
//!   (<https://mast.stsci.edu/api/v0/>, "Long Polling") say a poll must repeat
//!   the request exactly, cacheBreaker included, so one value is kept for
//!   all polls and pages of one search.
//! * Filters (`build_filter_set` in `discovery_portal.py`, driven by the
//!   `Mast.Caom.Cone` columns config, a copy of which is
//!   `astroquery/mast/tests/data/columnsconfig.json`): discrete columns take
//!   their values as strings; a value holding `*` or `%` becomes `freeText`
//!   with `*` → `%` (one wildcard value per column); a column whose config
//!   names a `separator` (`obs_collection`, `filters`: `";"`) carries it.
//!   Only `double`/`float`/`numeric` columns take `[{"min": a, "max": b}]`;
//!   `calib_level` is an `int` column, so a range would be wrong there.
//! * `Mast.Caom.Products` (`get_product_list_async` in astroquery
//!   `observations.py`): `params: {"obsid": "id1,id2,..."}` with the
//!   `obsid` column (the "Product Group ID", not `obs_id`) of the
//!   observations.
//!
//! **Reply** (MAST "Result Dataset Formats",
//! <https://mast.stsci.edu/api/v0/md_result_formats.html>; astroquery test
//! data `astroquery/mast/tests/data/caom.json`, `products.json`):
//!
//! ```text
//! {"status": "EXECUTING" | "COMPLETE" | "ERROR", "msg": "...",
//!  "fields": [{"name": "obsid", "type": "string"}, ...],
//!  "data": [{"obsid": 2003585980, "obs_collection": "HST", ...}, ...],
//!  "paging": {"page": 1, "pageSize": 50000, "pagesFiltered": 1,
//!             "rows": 22, "rowsFiltered": 22, "rowsTotal": 22}}
//! ```
//!
//! `EXECUTING` means "ask again with the same request" (astroquery loops on
//! it); `ERROR` carries the reason in `msg`; `paging.pagesFiltered` is the
//! number of pages to fetch. Values are typed loosely: `obsid`/`obsID` come
//! as numbers or strings, `size` and `calib_level` as integers, floats or
//! strings, and any column may be `null`; all are read leniently.
//!
//! Product rows name their file in `dataURI` (`mast:JWST/product/...`),
//! `productFilename`, `obs_collection`, `obs_id`, `size`, `productType`,
//! `calib_level`, `productGroupDescription` ("Minimum Recommended
//! Products" for astroquery's `mrp_only`) and their observation in
//! `parent_obsid`/`obsID`.
//!
//! **Auth** (astroquery `astroquery/mast/auth.py`; MAST "Using MAST APIs"):
//! with a token we send `Authorization: token <token>` and, as astroquery
//! does for this endpoint, the cookie `mast_token=<token>`; both header
//! values are marked sensitive and the token never appears in a message.
//!
//! # Choices
//!
//! * `calib_level` is applied to the product rows only. An observation's
//!   `calib_level` is its highest level, while its products span lower
//!   levels (raw `uncal` files are level 1 inside level-2/3 observations),
//!   so filtering observations by it would lose exactly what was asked for.
//! * Product filters run before de-duplication, so a file listed twice
//!   (e.g. by an exposure and by the combined observation containing it) is
//!   kept if either listing passes. De-duplication is by `productFilename`
//!   (the `dataURI` when there is none), first wins; astroquery's
//!   `get_unique_product_list` goes by `dataURI`, but mastdl lays files out
//!   by name, so equal names would collide anyway.
//! * Bounds: a poll answered `EXECUTING` is repeated after 1 s, at most 120
//!   times and for at most 600 s per page (astroquery's `conf.timeout`); at
//!   most 1000 pages per search; every request is tried up to 4 times on a
//!   transport error, HTTP 5xx, 408 or 429 (waits up to 1 s, 2 s, 4 s, with
//!   jitter: `retry::with_retries`); product
//!   chunks run 4 at a time; each HTTP exchange may take 300 s.

mod criteria;
mod lenient;
mod wire;

pub(crate) use criteria::Criteria;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::error::excerpt;
use crate::input::{Entry, LocalHint, Origin, ProductMeta};
use crate::retry::{self, Failure};
use crate::token::Token;
use crate::transfer::{Creds, Http, Req};

use lenient::{lenient_i64, lenient_string, lenient_u64};
use wire::invoke_all;

/// Observations per `Mast.Caom.Products` request unless told otherwise.
pub(crate) const DEFAULT_CHUNK_SIZE: usize = 5;

const INVOKE_PATH: &str = "api/v0/invoke";
const FILTERED: &str = "Mast.Caom.Filtered";
const PRODUCTS: &str = "Mast.Caom.Products";
const MAX_PAGES: u64 = 1000;
/// The largest search answer read (one page of rows).
pub(crate) const MAX_PAGE: usize = 256 << 20;

/// One product row as the downloader needs it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct Product {
    /// `dataURI`, e.g. `mast:JWST/product/jw01073001001_02101_00001_nrca1_cal.fits`.
    pub(crate) data_uri: String,
    /// `obs_collection`.
    pub(crate) obs_collection: Option<String>,
    /// `obs_id`.
    pub(crate) obs_id: Option<String>,
    /// `productFilename`.
    pub(crate) product_filename: Option<String>,
    /// `size` in bytes.
    pub(crate) size: Option<u64>,
    /// `productType`: SCIENCE, CALIBRATION, AUXILIARY, ...
    pub(crate) product_type: Option<String>,
    /// `calib_level`.
    pub(crate) calib_level: Option<i64>,
    /// `productGroupDescription`.
    pub(crate) group: Option<String>,
}

impl Product {
    /// Returns the entry the plan takes: the URI, the layout parts from
    /// `obs_collection`/`obs_id`/`productFilename` ([`LocalHint::None`] when
    /// all three are absent, as the table reader does), the size and the
    /// metadata.
    pub(crate) fn to_entry(&self, origin: Origin) -> Entry {
        let local = if self.obs_collection.is_none()
            && self.obs_id.is_none()
            && self.product_filename.is_none()
        {
            LocalHint::None
        } else {
            LocalHint::Parts {
                collection: self.obs_collection.clone(),
                obs_id: self.obs_id.clone(),
                filename: self.product_filename.clone(),
            }
        };
        Entry {
            uri: self.data_uri.clone(),
            url: None,
            local,
            size: self.size,
            meta: ProductMeta {
                product_type: self.product_type.clone(),
                calib_level: self.calib_level,
                group: self.group.clone(),
                judged: true,
            },
            origin,
        }
    }

    /// Reads a `Mast.Caom.Products` row; `None` when it names no `dataURI`.
    fn from_row(row: &Map<String, Value>) -> Option<Product> {
        let s = |k: &str| row.get(k).and_then(lenient_string);
        Some(Product {
            data_uri: s("dataURI")?,
            obs_collection: s("obs_collection"),
            obs_id: s("obs_id"),
            product_filename: s("productFilename"),
            size: row.get("size").and_then(lenient_u64),
            product_type: s("productType"),
            calib_level: row.get("calib_level").and_then(lenient_i64),
            group: s("productGroupDescription"),
        })
    }
}

/// Runs the search: observations, then their products in chunks, deduplicated.
///
/// Fails when `criteria` has no observation criterion, when the token cannot
/// be put in a header, or when any request fails for good; the message names
/// the service, the page or chunk, and the HTTP status or MAST's `msg`.
pub(crate) async fn products(
    http: &Http,
    base: &url::Url,
    token: Option<&Token>,
    criteria: &Criteria,
) -> anyhow::Result<Vec<Product>> {
    search(http, base, token, criteria, SearchTuning::default()).await
}

/// Writes products as a CSV product table (columns `dataURI`,
/// `obs_collection`, `obs_id`, `productFilename`, `size`, `productType`,
/// `calib_level`, `productGroupDescription`; absent values empty) that
/// mastdl's own table reader accepts.
pub(crate) fn write_table<W: std::io::Write>(w: W, products: &[Product]) -> anyhow::Result<()> {
    let mut out = csv::Writer::from_writer(w);
    out.write_record([
        "dataURI",
        "obs_collection",
        "obs_id",
        "productFilename",
        "size",
        "productType",
        "calib_level",
        "productGroupDescription",
    ])
    .context("writing the product table header")?;
    for p in products {
        let size = p.size.map(|n| n.to_string()).unwrap_or_default();
        let level = p.calib_level.map(|n| n.to_string()).unwrap_or_default();
        out.write_record([
            p.data_uri.as_str(),
            p.obs_collection.as_deref().unwrap_or(""),
            p.obs_id.as_deref().unwrap_or(""),
            p.product_filename.as_deref().unwrap_or(""),
            size.as_str(),
            p.product_type.as_deref().unwrap_or(""),
            level.as_str(),
            p.group.as_deref().unwrap_or(""),
        ])
        .with_context(|| format!("writing the product table row for {}", p.data_uri))?;
    }
    out.flush().context("writing the product table")?;
    Ok(())
}

/// The knobs of the protocol loops; tests shrink the waits.
#[derive(Debug, Clone)]
struct SearchTuning {
    page_size: u64,
    poll_delay: Duration,
    max_polls: u32,
    poll_deadline: Duration,
    attempts: u32,
    backoff: retry::Backoff,
    concurrency: usize,
    request_timeout: Duration,
}

impl Default for SearchTuning {
    fn default() -> SearchTuning {
        SearchTuning {
            page_size: 50_000,
            poll_delay: Duration::from_secs(1),
            max_polls: 120,
            poll_deadline: Duration::from_secs(600),
            attempts: 4,
            backoff: retry::Backoff::new(Duration::from_secs(1)),
            concurrency: 4,
            request_timeout: Duration::from_secs(300),
        }
    }
}

/// What every request of one search shares.
#[derive(Clone)]
struct Search {
    http: Http,
    url: url::Url,
    headers: HeaderMap,
    token: Option<Token>,
    tuning: Arc<SearchTuning>,
}

impl Search {
    fn new(
        http: &Http,
        base: &url::Url,
        token: Option<&Token>,
        tuning: SearchTuning,
    ) -> anyhow::Result<Search> {
        let mut url = base.clone();
        let path = format!("{}/{INVOKE_PATH}", base.path().trim_end_matches('/'));
        url.set_path(&path);
        url.set_query(None);
        url.set_fragment(None);

        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(ACCEPT, HeaderValue::from_static("text/plain"));
        Ok(Search {
            http: http.clone(),
            url,
            headers,
            token: token.cloned(),
            tuning: Arc::new(tuning),
        })
    }
}

async fn search(
    http: &Http,
    base: &url::Url,
    token: Option<&Token>,
    criteria: &Criteria,
    tuning: SearchTuning,
) -> anyhow::Result<Vec<Product>> {
    if criteria.is_empty() {
        bail!(
            "no observation criterion given: name at least one of --collection, --proposal, \
             --instrument, --target, --obs-id, --filters, --dataproduct-type"
        );
    }
    let filters = criteria.mashup_filters()?;
    let search = Search::new(http, base, token, tuning)?;

    let params = json!({"columns": "*", "filters": filters});
    let observations = invoke_all(&search, FILTERED, &params, FILTERED).await?;
    let obsids = unique_obsids(&observations);
    if obsids.is_empty() {
        return Ok(Vec::new());
    }

    let chunk_size = if criteria.chunk_size == 0 {
        DEFAULT_CHUNK_SIZE
    } else {
        criteria.chunk_size
    };
    let chunks: Vec<Vec<String>> = obsids.chunks(chunk_size).map(<[String]>::to_vec).collect();
    let per_chunk = product_rows(&search, chunks).await?;
    Ok(select(per_chunk.iter().flatten(), criteria))
}

/// Keeps the rows that name a `dataURI` and pass the product filters, each
/// file once (by `productFilename`, else `dataURI`; first wins).
fn select<'a>(
    rows: impl IntoIterator<Item = &'a Map<String, Value>>,
    criteria: &Criteria,
) -> Vec<Product> {
    let mut seen = HashSet::new();
    rows.into_iter()
        .filter_map(Product::from_row)
        .filter(|p| criteria.keeps(p))
        .filter(|p| {
            seen.insert(
                p.product_filename
                    .clone()
                    .unwrap_or_else(|| p.data_uri.clone()),
            )
        })
        .collect()
}

/// The `obsid` of each observation row, each once, in row order.
fn unique_obsids(rows: &[Map<String, Value>]) -> Vec<String> {
    let mut seen = HashSet::new();
    rows.iter()
        .filter_map(|r| r.get("obsid").and_then(lenient_string))
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

/// Fetches the product rows of every chunk, a bounded number at once;
/// returns them chunk by chunk, in chunk order.
async fn product_rows(
    search: &Search,
    chunks: Vec<Vec<String>>,
) -> anyhow::Result<Vec<Vec<Map<String, Value>>>> {
    let total = chunks.len();
    let permits = Arc::new(tokio::sync::Semaphore::new(
        search.tuning.concurrency.max(1),
    ));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, chunk) in chunks.into_iter().enumerate() {
        let search = search.clone();
        let permits = Arc::clone(&permits);
        tasks.spawn(async move {
            let _permit = permits
                .acquire_owned()
                .await
                .map_err(|_| anyhow!("{PRODUCTS}: the request limiter closed"))?;
            let ids = chunk.join(",");
            let label = format!("{PRODUCTS} chunk {} of {total} (obsid {ids})", i + 1);
            let rows = invoke_all(&search, PRODUCTS, &json!({ "obsid": ids }), &label).await?;
            anyhow::Ok((i, in_observation_order(rows, &chunk)))
        });
    }
    let mut out: Vec<Vec<Map<String, Value>>> = vec![Vec::new(); total];
    while let Some(joined) = tasks.join_next().await {
        let (i, rows) = joined.map_err(|e| anyhow!("{PRODUCTS}: a request task failed: {e}"))??;
        out[i] = rows;
    }
    Ok(out)
}

/// Orders a chunk's product rows by the position of their observation in
/// the chunk (`parent_obsid`, else `obsID`), keeping MAST's order within one
/// observation; rows naming no known observation go last.
fn in_observation_order(
    mut rows: Vec<Map<String, Value>>,
    chunk: &[String],
) -> Vec<Map<String, Value>> {
    let rank = |row: &Map<String, Value>| {
        ["parent_obsid", "obsID", "obsid"]
            .iter()
            .filter_map(|k| row.get(*k).and_then(lenient_string))
            .find_map(|id| chunk.iter().position(|c| *c == id))
            .unwrap_or(chunk.len())
    };
    rows.sort_by_cached_key(rank);
    rows
}

// The same mock the binary-level tests mount (one copy, two users).
#[cfg(test)]
#[path = "../../tests/cli/mock_invoke.rs"]
#[allow(unreachable_pub)]
mod mock_invoke;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::routing::post;
    use axum::Router;
    use serde_json::{json, Value};

    use super::lenient::*;
    use super::wire::*;
    use super::*;
    use crate::input::filter::MRP;
    use mock_invoke::MockInvoke;

    fn fast() -> SearchTuning {
        SearchTuning {
            page_size: 50_000,
            poll_delay: Duration::from_millis(1),
            max_polls: 5,
            poll_deadline: Duration::from_secs(20),
            attempts: 3,
            backoff: retry::Backoff::new(Duration::from_millis(1)),
            concurrency: 2,
            request_timeout: Duration::from_secs(20),
        }
    }

    async fn serve(mock: Arc<MockInvoke>) -> url::Url {
        let app = Router::new()
            .route("/api/v0/invoke", post(mock_invoke::invoke))
            .with_state(mock);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url::Url::parse(&format!("http://{addr}/")).unwrap()
    }

    fn client() -> Http {
        Http::loopback()
    }

    fn obs(obsid: Value, collection: &str, proposal: &str, instrument: &str) -> Value {
        json!({
            "obsid": obsid,
            "obs_collection": collection,
            "proposal_id": proposal,
            "instrument_name": instrument,
            "obs_id": format!("obs{obsid}"),
            "calib_level": 3,
        })
    }

    fn prod(
        parent: &str,
        file: &str,
        ptype: &str,
        level: Value,
        group: Value,
        size: Value,
    ) -> Value {
        json!({
            "obsID": parent,
            "parent_obsid": parent,
            "obs_collection": "JWST",
            "obs_id": format!("obs{parent}"),
            "dataURI": format!("mast:JWST/product/{file}"),
            "productFilename": file,
            "productType": ptype,
            "calib_level": level,
            "productGroupDescription": group,
            "size": size,
        })
    }

    /// Seven matching JWST/1073/NIRCam observations (obsid as number, string
    /// and float), three that must be filtered out, and three products each;
    /// the last observation repeats a file of the first.
    fn jwst_mock() -> MockInvoke {
        let ids = [
            json!(1001),
            json!("1002"),
            json!(1003.0),
            json!("1004"),
            json!(1005),
            json!(1006),
            json!(1007),
        ];
        let mut observations: Vec<Value> = ids
            .iter()
            .map(|id| obs(id.clone(), "JWST", "1073", "NIRCAM/IMAGE"))
            .collect();
        observations.insert(2, obs(json!(2001), "HST", "1073", "NIRCAM/IMAGE"));
        observations.push(obs(json!(3001), "JWST", "9999", "NIRCAM/IMAGE"));
        observations.push(obs(json!(4001), "JWST", "1073", "MIRI/IMAGE"));

        let mut products = Vec::new();
        for n in 1001..=1007 {
            let id = n.to_string();
            let mut rows = vec![
                prod(
                    &id,
                    &format!("jw{n}_uncal.fits"),
                    "SCIENCE",
                    json!(1),
                    Value::Null,
                    json!(100),
                ),
                prod(
                    &id,
                    &format!("jw{n}_cal.fits"),
                    "SCIENCE",
                    json!("2"),
                    json!(MRP),
                    json!("200"),
                ),
                prod(
                    &id,
                    &format!("jw{n}_asn.json"),
                    "AUXILIARY",
                    json!(2.0),
                    json!(MRP),
                    json!(3.0),
                ),
            ];
            if n == 1007 {
                rows.push(prod(
                    &id,
                    "jw1001_cal.fits",
                    "SCIENCE",
                    json!(2),
                    json!(MRP),
                    json!(200),
                ));
                rows.push(prod(
                    &id,
                    "jw1007_i2d.fits",
                    "SCIENCE",
                    json!(3),
                    json!(MRP),
                    Value::Null,
                ));
            }
            products.push((id, rows));
        }
        for id in ["2001", "3001", "4001"] {
            products.push((
                id.to_string(),
                vec![prod(
                    id,
                    &format!("jw{id}_cal.fits"),
                    "SCIENCE",
                    json!(2),
                    json!(MRP),
                    json!(1),
                )],
            ));
        }
        MockInvoke::new(observations, products)
    }

    fn jwst_criteria() -> Criteria {
        Criteria {
            collection: vec!["JWST".into()],
            proposal: vec!["1073".into()],
            instrument: vec!["NIRCAM*".into()],
            chunk_size: 3,
            ..Criteria::default()
        }
    }

    fn service(r: &Value) -> &str {
        r["service"].as_str().unwrap()
    }

    #[tokio::test]
    async fn search_pages_polls_retries_and_dedupes() {
        let mock = Arc::new(jwst_mock().page_size(3).executing(1).fail_products(1));
        let base = serve(mock.clone()).await;
        let token = Token::new("s3cr3t").unwrap();

        let got = search(&client(), &base, Some(&token), &jwst_criteria(), fast())
            .await
            .unwrap();

        // Every product of the seven observations, in observation order, with
        // the repeated jw1001_cal.fits kept once (its first listing).
        let names: Vec<&str> = got
            .iter()
            .map(|p| p.product_filename.as_deref().unwrap())
            .collect();
        let mut want = Vec::new();
        for n in 1001..=1007 {
            want.push(format!("jw{n}_uncal.fits"));
            want.push(format!("jw{n}_cal.fits"));
            want.push(format!("jw{n}_asn.json"));
        }
        want.push("jw1007_i2d.fits".into());
        assert_eq!(names, want);
        assert_eq!(
            got[1],
            Product {
                data_uri: "mast:JWST/product/jw1001_cal.fits".into(),
                obs_collection: Some("JWST".into()),
                obs_id: Some("obs1001".into()),
                product_filename: Some("jw1001_cal.fits".into()),
                size: Some(200),
                product_type: Some("SCIENCE".into()),
                calib_level: Some(2),
                group: Some(MRP.into()),
            }
        );
        assert_eq!(got[2].size, Some(3));
        assert_eq!(got[2].calib_level, Some(2));
        assert_eq!(got.last().unwrap().size, None);

        let requests = mock.requests();
        let filtered: Vec<&Value> = requests.iter().filter(|r| service(r) == FILTERED).collect();
        // One EXECUTING answer, repeated verbatim, then pages 1, 2 and 3.
        assert_eq!(filtered.len(), 4);
        assert_eq!(filtered[0], filtered[1]);
        let pages: Vec<u64> = filtered
            .iter()
            .map(|r| r["page"].as_u64().unwrap())
            .collect();
        assert_eq!(pages, [1, 1, 2, 3]);
        for r in &filtered {
            assert_eq!(r["cacheBreaker"], filtered[0]["cacheBreaker"]);
            assert_eq!(r["format"], "json");
            assert_eq!(r["pagesize"], 50_000);
        }
        assert_eq!(
            filtered[0]["params"],
            json!({"columns": "*", "filters": [
                {"paramName": "obs_collection", "values": ["JWST"], "separator": ";"},
                {"paramName": "proposal_id", "values": ["1073"]},
                {"paramName": "instrument_name", "values": [], "freeText": "NIRCAM%"},
            ]})
        );

        // Three chunks of at most three observations, each paged by three rows
        // (9, 9 and 5 products: 3 + 3 + 2 pages); one 503 retried.
        let mut chunks: Vec<(String, u64)> = requests
            .iter()
            .filter(|r| service(r) == PRODUCTS)
            .map(|r| {
                let ids = r["params"]["obsid"].as_str().unwrap().to_string();
                (ids, r["page"].as_u64().unwrap())
            })
            .collect();
        assert_eq!(chunks.len(), 9);
        chunks.sort();
        chunks.dedup();
        let want: Vec<(String, u64)> = [
            ("1001,1002,1003", 1),
            ("1001,1002,1003", 2),
            ("1001,1002,1003", 3),
            ("1004,1005,1006", 1),
            ("1004,1005,1006", 2),
            ("1004,1005,1006", 3),
            ("1007", 1),
            ("1007", 2),
        ]
        .into_iter()
        .map(|(ids, page)| (ids.to_string(), page))
        .collect();
        assert_eq!(chunks, want);

        // The token arrived on every request, as header and cookie.
        assert_eq!(mock.authorizations().len(), requests.len());
        assert!(mock
            .authorizations()
            .iter()
            .all(|a| a.as_deref() == Some("token s3cr3t")));
        assert!(mock
            .cookies()
            .iter()
            .all(|c| c.as_deref() == Some("mast_token=s3cr3t")));
    }

    #[tokio::test]
    async fn product_filters_apply_to_product_rows() {
        let mock = Arc::new(jwst_mock());
        let base = serve(mock.clone()).await;
        let criteria = Criteria {
            product_type: vec!["science".into()],
            calib_level: vec![2, 3],
            mrp_only: true,
            ..jwst_criteria()
        };
        let got = search(&client(), &base, None, &criteria, fast())
            .await
            .unwrap();
        let names: Vec<&str> = got
            .iter()
            .map(|p| p.product_filename.as_deref().unwrap())
            .collect();
        let mut want: Vec<String> = (1001..=1007).map(|n| format!("jw{n}_cal.fits")).collect();
        want.push("jw1007_i2d.fits".into());
        assert_eq!(names, want);

        // calib_level is not sent as an observation filter.
        let filtered = &mock.requests()[0];
        let names: Vec<&str> = filtered["params"]["filters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["paramName"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["obs_collection", "proposal_id", "instrument_name"]);

        // Without a token nothing is sent for it.
        assert!(mock.authorizations().iter().all(Option::is_none));
        assert!(mock.cookies().iter().all(Option::is_none));
    }

    #[tokio::test]
    async fn mast_error_names_service_page_and_msg() {
        let mock = Arc::new(jwst_mock().filtered_error("Column 'bogus' not found"));
        let base = serve(mock).await;
        let err = search(&client(), &base, None, &jwst_criteria(), fast())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("Mast.Caom.Filtered page 1"), "{err}");
        assert!(err.contains("ERROR: Column 'bogus' not found"), "{err}");
    }

    #[tokio::test]
    async fn lasting_http_failure_names_chunk_and_status() {
        let mock = Arc::new(jwst_mock().fail_products(1000));
        let base = serve(mock.clone()).await;
        let token = Token::new("s3cr3t").unwrap();
        let err = search(&client(), &base, Some(&token), &jwst_criteria(), fast())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("Mast.Caom.Products chunk"), "{err}");
        assert!(err.contains("(obsid "), "{err}");
        assert!(err.contains("HTTP 503"), "{err}");
        assert!(err.contains("failed after 2 retries in "), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
    }

    #[tokio::test]
    async fn endless_executing_is_bounded() {
        let mock = Arc::new(jwst_mock().executing(1000));
        let base = serve(mock.clone()).await;
        let err = search(&client(), &base, None, &jwst_criteria(), fast())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("Mast.Caom.Filtered page 1"), "{err}");
        assert!(err.contains("still EXECUTING"), "{err}");
        assert_eq!(mock.requests().len(), 6);
    }

    #[tokio::test]
    async fn no_observations_means_no_products_and_no_product_request() {
        let mock = Arc::new(jwst_mock());
        let base = serve(mock.clone()).await;
        let criteria = Criteria {
            collection: vec!["TESS".into()],
            ..Criteria::default()
        };
        let got = search(&client(), &base, None, &criteria, fast())
            .await
            .unwrap();
        assert!(got.is_empty());
        assert!(mock.requests().iter().all(|r| service(r) == FILTERED));
    }

    #[tokio::test]
    async fn empty_criteria_are_refused_before_any_request() {
        let base = url::Url::parse("http://127.0.0.1:9/").unwrap();
        let criteria = Criteria {
            product_type: vec!["SCIENCE".into()],
            calib_level: vec![2],
            mrp_only: true,
            collection: vec!["  ".into()],
            ..Criteria::default()
        };
        assert!(criteria.is_empty());
        let err = products(&client(), &base, None, &criteria)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no observation criterion"), "{err}");
    }

    #[test]
    fn filters_follow_astroquery_shapes() {
        let c = Criteria {
            collection: vec!["JWST".into(), "HST".into()],
            obs_id: vec!["jw01073-o001*".into(), "jw01073-o002_t001".into()],
            filters: vec![" F150W ".into(), "".into()],
            target: vec!["NGC%".into()],
            dataproduct_type: vec!["image".into()],
            ..Criteria::default()
        };
        assert!(!c.is_empty());
        assert_eq!(
            Value::Array(c.mashup_filters().unwrap()),
            json!([
                {"paramName": "obs_collection", "values": ["JWST", "HST"], "separator": ";"},
                {"paramName": "target_name", "values": [], "freeText": "NGC%"},
                {"paramName": "obs_id", "values": ["jw01073-o002_t001"], "freeText": "jw01073-o001%"},
                {"paramName": "filters", "values": ["F150W"], "separator": ";"},
                {"paramName": "dataproduct_type", "values": ["image"]},
            ])
        );
        let two = Criteria {
            target: vec!["M3*".into(), "M1*".into()],
            ..Criteria::default()
        };
        let err = two.mashup_filters().unwrap_err().to_string();
        assert!(
            err.contains("target_name") && err.contains("one wildcard"),
            "{err}"
        );
    }

    #[test]
    fn request_body_is_a_form_with_the_json_request() {
        let body = request_body(PRODUCTS, &json!({"obsid": "1,2"}), 10, 2, "cb");
        let (key, value) = url::form_urlencoded::parse(body.as_bytes()).next().unwrap();
        assert_eq!(key, "request");
        let v: Value = serde_json::from_str(&value).unwrap();
        assert_eq!(
            v,
            json!({"service": PRODUCTS, "params": {"obsid": "1,2"}, "format": "json",
               "pagesize": 10, "page": 2, "cacheBreaker": "cb"})
        );
        assert!(!body.contains('{'), "{body}");
    }

    #[test]
    fn invoke_url_keeps_a_base_path() {
        let c = client();
        for (base, want) in [
            (
                "https://mast.stsci.edu",
                "https://mast.stsci.edu/api/v0/invoke",
            ),
            (
                "https://mast.stsci.edu/",
                "https://mast.stsci.edu/api/v0/invoke",
            ),
            (
                "http://127.0.0.1:8/mirror/?x=1",
                "http://127.0.0.1:8/mirror/api/v0/invoke",
            ),
        ] {
            let search = Search::new(&c, &url::Url::parse(base).unwrap(), None, fast()).unwrap();
            assert_eq!(search.url.as_str(), want);
        }
        let t = Token::new("abc").unwrap();
        let search =
            Search::new(&c, &url::Url::parse("http://h/").unwrap(), Some(&t), fast()).unwrap();
        // Credentials are attached per hop by `Http::send`, never stored here.
        assert!(search.headers.get(reqwest::header::AUTHORIZATION).is_none());
        assert!(search.headers.get(reqwest::header::COOKIE).is_none());
        assert_eq!(search.token.as_ref(), Some(&t));
    }

    #[test]
    fn numbers_and_nulls_are_read_leniently() {
        assert_eq!(lenient_u64(&json!(5)), Some(5));
        assert_eq!(lenient_u64(&json!(5.0)), Some(5));
        assert_eq!(lenient_u64(&json!("5")), Some(5));
        assert_eq!(lenient_u64(&json!(" 5.0 ")), Some(5));
        assert_eq!(
            lenient_u64(&json!(18_446_744_073_709_551_615u64)),
            Some(u64::MAX)
        );
        assert_eq!(lenient_u64(&json!(-1)), None);
        assert_eq!(lenient_u64(&json!(5.5)), None);
        assert_eq!(lenient_u64(&json!("n/a")), None);
        assert_eq!(lenient_u64(&Value::Null), None);
        assert_eq!(lenient_i64(&json!("-2")), Some(-2));
        assert_eq!(lenient_i64(&json!(3.0)), Some(3));
        assert_eq!(
            lenient_string(&json!(2003585980)),
            Some("2003585980".into())
        );
        assert_eq!(
            lenient_string(&json!(2003585980.0)),
            Some("2003585980".into())
        );
        assert_eq!(lenient_string(&json!(" x ")), Some("x".into()));
        assert_eq!(lenient_string(&json!("")), None);
        assert_eq!(lenient_string(&Value::Null), None);
    }

    #[test]
    fn replies_are_decoded_leniently() {
        let done = decode(json!({"status": "COMPLETE", "data": [{"a": 1}, 7, null],
                             "paging": {"pagesFiltered": "3"}}))
        .unwrap();
        let Status::Complete(r) = done else {
            panic!("not complete")
        };
        assert_eq!(r.data.len(), 1);
        assert_eq!(r.pages, Some(3));
        assert!(matches!(
            decode(json!({"status": "executing"})),
            Ok(Status::Executing)
        ));
        assert!(matches!(
            decode(json!({"status": "ERROR", "msg": "boom"})),
            Ok(Status::Error(m)) if m == "boom"
        ));
        let Ok(Status::Complete(r)) = decode(json!({"data": null, "status": "COMPLETE"})) else {
            panic!("null data")
        };
        assert!(r.data.is_empty() && r.pages.is_none());
        assert!(decode(json!({"status": "WEIRD"})).is_err());
        assert!(decode(json!([1])).is_err());
        assert!(decode(json!({"status": "COMPLETE", "data": {"Tables": []}})).is_err());
    }

    #[test]
    fn rows_follow_observation_order_within_a_chunk() {
        let rows: Vec<Map<String, Value>> = [
            json!({"n": 1, "parent_obsid": "b"}),
            json!({"n": 2, "obsID": 7}),
            json!({"n": 3, "parent_obsid": "a"}),
            json!({"n": 4, "parent_obsid": "b"}),
            json!({"n": 5, "parent_obsid": "zzz"}),
        ]
        .into_iter()
        .map(|v| v.as_object().unwrap().clone())
        .collect();
        let chunk = ["a".to_string(), "b".to_string(), "7".to_string()];
        let order: Vec<i64> = in_observation_order(rows, &chunk)
            .iter()
            .map(|r| r["n"].as_i64().unwrap())
            .collect();
        assert_eq!(order, [3, 1, 4, 2, 5]);
    }

    #[test]
    fn filters_run_before_dedupe() {
        let rows: Vec<Map<String, Value>> = [
            prod(
                "1",
                "x_cal.fits",
                "AUXILIARY",
                json!(2),
                Value::Null,
                json!(1),
            ),
            prod("2", "x_cal.fits", "SCIENCE", json!(2), json!(MRP), json!(1)),
            json!({"productFilename": "no_uri.fits"}),
            json!({"dataURI": "mast:HST/product/a.fits"}),
            json!({"dataURI": "mast:HST/product/a.fits"}),
        ]
        .into_iter()
        .map(|v| v.as_object().unwrap().clone())
        .collect();
        let c = Criteria {
            product_type: vec!["Science".into()],
            ..Criteria::default()
        };
        let got = select(&rows, &c);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].obs_id.as_deref(), Some("obs2"));
        let all = select(&rows, &Criteria::default());
        let uris: Vec<&str> = all.iter().map(|p| p.data_uri.as_str()).collect();
        assert_eq!(
            uris,
            ["mast:JWST/product/x_cal.fits", "mast:HST/product/a.fits"]
        );
    }

    #[test]
    fn table_and_entries_carry_every_column() {
        let full = Product {
            data_uri: "mast:JWST/product/a,b.fits".into(),
            obs_collection: Some("JWST".into()),
            obs_id: Some("jw1".into()),
            product_filename: Some("a,b.fits".into()),
            size: Some(42),
            product_type: Some("SCIENCE".into()),
            calib_level: Some(2),
            group: Some(MRP.into()),
        };
        let bare = Product {
            data_uri: "mast:HST/product/x.fits".into(),
            obs_collection: None,
            obs_id: None,
            product_filename: None,
            size: None,
            product_type: None,
            calib_level: None,
            group: None,
        };
        let mut out = Vec::new();
        write_table(&mut out, &[full.clone(), bare.clone()]).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "dataURI,obs_collection,obs_id,productFilename,size,productType,calib_level,\
         productGroupDescription\n\
         \"mast:JWST/product/a,b.fits\",JWST,jw1,\"a,b.fits\",42,SCIENCE,2,\
         Minimum Recommended Products\n\
         mast:HST/product/x.fits,,,,,,,\n"
        );
        assert_eq!(crate::input::detect(&text), crate::input::Kind::Csv);

        let origin = Origin {
            file: "<search>".into(),
            line: 2,
        };
        let entry = full.to_entry(origin.clone());
        assert_eq!(
            entry,
            Entry {
                uri: "mast:JWST/product/a,b.fits".into(),
                url: None,
                local: LocalHint::Parts {
                    collection: Some("JWST".into()),
                    obs_id: Some("jw1".into()),
                    filename: Some("a,b.fits".into()),
                },
                size: Some(42),
                meta: ProductMeta {
                    product_type: Some("SCIENCE".into()),
                    calib_level: Some(2),
                    group: Some(MRP.into()),
                    judged: true,
                },
                origin,
            }
        );
        assert_eq!(
            bare.to_entry(Origin {
                file: "f".into(),
                line: 3
            })
            .local,
            LocalHint::None
        );
    }

    #[test]
    fn the_table_reader_reads_back_what_to_entry_gives() {
        let products = vec![
            Product {
                data_uri: "mast:JWST/product/jw1_cal.fits".into(),
                obs_collection: Some("JWST".into()),
                obs_id: Some("jw01073-o001_t001".into()),
                product_filename: Some("jw1_cal.fits".into()),
                size: Some(123_456_789_012),
                product_type: Some("SCIENCE".into()),
                calib_level: Some(2),
                group: Some(MRP.into()),
            },
            Product {
                data_uri: "mast:HST/product/\"odd\", name.fits".into(),
                obs_collection: None,
                obs_id: Some("x".into()),
                product_filename: None,
                size: None,
                product_type: Some("AUXILIARY".into()),
                calib_level: None,
                group: None,
            },
            Product {
                data_uri: "mast:HST/product/y.fits".into(),
                obs_collection: None,
                obs_id: None,
                product_filename: None,
                size: Some(0),
                product_type: None,
                calib_level: Some(0),
                group: None,
            },
        ];
        let mut out = Vec::new();
        write_table(&mut out, &products).unwrap();
        let text = String::from_utf8(out).unwrap();
        let read = crate::input::table::parse_csv("t.csv", &text).unwrap();
        let want: Vec<Entry> = products
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.to_entry(Origin {
                    file: "t.csv".into(),
                    line: i + 2,
                })
            })
            .collect();
        assert_eq!(read, want);
    }
}
