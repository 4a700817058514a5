//! Exit codes, named; the errors that cross module boundaries (a usage
//! error, a failed transfer); and how errors are shown. A leaf: it uses no
//! other module of the crate.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// Every FAILED file failed for want of a valid token (none given,
    /// rejected or expired): a cron job can alert "renew the token".
    NeedsToken = 4,
    /// Interrupted by SIGINT (Ctrl-C).
    Interrupted = 130,
    /// Terminated by SIGTERM.
    Terminated = 143,
}

/// A usage error found after parsing (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub String);

/// Returns an error and its causes on one line, each cause once.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
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
pub(crate) fn excerpt(text: &str) -> String {
    // Secrets go before the cut, or a cut one would survive in part.
    let text = crate::token::scrub(text);
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransferError {
    /// The server answered with an error status.
    #[error("HTTP {status}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Status {
        status: u16,
        retry_after: Option<Duration>,
        detail: Option<String>,
        /// The URL that answered (the last hop, after redirects): whether
        /// a refusal is about the token depends on whether that host would
        /// be given the token.
        from: Option<Box<url::Url>>,
    },
    /// The connection failed.
    #[error("{message}")]
    Network { message: String, fatal: bool },
    /// No bytes arrived for the stall timeout.
    #[error("stalled: no data for {}s", .0.as_secs())]
    Stall(Duration),
    /// The body ended before its announced length.
    #[error("truncated body: got {got} of {expected} bytes")]
    Truncated { got: u64, expected: u64 },
    /// The body ran past its announced length.
    #[error("server sent more than the {expected} bytes it announced")]
    TooLong { expected: u64 },
    /// A 206 answered a range other than the one asked for.
    #[error("{0}")]
    RangeMismatch(String),
    /// A 200 whose body is an error page instead of the product.
    #[error("error page instead of the file: {0}")]
    ErrorPage(String),
    /// The server's size differs from the one the input promised.
    #[error("server size {got} differs from the expected size {expected}")]
    SizeMismatch { expected: u64, got: u64 },
    /// The bytes' MD5 differs from the object's ETag.
    #[error("MD5 mismatch: ETag says {expected}, the bytes hash to {got}")]
    Md5Mismatch { expected: String, got: String },
    /// A redirect could not be followed.
    #[error("{0}")]
    Redirect(String),
    /// The local disk failed.
    #[error("cannot write `{}`: {source}", path.display())]
    Disk { path: PathBuf, source: io::Error },
    /// A body of unknown length ended with the connection: a cut cannot be
    /// told from the end.
    #[error("the server sent no length and closed the connection: the end of the file cannot be told from a cut, so it is not saved")]
    NoLength,
    /// A body read whole was larger than mastdl accepts.
    #[error("the server's answer is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    /// The run was interrupted.
    #[error("interrupted")]
    Interrupted,
}

impl TransferError {
    /// Returns the HTTP status behind the error, if any.
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            TransferError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Returns the URL that answered with an error status, if any.
    pub(crate) fn answered_by(&self) -> Option<&url::Url> {
        match self {
            TransferError::Status { from, .. } => from.as_deref(),
            _ => None,
        }
    }

    /// Returns true if and only if the local disk (or quota) is full.
    pub(crate) fn is_disk_full(&self) -> bool {
        matches!(self, TransferError::Disk { source, .. }
            if matches!(source.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded))
    }

    /// Returns the error for a local disk failure at `path`.
    pub(crate) fn disk(path: &Path, source: io::Error) -> TransferError {
        TransferError::Disk {
            path: path.to_path_buf(),
            source,
        }
    }
}
