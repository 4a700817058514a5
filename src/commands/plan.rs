//! `mastdl plan` (and `fetch --dry-run`): the plan on stdout, one line per
//! file (URI, URL, PATH; TAB-separated), printed as it is built; nothing
//! downloaded. A bad entry stops it with exit 2 after the lines before it.

use std::io::{self, Write};

use anyhow::Context as _;

use super::{plan_each, plan_jobs, reporter, run_http};
use crate::cloud;
use crate::error::Exit;
use crate::plan::{Job, Planned, Route};
use crate::settings::{Cloud, Settings};

/// Writes one plan line: the URL the job's route starts from.
fn line(out: &mut impl Write, j: &Job) -> io::Result<()> {
    let url = crate::layout::redact_url(j.route.url(&j.url));
    writeln!(out, "{}\t{url}\t{}", j.uri, j.rel)
}

/// Writes one plan line of a job planned as text (the same bytes as
/// [`line`], written piece by piece: no formatting, and no copy of a URL
/// that has no password to hide).
fn line_planned(out: &mut impl Write, j: &Planned) -> io::Result<()> {
    out.write_all(j.uri.as_bytes())?;
    out.write_all(b"\t")?;
    if j.url.contains('@') {
        out.write_all(crate::layout::redact_url_text(&j.url).as_bytes())?;
    } else {
        out.write_all(j.url.as_bytes())?;
    }
    out.write_all(b"\t")?;
    out.write_all(j.rel.as_bytes())?;
    out.write_all(b"\n")
}

/// Runs `plan`. A closed stdout (`| head`) ends the output quietly (the
/// caller maps a broken pipe to success).
pub(crate) async fn plan(settings: Settings) -> anyhow::Result<Exit> {
    let http = run_http(&settings)?;
    let reporter = reporter(&settings, false);
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    if settings.cloud != Cloud::Off {
        // The bucket's answer is needed before the first line; what the
        // cloud step says goes to stderr (or the JSON log), as `fetch`'s does.
        let (mut jobs, _) = plan_jobs(&settings, &http, reporter.as_ref()).await?;
        cloud::route(&mut jobs, &settings, &http, reporter.as_ref()).await?;
        for j in jobs.iter().filter(|j| j.route != Route::NotInBucket) {
            line(&mut out, j).context("Cannot write the plan")?;
        }
        out.flush().context("Cannot write the plan")?;
        return Ok(Exit::Success);
    }
    let mut written: io::Result<()> = Ok(());
    let planned = plan_each(&settings, &http, reporter.as_ref(), &mut |j| {
        if written.is_ok() {
            written = line_planned(&mut out, &j);
        }
    })
    .await;
    let flushed = written.and_then(|()| out.flush());
    planned?;
    flushed.context("Cannot write the plan")?;
    Ok(Exit::Success)
}
