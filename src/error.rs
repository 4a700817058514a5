//! Exit codes, named, and the errors that decide them.

use crate::dest::Locked;
use crate::input::InputError;

/// The process exit codes of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every file COMPLETE or SKIPPED.
    Success = 0,
    /// At least one file FAILED.
    Failed = 1,
    /// Usage or input error; nothing downloaded.
    Usage = 2,
    /// DEST is locked by another running mastdl.
    Locked = 3,
    /// Interrupted by SIGINT (Ctrl-C).
    Interrupted = 130,
    /// Terminated by SIGTERM.
    Terminated = 143,
}

/// A usage error found after parsing (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Returns the exit code for an error that ended the run early.
pub fn exit_for(err: &anyhow::Error) -> Exit {
    if err.downcast_ref::<Locked>().is_some() {
        Exit::Locked
    } else if err.downcast_ref::<InputError>().is_some()
        || err.downcast_ref::<UsageError>().is_some()
    {
        Exit::Usage
    } else {
        Exit::Failed
    }
}

/// Returns an error and its causes on one line, each cause once.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// Returns the start of a server's body on one line (200 characters), for messages.
pub fn excerpt(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}
