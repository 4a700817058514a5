//! The MAST API token: a secret that never prints, and the order it is looked up in.
//!
//! [`Token`] wraps the string so that `Debug` and `Display` show `(redacted)`;
//! the only way to read it is [`Token::expose`], used when building the
//! `Authorization` header and the `mast_token` cookie.
//!
//! Servers can echo a token back (in an error page, a JSON error, a
//! header): every secret the process has seen is registered here
//! ([`register_secret`]) and [`scrub`] removes them from any text. The
//! places text leaves the process — progress lines, JSON events, the
//! manifests, the final error — pass it through [`scrub`].

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

/// Every secret seen so far (tokens, passwords in URLs), longest first,
/// each with its percent-encoded form.
static SECRETS: RwLock<Vec<(String, String)>> = RwLock::new(Vec::new());

/// True once a secret is registered: until then [`scrub`] has nothing to
/// look for and takes no lock (it runs on every manifest row).
static ANY: AtomicBool = AtomicBool::new(false);

/// Secrets shorter than this are not scrubbed (they would mangle text
/// without protecting anything: such a token cannot be valid).
const MIN_SECRET: usize = 4;

/// Remembers `secret`, so that [`scrub`] removes it from any text.
pub(crate) fn register_secret(secret: &str) {
    if secret.len() < MIN_SECRET {
        return;
    }
    if let Ok(mut all) = SECRETS.write() {
        if !all.iter().any(|(s, _)| s == secret) {
            let encoded =
                percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
                    .to_string();
            all.push((secret.to_string(), encoded));
            all.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        }
        ANY.store(true, Ordering::Release);
    }
}

/// Returns `text` with every registered secret replaced by `(redacted)`,
/// also where it appears percent-encoded.
pub fn scrub(text: &str) -> Cow<'_, str> {
    if !ANY.load(Ordering::Acquire) {
        return Cow::Borrowed(text);
    }
    let Ok(all) = SECRETS.read() else {
        return Cow::Borrowed(text);
    };
    let mut out = Cow::Borrowed(text);
    for (secret, encoded) in all.iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), "(redacted)"));
        }
        if encoded != secret && out.contains(encoded.as_str()) {
            out = Cow::Owned(out.replace(encoded.as_str(), "(redacted)"));
        }
    }
    out
}

/// [`scrub`] of text held as bytes (UTF-8 written by mastdl): returned
/// as they are, unchecked, while no secret is registered.
pub(crate) fn scrub_bytes(bytes: &[u8]) -> Cow<'_, [u8]> {
    if !ANY.load(Ordering::Acquire) {
        return Cow::Borrowed(bytes);
    }
    let text = String::from_utf8_lossy(bytes);
    match scrub(&text) {
        Cow::Borrowed(_) if matches!(text, Cow::Borrowed(_)) => Cow::Borrowed(bytes),
        scrubbed => Cow::Owned(scrubbed.into_owned().into_bytes()),
    }
}

/// Why a token cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("The MAST API token from {from} has a control or non-ASCII character an HTTP header cannot carry")]
pub(crate) struct BadToken {
    /// Where it came from (`--token`, `MAST_API_TOKEN`, the prompt).
    pub(crate) from: &'static str,
}

/// The name of the environment variable the token is read from.
pub(crate) const TOKEN_ENV: &str = "MAST_API_TOKEN";

/// A MAST API token. Its `Debug` and `Display` never show the secret.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Token(String);

impl Token {
    /// Returns a token for `s`, trimmed, or `None` when nothing is left.
    /// The token is registered as a secret (see [`scrub`]).
    pub(crate) fn new(s: &str) -> Option<Token> {
        let t = s.trim();
        if t.is_empty() {
            None
        } else {
            register_secret(t);
            Some(Token(t.to_string()))
        }
    }

    /// Returns the token for `s` (see [`Token::new`]), or an error when it
    /// holds a character no HTTP header can carry (a control character,
    /// non-ASCII), which would otherwise be dropped silently.
    pub(crate) fn parse(s: &str, from: &'static str) -> Result<Option<Token>, BadToken> {
        let Some(t) = Token::new(s) else {
            return Ok(None);
        };
        if t.0.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            Ok(Some(t))
        } else {
            Err(BadToken { from })
        }
    }

    /// Returns the secret itself. Call only to put it on the wire.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Returns the value of the `Authorization` header, marked sensitive.
    pub(crate) fn header_value(&self) -> Option<reqwest::header::HeaderValue> {
        let mut v = reqwest::header::HeaderValue::from_str(&format!("token {}", self.0)).ok()?;
        v.set_sensitive(true);
        Some(v)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(redacted)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

/// Resolves the token from the command line, then the environment.
/// Returns `None` when neither gives one; the prompt comes later, on a 401/403.
pub(crate) fn resolve(cli: Option<&str>, env: Option<&str>) -> Result<Option<Token>, BadToken> {
    if let Some(t) = cli
        .map(|c| Token::parse(c, "`--token`"))
        .transpose()?
        .flatten()
    {
        return Ok(Some(t));
    }
    Ok(env
        .map(|e| Token::parse(e, "`MAST_API_TOKEN`"))
        .transpose()?
        .flatten())
}

/// Asks for the token on the terminal without echo. Returns `None` when
/// nothing was typed or the terminal could not be read.
pub(crate) fn prompt() -> Option<Token> {
    let answer = rpassword::prompt_password(
        "MAST API token (from https://auth.mast.stsci.edu/token; input hidden): ",
    )
    .ok()?;
    Token::parse(&answer, "the prompt").ok().flatten()
}

/// Gives the terminal its echo and line editing back after a prompt that
/// was abandoned (the run was cancelled while it waited).
pub(crate) fn restore_terminal() {
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        let Ok(tty) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
        else {
            return;
        };
        let fd = tty.as_raw_fd();
        // SAFETY: tcgetattr/tcsetattr only read and write the struct given,
        // on a descriptor this function owns.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut t) == 0 {
                t.c_lflag |= libc::ECHO | libc::ICANON;
                libc::tcsetattr(fd, libc::TCSANOW, &t);
            }
        }
        let _ = std::io::Write::write_all(&mut &tty, b"\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_secret() {
        let t = Token::new(" abc123 ").unwrap();
        assert_eq!(format!("{t}"), "(redacted)");
        assert!(!format!("{t:?}").contains("abc123"));
        assert_eq!(t.expose(), "abc123");
        assert!(t.header_value().unwrap().is_sensitive());
    }

    #[test]
    fn cli_wins_over_env_and_blank_is_none() {
        let got = |c, e| resolve(c, e).unwrap().map(|t| t.expose().to_string());
        assert_eq!(got(Some("a"), Some("b")).unwrap(), "a");
        assert_eq!(got(None, Some("b")).unwrap(), "b");
        assert_eq!(got(Some("  "), Some("b")).unwrap(), "b");
        assert!(got(None, Some("")).is_none());
    }

    #[test]
    fn control_characters_are_refused_not_dropped() {
        assert!(resolve(Some("ab\u{7}cd"), None).is_err());
        assert!(resolve(None, Some("ab\ncd")).is_err());
        assert!(resolve(Some("abcé"), None).is_err());
        let e = resolve(Some("ab\u{1b}cd"), None).unwrap_err();
        assert!(e.to_string().contains("`--token`"), "{e}");
    }

    #[test]
    fn registered_secrets_are_scrubbed_also_percent_encoded() {
        let t = Token::new("Zq/9+x=s3cr3t").unwrap();
        let text = format!("a {} b Zq%2F9%2Bx%3Ds3cr3t c", t.expose());
        assert_eq!(scrub(&text), "a (redacted) b (redacted) c");
        assert_eq!(scrub("nothing here"), "nothing here");
    }

    #[test]
    fn scrub_bytes_removes_every_copy_as_scrub_does() {
        let t = Token::new("byt3s3cr3t").unwrap();
        let text = format!("{{\"message\":\"x {} y\"}}", t.expose());
        let got = scrub_bytes(text.as_bytes());
        assert_eq!(&*got, scrub(&text).as_bytes());
        assert!(!String::from_utf8_lossy(&got).contains("byt3s3cr3t"));
        assert!(matches!(scrub_bytes(b"plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn scrub_removes_every_copy() {
        let t = Token::new("s3cr3t").unwrap();
        let text = format!("x {} y {}", t.expose(), t.expose());
        assert_eq!(scrub(&text), "x (redacted) y (redacted)");
    }
}
