//! The shell words of a download script: a small tokenizer for what MAST's
//! scripts and their users write (quotes, backslashes, `\` line
//! continuations, `$VAR`/`${VAR}` expansions, comments, operators,
//! heredocs), grouping the tokens into simple commands. It knows nothing of
//! curl or wget; nothing is ever run.

use super::Fail;

/// A piece of a shell word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Part {
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
pub(super) struct Word {
    pub(super) parts: Vec<Part>,
    /// The 1-based line the word starts on.
    pub(super) line: usize,
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
    pub(super) fn literal(&self) -> Option<String> {
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
    pub(super) fn lead(&self) -> &str {
        match self.parts.first() {
            Some(Part::Text { text, .. }) => text,
            _ => "",
        }
    }

    /// True for `$CONT`, `"${CONT}"`: nothing but expansions.
    pub(super) fn only_expansions(&self) -> bool {
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
pub(super) enum Token {
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
pub(super) struct Lexer {
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
    pub(super) fn new(text: &str) -> Lexer {
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

    pub(super) fn run(mut self) -> Result<Vec<Token>, Fail> {
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

pub(super) fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Groups tokens into simple commands, dropping redirections and their
/// targets.
pub(super) fn commands(tokens: Vec<Token>) -> Vec<Vec<Word>> {
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

/// `NAME=value` words: the name and the value's parts.
pub(super) fn assignment(word: &Word) -> Option<(String, Vec<Part>)> {
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

#[cfg(test)]
mod tests {
    use super::super::test_util::*;

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
        // The heredoc closes, so its curl line is text: no download at all.
        let e = err("cat <<EOT\ncurl -o a https://x.org/a\nEOT");
        assert!(
            e.message
                .starts_with("No `curl` or `wget` download command"),
            "{e}"
        );
        assert_eq!(
            one("cat <<EOT\nx\nEOT\ncurl -o a https://x.org/a")
                .origin
                .line,
            4
        );
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
}
