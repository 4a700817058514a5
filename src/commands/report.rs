//! `mastdl report DEST`: merges the shard manifests (`MANIFEST.K-of-N.json`)
//! that `fetch --shard` runs left in DEST into `MANIFEST.json` and
//! `MANIFEST.HTML`, and says whether the whole pull is complete.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::Context as _;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::dest;
use crate::error::{Exit, UsageError};
use crate::manifest::{self, Bar, HtmlContext, Manifest, Status, Timing};
use crate::plan::Shard;
use crate::progress::say;

/// Returns `(k, n)` for a file named `MANIFEST.K-of-N.json`.
pub(crate) fn shard_of_name(name: &str) -> Option<(u32, u32)> {
    let tag = name.strip_prefix("MANIFEST.")?.strip_suffix(".json")?;
    let (k, n) = tag.split_once("-of-")?;
    let (k, n) = (k.parse().ok()?, n.parse().ok()?);
    (k < n && n <= crate::plan::MAX_SHARDS).then_some((k, n))
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// Merges the shard manifests in `dest`. Returns [`Exit::Failed`] when a
/// file failed, a shard's manifest is missing, or a shard is still running.
pub(crate) fn report(dest: &Path) -> anyhow::Result<Exit> {
    let (n, shards) = read_shards(dest)?;
    let missing: Vec<u32> = (0..n).filter(|k| !shards.contains_key(k)).collect();
    let running: Vec<String> = (0..n)
        .map(|k| Shard { k, n })
        .filter(|s| dest::shard_running(dest, *s))
        .map(|s| s.to_string())
        .collect();
    let bars = timeline(&shards, n);
    let started = shards.values().map(|m| m.started.clone()).min();
    let finished = shards.values().map(|m| m.finished.clone()).max();
    let bytes = shards.values().map(|m| m.bytes).sum();
    // Every shard reads the same inputs: their notes are said once.
    let mut notes: Vec<String> = Vec::new();
    for note in shards.values().flat_map(|m| &m.notes) {
        if !notes.contains(note) {
            notes.push(note.clone());
        }
    }
    let files: Vec<_> = shards.into_values().flat_map(|m| m.files).collect();
    let mut merged = Manifest::new(
        started.unwrap_or_default(),
        finished.unwrap_or_default(),
        bytes,
        files,
    );
    merged.notes = notes;
    let seconds = bars.iter().map(|b| b.timing.end_ms).max().unwrap_or(0) as f64 / 1000.0;
    let ctx = HtmlContext {
        user: "(see each shard)".into(),
        seconds,
        transfers: bars.len(),
        bars,
    };
    let saved = manifest::save(dest, "MANIFEST", &merged, &ctx);
    if let Some(e) = saved.error(dest, "MANIFEST") {
        say(format_args!("error: {e}"));
    }
    say(format_args!(
        "{} of {n} shards: {} requested, {} complete, {} skipped, {} failed, {} transferred",
        n as usize - missing.len(),
        merged.requested,
        merged.complete,
        merged.skipped,
        merged.failed,
        manifest::human_bytes(merged.bytes)
    ));
    if !running.is_empty() {
        say(format_args!(
            "error: still running (their manifests are not final): {}",
            running.join(", ")
        ));
    }
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|k| format!("{k}/{n}")).collect();
        say(format_args!(
            "error: missing shard manifests: {}",
            list.join(", ")
        ));
    }
    let written = saved.json.is_ok() && saved.html.is_ok();
    let clean = merged.failed == 0 && missing.is_empty() && running.is_empty() && written;
    Ok(if clean { Exit::Success } else { Exit::Failed })
}

/// Reads DEST's shard manifests: the shard count N and each shard's
/// manifest by K. Fails when there are none, or of different counts.
fn read_shards(dest: &Path) -> anyhow::Result<(u32, BTreeMap<u32, Manifest>)> {
    let entries = fs::read_dir(dest)
        .map_err(|e| UsageError(format!("Cannot read `{}`: {e}", dest.display())))?;
    let mut by_n: BTreeMap<u32, BTreeMap<u32, Manifest>> = BTreeMap::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some((k, n)) = shard_of_name(&name) {
            let m = manifest::load(&e.path())
                .with_context(|| format!("Cannot read `{}`", e.path().display()))?;
            by_n.entry(n).or_default().insert(k, m);
        }
    }
    match by_n.len() {
        0 => Err(UsageError(format!(
            "No shard manifests (`MANIFEST.K-of-N.json`) in `{}`: run `mastdl fetch --shard K/N -d {}` first",
            dest.display(),
            dest.display()
        ))
        .into()),
        1 => Ok(by_n.pop_first().unwrap_or_default()),
        _ => {
            let ns: Vec<String> = by_n.keys().map(|n| n.to_string()).collect();
            Err(UsageError(format!(
                "`{}` holds manifests of different shard counts (N = {}): remove the stale ones",
                dest.display(),
                ns.join(", ")
            ))
            .into())
        }
    }
}

/// Returns the merged timeline: one bar per shard, from the earliest start.
fn timeline(shards: &BTreeMap<u32, Manifest>, n: u32) -> Vec<Bar> {
    let t0 = shards.values().filter_map(|m| parse_time(&m.started)).min();
    let ms = |s: &str| -> u64 {
        match (t0, parse_time(s)) {
            (Some(a), Some(b)) => (b - a).whole_milliseconds().max(0) as u64,
            _ => 0,
        }
    };
    shards
        .iter()
        .map(|(k, m)| Bar {
            label: format!("shard {k}/{n} ({} files)", m.requested),
            status: if m.failed > 0 {
                Status::Failed
            } else {
                Status::Complete
            },
            timing: Timing {
                start_ms: ms(&m.started),
                end_ms: ms(&m.finished).max(ms(&m.started) + 1),
                received: m.bytes,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names() {
        assert_eq!(shard_of_name("MANIFEST.0-of-3.json"), Some((0, 3)));
        assert_eq!(shard_of_name("MANIFEST.12-of-16.json"), Some((12, 16)));
        assert_eq!(shard_of_name("MANIFEST.3-of-3.json"), None);
        assert_eq!(shard_of_name("MANIFEST.0-of-4294967295.json"), None);
        assert_eq!(shard_of_name("MANIFEST.json"), None);
        assert_eq!(shard_of_name("MANIFEST.0-of-3.HTML"), None);
    }
}
