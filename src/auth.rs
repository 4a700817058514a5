//! Who the run is: the token as the run knows it, the one-time prompt for
//! it, and `/whoami`.
//!
//! Which hosts may see credentials is decided in [`crate::transfer::http`]
//! ([`crate::transfer::Trust`]); the secret itself is [`crate::token::Token`].

use std::time::Duration;

use reqwest::Method;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::progress::{Level, Reporter};
use crate::token::{self, Token};
use crate::transfer::http::read_body;
use crate::transfer::{Creds, Http, Req, TransferError};

/// Where to get a token, for messages.
pub(crate) const TOKEN_HELP: &str =
    "set `MAST_API_TOKEN` or pass `--token` (tokens: https://auth.mast.stsci.edu/token)";

/// The longest `/whoami` may take, body included.
pub(crate) const WHOAMI_TIME: Duration = Duration::from_secs(15);
/// The largest `/whoami` answer read.
pub(crate) const WHOAMI_MAX: usize = 64 << 10;

/// The token as the run knows it, and the one-time prompt for it.
pub(crate) struct Auth {
    token: std::sync::RwLock<Option<Token>>,
    prompted: Mutex<bool>,
    interactive: bool,
}

impl Auth {
    /// Returns the run's auth state: `token` from `--token` or the
    /// environment; `interactive` when a prompt may ask for one.
    pub(crate) fn new(token: Option<Token>, interactive: bool) -> Auth {
        Auth {
            token: std::sync::RwLock::new(token),
            prompted: Mutex::new(false),
            interactive,
        }
    }

    /// Returns the token known now.
    pub(crate) fn current(&self) -> Option<Token> {
        self.token.read().ok().and_then(|t| t.clone())
    }

    /// After a 401/403 without a token: asks once for the whole run (other
    /// transfers that hit it meanwhile wait here) and returns the token.
    pub(crate) async fn ask(
        &self,
        reporter: &dyn Reporter,
        cancel: &CancellationToken,
    ) -> Option<Token> {
        let mut prompted = self.prompted.lock().await;
        if let Some(t) = self.current() {
            return Some(t);
        }
        if *prompted || !self.interactive {
            return None;
        }
        *prompted = true;
        let mut answer = None;
        tokio::task::block_in_place(|| reporter.suspend(&mut || answer = prompt_or_cancel(cancel)));
        if let (Some(t), Ok(mut slot)) = (answer.clone(), self.token.write()) {
            *slot = Some(t);
        }
        answer
    }
}

/// Asks for the token on the terminal, giving up (and giving the terminal
/// its echo back) when the run is cancelled: Ctrl-C at the prompt ends the
/// run like anywhere else, with its manifest.
fn prompt_or_cancel(cancel: &CancellationToken) -> Option<Token> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(token::prompt());
    });
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(answer) => return answer,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if !cancel.is_cancelled() => {}
            Err(_) => {
                token::restore_terminal();
                return None;
            }
        }
    }
}

/// Who MAST says the token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Identity {
    /// MAST's ezid for the token.
    User(String),
    /// MAST did not accept the token (`anon: true`).
    Anonymous,
    /// No usable answer.
    Unknown,
}

impl Identity {
    /// Returns the manifest's "Logged In User".
    pub(crate) fn label(&self) -> String {
        match self {
            Identity::User(u) => u.clone(),
            Identity::Anonymous => "anonymous".into(),
            Identity::Unknown => "unknown".into(),
        }
    }
}

/// Asks `{base}/whoami` (token in `Authorization` and the `mast_token`
/// cookie, both to trusted hosts only) who the token belongs to, within
/// [`WHOAMI_TIME`] (or the stall timeout, if shorter) in all and
/// [`WHOAMI_MAX`] bytes, or until `cancel`.
/// No answer is not an error: a warning at most.
pub(crate) async fn whoami(
    http: &Http,
    base: &url::Url,
    token: &Token,
    reporter: &dyn Reporter,
    cancel: &CancellationToken,
) -> Identity {
    let within = WHOAMI_TIME.min(http.stall);
    let asked = tokio::select! {
        r = tokio::time::timeout(within, ask_whoami(http, base, token, within)) => r,
        _ = cancel.cancelled() => return Identity::Unknown,
    };
    let value = match asked {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            reporter.message(
                Level::Warn,
                &format!("could not ask MAST who the token belongs to (`/whoami`): {e}"),
            );
            return Identity::Unknown;
        }
        Err(_) => {
            reporter.message(
                Level::Warn,
                &format!(
                    "could not ask MAST who the token belongs to (`/whoami`): no answer within {}s",
                    within.as_secs()
                ),
            );
            return Identity::Unknown;
        }
    };
    let Some(value) = value else {
        return Identity::Unknown;
    };
    if value.get("anon").and_then(|a| a.as_bool()) == Some(true) {
        reporter.message(
            Level::Warn,
            "MAST did not accept the token (expired or revoked; tokens expire after 10 days unused or 60 days after creation): public files still download, protected ones will fail; get a new token at https://auth.mast.stsci.edu/token",
        );
        return Identity::Anonymous;
    }
    value
        .get("ezid")
        .and_then(|e| e.as_str())
        .map(|e| Identity::User(crate::layout::escape(e)))
        .unwrap_or(Identity::Unknown)
}

/// Sends `/whoami` and returns its JSON, or `None` for a non-success or
/// non-JSON answer (a 404 is not an error).
async fn ask_whoami(
    http: &Http,
    base: &url::Url,
    token: &Token,
    within: Duration,
) -> Result<Option<serde_json::Value>, TransferError> {
    let url = url::Url::parse(&format!("{}/whoami", base.as_str().trim_end_matches('/')))
        .map_err(|e| TransferError::Redirect(format!("bad `/whoami` URL: {e}")))?;
    let mut answer = http
        .send(Req {
            method: Method::GET,
            timeout: Some(within),
            ..Req::get(
                &url,
                Creds {
                    token: Some(token),
                    cookie: true,
                },
            )
        })
        .await?;
    if !answer.response.status().is_success() {
        return Ok(None);
    }
    let body = read_body(&mut answer.response, WHOAMI_MAX, http.stall, within).await?;
    Ok(serde_json::from_slice(&body).ok())
}
