//! The part of wget's command line that matters to MAST's Kepler/K2 bulk
//! download scripts: which words are URLs, `-O` (one file's name), and for a
//! recursive pull (`-r`, `-m`) the options that choose and place its files
//! (`-A`/`-R`, `-l`, `-np`, `-nH`, `--cut-dirs`, `-nd`, `-P`). A recursive
//! line becomes a [`Listing`] for [`crate::input::listing`] to expand; the
//! parse itself never touches the network.

use super::shell::Word;
use super::{uri_param, Fail, Found, Out, Pending, Reader};
use crate::input::listing::{Layout, Listing};
use crate::input::Origin;

/// Short wget options that take an argument (`-n` takes its letters too).
const SHORT_WITH_ARG: &str = "eoaiBtOTwQPlARDIXUYCn";

/// Long wget options that take an argument (wget's `main.c` option table).
const LONG_WITH_ARG: &[&str] = &[
    "accept",
    "accept-regex",
    "append-output",
    "backups",
    "base",
    "bind-address",
    "body-data",
    "body-file",
    "ca-certificate",
    "ca-directory",
    "certificate",
    "certificate-type",
    "config",
    "connect-timeout",
    "cut-dirs",
    "default-page",
    "directory-prefix",
    "dns-timeout",
    "domains",
    "exclude-directories",
    "exclude-domains",
    "execute",
    "follow-tags",
    "ftp-password",
    "ftp-user",
    "header",
    "http-password",
    "http-user",
    "ignore-tags",
    "include-directories",
    "input-file",
    "level",
    "limit-rate",
    "load-cookies",
    "local-encoding",
    "method",
    "output-document",
    "output-file",
    "password",
    "post-data",
    "post-file",
    "private-key",
    "private-key-type",
    "progress",
    "proxy-password",
    "proxy-user",
    "quota",
    "read-timeout",
    "referer",
    "regex-type",
    "reject",
    "reject-regex",
    "rejected-log",
    "remote-encoding",
    "restrict-file-names",
    "retry-on-http-error",
    "save-cookies",
    "secure-protocol",
    "timeout",
    "tries",
    "use-askpass",
    "user",
    "user-agent",
    "wait",
    "waitretry",
    "warc-file",
    "warc-header",
    "warc-max-size",
    "warc-tempdir",
];

/// The state of one wget command line.
#[derive(Default)]
struct Wget {
    urls: Vec<String>,
    output: Option<Out>,
    prefix: Option<String>,
    recursive: bool,
    /// `-l`: `Some(None)` for `0`/`inf`.
    level: Option<Option<u32>>,
    accept: Vec<String>,
    reject: Vec<String>,
    cut_dirs: usize,
    no_host: bool,
    no_dirs: bool,
    force_dirs: bool,
    /// `--post-data`, `--method`, `--spider`...: downloads no product.
    no_download: Option<String>,
}

impl Reader {
    /// Reads one wget command (`args` after the `wget` word at `line`).
    pub(super) fn wget(&mut self, line: usize, args: &[Word]) -> Result<(), Fail> {
        let mut cmd = Wget::default();
        let mut i = 0;
        let mut options_done = false;
        while let Some(word) = args.get(i) {
            i += 1;
            let lead = word.lead();
            if options_done || !lead.starts_with('-') || lead == "-" {
                if word.only_expansions() {
                    continue;
                }
                cmd.urls.push(self.url(word)?);
            } else if lead == "--" && word.parts.len() == 1 {
                options_done = true;
            } else if let Some(long) = lead.strip_prefix("--") {
                let (name, attached) = match long.split_once('=') {
                    Some((n, v)) => (n, Some(v)),
                    None => (long, None),
                };
                if LONG_WITH_ARG.contains(&name) {
                    let value = match attached {
                        Some(v) => self.rest_of(word, lead.len() - v.len())?,
                        None => {
                            let arg = args.get(i).ok_or_else(|| missing_arg(word, lead))?;
                            i += 1;
                            self.value(arg)?
                        }
                    };
                    self.wget_option(&mut cmd, name, &value, word.line)?;
                } else {
                    flag(&mut cmd, name);
                }
            } else {
                i = self.short_options(&mut cmd, word, args, i)?;
            }
        }
        self.finish_wget(line, cmd)
    }

    /// Reads a word of short options (`-qnH`, `-erobots=off`, `-P dir`);
    /// returns the index of the next word.
    fn short_options(
        &self,
        cmd: &mut Wget,
        word: &Word,
        args: &[Word],
        mut i: usize,
    ) -> Result<usize, Fail> {
        let lead = word.lead();
        for (k, letter) in lead.char_indices().skip(1) {
            if !SHORT_WITH_ARG.contains(letter) {
                flag(cmd, short_flag(letter));
                continue;
            }
            let at = k + letter.len_utf8();
            let value = if at == lead.len() && word.parts.len() == 1 {
                let arg = args
                    .get(i)
                    .ok_or_else(|| missing_arg(word, &format!("-{letter}")))?;
                i += 1;
                self.value(arg)?
            } else {
                self.rest_of(word, at)?
            };
            if letter == 'n' {
                for c in value.chars() {
                    flag(cmd, short_n(c));
                }
            } else {
                self.wget_option(cmd, short_name(letter), &value, word.line)?;
            }
            break;
        }
        Ok(i)
    }

    /// The value of `word` from byte `at` of its leading text on.
    fn rest_of(&self, word: &Word, at: usize) -> Result<String, Fail> {
        let whole = self.value(word)?;
        Ok(whole[at.min(whole.len())..].to_string())
    }

    fn value(&self, word: &Word) -> Result<String, Fail> {
        self.expand(&word.parts).map_err(|e| {
            Fail::new(
                word.line,
                format!(
                    "This wget option uses `{e}`, which the script does not set to a plain value"
                ),
            )
        })
    }

    /// Applies an option that takes an argument; `name` is its long name.
    fn wget_option(
        &self,
        cmd: &mut Wget,
        name: &str,
        value: &str,
        line: usize,
    ) -> Result<(), Fail> {
        let list = |v: &str| -> Vec<String> {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        match name {
            "output-document" => {
                cmd.output = Some(if value == "-" {
                    Out::None
                } else {
                    Out::Literal(value.to_string())
                })
            }
            "directory-prefix" => cmd.prefix = Some(value.to_string()),
            "accept" => cmd.accept.extend(list(value)),
            "reject" => cmd.reject.extend(list(value)),
            "level" => {
                cmd.level = Some(match value {
                    "0" | "inf" => None,
                    n => Some(n.parse().map_err(|_| {
                        Fail::new(line, format!("wget `-l` wants a depth, not `{n}`"))
                    })?),
                })
            }
            "cut-dirs" => {
                cmd.cut_dirs = value.parse().map_err(|_| {
                    Fail::new(
                        line,
                        format!("wget `--cut-dirs` wants a number, not `{value}`"),
                    )
                })?
            }
            "post-data" | "post-file" | "body-data" | "body-file" => {
                cmd.no_download = Some("POST".into())
            }
            "method" if !value.eq_ignore_ascii_case("GET") => {
                cmd.no_download = Some(value.to_ascii_uppercase())
            }
            _ => {}
        }
        Ok(())
    }

    fn finish_wget(&mut self, line: usize, cmd: Wget) -> Result<(), Fail> {
        if let Some(method) = &cmd.no_download {
            self.skipped
                .request(method, cmd.urls.first().map(String::as_str));
            return Ok(());
        }
        if cmd.urls.is_empty() {
            return Err(Fail::new(line, "This wget command has no URL"));
        }
        let mut layout = Layout {
            prefix: cmd.prefix.clone().unwrap_or_default(),
            no_host: cmd.no_host,
            cut_dirs: cmd.cut_dirs,
            dirs: cmd.force_dirs,
        };
        if cmd.recursive {
            if cmd.output.is_some() {
                return Err(Fail::new(
                    line,
                    "This recursive wget writes every file into the one `-O` file, which mastdl cannot do: drop `-O`",
                ));
            }
            layout.dirs = !cmd.no_dirs;
            for url in cmd.urls {
                self.items.push(Pending::Listing(Listing {
                    url,
                    accept: cmd.accept.clone(),
                    reject: cmd.reject.clone(),
                    level: cmd.level.unwrap_or(Some(5)),
                    layout: layout.clone(),
                    origin: Origin {
                        file: String::new(),
                        line,
                    },
                }));
            }
            return Ok(());
        }
        if cmd.output.is_some() && cmd.urls.len() > 1 {
            return Err(Fail::new(
                line,
                "This wget writes several URLs into the one `-O` file, which mastdl cannot do: give each URL its own line",
            ));
        }
        for url in cmd.urls {
            let uri = uri_param(&url).map_err(|m| Fail::new(line, m))?;
            let out = match (&cmd.output, &uri) {
                (Some(out), _) => out.clone(),
                (None, Some(_)) => Out::None,
                (None, None) => {
                    let parsed =
                        url::Url::parse(&url).map_err(|e| Fail::new(line, e.to_string()))?;
                    Out::Literal(layout.path(&parsed).map_err(|m| Fail::new(line, m))?)
                }
            };
            self.items.push(Pending::File(Found {
                uri: uri.unwrap_or_else(|| url.clone()),
                url,
                out,
                line,
            }));
        }
        Ok(())
    }
}

/// Applies a flag (an option without an argument), by its long name.
fn flag(cmd: &mut Wget, name: &str) {
    match name {
        "recursive" => cmd.recursive = true,
        "mirror" => {
            cmd.recursive = true;
            cmd.level = Some(None);
        }
        "no-host-directories" => cmd.no_host = true,
        "no-directories" => cmd.no_dirs = true,
        "force-directories" => cmd.force_dirs = true,
        "spider" => cmd.no_download = Some("spider (`--spider`)".into()),
        _ => {}
    }
}

/// The long name of a short flag, for the ones that matter here.
fn short_flag(letter: char) -> &'static str {
    match letter {
        'r' => "recursive",
        'm' => "mirror",
        'x' => "force-directories",
        _ => "",
    }
}

/// The long name of a `-n` letter (`-nH`, `-nd`, `-np`, `-nv`, `-nc`).
fn short_n(letter: char) -> &'static str {
    match letter {
        'H' => "no-host-directories",
        'd' => "no-directories",
        _ => "",
    }
}

/// The long name of a short option that takes an argument.
fn short_name(letter: char) -> &'static str {
    match letter {
        'O' => "output-document",
        'P' => "directory-prefix",
        'A' => "accept",
        'R' => "reject",
        'l' => "level",
        _ => "",
    }
}

fn missing_arg(word: &Word, option: &str) -> Fail {
    Fail::new(word.line, format!("wget option `{option}` has no argument"))
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::{read, Script};
    use crate::input::listing::Listing;
    use crate::input::Item;

    const KEPLER: &str = include_str!("../../../tests/fixtures/scripts/kepler_wget.sh");

    fn listings(script: &Script) -> Vec<&Listing> {
        script
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Listing(l) => Some(l),
                Item::Entry(_) => None,
            })
            .collect()
    }

    #[test]
    fn kepler_bulk_script_gives_one_listing_per_wget_line() {
        let s = read("k.sh", KEPLER).unwrap();
        let l = listings(&s);
        assert_eq!(l.len(), 2);
        assert_eq!(
            l[0].url,
            "http://archive.stsci.edu/pub/kepler/lightcurves/0024/002439243/"
        );
        assert_eq!(l[0].accept, ["_llc.fits"]);
        assert_eq!(l[0].reject, ["index*"]);
        assert_eq!(l[0].level, None, "-l0 is infinite");
        assert_eq!(l[0].layout.cut_dirs, 6);
        assert!(l[0].layout.no_host && l[0].layout.dirs);
        assert_eq!(l[0].layout.prefix, "kepler/0024/002439243");
        assert_eq!(l[0].origin.file, "k.sh");
        assert_eq!(l[0].origin.line, 6);
        assert_eq!(l[1].origin.line, 9);
        assert_eq!(l[1].layout.prefix, "");
        // The mkdir/cd/echo lines are named once.
        let note = s.note.unwrap();
        assert!(
            note.contains("`mkdir`") && note.contains("`cd`") && note.contains("`echo` ×2"),
            "{note}"
        );
    }

    #[test]
    fn option_spellings() {
        let s = read(
            "t.sh",
            "wget --recursive --level=2 --no-parent --cut-dirs 3 --no-host-directories \
             --accept='*.fits,*.txt' --reject=index.html --directory-prefix=data \
             -e robots=off https://x.org/pub/a/\n",
        )
        .unwrap();
        let l = listings(&s)[0];
        assert_eq!(l.level, Some(2));
        assert_eq!(l.accept, ["*.fits", "*.txt"]);
        assert_eq!(l.reject, ["index.html"]);
        assert_eq!(l.layout.cut_dirs, 3);
        assert_eq!(l.layout.prefix, "data");
        let s = read("t.sh", "wget -rnd -l1 -Pout -A.fits https://x.org/a/\n").unwrap();
        let l = listings(&s)[0];
        assert!(!l.layout.dirs);
        assert_eq!(l.level, Some(1));
        assert_eq!(l.layout.prefix, "out");
        assert_eq!(l.accept, [".fits"]);
        let s = read("t.sh", "wget -m https://x.org/a/\n").unwrap();
        assert_eq!(listings(&s)[0].level, None);
        assert_eq!(listings(&s)[0].layout.prefix, "");
    }

    #[test]
    fn single_file_forms() {
        let e = one("wget -O kplr_llc.fits http://archive.stsci.edu/pub/kepler/a/kplr_llc.fits\n");
        assert_eq!(e.local, path("kplr_llc.fits"));
        assert_eq!(e.uri, "http://archive.stsci.edu/pub/kepler/a/kplr_llc.fits");
        let e = one("wget -q http://archive.stsci.edu/pub/kepler/a/b_llc.fits\n");
        assert_eq!(e.local, path("b_llc.fits"));
        let e = one("wget -P data -x -nH --cut-dirs=2 http://h.org/pub/kepler/a/b_llc.fits\n");
        assert_eq!(e.local, path("data/a/b_llc.fits"));
        let e = one("wget 'https://mast.stsci.edu/api/v0.1/Download/file?uri=mast:HST/product/a_flt.fits'\n");
        assert_eq!(e.uri, "mast:HST/product/a_flt.fits");
        assert_eq!(e.local, crate::input::LocalHint::None);
    }

    #[test]
    fn wget_errors_name_their_line() {
        let e = err("echo\nwget -q\n");
        assert_eq!(e.origin.line, 2);
        assert_eq!(e.message, "This wget command has no URL");
        assert!(err("wget -l x -r https://x.org/\n")
            .message
            .contains("`-l`"));
        assert!(err("wget -r -O a https://x.org/\n")
            .message
            .contains("`-O`"));
        assert!(err("wget https://x.org/a -P\n").message.contains("`-P`"));
    }

    #[test]
    fn posts_and_spiders_are_skipped_and_named() {
        let s = read(
            "t.sh",
            "wget --post-data=a=1 https://x.org/q\nwget --spider https://x.org/s\nwget https://x.org/f.fits\n",
        )
        .unwrap();
        assert_eq!(s.items.len(), 1);
        let note = s.note.unwrap();
        assert!(
            note.contains("POST to `q`") && note.contains("spider"),
            "{note}"
        );
    }
}
