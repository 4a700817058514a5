//! The manifest: what was requested and what became of it, as
//! `MANIFEST.json` (for machines) and `MANIFEST.HTML` (for people).
//!
//! Both are written atomically (temporary file, then rename), also when
//! files failed or the run was interrupted. The HTML is self-contained:
//! inline CSS and SVG, no scripts, every value escaped.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Where a job's bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The MAST archive (or, from a script, the URL it names).
    Mast,
    /// MAST's public AWS Open Data bucket.
    Cloud,
}

/// What became of one requested file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Complete,
    Skipped,
    Failed,
    /// Cut short or kept from starting by SIGINT/SIGTERM (the `.part`, if
    /// any, is kept for the next run).
    Interrupted,
}

impl Status {
    /// Returns the status as the manifest spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Complete => "COMPLETE",
            Status::Skipped => "SKIPPED",
            Status::Failed => "FAILED",
            Status::Interrupted => "INTERRUPTED",
        }
    }
}

/// One row of the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    pub uri: String,
    pub url: String,
    pub path: String,
    pub status: Status,
    /// The file's size (0 when there is no file).
    pub bytes: u64,
    pub http_status: Option<u16>,
    pub attempts: u32,
    pub message: Option<String>,
    pub source: Source,
}

/// When a file's transfer ran, relative to the run's start (for the timeline).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timing {
    pub start_ms: u64,
    pub end_ms: u64,
    /// Body bytes received.
    pub received: u64,
}

/// One bar of the HTML timeline: a file's transfer, or a whole shard.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    pub status: Status,
    pub timing: Timing,
}

/// The whole manifest, exactly the contract's schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub tool: String,
    pub version: String,
    pub started: String,
    pub finished: String,
    pub requested: usize,
    pub complete: usize,
    pub skipped: usize,
    pub failed: usize,
    /// Files the interruption cut short or kept from starting (absent in
    /// manifests written before the status existed).
    #[serde(default)]
    pub interrupted: usize,
    /// Body bytes this run transferred.
    pub bytes: u64,
    /// What the plan left out and why (links a wget listing skipped);
    /// absent when there is nothing to say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub files: Vec<FileRecord>,
}

impl Manifest {
    /// Returns a manifest for `files`, with the totals counted.
    pub fn new(started: String, finished: String, bytes: u64, files: Vec<FileRecord>) -> Manifest {
        let count = |s: Status| files.iter().filter(|f| f.status == s).count();
        Manifest {
            tool: "mastdl".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            started,
            finished,
            requested: files.len(),
            complete: count(Status::Complete),
            skipped: count(Status::Skipped),
            failed: count(Status::Failed),
            interrupted: count(Status::Interrupted),
            bytes,
            notes: Vec::new(),
            files,
        }
    }
}

/// Extra facts for the HTML page.
#[derive(Debug, Clone, Default)]
pub struct HtmlContext {
    /// The "Logged In User": MAST's ezid, or `anonymous`.
    pub user: String,
    /// Seconds the run took.
    pub seconds: f64,
    /// The timeline's bars.
    pub bars: Vec<Bar>,
    /// Per-row access note (`public`, `token`, `denied`).
    pub access: Vec<String>,
}

/// Returns the current time as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(0)
        .unwrap_or(now)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Writes `bytes` to `path` atomically: a temporary file beside it with an
/// unpredictable name, created exclusively (never through a planted
/// symlink), synced, then renamed over `path` (a rename replaces a symlink
/// at `path`, it does not follow it). On any failure the temporary file is
/// removed. The file is created as every other file is: mode 0666 less the
/// umask (a temporary file's usual 0600 would survive the rename, and a
/// mirror shared with a group or served by a web server could not read it).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        // Handed to open(2), which takes the umask off.
        builder.permissions(fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Writes `DEST/<stem>.json` and `DEST/<stem>.HTML`, every registered
/// secret scrubbed (a server may have echoed the token into a message).
pub fn save(dest: &Path, stem: &str, m: &Manifest, ctx: &HtmlContext) -> io::Result<()> {
    fs::create_dir_all(dest)?;
    let json = serde_json::to_string_pretty(m).map_err(io::Error::other)?;
    write_atomic(
        &dest.join(format!("{stem}.json")),
        crate::token::scrub(&json).as_bytes(),
    )?;
    let page = html(m, ctx);
    write_atomic(
        &dest.join(format!("{stem}.HTML")),
        crate::token::scrub(&page).as_bytes(),
    )
}

/// Reads a manifest JSON file.
pub fn load(path: &Path) -> anyhow::Result<Manifest> {
    let text = fs::read(path)?;
    Ok(serde_json::from_slice(&text)?)
}

/// Returns `s` escaped for HTML text and attributes.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => {
                let _ = write!(out, "&#{};", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Returns a relative link for a `/`-separated path, percent-encoded.
fn href(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            percent_encoding::utf8_percent_encode(seg, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Returns a byte count for people: `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em}table{border-collapse:collapse;font-size:.85em}\
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}\
th{background:#eee}td.n{text-align:right}.COMPLETE{color:#1a7f37}.SKIPPED{color:#555}\
.FAILED{color:#c62828;font-weight:bold}.INTERRUPTED{color:#ef6c00}dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}\
dt{font-weight:bold}svg{border:1px solid #ccc;background:#fafafa}";

/// Returns the HTML page.
pub fn html(m: &Manifest, ctx: &HtmlContext) -> String {
    let e = escape_html;
    let mut h = String::with_capacity(512 + m.files.len() * 400);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>MAST download manifest</title>\
<style>{CSS}</style></head><body>\n<h1>MAST download manifest</h1>\n<h2>Total Files: {}</h2>\n<dl>\
<dt>Tool</dt><dd>{} {}</dd><dt>Started</dt><dd>{}</dd><dt>Finished</dt><dd>{}</dd>\
<dt>Duration</dt><dd>{:.1} s</dd><dt>Logged In User</dt><dd>{}</dd><dt>Requested</dt><dd>{}</dd>\
<dt>Complete</dt><dd>{}</dd><dt>Skipped</dt><dd>{}</dd><dt>Failed</dt><dd>{}</dd>\
<dt>Interrupted</dt><dd>{}</dd><dt>Transferred</dt><dd>{} ({} bytes)</dd></dl>\n",
        m.requested,
        e(&m.tool),
        e(&m.version),
        e(&m.started),
        e(&m.finished),
        ctx.seconds,
        e(&ctx.user),
        m.requested,
        m.complete,
        m.skipped,
        m.failed,
        m.interrupted,
        human_bytes(m.bytes),
        m.bytes
    );
    if !m.notes.is_empty() {
        h.push_str("<h2>Notes</h2>\n<ul>\n");
        for n in &m.notes {
            let _ = writeln!(h, "<li>{}</li>", e(n));
        }
        h.push_str("</ul>\n");
    }
    h.push_str(&timeline(ctx));
    h.push_str(
        "<table>\n<tr><th>URI</th><th>File</th><th>Access</th><th>Status</th><th>Logged In User</th>\
<th>Size</th><th>HTTP</th><th>Attempts</th><th>Source</th><th>Message</th></tr>\n",
    );
    for (i, f) in m.files.iter().enumerate() {
        let access = ctx.access.get(i).map(String::as_str).unwrap_or("");
        let file = if matches!(f.status, Status::Failed | Status::Interrupted) {
            e(&f.path)
        } else {
            format!("<a href=\"{}\">{}</a>", e(&href(&f.path)), e(&f.path))
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td class=\"n\">{}</td>\
<td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            e(&f.uri),
            file,
            e(access),
            f.status.as_str(),
            f.status.as_str(),
            e(&ctx.user),
            f.bytes,
            f.http_status.map(|s| s.to_string()).unwrap_or_default(),
            f.attempts,
            match f.source {
                Source::Mast => "mast",
                Source::Cloud => "cloud",
            },
            e(f.message.as_deref().unwrap_or(""))
        );
    }
    h.push_str("</table>\n</body></html>\n");
    h
}

/// Returns an inline SVG timeline: one bar per transfer (or shard),
/// coloured by status, with its throughput in the bar's tooltip. Empty
/// when there is nothing to show.
fn timeline(ctx: &HtmlContext) -> String {
    let bars = &ctx.bars;
    if bars.is_empty() {
        return String::new();
    }
    const MAX_BARS: usize = 500;
    let shown = &bars[..bars.len().min(MAX_BARS)];
    let end = shown
        .iter()
        .map(|b| b.timing.end_ms)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let (width, row) = (900.0, if shown.len() <= 40 { 14.0 } else { 6.0 });
    let height = shown.len() as f64 * row + 20.0;
    let mut s = String::new();
    let _ = write!(
        s,
        "<h2>Timeline</h2>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" role=\"img\" \
aria-label=\"transfer timeline\">",
        width + 10.0
    );
    for (i, b) in shown.iter().enumerate() {
        let t = b.timing;
        let x = t.start_ms as f64 / end * width;
        let w = ((t.end_ms.saturating_sub(t.start_ms)) as f64 / end * width).max(1.0);
        let secs = (t.end_ms.saturating_sub(t.start_ms)) as f64 / 1000.0;
        let rate = if secs > 0.0 {
            (t.received as f64 / secs) as u64
        } else {
            t.received
        };
        let colour = match b.status {
            Status::Complete => "#2e7d32",
            Status::Skipped => "#9e9e9e",
            Status::Failed => "#c62828",
            Status::Interrupted => "#ef6c00",
        };
        let _ = write!(
            s,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{colour}\"><title>{} {} {:.2}s {}/s</title></rect>",
            i as f64 * row,
            row - 1.0,
            escape_html(&b.label),
            b.status.as_str(),
            secs,
            human_bytes(rate)
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"0\" y=\"{:.1}\" font-size=\"11\">0 s</text><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{:.1} s</text></svg>",
        height - 4.0,
        width,
        height - 4.0,
        end / 1000.0
    );
    s.push_str(
        "<p class=\"legend\"><span style=\"color:#2e7d32\">&#9632;</span> complete \
<span style=\"color:#9e9e9e\">&#9632;</span> skipped <span style=\"color:#c62828\">&#9632;</span> failed \
<span style=\"color:#ef6c00\">&#9632;</span> interrupted \
&mdash; hover a bar for the file, its duration and throughput</p>\n",
    );
    if bars.len() > MAX_BARS {
        let _ = writeln!(
            s,
            "<p>(first {MAX_BARS} of {} transfers shown)</p>",
            bars.len()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: Status, message: Option<&str>) -> FileRecord {
        FileRecord {
            uri: "mast:HST/product/a_b.fits".into(),
            url: "https://mast.stsci.edu/api/v0.1/Download/file?uri=mast:HST/product/a_b.fits"
                .into(),
            path: "HST/a/a_b.fits".into(),
            status,
            bytes: 10,
            http_status: Some(200),
            attempts: 1,
            message: message.map(str::to_string),
            source: Source::Mast,
        }
    }

    #[test]
    fn json_has_exactly_the_contract_fields() {
        let m = Manifest::new(
            "s".into(),
            "f".into(),
            10,
            vec![record(Status::Complete, None)],
        );
        let v = serde_json::to_value(&m).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "bytes",
                "complete",
                "failed",
                "files",
                "finished",
                "interrupted",
                "requested",
                "skipped",
                "started",
                "tool",
                "version"
            ]
        );
        let f = v["files"][0].as_object().unwrap();
        let keys: Vec<&String> = f.keys().collect();
        assert_eq!(
            keys,
            [
                "attempts",
                "bytes",
                "http_status",
                "message",
                "path",
                "source",
                "status",
                "uri",
                "url"
            ]
        );
        assert_eq!(v["files"][0]["status"], "COMPLETE");
        assert_eq!(v["files"][0]["source"], "mast");
        assert!(v["files"][0]["message"].is_null());
    }

    #[test]
    fn html_escapes_hostile_values() {
        let m = Manifest::new(
            "s".into(),
            "f".into(),
            0,
            vec![record(Status::Failed, Some("<script>alert('x')</script>&"))],
        );
        let page = html(
            &m,
            &HtmlContext {
                user: "<b>".into(),
                ..Default::default()
            },
        );
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;"));
        assert!(page.contains("&lt;b&gt;"));
        assert!(page.contains("Total Files: 1"));
    }

    #[test]
    fn interrupted_rows_have_their_own_word_and_count() {
        let m = Manifest::new(
            "s".into(),
            "f".into(),
            0,
            vec![
                record(Status::Interrupted, Some("not started")),
                record(Status::Failed, None),
            ],
        );
        assert_eq!((m.failed, m.interrupted), (1, 1));
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["files"][0]["status"], "INTERRUPTED");
        assert_eq!(v["interrupted"], 1);
    }

    #[cfg(unix)]
    #[test]
    fn write_atomic_leaves_the_mode_to_the_umask() {
        use std::os::unix::fs::PermissionsExt as _;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("MANIFEST.json");
        write_atomic(&p, b"{}").unwrap();
        // What a plain create gets here, under this process's umask.
        let plain = d.path().join("plain");
        fs::write(&plain, b"").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), mode(&plain));
    }
}
