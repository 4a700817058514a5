//! The MAST API token: a secret that never prints, and the order it is looked up in.
//!
//! [`Token`] wraps the string so that `Debug` and `Display` show `(redacted)`;
//! the only way to read it is [`Token::expose`], used when building the
//! `Authorization` header and the `mast_token` cookie.

use std::fmt;

/// The name of the environment variable the token is read from.
pub const TOKEN_ENV: &str = "MAST_API_TOKEN";

/// A MAST API token. Its `Debug` and `Display` never show the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Returns a token for `s`, trimmed, or `None` when nothing is left.
    pub fn new(s: &str) -> Option<Token> {
        let t = s.trim();
        if t.is_empty() {
            None
        } else {
            Some(Token(t.to_string()))
        }
    }

    /// Returns the secret itself. Call only to put it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Returns the value of the `Authorization` header, marked sensitive.
    pub fn header_value(&self) -> Option<reqwest::header::HeaderValue> {
        let mut v = reqwest::header::HeaderValue::from_str(&format!("token {}", self.0)).ok()?;
        v.set_sensitive(true);
        Some(v)
    }

    /// Replaces every occurrence of the secret in `text` with `(redacted)`.
    pub fn scrub(&self, text: &str) -> String {
        text.replace(&self.0, "(redacted)")
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
pub fn resolve(cli: Option<&str>, env: Option<&str>) -> Option<Token> {
    cli.and_then(Token::new)
        .or_else(|| env.and_then(Token::new))
}

/// Asks for the token on the terminal without echo. Returns `None` when
/// nothing was typed or the terminal could not be read.
pub fn prompt() -> Option<Token> {
    let answer = rpassword::prompt_password(
        "MAST API token (from https://auth.mast.stsci.edu/token; input hidden): ",
    )
    .ok()?;
    Token::new(&answer)
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
        assert_eq!(resolve(Some("a"), Some("b")).unwrap().expose(), "a");
        assert_eq!(resolve(None, Some("b")).unwrap().expose(), "b");
        assert_eq!(resolve(Some("  "), Some("b")).unwrap().expose(), "b");
        assert!(resolve(None, Some("")).is_none());
    }

    #[test]
    fn scrub_removes_every_copy() {
        let t = Token::new("s3cr3t").unwrap();
        assert_eq!(t.scrub("x s3cr3t y s3cr3t"), "x (redacted) y (redacted)");
    }
}
