//! MAST download scripts: the shell files that the MAST Portal, astroquery
//! (`download_products(..., curl_flag=True)`), the mission search pages and
//! MAST's Kepler/K2 bulk-download pages hand out, read into entries without
//! ever being run. This module owns what a script means: which commands
//! download (curl and wget), the variables it sets, where its files land
//! (the download-folder rules), and the note about the commands it does
//! not run. The grammars live beside it: [`shell`] (words and commands),
//! [`curl`] and [`wget`] (their command lines).

mod curl;
mod shell;
mod wget;

use std::collections::{HashMap, HashSet};

use percent_encoding::percent_decode_str;

use super::listing::Listing;
use super::{Entry, InputError, Item, LocalHint, Origin, ProductMeta};
use shell::{assignment, commands, Lexer, Part, Word};

/// The variable that MAST's scripts prefix every `--output` path with.
const FOLDER_VAR: &str = "DOWNLOAD_FOLDER";

/// Variables whose values name a script's download folder (see
/// [`parse`], rule for literal output paths).
const FOLDER_VARS: [&str; 2] = ["FOLDER", "DOWNLOAD_FOLDER"];

/// Words that may stand before a command's name: `if curl ...`.
const PREFIX_WORDS: &[&str] = &[
    "!", "{", "if", "then", "else", "elif", "while", "until", "do", "time", "command", "exec",
    "nohup",
];

/// Words that close a compound command; they are not commands of their own.
const CLOSING_WORDS: &[&str] = &["fi", "done", "esac", "}", ")"];

/// What a script asks for.
#[derive(Debug)]
pub(crate) struct Script {
    /// The files and directory listings, in the script's order.
    pub(crate) items: Vec<Item>,
    /// What the script does that mastdl does not (said once on stderr).
    pub(crate) note: Option<String>,
}

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
/// product and are skipped. `wget` lines are read too (see [`wget`]): a
/// recursive one becomes an [`Item::Listing`]. Commands that download
/// nothing are counted for [`Script::note`]. A script with no download
/// command at all is an error.
///
/// Errors name `file` and a line: a quote, `$(`, `${` or heredoc never
/// closed; a curl command with no URL; a URL that is not http(s) or uses a
/// variable the script does not set; an output path using such a
/// variable.
pub(crate) fn read(file: &str, text: &str) -> Result<Script, InputError> {
    let text = text.replace("\r\n", "\n");
    let fail = |e: Fail| InputError::new(file, e.line, e.message);
    let tokens = Lexer::new(&text).run().map_err(fail)?;
    let mut reader = Reader::default();
    for command in commands(tokens) {
        reader.command(&command).map_err(fail)?;
    }
    if reader.items.is_empty() {
        return Err(InputError::new(file, 1, reader.skipped.nothing_found()));
    }
    let note = reader.skipped.note();
    Ok(Script {
        items: reader.finish(file),
        note,
    })
}

/// Reads a script's single-file downloads only (its listings dropped): see
/// [`read`].
#[cfg(test)]
pub(crate) fn parse(file: &str, text: &str) -> Result<Vec<Entry>, InputError> {
    Ok(read(file, text)?
        .items
        .into_iter()
        .filter_map(|item| match item {
            Item::Entry(e) => Some(e),
            Item::Listing(_) => None,
        })
        .collect())
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

/// Where a download command writes, before the script-wide folder rule.
#[derive(Debug, Clone)]
enum Out {
    None,
    /// The part after `$DOWNLOAD_FOLDER`.
    InFolder(String),
    /// A path written without `$DOWNLOAD_FOLDER`.
    Literal(String),
}

/// One file a command downloads.
#[derive(Debug)]
struct Found {
    uri: String,
    url: String,
    out: Out,
    line: usize,
}

/// What a command asks for, before the script-wide rules.
#[derive(Debug)]
enum Pending {
    File(Found),
    Listing(Listing),
}

/// The commands a script has that mastdl does not run, counted by kind.
#[derive(Debug, Default)]
struct Skipped {
    /// `POST to `x`` → how many.
    requests: Vec<(String, usize)>,
    /// Command name → how many.
    commands: Vec<(String, usize)>,
}

fn count(list: &mut Vec<(String, usize)>, key: String) {
    match list.iter_mut().find(|(k, _)| *k == key) {
        Some((_, n)) => *n += 1,
        None => list.push((key, 1)),
    }
}

fn counted(list: &[(String, usize)]) -> String {
    list.iter()
        .map(|(k, n)| {
            if *n == 1 {
                k.clone()
            } else {
                format!("{k} ×{n}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Skipped {
    /// Counts a request that sends a body or uses a method other than GET.
    fn request(&mut self, method: &str, url: Option<&str>) {
        let target = url
            .and_then(|u| url::Url::parse(u).ok())
            .and_then(|u| u.path_segments()?.next_back().map(str::to_string))
            .filter(|s| !s.is_empty());
        let key = match target {
            Some(t) => format!("{method} to `{}`", shown(&t)),
            None => method.to_string(),
        };
        count(&mut self.requests, key);
    }

    /// Counts a command that downloads nothing.
    fn command(&mut self, name: &str) {
        if !CLOSING_WORDS.contains(&name) {
            count(&mut self.commands, format!("`{}`", shown(name)));
        }
    }

    fn total(list: &[(String, usize)]) -> usize {
        list.iter().map(|(_, n)| n).sum()
    }

    /// Says what was skipped and why, or `None` when nothing was.
    fn note(&self) -> Option<String> {
        self.found().map(|found| format!("Not run: {found}"))
    }

    /// What the script has besides downloads, or `None` when nothing.
    fn found(&self) -> Option<String> {
        let mut parts = Vec::new();
        let requests = Skipped::total(&self.requests);
        if requests > 0 {
            let (s, verb) = if requests == 1 { ("", "s") } else { ("s", "") };
            parts.push(format!(
                "{requests} request{s} that send{verb} a body or use{verb} another method than GET ({}: a manifest or query request, not a file)",
                counted(&self.requests)
            ));
        }
        let commands = Skipped::total(&self.commands);
        if commands > 0 {
            let (s, verb) = if commands == 1 { ("", "s") } else { ("s", "") };
            parts.push(format!(
                "{commands} command{s} that download{verb} nothing ({})",
                counted(&self.commands)
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// The error for a script with no download command.
    fn nothing_found(&self) -> String {
        let found = match self.found() {
            Some(found) => format!(", only {found}"),
            None => " (it has no commands at all, only comments, assignments or heredoc text)"
                .to_string(),
        };
        format!(
            "No `curl` or `wget` download command in this script{found}: mastdl reads a script's download commands and never runs it; give it a MAST download script, a URI list or a product table"
        )
    }
}

/// Walks the commands in order, tracking variables and collecting
/// downloads.
#[derive(Default)]
struct Reader {
    /// Plain assignments seen so far; `None` when the value is unknown.
    vars: HashMap<String, Option<String>>,
    /// Every value given to a [`FOLDER_VARS`] variable.
    folder_values: HashSet<String>,
    items: Vec<Pending>,
    skipped: Skipped,
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
            Some(name) if name == "wget" || name.ends_with("/wget") => {
                self.wget(name_word.line, args)?;
            }
            Some(name) => self
                .skipped
                .command(name.rsplit('/').next().unwrap_or(name)),
            None => self.skipped.command("(a command named by an expansion)"),
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
    pub(super) fn expand(&self, parts: &[Part]) -> Result<String, String> {
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

    pub(super) fn url(&self, word: &Word) -> Result<String, Fail> {
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
                format!(
                    "Not an http(s) URL in a download command: `{}`",
                    shown(&url)
                ),
            )),
        }
    }

    pub(super) fn output(&self, word: &Word) -> Result<Out, Fail> {
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

    fn finish(self, file: &str) -> Vec<Item> {
        let bundle = self.bundle_folder();
        let origin = |line| Origin {
            file: file.to_string(),
            line,
        };
        self.items
            .into_iter()
            .map(|pending| match pending {
                Pending::Listing(mut listing) => {
                    listing.origin.file = file.to_string();
                    Item::Listing(listing)
                }
                Pending::File(found) => {
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
                    Item::Entry(Entry {
                        uri: found.uri,
                        url: Some(found.url),
                        local,
                        size: None,
                        meta: ProductMeta::default(),
                        origin: origin(found.line),
                    })
                }
            })
            .collect()
    }

    /// The folder (with its `/`) that starts every literal output path,
    /// when it is the script's download folder (see [`parse`]).
    fn bundle_folder(&self) -> Option<String> {
        let mut head: Option<&str> = None;
        for pending in &self.items {
            let Pending::File(Found {
                out: Out::Literal(path),
                ..
            }) = pending
            else {
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

/// Helpers for the tests of this module and its grammars.
#[cfg(test)]
mod test_util {
    pub(super) use super::parse;
    pub(super) use crate::input::{Entry, InputError, LocalHint};

    pub(super) fn path(p: &str) -> LocalHint {
        LocalHint::Path(p.to_string())
    }

    pub(super) fn one(text: &str) -> Entry {
        let mut entries = parse("t.sh", text).unwrap();
        assert_eq!(entries.len(), 1, "{entries:#?}");
        entries.remove(0)
    }

    pub(super) fn err(text: &str) -> InputError {
        parse("t.sh", text).unwrap_err()
    }

    pub(super) fn urls(entries: &[Entry]) -> Vec<(&str, usize)> {
        entries
            .iter()
            .map(|e| (e.url.as_deref().unwrap_or(""), e.origin.line))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

    const PORTAL_TOKEN: &str =
        include_str!("../../../tests/fixtures/scripts/portal_token_multiline.sh");
    const PORTAL_PUBLIC: &str =
        include_str!("../../../tests/fixtures/scripts/portal_public_single_line.sh");
    const PORTAL_FLAT: &str =
        include_str!("../../../tests/fixtures/scripts/portal_flat_no_folder.sh");
    const MISSION: &str =
        include_str!("../../../tests/fixtures/scripts/mission_search_retrieve_product.sh");
    const HLA: &str = include_str!("../../../tests/fixtures/scripts/hla_cutout.sh");
    const CRLF_BOM: &str =
        include_str!("../../../tests/fixtures/scripts/crlf_bom_trailing_backslash.sh");

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
        let e = crate::input::read::read_text("w.sh", CRLF_BOM).unwrap();
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
        let e = err(text);
        assert_eq!(e.origin.line, 1);
        assert_eq!(
            e.message,
            "No `curl` or `wget` download command in this script, only 6 commands \
             that download nothing (`type`, `echo` ×3, `exit`, `which`): mastdl reads \
             a script's download commands and never runs it; give it a MAST download \
             script, a URI list or a product table"
        );
        assert!(err("").message.contains("no commands at all"));
        assert!(err("#!/bin/bash\nexit 0\n")
            .message
            .contains("1 command that downloads nothing (`exit`)"));
        let e = err("curl -X POST -o a https://x.org/retrieve_product_zip\n");
        assert!(e.message.contains("1 request that sends a body"), "{e}");
    }

    #[test]
    fn skipped_commands_are_noted_once() {
        let s = read(
            "m.sh",
            concat!(
                "mkdir -p a; cd a\n",
                "echo start\n",
                "curl -X POST -F x=1 https://x.org/api/v0.1/retrieve_product_zip -o m.zip\n",
                "curl -o a https://x.org/a\n",
                "echo done\n",
                "if true; then echo x; fi\n",
            ),
        )
        .unwrap();
        assert_eq!(s.items.len(), 1);
        assert_eq!(
            s.note.as_deref(),
            Some(
                "Not run: 1 request that sends a body or uses another method than GET \
                 (POST to `retrieve_product_zip`: a manifest or query request, not a file); \
                 6 commands that download nothing (`mkdir`, `cd`, `echo` ×3, `true`)"
            )
        );
        assert_eq!(
            read("t.sh", "curl -o a https://x.org/a\n").unwrap().note,
            None
        );
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
