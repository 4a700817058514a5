//! MAST download scripts: the bash files that the MAST Portal, astroquery
//! (`download_products(..., curl_flag=True)`) and the mission search pages
//! generate, read into entries without ever being run. This file owns a
//! small shell tokenizer (quotes, backslashes, `\` line continuations,
//! `$VAR`/`${VAR}` expansions, comments, operators, heredocs) and the part
//! of curl's command line that matters here: which words are URLs and where
//! `-o`/`--output` writes them.

use std::collections::{HashMap, HashSet};

use percent_encoding::percent_decode_str;

use super::{Entry, InputError, LocalHint, Origin, ProductMeta};

/// The variable that MAST's scripts prefix every `--output` path with.
const FOLDER_VAR: &str = "DOWNLOAD_FOLDER";

/// Variables whose values name a script's download folder (see
/// [`parse`], rule for literal output paths).
const FOLDER_VARS: [&str; 2] = ["FOLDER", "DOWNLOAD_FOLDER"];

/// Short curl options that take an argument (curl's `tool_getparam.c`;
/// `-h` is left out: its argument is optional and it downloads nothing).
const SHORT_WITH_ARG: &str = "AbcCdDeEFHKmoPQrtTuUwxXyYz";

/// Long curl options that take an argument (curl's `tool_getparam.c`).
const LONG_WITH_ARG: &[&str] = &[
    "abstract-unix-socket",
    "alt-svc",
    "aws-sigv4",
    "cacert",
    "capath",
    "cert",
    "cert-type",
    "ciphers",
    "config",
    "connect-timeout",
    "connect-to",
    "continue-at",
    "cookie",
    "cookie-jar",
    "create-file-mode",
    "crlfile",
    "curves",
    "data",
    "data-ascii",
    "data-binary",
    "data-raw",
    "data-urlencode",
    "delegation",
    "dns-interface",
    "dns-ipv4-addr",
    "dns-ipv6-addr",
    "dns-servers",
    "doh-url",
    "dump-header",
    "ech",
    "egd-file",
    "engine",
    "etag-compare",
    "etag-save",
    "expect100-timeout",
    "form",
    "form-string",
    "ftp-account",
    "ftp-alternative-to-user",
    "ftp-method",
    "ftp-port",
    "ftp-ssl-ccc-mode",
    "happy-eyeballs-timeout-ms",
    "haproxy-clientip",
    "header",
    "hostpubmd5",
    "hostpubsha256",
    "hsts",
    "interface",
    "ip-tos",
    "ipfs-gateway",
    "json",
    "keepalive-cnt",
    "keepalive-time",
    "key",
    "key-type",
    "knownhosts",
    "krb",
    "krb4",
    "libcurl",
    "limit-rate",
    "local-port",
    "login-options",
    "mail-auth",
    "mail-from",
    "mail-rcpt",
    "max-filesize",
    "max-redirs",
    "max-time",
    "netrc-file",
    "noproxy",
    "oauth2-bearer",
    "output",
    "output-dir",
    "parallel-max",
    "parallel-max-host",
    "pass",
    "pinnedpubkey",
    "preproxy",
    "proto",
    "proto-default",
    "proto-redir",
    "proxy",
    "proxy-cacert",
    "proxy-capath",
    "proxy-cert",
    "proxy-cert-type",
    "proxy-ciphers",
    "proxy-crlfile",
    "proxy-header",
    "proxy-key",
    "proxy-key-type",
    "proxy-pass",
    "proxy-pinnedpubkey",
    "proxy-service-name",
    "proxy-tls13-ciphers",
    "proxy-tlsauthtype",
    "proxy-tlspassword",
    "proxy-tlsuser",
    "proxy-user",
    "proxy1.0",
    "pubkey",
    "quote",
    "random-file",
    "range",
    "rate",
    "referer",
    "request",
    "request-target",
    "resolve",
    "retry",
    "retry-delay",
    "retry-max-time",
    "sasl-authzid",
    "service-name",
    "sigalgs",
    "socks4",
    "socks4a",
    "socks5",
    "socks5-gssapi-service",
    "socks5-hostname",
    "speed-limit",
    "speed-time",
    "ssl-sessions",
    "stderr",
    "telnet-option",
    "tftp-blksize",
    "time-cond",
    "tls-max",
    "tls13-ciphers",
    "tlsauthtype",
    "tlspassword",
    "tlsuser",
    "trace",
    "trace-ascii",
    "trace-config",
    "unix-socket",
    "upload-file",
    "upload-flags",
    "url",
    "url-query",
    "user",
    "user-agent",
    "variable",
    "vlan-priority",
    "write-out",
];

/// Options that make curl send a request body (a POST or an upload).
const BODY_OPTIONS: &[&str] = &[
    "data",
    "data-ascii",
    "data-binary",
    "data-raw",
    "data-urlencode",
    "form",
    "form-string",
    "json",
    "upload-file",
];

/// Words that may stand before a command's name: `if curl ...`.
const PREFIX_WORDS: &[&str] = &[
    "!", "{", "if", "then", "else", "elif", "while", "until", "do", "time", "command", "exec",
    "nohup",
];

/// Reads a MAST download script; never executes it.
///
/// Each `curl` command gives one [`Entry`] per URL (MAST writes one):
///
/// - `url` is the URL exactly as the script spells it, after shell
///   unquoting. `uri` is its `uri=` query parameter, percent-decoded once
///   and otherwise untouched: a `+` stays a `+` (MAST URIs hold no spaces,
///   and a literal `+` in a file name is likelier than an encoded space),
///   and a URI with its own query string (HLA `fitscut.cgi?red=...&...`)
///   comes back whole. A URL without `uri=` (the mission search's
///   `retrieve_product?product_name=...`) is its own `uri`.
/// - `local` is the `-o`/`--output` path relative to the download folder
///   ([`LocalHint::Path`]), or [`LocalHint::None`] when curl is not told
///   where to write (no `-o`, `-O`, `-o -`). A path holding
///   `$DOWNLOAD_FOLDER`/`${DOWNLOAD_FOLDER}` keeps what follows it, less
///   leading `/` and `./` (`./${DOWNLOAD_FOLDER}'/HST/x/x_flt.fits'` is
///   `HST/x/x_flt.fits`). A path without it (mission search scripts write
///   `"MAST_2024-07-11T09_26_05.575Z/HST/..."`) loses its leading `./`;
///   then, when every such path in the script starts with the same folder
///   and that folder is named `MAST_...` (MAST's bundle folders) or equals
///   a value the script gives `FOLDER` or `DOWNLOAD_FOLDER`, that folder is
///   the download folder and is removed too, so both script kinds lay
///   files out alike. Anything else (an absolute path, a folder the user
///   chose) is kept as written for the plan to check.
/// - `origin` is `file` and the line where the command's `curl` word is.
///
/// Heredoc bodies (the `MANIFEST.HTML` table, the `<<< Downloading`
/// notices) are skipped whole. Variables the script assigns plain values
/// are expanded; a word made only of other expansions (`$CONT`) counts as
/// a flag. curl commands that send a body or use a method other than GET
/// (the mission search's `retrieve_product_zip` manifest POST) download no
/// product and are skipped. A script without curl commands gives no
/// entries.
///
/// Errors name `file` and a line: a quote, `$(`, `${` or heredoc never
/// closed; a curl command with no URL; a URL that is not http(s) or uses a
/// variable the script does not set; an output path using such a
/// variable.
pub fn parse(file: &str, text: &str) -> Result<Vec<Entry>, InputError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text = text.replace("\r\n", "\n");
    let fail = |e: Fail| InputError::new(file, e.line, e.message);
    let tokens = Lexer::new(&text).run().map_err(fail)?;
    let mut reader = Reader::default();
    for command in commands(tokens) {
        reader.command(&command).map_err(fail)?;
    }
    Ok(reader.finish(file))
}

/// A problem found at a line, before the file name is attached.
#[derive(Debug)]
struct Fail {
    line: usize,
    message: String,
}

impl Fail {
    fn new(line: usize, message: impl Into<String>) -> Fail {
        Fail {
            line,
            message: message.into(),
        }
    }
}

/// A piece of a shell word.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Literal text; `quoted` when it came from quotes or a backslash.
    Text { text: String, quoted: bool },
    /// `$NAME` or `${NAME}`.
    Var(String),
    /// Any other expansion, as written: `$(...)`, `` `...` ``, `$1`,
    /// `${X:-y}`.
    Other(String),
}

/// One shell word, not yet expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Word {
    parts: Vec<Part>,
    /// The 1-based line the word starts on.
    line: usize,
}

impl Word {
    fn push(&mut self, c: char, quoted: bool) {
        if let Some(Part::Text { text, quoted: q }) = self.parts.last_mut() {
            if *q == quoted {
                text.push(c);
                return;
            }
        }
        self.parts.push(Part::Text {
            text: c.to_string(),
            quoted,
        });
    }

    /// Records that quotes opened, so that `''` is still a (empty) word.
    fn mark_quoted(&mut self) {
        if !matches!(self.parts.last(), Some(Part::Text { quoted: true, .. })) {
            self.parts.push(Part::Text {
                text: String::new(),
                quoted: true,
            });
        }
    }

    /// The word's value when it holds no expansion.
    fn literal(&self) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text { text, .. } => out.push_str(text),
                Part::Var(_) | Part::Other(_) => return None,
            }
        }
        Some(out)
    }

    /// The literal text the word starts with (`""` when it starts with an
    /// expansion).
    fn lead(&self) -> &str {
        match self.parts.first() {
            Some(Part::Text { text, .. }) => text,
            _ => "",
        }
    }

    /// True for `$CONT`, `"${CONT}"`: nothing but expansions.
    fn only_expansions(&self) -> bool {
        let mut any = false;
        for part in &self.parts {
            match part {
                Part::Text { text, .. } if text.is_empty() => {}
                Part::Text { .. } => return false,
                Part::Var(_) | Part::Other(_) => any = true,
            }
        }
        any
    }
}

#[derive(Debug)]
enum Token {
    Word(Word),
    /// `;`, `&`, `&&`, `|`, `||`, `(`, `)`: ends a simple command.
    Separator,
    /// `>`, `>>`, `<`, `2>&`, ...: the next word is its target.
    Redirect,
    Newline,
}

/// A heredoc whose body starts after the current line.
#[derive(Debug)]
struct Heredoc {
    delimiter: String,
    strip_tabs: bool,
    line: usize,
}

/// Splits script text into tokens, skipping comments and heredoc bodies.
struct Lexer {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    tokens: Vec<Token>,
    /// Heredocs opened on the current line.
    heredocs: Vec<Heredoc>,
    /// Set after `<<`/`<<-` (tab stripping, line): the next word is the
    /// delimiter.
    delimiter_next: Option<(bool, usize)>,
}

impl Lexer {
    fn new(text: &str) -> Lexer {
        Lexer {
            chars: text.chars().collect(),
            pos: 0,
            line: 1,
            tokens: Vec::new(),
            heredocs: Vec::new(),
            delimiter_next: None,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    /// Consumes the next character, counting lines.
    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn run(mut self) -> Result<Vec<Token>, Fail> {
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\r' => self.pos += 1,
                '\\' if self.peek_at(1) == Some('\n') => {
                    self.pos += 2;
                    self.line += 1;
                }
                '\n' => {
                    self.bump();
                    self.newline()?;
                }
                '#' => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.pos += 1;
                    }
                }
                ';' | '&' | '|' | '(' | ')' | '<' | '>' => self.operator()?,
                _ => self.word()?,
            }
        }
        self.no_pending_delimiter()?;
        if let Some(h) = self.heredocs.first() {
            return Err(unclosed_heredoc(h));
        }
        Ok(self.tokens)
    }

    fn no_pending_delimiter(&mut self) -> Result<(), Fail> {
        match self.delimiter_next.take() {
            Some((_, line)) => Err(Fail::new(line, "`<<` is not followed by a delimiter word")),
            None => Ok(()),
        }
    }

    /// Ends a line: emits the token, then skips the bodies of the heredocs
    /// opened on it.
    fn newline(&mut self) -> Result<(), Fail> {
        self.no_pending_delimiter()?;
        self.tokens.push(Token::Newline);
        for heredoc in std::mem::take(&mut self.heredocs) {
            self.skip_heredoc(&heredoc)?;
        }
        Ok(())
    }

    fn skip_heredoc(&mut self, heredoc: &Heredoc) -> Result<(), Fail> {
        loop {
            if self.pos >= self.chars.len() {
                return Err(unclosed_heredoc(heredoc));
            }
            let start = self.pos;
            let mut end = start;
            while end < self.chars.len() && self.chars[end] != '\n' {
                end += 1;
            }
            let text: String = self.chars[start..end].iter().collect();
            self.pos = end;
            self.bump();
            let text = if heredoc.strip_tabs {
                text.trim_start_matches('\t')
            } else {
                text.as_str()
            };
            if text.trim_end() == heredoc.delimiter {
                return Ok(());
            }
        }
    }

    fn operator(&mut self) -> Result<(), Fail> {
        self.no_pending_delimiter()?;
        let line = self.line;
        let Some(c) = self.bump() else {
            return Ok(());
        };
        let token = match c {
            ';' => {
                self.eat(';');
                self.eat('&');
                Token::Separator
            }
            '&' => {
                if self.eat('>') {
                    self.eat('>');
                    Token::Redirect
                } else {
                    self.eat('&');
                    Token::Separator
                }
            }
            '|' => {
                let _ = self.eat('|') || self.eat('&');
                Token::Separator
            }
            '<' => {
                if self.eat('<') {
                    if self.eat('<') {
                        Token::Redirect
                    } else {
                        let strip_tabs = self.eat('-');
                        self.delimiter_next = Some((strip_tabs, line));
                        return Ok(());
                    }
                } else {
                    let _ = self.eat('&') || self.eat('>');
                    Token::Redirect
                }
            }
            '>' => {
                let _ = self.eat('>') || self.eat('&') || self.eat('|');
                Token::Redirect
            }
            _ => Token::Separator,
        };
        self.tokens.push(token);
        Ok(())
    }

    fn word(&mut self) -> Result<(), Fail> {
        let mut word = Word {
            parts: Vec::new(),
            line: self.line,
        };
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\r' | '\n' | ';' | '&' | '|' | '(' | ')' | '<' | '>' => break,
                '\\' => {
                    self.pos += 1;
                    match self.bump() {
                        Some('\n') | None => {}
                        Some(c) => word.push(c, true),
                    }
                }
                '\'' => self.single_quoted(&mut word)?,
                '"' => self.double_quoted(&mut word)?,
                '$' => self.dollar(&mut word, false)?,
                '`' => self.backquoted(&mut word)?,
                _ => {
                    self.pos += 1;
                    word.push(c, false);
                }
            }
        }
        let io_number = matches!(self.peek(), Some('<' | '>'))
            && matches!(word.parts.as_slice(), [Part::Text { text, quoted: false }]
                if text.chars().all(|c| c.is_ascii_digit()));
        if io_number || word.parts.is_empty() {
            return Ok(());
        }
        if let Some((strip_tabs, line)) = self.delimiter_next.take() {
            let delimiter = word
                .parts
                .iter()
                .map(|p| match p {
                    Part::Text { text, .. } => text.clone(),
                    Part::Var(name) => format!("${name}"),
                    Part::Other(raw) => raw.clone(),
                })
                .collect();
            self.heredocs.push(Heredoc {
                delimiter,
                strip_tabs,
                line,
            });
            return Ok(());
        }
        self.tokens.push(Token::Word(word));
        Ok(())
    }

    fn single_quoted(&mut self, word: &mut Word) -> Result<(), Fail> {
        let line = self.line;
        self.pos += 1;
        word.mark_quoted();
        loop {
            match self.bump() {
                None => return Err(unclosed("`'` quote", line)),
                Some('\'') => return Ok(()),
                Some(c) => word.push(c, true),
            }
        }
    }

    fn double_quoted(&mut self, word: &mut Word) -> Result<(), Fail> {
        let line = self.line;
        self.pos += 1;
        word.mark_quoted();
        loop {
            match self.peek() {
                None => return Err(unclosed("`\"` quote", line)),
                Some('"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some('\\') => match self.peek_at(1) {
                    Some('\n') => {
                        self.pos += 1;
                        self.bump();
                    }
                    Some(c @ ('$' | '`' | '"' | '\\')) => {
                        self.pos += 2;
                        word.push(c, true);
                    }
                    _ => {
                        self.pos += 1;
                        word.push('\\', true);
                    }
                },
                Some('$') => self.dollar(word, true)?,
                Some('`') => self.backquoted(word)?,
                Some(c) => {
                    self.bump();
                    word.push(c, true);
                }
            }
        }
    }

    /// Reads an expansion starting at `$` (or a lone `$`).
    fn dollar(&mut self, word: &mut Word, in_quotes: bool) -> Result<(), Fail> {
        let line = self.line;
        match self.peek_at(1) {
            Some('{') => {
                self.pos += 2;
                let inner = self.balanced('{', '}', line, "`${`")?;
                word.parts.push(if is_name(&inner) {
                    Part::Var(inner)
                } else {
                    Part::Other(format!("${{{inner}}}"))
                });
            }
            Some('(') => {
                self.pos += 2;
                let inner = self.balanced('(', ')', line, "`$(`")?;
                word.parts.push(Part::Other(format!("$({inner})")));
            }
            Some('\'') if !in_quotes => {
                // ANSI-C quoting: $'...' with backslash escapes.
                self.pos += 2;
                word.mark_quoted();
                loop {
                    match self.bump() {
                        None => return Err(unclosed("`$'` quote", line)),
                        Some('\'') => break,
                        Some('\\') => match self.bump() {
                            None => return Err(unclosed("`$'` quote", line)),
                            Some('n') => word.push('\n', true),
                            Some('t') => word.push('\t', true),
                            Some('r') => word.push('\r', true),
                            Some(c) => word.push(c, true),
                        },
                        Some(c) => word.push(c, true),
                    }
                }
            }
            Some('"') if !in_quotes => {
                // $"..." (locale translation) reads as "...".
                self.pos += 1;
                self.double_quoted(word)?;
            }
            Some(c) if c == '_' || c.is_ascii_alphabetic() => {
                self.pos += 1;
                let mut name = String::new();
                while let Some(c) = self
                    .peek()
                    .filter(|c| *c == '_' || c.is_ascii_alphanumeric())
                {
                    name.push(c);
                    self.pos += 1;
                }
                word.parts.push(Part::Var(name));
            }
            Some(c) if c.is_ascii_digit() || "@*#?$!-".contains(c) => {
                self.pos += 2;
                word.parts.push(Part::Other(format!("${c}")));
            }
            _ => {
                self.pos += 1;
                word.push('$', in_quotes);
            }
        }
        Ok(())
    }

    /// Reads up to the `close` that balances an already-read `open`,
    /// stepping over quoted text; returns what lies between.
    fn balanced(
        &mut self,
        open: char,
        close: char,
        line: usize,
        what: &str,
    ) -> Result<String, Fail> {
        let mut depth = 1;
        let mut inner = String::new();
        loop {
            let Some(c) = self.bump() else {
                return Err(unclosed(what, line));
            };
            if c == close {
                depth -= 1;
                if depth == 0 {
                    return Ok(inner);
                }
            } else if c == open {
                depth += 1;
            }
            inner.push(c);
            match c {
                '\\' => {
                    if let Some(next) = self.bump() {
                        inner.push(next);
                    }
                }
                '\'' | '"' => loop {
                    match self.bump() {
                        None => return Err(unclosed(what, line)),
                        Some('\\') if c == '"' => {
                            inner.push('\\');
                            if let Some(next) = self.bump() {
                                inner.push(next);
                            }
                        }
                        Some(q) if q == c => {
                            inner.push(q);
                            break;
                        }
                        Some(other) => inner.push(other),
                    }
                },
                _ => {}
            }
        }
    }

    fn backquoted(&mut self, word: &mut Word) -> Result<(), Fail> {
        let line = self.line;
        self.pos += 1;
        let mut inner = String::new();
        loop {
            match self.bump() {
                None => return Err(unclosed("`` ` `` command substitution", line)),
                Some('`') => break,
                Some('\\') => {
                    inner.push('\\');
                    if let Some(c) = self.bump() {
                        inner.push(c);
                    }
                }
                Some(c) => inner.push(c),
            }
        }
        word.parts.push(Part::Other(format!("`{inner}`")));
        Ok(())
    }
}

fn unclosed(what: &str, line: usize) -> Fail {
    Fail::new(
        line,
        format!("Unterminated {what}: it opens here and never closes"),
    )
}

fn unclosed_heredoc(heredoc: &Heredoc) -> Fail {
    Fail::new(
        heredoc.line,
        format!(
            "Unterminated heredoc: no line `{}` closes the `<<` opened here",
            heredoc.delimiter
        ),
    )
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Groups tokens into simple commands, dropping redirections and their
/// targets.
fn commands(tokens: Vec<Token>) -> Vec<Vec<Word>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut redirect_target = false;
    for token in tokens {
        match token {
            Token::Word(word) => {
                if redirect_target {
                    redirect_target = false;
                } else {
                    current.push(word);
                }
            }
            Token::Redirect => redirect_target = true,
            Token::Separator | Token::Newline => {
                redirect_target = false;
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Where a curl command writes, before the script-wide folder rule.
#[derive(Debug, Clone)]
enum Out {
    None,
    /// The part after `$DOWNLOAD_FOLDER`.
    InFolder(String),
    /// A path written without `$DOWNLOAD_FOLDER`.
    Literal(String),
}

#[derive(Debug)]
struct Found {
    uri: String,
    url: String,
    out: Out,
    line: usize,
}

/// Walks the commands in order, tracking variables and collecting
/// downloads.
#[derive(Default)]
struct Reader {
    /// Plain assignments seen so far; `None` when the value is unknown.
    vars: HashMap<String, Option<String>>,
    /// Every value given to a [`FOLDER_VARS`] variable.
    folder_values: HashSet<String>,
    found: Vec<Found>,
}

/// The state of one curl command line.
#[derive(Default)]
struct Curl {
    urls: Vec<String>,
    outputs: Vec<Out>,
    method: Option<String>,
    sends_body: bool,
    get: bool,
    skipped_expansion: bool,
}

impl Reader {
    fn command(&mut self, words: &[Word]) -> Result<(), Fail> {
        let start = words
            .iter()
            .take_while(|w| {
                w.literal()
                    .is_some_and(|l| PREFIX_WORDS.contains(&l.as_str()))
            })
            .count();
        let words = &words[start..];
        let assignments = words.iter().take_while(|w| assignment(w).is_some()).count();
        let Some(name_word) = words.get(assignments) else {
            for word in words {
                self.assign(word);
            }
            return Ok(());
        };
        let args = &words[assignments + 1..];
        match name_word.literal().as_deref() {
            Some("export" | "readonly" | "declare" | "typeset" | "local") => {
                for word in args {
                    self.assign(word);
                }
            }
            Some(name) if name == "curl" || name.ends_with("/curl") => {
                self.curl(name_word.line, args)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn assign(&mut self, word: &Word) {
        let Some((name, value)) = assignment(word) else {
            return;
        };
        let value = self.expand(&value).ok();
        if let Some(value) = &value {
            if FOLDER_VARS.contains(&name.as_str()) {
                self.folder_values.insert(value.clone());
            }
        }
        self.vars.insert(name, value);
    }

    /// The value of `parts`, or the first expansion it cannot know.
    fn expand(&self, parts: &[Part]) -> Result<String, String> {
        let mut out = String::new();
        for part in parts {
            match part {
                Part::Text { text, .. } => out.push_str(text),
                Part::Var(name) => match self.vars.get(name) {
                    Some(Some(value)) => out.push_str(value),
                    _ => return Err(format!("${name}")),
                },
                Part::Other(raw) => return Err(raw.clone()),
            }
        }
        Ok(out)
    }

    fn curl(&mut self, line: usize, args: &[Word]) -> Result<(), Fail> {
        let mut cmd = Curl::default();
        let mut i = 0;
        let mut options_done = false;
        while let Some(word) = args.get(i) {
            i += 1;
            let lead = word.lead();
            if !options_done && lead.starts_with('-') && lead != "-" {
                if lead == "--" && word.parts.len() == 1 {
                    options_done = true;
                } else if let Some(long) = lead.strip_prefix("--") {
                    if LONG_WITH_ARG.contains(&long) {
                        let arg = args.get(i).ok_or_else(|| missing_arg(word, lead))?;
                        i += 1;
                        self.option(&mut cmd, long, arg)?;
                    } else if long == "get" {
                        cmd.get = true;
                    }
                } else {
                    let letters: Vec<char> = lead.chars().skip(1).collect();
                    for (k, &letter) in letters.iter().enumerate() {
                        if !SHORT_WITH_ARG.contains(letter) {
                            cmd.get |= letter == 'G';
                            continue;
                        }
                        let rest: String = letters[k + 1..].iter().collect();
                        let arg = if rest.is_empty() && word.parts.len() == 1 {
                            let arg = args.get(i).cloned();
                            i += 1;
                            arg.ok_or_else(|| missing_arg(word, &format!("-{letter}")))?
                        } else {
                            let mut parts = Vec::new();
                            if !rest.is_empty() {
                                parts.push(Part::Text {
                                    text: rest,
                                    quoted: false,
                                });
                            }
                            parts.extend(word.parts[1..].iter().cloned());
                            Word {
                                parts,
                                line: word.line,
                            }
                        };
                        self.option(&mut cmd, short_name(letter), &arg)?;
                        break;
                    }
                }
            } else if word.only_expansions() {
                cmd.skipped_expansion = true;
            } else {
                cmd.urls.push(self.url(word)?);
            }
        }

        let not_get = cmd
            .method
            .as_deref()
            .is_some_and(|m| !m.eq_ignore_ascii_case("GET"));
        if not_get || (cmd.sends_body && !cmd.get) {
            return Ok(());
        }
        if cmd.urls.is_empty() {
            let hint = if cmd.skipped_expansion {
                " (a URL held in a shell variable is not expanded)"
            } else {
                ""
            };
            return Err(Fail::new(
                line,
                format!("This curl command has no URL{hint}"),
            ));
        }
        for (k, url) in cmd.urls.into_iter().enumerate() {
            let out = cmd.outputs.get(k).cloned().unwrap_or(Out::None);
            let uri = uri_param(&url).map_err(|m| Fail::new(line, m))?;
            self.found.push(Found {
                uri: uri.unwrap_or_else(|| url.clone()),
                url,
                out,
                line,
            });
        }
        Ok(())
    }

    /// Applies an option that takes an argument; `name` is its long name.
    fn option(&self, cmd: &mut Curl, name: &str, arg: &Word) -> Result<(), Fail> {
        match name {
            "output" => cmd.outputs.push(self.output(arg)?),
            "url" => cmd.urls.push(self.url(arg)?),
            "request" => cmd.method = self.expand(&arg.parts).ok(),
            _ if BODY_OPTIONS.contains(&name) => cmd.sends_body = true,
            _ => {}
        }
        Ok(())
    }

    fn url(&self, word: &Word) -> Result<String, Fail> {
        let url = self.expand(&word.parts).map_err(|e| {
            Fail::new(
                word.line,
                format!("The URL uses `{e}`, which the script does not set to a plain value"),
            )
        })?;
        match url::Url::parse(&url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => Ok(url),
            _ => Err(Fail::new(
                word.line,
                format!("Not an http(s) URL in a curl command: `{}`", shown(&url)),
            )),
        }
    }

    fn output(&self, word: &Word) -> Result<Out, Fail> {
        let unknown = |e: String| {
            Fail::new(
                word.line,
                format!(
                    "The output path uses `{e}`, which the script does not set to a plain value"
                ),
            )
        };
        let folder = word
            .parts
            .iter()
            .position(|p| matches!(p, Part::Var(name) if name == FOLDER_VAR));
        if let Some(k) = folder {
            return self
                .expand(&word.parts[k + 1..])
                .map(Out::InFolder)
                .map_err(unknown);
        }
        let path = self.expand(&word.parts).map_err(unknown)?;
        Ok(if path == "-" {
            Out::None
        } else {
            Out::Literal(path)
        })
    }

    fn finish(self, file: &str) -> Vec<Entry> {
        let bundle = self.bundle_folder();
        self.found
            .into_iter()
            .map(|found| {
                let local = match &found.out {
                    Out::None => LocalHint::None,
                    Out::InFolder(path) => LocalHint::Path(strip_folder_lead(path).to_string()),
                    Out::Literal(path) => {
                        let path = strip_dot_slashes(path);
                        let path = bundle
                            .as_deref()
                            .and_then(|b| path.strip_prefix(b))
                            .unwrap_or(path);
                        LocalHint::Path(path.to_string())
                    }
                };
                Entry {
                    uri: found.uri,
                    url: Some(found.url),
                    local,
                    size: None,
                    meta: ProductMeta::default(),
                    origin: Origin {
                        file: file.to_string(),
                        line: found.line,
                    },
                }
            })
            .collect()
    }

    /// The folder (with its `/`) that starts every literal output path,
    /// when it is the script's download folder (see [`parse`]).
    fn bundle_folder(&self) -> Option<String> {
        let mut head: Option<&str> = None;
        for found in &self.found {
            let Out::Literal(path) = &found.out else {
                continue;
            };
            let (first, rest) = strip_dot_slashes(path).split_once('/')?;
            if first.is_empty() || first == "." || first == ".." || rest.is_empty() {
                return None;
            }
            match head {
                Some(h) if h != first => return None,
                _ => head = Some(first),
            }
        }
        let head = head?;
        (head.starts_with("MAST_") || self.folder_values.contains(head)).then(|| format!("{head}/"))
    }
}

/// `NAME=value` words: the name and the value's parts.
fn assignment(word: &Word) -> Option<(String, Vec<Part>)> {
    let Some(Part::Text {
        text,
        quoted: false,
    }) = word.parts.first()
    else {
        return None;
    };
    let (name, rest) = text.split_once('=')?;
    if !is_name(name) {
        return None;
    }
    let mut value = Vec::new();
    if !rest.is_empty() {
        value.push(Part::Text {
            text: rest.to_string(),
            quoted: false,
        });
    }
    value.extend(word.parts[1..].iter().cloned());
    Some((name.to_string(), value))
}

/// The long name of a short option that takes an argument, for the ones
/// that matter here.
fn short_name(letter: char) -> &'static str {
    match letter {
        'o' => "output",
        'X' => "request",
        'd' => "data",
        'F' => "form",
        'T' => "upload-file",
        _ => "",
    }
}

fn missing_arg(word: &Word, option: &str) -> Fail {
    Fail::new(word.line, format!("curl option `{option}` has no argument"))
}

/// The `uri=` query parameter of `url`, percent-decoded once (`+` kept).
fn uri_param(url: &str) -> Result<Option<String>, String> {
    let Some((_, query)) = url.split_once('?') else {
        return Ok(None);
    };
    let query = query.split('#').next().unwrap_or(query);
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "uri" {
            continue;
        }
        let uri = percent_decode_str(value).decode_utf8().map_err(|_| {
            format!(
                "The URL's `uri=` value is not UTF-8 once decoded: `{}`",
                shown(value)
            )
        })?;
        if uri.is_empty() {
            return Err("The URL's `uri=` parameter is empty".to_string());
        }
        return Ok(Some(uri.into_owned()));
    }
    Ok(None)
}

fn strip_dot_slashes(mut path: &str) -> &str {
    while let Some(rest) = path.strip_prefix("./") {
        path = rest;
    }
    path
}

/// Removes the `/` and `./` that follow `$DOWNLOAD_FOLDER`.
fn strip_folder_lead(mut path: &str) -> &str {
    loop {
        if let Some(rest) = path.strip_prefix('/') {
            path = rest;
        } else if let Some(rest) = path.strip_prefix("./") {
            path = rest;
        } else {
            return path;
        }
    }
}

/// `s` cut for a message, with control characters escaped.
fn shown(s: &str) -> String {
    s.chars().take(120).flat_map(char::escape_default).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORTAL_TOKEN: &str =
        include_str!("../../tests/fixtures/scripts/portal_token_multiline.sh");
    const PORTAL_PUBLIC: &str =
        include_str!("../../tests/fixtures/scripts/portal_public_single_line.sh");
    const PORTAL_FLAT: &str = include_str!("../../tests/fixtures/scripts/portal_flat_no_folder.sh");
    const MISSION: &str =
        include_str!("../../tests/fixtures/scripts/mission_search_retrieve_product.sh");
    const HLA: &str = include_str!("../../tests/fixtures/scripts/hla_cutout.sh");
    const CRLF_BOM: &str =
        include_str!("../../tests/fixtures/scripts/crlf_bom_trailing_backslash.sh");

    fn path(p: &str) -> LocalHint {
        LocalHint::Path(p.to_string())
    }

    fn one(text: &str) -> Entry {
        let mut entries = parse("t.sh", text).unwrap();
        assert_eq!(entries.len(), 1, "{entries:#?}");
        entries.remove(0)
    }

    fn err(text: &str) -> InputError {
        parse("t.sh", text).unwrap_err()
    }

    fn urls(entries: &[Entry]) -> Vec<(&str, usize)> {
        entries
            .iter()
            .map(|e| (e.url.as_deref().unwrap_or(""), e.origin.line))
            .collect()
    }

    // ---- fixtures ----

    #[test]
    fn fixtures_are_detected_as_scripts() {
        for text in [
            PORTAL_TOKEN,
            PORTAL_PUBLIC,
            PORTAL_FLAT,
            MISSION,
            HLA,
            CRLF_BOM,
        ] {
            assert_eq!(super::super::detect(text), super::super::Kind::Script);
        }
    }

    #[test]
    fn portal_multiline_with_token() {
        let e = parse("MAST_2022-04-30T2153.sh", PORTAL_TOKEN).unwrap();
        // The manifest heredoc and the announcements list the URIs again:
        // only the three curl commands count.
        assert_eq!(e.len(), 3);
        let dir = "JWST/jw01409-o031_t014_nircam_clear-f212n";
        let names = [
            "jw01409-o031_t014_nircam_clear-f212n_i2d.fits",
            "jw01409-o031_t014_nircam_clear-f212n_cat.ecsv",
            "jw01409-o031_t014_nircam_clear-f212n_segm.fits",
        ];
        for ((entry, name), line) in e.iter().zip(names).zip([113, 131, 149]) {
            assert_eq!(entry.uri, format!("mast:JWST/product/{name}"));
            let url = format!(
                "https://mast.stsci.edu/jwst/api/v0.1/Download/file?\
                 bundle_name=MAST_2022-04-30T2153&uri=mast:JWST/product/{name}"
            );
            assert_eq!(entry.url.as_deref(), Some(url.as_str()));
            assert_eq!(entry.local, path(&format!("{dir}/{name}")));
            assert_eq!(entry.size, None);
            assert_eq!(entry.meta, ProductMeta::default());
            assert_eq!(entry.origin.file, "MAST_2022-04-30T2153.sh");
            assert_eq!(entry.origin.line, line);
        }
    }

    #[test]
    fn portal_public_single_line() {
        let e = parse("p.sh", PORTAL_PUBLIC).unwrap();
        let got: Vec<_> = e
            .iter()
            .map(|e| (e.uri.as_str(), e.local.clone(), e.origin.line))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "mast:HST/product/o4g801090_flt.fits",
                    path("HST/o4g801090/o4g801090_flt.fits"),
                    99
                ),
                (
                    "mast:HST/product/ocyn01010_flt.fits",
                    path("HST/ocyn01010/ocyn01010_flt.fits"),
                    110
                ),
                (
                    "mast:HST/product/oe1k05010_x1d.fits",
                    path("HST/oe1k05010/oe1k05010_x1d.fits"),
                    121
                ),
            ]
        );
        assert_eq!(
            e[0].url.as_deref(),
            Some(
                "https://mast.stsci.edu/api/v0.1/Download/file?\
                 bundle_name=MAST_2023-01-20T1646.sh&uri=mast:HST/product/o4g801090_flt.fits"
            )
        );
    }

    #[test]
    fn portal_script_without_download_folder() {
        let e = parse("f.sh", PORTAL_FLAT).unwrap();
        assert_eq!(e.len(), 2);
        let name = "jw09235001001_03101_00001-seg005_mirimage_uncal.fits";
        assert_eq!(e[0].uri, format!("mast:JWST/product/{name}"));
        assert_eq!(e[0].local, path(name));
        assert_eq!(e[0].origin.line, 22);
        assert_eq!(e[1].origin.line, 33);
    }

    #[test]
    fn mission_search_retrieve_product() {
        let e = parse("m.sh", MISSION).unwrap();
        // Four GETs; the retrieve_product_zip manifest POST is no product.
        assert_eq!(e.len(), 4);
        let url = "https://mast.stsci.edu/search/hst/api/v0.1/retrieve_product?\
                   product_name=N43C05030%2Fn43c05030_asn.fits";
        assert_eq!(e[0].uri, url);
        assert_eq!(e[0].url.as_deref(), Some(url));
        // The shared `MAST_<time>` bundle folder is the download folder.
        assert_eq!(e[0].local, path("HST/N43C05030/n43c05030_asn.fits"));
        assert_eq!(e[3].local, path("HST/IB1F01020/ib1f01020_raw.fits"));
        let lines: Vec<_> = e.iter().map(|e| e.origin.line).collect();
        assert_eq!(lines, [1, 3, 5, 7]);
    }

    #[test]
    fn hla_uris_with_their_own_query() {
        let e = parse("h.sh", HLA).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(
            e[0].uri,
            "mast:HLA/url/cgi-bin/fitscut.cgi?red=hst_10188_10_acs_wfc_f814w\
             &blue=hst_10188_10_acs_wfc_f435w&size=ALL&format=fits"
        );
        // The URL is kept as written, still encoded.
        assert_eq!(
            e[0].url.as_deref(),
            Some(
                "https://mast.stsci.edu/api/v0.1/Download/file?bundle_name=MAST_2024-02-07T0307.sh\
                 &uri=mast:HLA/url/cgi-bin/fitscut.cgi%3Fred%3Dhst_10188_10_acs_wfc_f814w\
                 %26blue%3Dhst_10188_10_acs_wfc_f435w%26size%3DALL%26format%3Dfits"
            )
        );
        // The name comes only from --output.
        assert_eq!(
            e[0].local,
            path("HLA/url/cgi-bin/hst_10188_10_acs_wfc_f814w_f435w.fits")
        );
        assert_eq!(
            e[1].uri,
            "mast:HLA/url/cgi-bin/getdata.cgi?dataset=hst_10268_05_acs_wfc_f606w_09_drz.fits"
        );
        assert_eq!(
            e[1].local,
            path("HLA/hst_10268_05_acs_wfc_f606w_09/hst_10268_05_acs_wfc_f606w_09_drz.fits")
        );
        assert_eq!(e[2].uri, "mast:HST/product/j8y805grq_drz.fits");
        let lines: Vec<_> = e.iter().map(|e| e.origin.line).collect();
        assert_eq!(lines, [99, 110, 121]);
    }

    #[test]
    fn crlf_bom_and_trailing_backslash() {
        // Guard the fixture itself against line-ending normalization.
        assert!(CRLF_BOM.starts_with('\u{feff}'));
        assert!(CRLF_BOM.contains("\r\n"));
        assert!(CRLF_BOM.ends_with("\\\r\n"));
        let e = parse("w.sh", CRLF_BOM).unwrap();
        assert_eq!(e.len(), 2, "the commented-out curl is skipped: {e:#?}");
        let stem = "tess2018206045859-s0001-0000000025155310-0120-s";
        assert_eq!(e[0].uri, format!("mast:TESS/product/{stem}_lc.fits"));
        let url = format!(
            "https://mast.stsci.edu/api/v0.1/Download/file?uri=mast:TESS/product/{stem}_lc.fits"
        );
        assert_eq!(e[0].url.as_deref(), Some(url.as_str()));
        assert_eq!(e[0].local, path(&format!("TESS/{stem}/{stem}_lc.fits")));
        assert_eq!(e[0].origin.line, 8);
        assert_eq!(e[1].uri, format!("mast:TESS/product/{stem}_tp.fits"));
        assert_eq!(e[1].local, path(&format!("TESS/{stem}/{stem}_tp.fits")));
        assert_eq!(e[1].origin.line, 14);
    }

    // ---- heredocs ----

    #[test]
    fn skips_every_heredoc_form() {
        let text = concat!(
            "cat >${DOWNLOAD_FOLDER}/MANIFEST.HTML<<EOT\n",
            "<td>mast:HST/product/a_flt.fits</td>\n",
            "curl -o a 'https://mast.stsci.edu/api/v0.1/Download/file?uri=mast:HST/product/a.fits'\n",
            "EOT\n",
            "cat <<'DELIM'\n",
            "curl -o b 'https://x.org/b?uri=mast:B/b.fits' it's unbalanced\n",
            "DELIM\n",
            "cat <<\"END\"\n",
            "curl -o c https://x.org/c\n",
            "END\n",
            "\tcat <<-EOT\n",
            "\tcurl -o d https://x.org/d\n",
            "\t\tEOT\n",
            "cat << DONE > notes.txt\n",
            "curl -o e https://x.org/e\n",
            "DONE\n",
            "cat <<A; cat <<B\n",
            "curl -o f https://x.org/f\n",
            "A\n",
            "curl -o g https://x.org/g\n",
            "B\n",
            "cat <<EOT\n",
            "<<< Downloading File: mast:HST/product/z_flt.fits\n",
            "                  To: ${DOWNLOAD_FOLDER}/HST/z/z_flt.fits\n",
            "EOT\n",
            "curl -o z 'https://mast.stsci.edu/api/v0.1/Download/file?uri=mast:HST/product/z_flt.fits'\n",
        );
        let e = one(text);
        assert_eq!(e.uri, "mast:HST/product/z_flt.fits");
        assert_eq!(e.origin.line, 26);
    }

    #[test]
    fn here_string_is_not_a_heredoc() {
        let e = one("cat <<< 'x'\ncurl -o a https://x.org/a\n");
        assert_eq!(e.origin.line, 2);
    }

    #[test]
    fn heredoc_delimiter_may_end_the_file() {
        let e = parse("t.sh", "cat <<EOT\ncurl -o a https://x.org/a\nEOT").unwrap();
        assert!(e.is_empty());
    }

    #[test]
    fn unterminated_heredoc_is_an_error() {
        let e = err("echo hi\ncat <<EOT\ncurl -o a https://x.org/a\n");
        assert_eq!(e.origin.line, 2);
        assert!(e.message.contains("heredoc"), "{e}");
        assert_eq!(err("cat <<\n").origin.line, 1);
    }

    // ---- quoting and words ----

    #[test]
    fn unterminated_quotes_name_the_opening_line() {
        let e = err("# ok\ncurl -o a \\\n  'https://x.org/a\n\n");
        assert_eq!(e.origin.line, 3);
        assert_eq!(e.origin.file, "t.sh");
        assert_eq!(
            e.to_string(),
            "t.sh:3: Unterminated `'` quote: it opens here and never closes"
        );
        let e = err("echo ok\necho \"abc\ncurl -o a https://x.org/a\n");
        assert_eq!(e.origin.line, 2);
        assert!(e.message.contains("`\"` quote"), "{e}");
        assert_eq!(err("x=$(date\n").origin.line, 1);
        assert_eq!(err("x=${HOME\n").origin.line, 1);
        assert_eq!(err("x=`date\n").origin.line, 1);
    }

    #[test]
    fn concatenated_words_and_escapes() {
        let e = one(concat!(
            "curl --output ./\"${DOWNLOAD_FOLDER}\"'/HST/a b/'c\\ d.fits ",
            "\"https://x.org/f?uri=mast:HST/product/c%20d.fits\"",
        ));
        assert_eq!(e.local, path("HST/a b/c d.fits"));
        assert_eq!(e.uri, "mast:HST/product/c d.fits");
        let e = one("curl -o \"x\\\"y\\$z\\n\" 'https://x.org/a'\n");
        assert_eq!(e.local, path("x\"y$z\\n"));
        let e = one("curl -o $'a\\tb' https://x.org/a\n");
        assert_eq!(e.local, path("a\tb"));
        let e = one("curl -o 'it'\\''s' https://x.org/a\n");
        assert_eq!(e.local, path("it's"));
    }

    #[test]
    fn hash_inside_a_word_is_not_a_comment() {
        let e = one("curl -o a#b https://x.org/a#frag # comment\n");
        assert_eq!(e.local, path("a#b"));
        assert_eq!(e.url.as_deref(), Some("https://x.org/a#frag"));
    }

    #[test]
    fn continuations_inside_quotes_and_at_the_end() {
        let e = one("curl -o a \"https://x.org/\\\nlong\" \\");
        assert_eq!(e.url.as_deref(), Some("https://x.org/long"));
        let e = one("curl -o a https://x.org/a \\\n");
        assert_eq!(e.origin.line, 1);
        let e = one("curl \\\r\n -o a \\\r\n https://x.org/a\r\n");
        assert_eq!(e.local, path("a"));
    }

    #[test]
    fn command_substitutions_are_opaque() {
        let text = "TOKEN=$(curl -s 'https://x.org/token' | tr -d ')')\n\
                    STAMP=`date +%s`\n\
                    curl -o a https://x.org/a\n";
        assert_eq!(one(text).origin.line, 3);
    }

    // ---- which commands are curl downloads ----

    #[test]
    fn only_commands_named_curl() {
        let text = concat!(
            "type -P curl >&/dev/null || { echo \"This script requires curl. Exiting.\" >&2; exit 1; }\n",
            "echo curl -o a https://x.org/a\n",
            "# curl -o b https://x.org/b\n",
            "which curl\n",
            "echo \"curl -o c https://x.org/c\"\n",
        );
        assert!(parse("t.sh", text).unwrap().is_empty());
        assert!(parse("t.sh", "").unwrap().is_empty());
        assert!(parse("t.sh", "#!/bin/bash\nexit 0\n").unwrap().is_empty());
    }

    #[test]
    fn curl_after_keywords_separators_and_assignments() {
        let text = concat!(
            "if curl -o a https://x.org/a; then echo ok; fi\n",
            "mkdir -p x && curl -o b https://x.org/b || exit 1\n",
            "FOO=1 /usr/bin/curl -o c https://x.org/c > log.txt 2>&1\n",
            "{ curl -o d https://x.org/d; }\n",
            "while true; do curl -o e https://x.org/e; done\n",
        );
        let e = parse("t.sh", text).unwrap();
        assert_eq!(
            urls(&e),
            [
                ("https://x.org/a", 1),
                ("https://x.org/b", 2),
                ("https://x.org/c", 3),
                ("https://x.org/d", 4),
                ("https://x.org/e", 5),
            ]
        );
    }

    #[test]
    fn posts_and_uploads_are_skipped() {
        let text = concat!(
            "curl -X POST -o a https://x.org/a\n",
            "curl --request post -o a https://x.org/a\n",
            "curl -F mission=HST -o a https://x.org/a\n",
            "curl --data-binary @f -o a https://x.org/a\n",
            "curl -T f.txt https://x.org/a\n",
            "curl -d x=1 -G -o q https://x.org/q\n",
            "curl -X GET -o g https://x.org/g\n",
        );
        let e = parse("t.sh", text).unwrap();
        assert_eq!(urls(&e), [("https://x.org/q", 6), ("https://x.org/g", 7)]);
    }

    // ---- curl options ----

    #[test]
    fn options_with_arguments_are_not_urls() {
        let text = concat!(
            "curl -H \"Authorization: token $MAST_API_TOKEN\" -A mastdl -e https://ref.org/ ",
            "-w '%{http_code}' --retry 3 --connect-timeout 10 --max-time 60 -u a:b ",
            "--cacert ca.pem -C - --continue-at - -X GET --header 'X: y' ",
            "-o out.fits 'https://x.org/f?uri=mast:A/b.fits'",
        );
        let e = one(text);
        assert_eq!(e.url.as_deref(), Some("https://x.org/f?uri=mast:A/b.fits"));
        assert_eq!(e.uri, "mast:A/b.fits");
        assert_eq!(e.local, path("out.fits"));
    }

    #[test]
    fn unknown_expansions_are_flags() {
        let e = one("curl --create-dirs $CONT ${CONT} \"$CONT\" $1 -o x https://x.org/x\n");
        assert_eq!(e.local, path("x"));
        // Even when the script sets it: `CONT="-C -"` is two words in bash.
        let e = one("CONT=\"-C -\"\ncurl $CONT -o x https://x.org/x\n");
        assert_eq!(e.local, path("x"));
    }

    #[test]
    fn combined_and_attached_short_options() {
        assert_eq!(
            one("curl -fsSLo out.fits https://x.org/a").local,
            path("out.fits")
        );
        assert_eq!(
            one("curl -sofile.fits https://x.org/a").local,
            path("file.fits")
        );
        assert_eq!(
            one("curl -o$DOWNLOAD_FOLDER/HST/a.fits https://x.org/a").local,
            path("HST/a.fits")
        );
        let e = one("curl -sSLH 'Authorization: token x' https://x.org/a");
        assert_eq!(e.local, LocalHint::None);
        assert_eq!(e.url.as_deref(), Some("https://x.org/a"));
    }

    #[test]
    fn url_option_and_end_of_options() {
        let e = one("curl --url https://x.org/a -o a");
        assert_eq!(e.url.as_deref(), Some("https://x.org/a"));
        let e = one("curl -o a -- https://x.org/a");
        assert_eq!(e.url.as_deref(), Some("https://x.org/a"));
    }

    #[test]
    fn several_urls_pair_with_outputs_in_order() {
        let text = "curl -o a https://x.org/a https://x.org/b -o b https://x.org/c\n";
        let e = parse("t.sh", text).unwrap();
        let got: Vec<_> = e.iter().map(|e| e.local.clone()).collect();
        assert_eq!(got, [path("a"), path("b"), LocalHint::None]);
        assert_eq!(
            urls(&e),
            [
                ("https://x.org/a", 1),
                ("https://x.org/b", 1),
                ("https://x.org/c", 1)
            ]
        );
    }

    #[test]
    fn no_output_remote_name_and_stdout() {
        assert_eq!(one("curl -O https://x.org/a").local, LocalHint::None);
        assert_eq!(one("curl -J -O https://x.org/a").local, LocalHint::None);
        assert_eq!(one("curl -o - https://x.org/a").local, LocalHint::None);
    }

    #[test]
    fn option_missing_its_argument_is_an_error() {
        let e = err("echo\ncurl https://x.org/a -o\n");
        assert_eq!(e.origin.line, 2);
        assert!(e.message.contains("`-o`"), "{e}");
        assert!(err("curl https://x.org/a --output")
            .message
            .contains("`--output`"));
    }

    // ---- URLs and URIs ----

    #[test]
    fn uri_is_decoded_once_and_plus_is_kept() {
        let url =
            "https://mast.stsci.edu/api/v0.1/Download/file?uri=mast%3AHLSP/a%2Bb+c%2520d.fits&x=1";
        let e = one(&format!("curl -o x '{url}'"));
        assert_eq!(e.uri, "mast:HLSP/a+b+c%20d.fits");
        assert_eq!(e.url.as_deref(), Some(url));
    }

    #[test]
    fn uri_need_not_be_mast() {
        // Portal bundles also hand out IRSA files through the Download service.
        let e = one(concat!(
            "curl -o a 'https://mast.stsci.edu/api/v0.1/Download/file?bundle_name=B.sh",
            "&uri=https://irsa.ipac.caltech.edu/data/SPITZER/a.fits'",
        ));
        assert_eq!(e.uri, "https://irsa.ipac.caltech.edu/data/SPITZER/a.fits");
    }

    #[test]
    fn url_without_uri_is_its_own_identity() {
        let url = "https://mast.stsci.edu/search/hst/api/v0.1/retrieve_product?\
                   product_name=ib1f01020_raw.fits";
        let e = one(&format!(
            "curl -L -X GET \"{url}\" --output \"MAST_2024/HST/ib1f01020/ib1f01020_raw.fits\" \
             --fail --create-dirs"
        ));
        assert_eq!(e.uri, url);
        assert_eq!(e.url.as_deref(), Some(url));
        assert_eq!(e.local, path("HST/ib1f01020/ib1f01020_raw.fits"));
    }

    #[test]
    fn curl_without_url_is_an_error() {
        let e = err("\n\ncurl --globoff \\\n  -o a.fits\n");
        assert_eq!(e.origin.line, 3);
        assert_eq!(e.message, "This curl command has no URL");
        let e = err("curl -o a.fits \"$URL\"\n");
        assert!(e.message.contains("shell variable"), "{e}");
    }

    #[test]
    fn known_variables_expand_unknown_ones_fail() {
        let text = concat!(
            "BASE=https://mast.stsci.edu/api/v0.1/Download/file\n",
            "P=\"mast:HST/product\"\n",
            "curl -o a \"$BASE?uri=${P}/a_flt.fits\"\n",
        );
        let e = one(text);
        assert_eq!(
            e.url.as_deref(),
            Some("https://mast.stsci.edu/api/v0.1/Download/file?uri=mast:HST/product/a_flt.fits")
        );
        assert_eq!(e.uri, "mast:HST/product/a_flt.fits");
        let e = err("curl -J -O \\\n  \"https://x.org/f?uri=mast:JWST/product/${fname}\"\n");
        assert_eq!(e.origin.line, 2);
        assert!(e.message.contains("`$fname`"), "{e}");
        let e = err("curl -o \"$OUT/a\" https://x.org/a\n");
        assert!(e.message.contains("`$OUT`"), "{e}");
    }

    #[test]
    fn non_http_urls_are_errors() {
        let e = err("curl -o a mast:HST/product/a_flt.fits\n");
        assert!(e.message.starts_with("Not an http(s) URL"), "{e}");
        assert!(err("curl -o a ftp://x.org/a\n")
            .message
            .starts_with("Not an http(s) URL"));
        assert!(err("curl -o a 'https://x.org/?uri='\n")
            .message
            .contains("empty"));
    }

    // ---- output paths ----

    #[test]
    fn download_folder_prefix_forms() {
        for out in [
            "./${DOWNLOAD_FOLDER}'/HST/a/a.fits'",
            "${DOWNLOAD_FOLDER}'/HST/a/a.fits'",
            "$DOWNLOAD_FOLDER/HST/a/a.fits",
            "\"$DOWNLOAD_FOLDER/HST/a/a.fits\"",
            "\"${HOME}/data/${DOWNLOAD_FOLDER}\"/./HST/a/a.fits",
        ] {
            let e = one(&format!("curl --output {out} https://x.org/a\n"));
            assert_eq!(e.local, path("HST/a/a.fits"), "{out}");
        }
    }

    #[test]
    fn download_folder_is_stripped_whatever_its_value() {
        let text = concat!(
            "FOLDER=MAST_2024-02-07T0307\n",
            "DOWNLOAD_FOLDER=\"${HOME}/datasets/${FOLDER}\"\n",
            "curl -o ${DOWNLOAD_FOLDER}'/HST/a/a.fits' https://x.org/a\n",
        );
        assert_eq!(one(text).local, path("HST/a/a.fits"));
    }

    #[test]
    fn literal_paths_lose_a_shared_bundle_folder_only() {
        let two = |text: &str| -> Vec<LocalHint> {
            parse("t.sh", text)
                .unwrap()
                .into_iter()
                .map(|e| e.local)
                .collect()
        };
        // A shared MAST_ folder is the bundle folder.
        assert_eq!(
            two("curl -o ./MAST_x/HST/a.fits https://x.org/a\ncurl -o MAST_x/HST/b.fits https://x.org/b\n"),
            [path("HST/a.fits"), path("HST/b.fits")]
        );
        // A folder the user chose stays.
        let e = one("curl --output './grism_F444W/jw_rate.fits' https://x.org/a\n");
        assert_eq!(e.local, path("grism_F444W/jw_rate.fits"));
        // Different folders, or a file beside the folder: nothing is stripped.
        assert_eq!(
            two("curl -o MAST_x/a.fits https://x.org/a\ncurl -o MAST_y/b.fits https://x.org/b\n"),
            [path("MAST_x/a.fits"), path("MAST_y/b.fits")]
        );
        assert_eq!(
            two("curl -o MAST_x/a.fits https://x.org/a\ncurl -o b.fits https://x.org/b\n"),
            [path("MAST_x/a.fits"), path("b.fits")]
        );
        // DOWNLOAD_FOLDER paths do not take part in the rule.
        assert_eq!(
            two("curl -o MAST_x/a.fits https://x.org/a\ncurl -o $DOWNLOAD_FOLDER/b.fits https://x.org/b\n"),
            [path("a.fits"), path("b.fits")]
        );
        // A folder named by FOLDER=... or DOWNLOAD_FOLDER=... is the download folder.
        let e = one("FOLDER=my_data\ncurl -o \"$FOLDER/HST/a.fits\" https://x.org/a\n");
        assert_eq!(e.local, path("HST/a.fits"));
        let e = one("DOWNLOAD_FOLDER='my_data'\ncurl -o my_data/HST/a.fits https://x.org/a\n");
        assert_eq!(e.local, path("HST/a.fits"));
        // Another variable's value is not a download folder.
        let e = one("MISSION=HST\ncurl -o \"$MISSION/a/a.fits\" https://x.org/a\n");
        assert_eq!(e.local, path("HST/a/a.fits"));
    }

    #[test]
    fn absolute_and_dotted_paths_are_left_to_the_plan() {
        assert_eq!(
            one("curl -o /data/a.fits https://x.org/a").local,
            path("/data/a.fits")
        );
        assert_eq!(
            one("curl -o ../a.fits https://x.org/a").local,
            path("../a.fits")
        );
        assert_eq!(
            one("curl -o $DOWNLOAD_FOLDER/../a.fits https://x.org/a").local,
            path("../a.fits")
        );
    }
}
