//! MAST's Mashup wire format and transport: the form body of one page,
//! polling while MAST says EXECUTING, every page of a query, decoding a
//! reply, and one request through the run's client with retries.

use super::*;

/// Runs one Mashup query to the end: every page, each polled until COMPLETE.
pub(super) async fn invoke_all(
    search: &Search,
    service: &str,
    params: &Value,
    label: &str,
) -> anyhow::Result<Vec<Map<String, Value>>> {
    let cache_breaker = cache_breaker();
    let mut rows = Vec::new();
    let mut page = 1u64;
    loop {
        let what = format!("{label} page {page}");
        let body = request_body(
            service,
            params,
            search.tuning.page_size,
            page,
            &cache_breaker,
        );
        let reply = poll(search, &body, &what).await?;
        rows.extend(reply.data);
        let pages = reply.pages.unwrap_or(1);
        if page >= pages {
            return Ok(rows);
        }
        if page >= MAX_PAGES {
            bail!("{what}: MAST reports {pages} pages; giving up after {MAX_PAGES}");
        }
        page += 1;
    }
}

/// The form body `request=<JSON>` of one page.
pub(super) fn request_body(
    service: &str,
    params: &Value,
    page_size: u64,
    page: u64,
    breaker: &str,
) -> String {
    let request = json!({
        "service": service,
        "params": params,
        "format": "json",
        "pagesize": page_size,
        "page": page,
        "cacheBreaker": breaker,
    });
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("request", &request.to_string())
        .finish()
}

/// A value that makes each search new to MAST's cache: time, process and
/// a counter, so two searches in one run differ too.
pub(super) fn cache_breaker() -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "mastdl-{nanos:x}-{:x}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A decoded Mashup reply that said COMPLETE.
#[derive(Debug)]
pub(super) struct Reply {
    pub(super) data: Vec<Map<String, Value>>,
    pub(super) pages: Option<u64>,
}

pub(super) enum Status {
    Complete(Reply),
    Executing,
    Error(String),
}

/// Sends `body` until MAST stops saying EXECUTING, within the bounds.
pub(super) async fn poll(search: &Search, body: &str, what: &str) -> anyhow::Result<Reply> {
    let started = Instant::now();
    let mut polls = 0u32;
    loop {
        let value = send(search, body, what).await?;
        match decode(value).map_err(|e| anyhow!("{what}: {}", crate::token::scrub(&e)))? {
            Status::Complete(reply) => return Ok(reply),
            Status::Error(msg) => {
                bail!("{what}: MAST answered ERROR: {}", crate::token::scrub(&msg))
            }
            Status::Executing => {
                polls += 1;
                if polls > search.tuning.max_polls
                    || started.elapsed() >= search.tuning.poll_deadline
                {
                    bail!(
                        "{what}: MAST still EXECUTING after {polls} polls in {}s; \
                         try narrower criteria",
                        started.elapsed().as_secs()
                    );
                }
                tokio::time::sleep(search.tuning.poll_delay).await;
            }
        }
    }
}

/// Reads a reply's status, rows and page count.
pub(super) fn decode(value: Value) -> Result<Status, String> {
    let Value::Object(mut obj) = value else {
        return Err("the reply is not a JSON object".into());
    };
    let status = obj
        .get("status")
        .and_then(lenient_string)
        .map(|s| s.to_ascii_uppercase());
    let msg = obj.get("msg").and_then(lenient_string).unwrap_or_default();
    match status.as_deref() {
        Some("EXECUTING") => return Ok(Status::Executing),
        Some("ERROR") => {
            let msg = if msg.is_empty() {
                "(no message)".to_string()
            } else {
                msg
            };
            return Ok(Status::Error(msg));
        }
        Some("COMPLETE") | None => {}
        Some(other) => return Err(format!("unexpected MAST status {other:?} {msg}")),
    }
    let data = match obj.remove("data") {
        Some(Value::Array(rows)) => rows
            .into_iter()
            .filter_map(|r| match r {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .collect(),
        Some(Value::Null) => Vec::new(),
        None if status.is_some() => Vec::new(),
        None => return Err("the reply has neither a status nor data".into()),
        Some(_) => return Err("the reply's data is not a list of rows".into()),
    };
    let pages = obj
        .get("paging")
        .and_then(|p| p.get("pagesFiltered"))
        .and_then(lenient_u64);
    Ok(Status::Complete(Reply { data, pages }))
}

/// Sends one request, retrying transport errors and 5xx/408/429 answers.
pub(super) async fn send(search: &Search, body: &str, what: &str) -> anyhow::Result<Value> {
    retry::with_retries(search.tuning.attempts, &search.tuning.backoff, || {
        send_once(search, body)
    })
    .await
    .map_err(|f| anyhow!("{what}: {}", crate::token::scrub(&f.message())))
}

async fn send_once(search: &Search, body: &str) -> Result<Value, Failure> {
    let req = Req {
        method: Method::POST,
        headers: search.headers.clone(),
        body: Some(body.to_string()),
        timeout: Some(search.tuning.request_timeout),
        ..Req::get(
            &search.url,
            Creds {
                token: search.token.as_ref(),
                cookie: true,
            },
        )
    };
    let stall = search.http.stall.max(search.tuning.request_timeout);
    let text = search.http.send_once(req, MAX_PAGE, stall).await?;
    serde_json::from_str(&text).map_err(|e| Failure {
        transient: false,
        retry_after: None,
        message: format!("the reply is not JSON ({e}): {}", excerpt(&text)),
    })
}
