//! Progress and messages: the core emits events to a [`Reporter`]; only
//! this module knows indicatif, plain log lines or JSON.
//!
//! Three renderings of the same facts: [`Bars`] for a person at a terminal,
//! [`Lines`] for logs (CI, cron: no escape codes, one line per finished
//! file and a summary), and [`Json`] (one object per event on stderr).
//! Everything printed here goes to stderr; stdout is for data.
//!
//! Every line goes through [`say`]: a stderr its reader closed (`2>&1 |
//! head -1`) loses the line and nothing else. `eprintln!` would panic
//! there, so it is denied crate-wide (`clippy::print_stderr`).

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::layout::escape;
use crate::manifest::{human_bytes, FileRecord, Status};

/// How serious a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(&self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Where a new MAST token is made.
pub(crate) const NEW_TOKEN_PAGE: &str = "https://auth.mast.stsci.edu/token";

/// The run's totals.
#[derive(Debug, Clone, Default)]
pub(crate) struct Summary {
    pub(crate) complete: usize,
    pub(crate) skipped: usize,
    pub(crate) failed: usize,
    /// Body bytes transferred.
    pub(crate) bytes: u64,
    pub(crate) elapsed: Duration,
    pub(crate) interrupted: bool,
    /// INTERRUPTED rows whose transfer the interruption cut short (`.part` kept).
    pub(crate) cut_short: usize,
    /// INTERRUPTED rows the interruption kept from starting, or from
    /// receiving any byte (nothing kept: the next run starts them anew).
    pub(crate) not_started: usize,
    /// Every FAILED file failed for want of a valid token (exit 4).
    pub(crate) wants_token: bool,
}

impl Summary {
    /// Returns the summary line: `N complete, M skipped, K failed, X in T (R/s)`.
    pub(crate) fn line(&self) -> String {
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            (self.bytes as f64 / secs) as u64
        } else {
            0
        };
        let interrupted = if self.interrupted {
            format!(
                " (interrupted: {} cut short with their .part kept, {} not started)",
                self.cut_short, self.not_started
            )
        } else {
            String::new()
        };
        let token = if self.wants_token {
            format!("; every failure wants a valid MAST token (none given, rejected or expired): make a new one at {NEW_TOKEN_PAGE}")
        } else {
            String::new()
        };
        format!(
            "{} complete, {} skipped, {} failed, {} in {:.1}s ({}/s){interrupted}{token}",
            self.complete,
            self.skipped,
            self.failed,
            human_bytes(self.bytes),
            secs,
            human_bytes(rate),
        )
    }
}

/// Writes `line` and a line break to stderr, ignoring a stderr that is
/// gone: losing the terminal never changes a run's outcome.
pub fn say(line: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Receives the run's events. Every method has a do-nothing default.
pub(crate) trait Reporter: Send + Sync {
    /// The plan is built: `files` to consider, `to_fetch` of them not yet complete.
    fn planned(&self, _files: usize, _to_fetch: usize) {}
    /// A transfer's body starts (`offset` bytes were already there).
    fn started(&self, _id: usize, _label: &str, _total: Option<u64>, _offset: u64) {}
    /// `bytes` more arrived.
    fn progress(&self, _id: usize, _bytes: u64) {}
    /// A transfer failed and will be tried again after `delay`.
    fn retrying(&self, _id: usize, _label: &str, _attempt: u32, _reason: &str, _delay: Duration) {}
    /// A file reached its final status.
    fn finished(&self, _id: Option<usize>, _row: &FileRecord, _elapsed: Duration) {}
    /// Returns false when [`Reporter::finished`] would say nothing of a
    /// file that ended with `status` (its row need not be built).
    fn shows(&self, _status: Status) -> bool {
        true
    }
    /// A message for the user.
    fn message(&self, _level: Level, _text: &str) {}
    /// The run is over.
    fn summary(&self, _s: &Summary) {}
    /// Runs `f` (a terminal prompt) with the bars hidden.
    fn suspend(&self, f: &mut dyn FnMut()) {
        f()
    }
}

/// Human log lines on stderr, for CI and cron: no escape codes.
pub(crate) struct Lines {
    /// `--quiet`: only errors and the summary.
    pub(crate) quiet: bool,
}

fn finished_line(row: &FileRecord, elapsed: Duration) -> String {
    let mut line = format!("{:<8} {}", row.status.as_str(), escape(&row.path));
    if row.status == Status::Complete {
        line.push_str(&format!(
            " ({}, {:.1}s)",
            human_bytes(row.bytes),
            elapsed.as_secs_f64()
        ));
    }
    if let Some(m) = &row.message {
        line.push_str(": ");
        line.push_str(&escape(m));
    }
    line
}

impl Reporter for Lines {
    fn retrying(&self, _id: usize, label: &str, attempt: u32, reason: &str, delay: Duration) {
        if !self.quiet {
            say(format_args!(
                "retry    {} (attempt {} after {}): waiting {:.1}s",
                escape(label),
                attempt + 1,
                escape(reason),
                delay.as_secs_f64()
            ));
        }
    }
    fn finished(&self, _id: Option<usize>, row: &FileRecord, elapsed: Duration) {
        if self.shows(row.status) {
            say(finished_line(row, elapsed));
        }
    }
    fn shows(&self, status: Status) -> bool {
        !self.quiet || matches!(status, Status::Failed | Status::Interrupted)
    }
    fn message(&self, level: Level, text: &str) {
        if !self.quiet || level == Level::Error {
            say(format_args!("{}: {}", level.as_str(), escape(text)));
        }
    }
    fn summary(&self, s: &Summary) {
        say(s.line());
    }
}

/// One JSON object per event on stderr (`--log-format json`).
pub(crate) struct Json;

/// Prints a run-ending error as a JSON event (`--log-format json`).
pub fn json_error(message: &str, exit: i32) {
    emit(json!({"ts": ts(), "event": "error", "message": message, "exit": exit}));
}

/// Prints one JSON event on stderr, every registered secret scrubbed.
pub(crate) fn emit(v: serde_json::Value) {
    say(crate::token::scrub(&v.to_string()));
}

/// Returns an event's timestamp (RFC 3339, UTC).
pub(crate) fn ts() -> String {
    crate::manifest::now_rfc3339()
}

impl Reporter for Json {
    fn planned(&self, files: usize, to_fetch: usize) {
        emit(json!({"ts": ts(), "event": "plan", "files": files, "to_fetch": to_fetch}));
    }
    fn started(&self, id: usize, label: &str, total: Option<u64>, offset: u64) {
        emit(
            json!({"ts": ts(), "event": "start", "id": id, "path": label, "total": total, "offset": offset}),
        );
    }
    fn retrying(&self, id: usize, label: &str, attempt: u32, reason: &str, delay: Duration) {
        emit(
            json!({"ts": ts(), "event": "retry", "id": id, "path": label, "attempt": attempt,
            "reason": reason, "delay_ms": delay.as_millis() as u64}),
        );
    }
    fn finished(&self, id: Option<usize>, row: &FileRecord, elapsed: Duration) {
        // Files that were not transferred (skipped) have no transfer id.
        emit(
            json!({"ts": ts(), "event": "finish", "id": id, "uri": row.uri, "path": row.path,
            "status": row.status, "bytes": row.bytes, "http_status": row.http_status,
            "attempts": row.attempts, "source": row.source, "message": row.message,
            "duration_ms": elapsed.as_millis() as u64}),
        );
    }
    fn message(&self, level: Level, text: &str) {
        emit(json!({"ts": ts(), "event": "message", "level": level.as_str(), "message": text}));
    }
    fn summary(&self, s: &Summary) {
        emit(
            json!({"ts": ts(), "event": "summary", "complete": s.complete, "skipped": s.skipped,
            "failed": s.failed, "bytes": s.bytes, "duration_ms": s.elapsed.as_millis() as u64,
            "interrupted": s.cut_short + s.not_started, "cut_short": s.cut_short,
            "not_started": s.not_started, "stopped": s.interrupted,
            "wants_token": s.wants_token,
            "new_token": s.wants_token.then_some(NEW_TOKEN_PAGE)}),
        );
    }
}

/// indicatif bars: an overall bar (files, bytes, rate, ETA) and one line
/// per active transfer.
pub(crate) struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    active: Mutex<HashMap<usize, ProgressBar>>,
    /// Files finished, and the files to fetch once the plan is known.
    files: Mutex<FileCount>,
    quiet: bool,
}

/// The overall bar's file count.
#[derive(Debug, Default)]
struct FileCount {
    done: usize,
    total: Option<usize>,
}

impl Bars {
    /// Returns bars drawn on stderr.
    pub(crate) fn new(quiet: bool) -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        Bars {
            multi,
            overall,
            active: Mutex::new(HashMap::new()),
            files: Mutex::new(FileCount::default()),
            quiet,
        }
    }

    fn transfer_style() -> ProgressStyle {
        ProgressStyle::with_template(
            "  {msg:40!} {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
    }
}

impl Reporter for Bars {
    fn planned(&self, files: usize, to_fetch: usize) {
        self.overall.set_prefix(format!("0/{to_fetch} files"));
        self.overall.set_length(0);
        let _ = files;
        if let Ok(mut f) = self.files.lock() {
            *f = FileCount {
                done: 0,
                total: Some(to_fetch),
            };
        }
    }
    fn started(&self, id: usize, label: &str, total: Option<u64>, offset: u64) {
        if let Some(t) = total {
            self.overall.inc_length(t.saturating_sub(offset));
        }
        let bar = self.multi.add(ProgressBar::new(total.unwrap_or(0)));
        bar.set_style(Self::transfer_style());
        bar.set_position(offset);
        bar.set_message(escape(label));
        if let Ok(mut a) = self.active.lock() {
            if let Some(old) = a.insert(id, bar) {
                old.finish_and_clear();
                self.multi.remove(&old);
            }
        }
    }
    fn progress(&self, id: usize, bytes: u64) {
        self.overall.inc(bytes);
        if let Ok(a) = self.active.lock() {
            if let Some(b) = a.get(&id) {
                b.inc(bytes);
            }
        }
    }
    fn retrying(&self, id: usize, label: &str, attempt: u32, reason: &str, delay: Duration) {
        if let Ok(mut a) = self.active.lock() {
            if let Some(b) = a.remove(&id) {
                b.finish_and_clear();
                self.multi.remove(&b);
            }
        }
        if !self.quiet {
            let _ = self.multi.println(format!(
                "retry    {} (attempt {} after {}): waiting {:.1}s",
                escape(label),
                attempt + 1,
                escape(reason),
                delay.as_secs_f64()
            ));
        }
    }
    fn finished(&self, id: Option<usize>, row: &FileRecord, elapsed: Duration) {
        if let (Ok(mut a), Some(id)) = (self.active.lock(), id) {
            if let Some(b) = a.remove(&id) {
                b.finish_and_clear();
                self.multi.remove(&b);
            }
        }
        if let Ok(mut f) = self.files.lock() {
            f.done += 1;
            let total = f.total.map(|t| t.to_string()).unwrap_or_default();
            self.overall
                .set_prefix(format!("{}/{} files", f.done, total));
        }
        if matches!(row.status, Status::Failed | Status::Interrupted) {
            let _ = self.multi.println(finished_line(row, elapsed));
        }
    }
    fn message(&self, level: Level, text: &str) {
        if !self.quiet || level == Level::Error {
            let _ = self
                .multi
                .println(format!("{}: {}", level.as_str(), escape(text)));
        }
    }
    fn summary(&self, s: &Summary) {
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
        say(s.line());
    }
    fn suspend(&self, f: &mut dyn FnMut()) {
        self.multi.suspend(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_shape() {
        let s = Summary {
            complete: 2,
            skipped: 1,
            failed: 0,
            bytes: 2048,
            elapsed: Duration::from_secs(2),
            interrupted: false,
            cut_short: 0,
            not_started: 0,
            wants_token: false,
        };
        assert_eq!(
            s.line(),
            "2 complete, 1 skipped, 0 failed, 2.00 KiB in 2.0s (1.00 KiB/s)"
        );
        let cut = Summary {
            failed: 1,
            interrupted: true,
            cut_short: 4,
            not_started: 24,
            ..s
        };
        assert_eq!(
            cut.line(),
            "2 complete, 1 skipped, 1 failed, 2.00 KiB in 2.0s (1.00 KiB/s) (interrupted: 4 cut short with their .part kept, 24 not started)"
        );
        let token = Summary {
            failed: 3,
            wants_token: true,
            ..s
        };
        assert!(token
            .line()
            .ends_with("make a new one at https://auth.mast.stsci.edu/token"));
    }
}
