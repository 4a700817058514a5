//! Where a product lands on disk, and which URIs and paths are acceptable.
//!
//! Pure functions: the contract layout `COLL/OBS_ID/FILENAME`, the checks
//! that keep every path inside DEST, and the mapping of names Windows forbids.

use std::borrow::Cow;

/// Returns true if and only if `s` holds a control character (C0, DEL or C1).
fn has_control(s: &str) -> bool {
    // Printable ASCII (almost every URI and path) is told in blocks of 16
    // bytes without a branch per byte; the first block that is not hands
    // over to the byte loop below.
    let bytes = s.as_bytes();
    let plain = bytes
        .chunks(16)
        .take_while(|c| c.iter().fold(true, |ok, &b| ok & (0x20..0x7f).contains(&b)))
        .count()
        * 16;
    if plain >= bytes.len() {
        return false;
    }
    // One pass over ASCII; the first non-ASCII byte hands over to `char`s
    // (C1 controls are two bytes in UTF-8).
    for (i, b) in s.bytes().enumerate() {
        if b < 0x20 || b == 0x7f {
            return true;
        }
        if b >= 0x80 {
            return s[i..].chars().any(char::is_control);
        }
    }
    false
}

/// Returns true if and only if `s` starts with `mast:` (any case): the one
/// test of whether a string is meant as a MAST URI.
pub(crate) fn is_mast_uri(s: &str) -> bool {
    s.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("mast:"))
}

/// Checks a `mast:` URI: `mast:COLLECTION/.../FILE`, with no empty, `.` or
/// `..` segments in its path (the part before any `?`), no absolute path,
/// backslash or control character anywhere. Returns what is wrong.
pub(crate) fn check_uri(uri: &str) -> Result<(), String> {
    if plain_uri(uri) {
        return Ok(());
    }
    check_uri_fully(uri)
}

/// [`check_uri`] without its fast path.
fn check_uri_fully(uri: &str) -> Result<(), String> {
    if has_control(uri) {
        return Err("control character in URI".into());
    }
    if uri.contains('\\') {
        return Err("backslash in URI".into());
    }
    let rest = uri
        .get(5..)
        .filter(|_| is_mast_uri(uri))
        .ok_or("not a `mast:` URI")?;
    let path = rest.split('?').next().unwrap_or("");
    if path.starts_with('/') {
        return Err("absolute path in URI".into());
    }
    if !path.contains('/') {
        return Err("URI names no file (expected `mast:COLLECTION/.../FILE`)".into());
    }
    for s in path.split('/') {
        match s {
            "" => return Err("empty path segment".into()),
            "." | ".." => return Err(format!("`{s}` path segment")),
            _ => {}
        }
    }
    Ok(())
}

/// Returns true if and only if `bytes` is printable ASCII without a
/// backslash (told 16 bytes at a time, without a branch per byte).
fn plain_ascii(bytes: &[u8]) -> bool {
    let bad = |b: u8| !(0x20..0x7f).contains(&b) | (b == b'\\');
    let mut blocks = bytes.chunks_exact(16);
    for block in &mut blocks {
        if block.iter().fold(false, |any, &b| any | bad(b)) {
            return false;
        }
    }
    !blocks.remainder().iter().any(|&b| bad(b))
}

/// Returns true only if no segment of the `/`-separated `path` (up to a
/// `?`, if any) is empty, `.` or `..`, told in one pass without a branch
/// per byte: it starts with none of `/`, `.`, `?`, does not end with `/`,
/// and no `/` is followed by `/`, `.` or `?`. (It is cautious: `a/.b` is
/// fine but left to the full check.)
fn plain_path(path: &[u8]) -> bool {
    let (Some(&first), Some(&last), Some(next)) = (path.first(), path.last(), path.get(1..)) else {
        return false;
    };
    let bad = path.iter().zip(next).fold(false, |any, (&a, &b)| {
        any | ((a == b'/') & ((b == b'/') | (b == b'.') | (b == b'?')))
    });
    !bad && !matches!(first, b'/' | b'.' | b'?') && last != b'/'
}

/// The fast path of [`check_uri`]: true only for a URI it accepts (printable
/// ASCII, no backslash, a plain path holding a `/` before any `?`).
/// Anything else is left to the full check and its messages.
fn plain_uri(uri: &str) -> bool {
    let b = uri.as_bytes();
    if !is_mast_uri(uri) || !plain_ascii(b) {
        return false;
    }
    let rest = &b[5..];
    plain_path(rest)
        && rest
            .iter()
            .position(|&c| c == b'/' || c == b'?')
            .is_some_and(|i| rest[i] == b'/')
}

fn check_segment(s: &str) -> Result<(), String> {
    match s {
        "" => Err("empty path segment".into()),
        "." | ".." => Err(format!("`{s}` path segment")),
        _ if has_control(s) => Err("control character in path".into()),
        _ if s.contains('\\') => Err("backslash in path".into()),
        _ => Ok(()),
    }
}

/// Returns the collection: the first segment after `mast:`.
pub(crate) fn collection(uri: &str) -> &str {
    uri.get(5..)
        .unwrap_or("")
        .split(['/', '?'])
        .next()
        .unwrap_or("")
}

/// Returns the file name: the URI path's last segment, followed by the
/// URI's own query (`?…`) when it has one, with any `/` in that query
/// replaced by `_` so it stays one path component. A query naming the file
/// itself (HLA's `getdata.cgi?dataset=NAME`) gives NAME, as the Portal
/// names it, when NAME is one plain path component.
pub(crate) fn filename(uri: &str) -> Cow<'_, str> {
    let rest = uri.get(5..).unwrap_or("");
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let last = path.rsplit('/').next().unwrap_or(path);
    match query {
        None => Cow::Borrowed(last),
        Some(q) => match dataset(q) {
            Some(name) => Cow::Borrowed(name),
            None => Cow::Owned(format!("{last}?{}", q.replace('/', "_"))),
        },
    }
}

/// The `dataset=` value of a URI's query, when it is a plain file name.
fn dataset(query: &str) -> Option<&str> {
    let name = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("dataset="))?;
    let plain = !name.contains(['/', '%', '?', '#']) && check_segment(name).is_ok();
    plain.then_some(name)
}

/// Returns the observation id for a file name: the name up to its last `_`,
/// or, without `_`, up to its first `.` (`lwp13058.mxlo.gz` → `lwp13058`).
/// A query part (`?…`) is ignored.
pub(crate) fn obs_id(filename: &str) -> &str {
    let name = filename.split('?').next().unwrap_or(filename);
    if let Some(i) = name.rfind('_') {
        &name[..i]
    } else if let Some(i) = name.find('.') {
        &name[..i]
    } else {
        name
    }
}

/// Splits a relative `/`-separated path and checks every component: no
/// empty, `.` or `..` components, no absolute path, backslash or control
/// character. Returns the components.
pub(crate) fn checked_components(path: &str) -> Result<Vec<&str>, String> {
    if path.starts_with('/') {
        return Err(format!("absolute path `{}`", escape(path)));
    }
    let parts: Vec<&str> = path.split('/').collect();
    for p in &parts {
        check_segment(p).map_err(|e| format!("{e} in `{}`", escape(path)))?;
    }
    Ok(parts)
}

/// Checks a relative `/`-separated path as [`checked_components`] does,
/// without collecting its components.
pub(crate) fn check_components(path: &str) -> Result<(), String> {
    // The fast path: printable ASCII without a backslash, and no empty,
    // `.` or `..` component (what nearly every path is).
    if plain_ascii(path.as_bytes()) && plain_path(path.as_bytes()) {
        return Ok(());
    }
    check_components_fully(path)
}

/// [`check_components`] without its fast path.
fn check_components_fully(path: &str) -> Result<(), String> {
    if path.starts_with('/') {
        return Err(format!("absolute path `{}`", escape(path)));
    }
    for p in path.split('/') {
        check_segment(p).map_err(|e| format!("{e} in `{}`", escape(path)))?;
    }
    Ok(())
}

/// Returns `name` made safe for the local file system. On Windows the
/// characters `<>:"|?*` become `_`, trailing dots and spaces are dropped and
/// reserved device names (`CON`, `NUL`, `COM1`…) get a `_` appended;
/// elsewhere the name is kept as it is.
pub(crate) fn portable(name: &str) -> Cow<'_, str> {
    if cfg!(windows) {
        windows_safe(name)
    } else {
        Cow::Borrowed(name)
    }
}

/// Returns `name` as Windows accepts it (see [`portable`]).
pub(crate) fn windows_safe(name: &str) -> Cow<'_, str> {
    const RESERVED: [&str; 22] = [
        "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
        "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
    ];
    let bad = |c: char| matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*') || c.is_control();
    let trimmed = name.trim_end_matches(['.', ' ']);
    let stem = trimmed.split('.').next().unwrap_or("");
    let reserved = RESERVED.iter().any(|r| r.eq_ignore_ascii_case(stem));
    if trimmed.len() == name.len() && !reserved && !name.contains(bad) {
        return Cow::Borrowed(name);
    }
    let mut out: String = trimmed
        .chars()
        .map(|c| if bad(c) { '_' } else { c })
        .collect();
    if reserved {
        out.insert(stem.len(), '_');
    }
    if out.is_empty() {
        out.push('_');
    }
    Cow::Owned(out)
}

/// The bookkeeping folder's name inside DEST (never a product's path).
pub(crate) const META_DIR: &str = ".mastdl";

/// Returns `url` as text with any password in its userinfo replaced by
/// `(redacted)`, for output and manifests.
pub(crate) fn redact_url(url: &url::Url) -> String {
    if url.password().is_none() {
        return url.to_string();
    }
    let mut shown = url.clone();
    let _ = shown.set_password(Some("(redacted)"));
    shown.to_string()
}

/// Returns the URL text `url` as [`redact_url`] shows it.
pub(crate) fn redact_url_text(url: &str) -> String {
    // Only a URL with an `@` can carry a password.
    match url.contains('@').then(|| url::Url::parse(url)) {
        Some(Ok(u)) => redact_url(&u),
        _ => url.to_string(),
    }
}

/// Returns `s` with control characters escaped and every registered
/// secret removed ([`crate::token::scrub`]), for messages.
pub(crate) fn escape(s: &str) -> String {
    crate::token::scrub(s)
        .chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_found_wherever_they_are() {
        let long = "mast:JWST/product/jw01000-o001_t001_nircam_clear-f090w_i2d.fits";
        assert!(!has_control(long));
        assert!(!has_control(""));
        assert!(!has_control("é ü ~ plain"));
        for at in [0, 7, 15, 16, 17, 31, 40, long.len()] {
            for c in ['\0', '\t', '\x7f', '\u{85}'] {
                let mut s = long.to_string();
                s.insert(at, c);
                assert!(has_control(&s), "{c:?} at {at}");
            }
        }
    }

    #[test]
    fn the_fast_paths_accept_only_what_the_full_checks_accept() {
        let mut cases = Vec::new();
        let atoms = [
            "a", "/", ".", "..", "?", "\\", "\u{1}", "\u{e9}", "_", "//", "/.", "?/",
        ];
        for x in atoms {
            for y in atoms {
                for z in atoms {
                    cases.push(format!("{x}{y}{z}"));
                    cases.push(format!("X/{x}{y}/{z}b"));
                    cases.push(format!("{x}/b{y}{z}"));
                }
            }
        }
        for rest in cases {
            let uri = format!("mast:{rest}");
            assert_eq!(
                check_uri(&uri).is_ok(),
                check_uri_fully(&uri).is_ok(),
                "{uri:?}"
            );
            assert_eq!(
                check_components(&rest).is_ok(),
                check_components_fully(&rest).is_ok(),
                "{rest:?}"
            );
        }
        assert!(plain_uri(
            "mast:JWST/product/jw01000-o001_t001_nircam_clear-f090w_cal.fits"
        ));
        assert!(plain_path(b"SCALE/o00000/o00000_0000000.fits"));
    }

    #[test]
    fn layout_parts_follow_the_contract() {
        let u = "mast:JWST/product/jw01409-o031_t014_nircam_clear-f212n_i2d.fits";
        assert_eq!(collection(u), "JWST");
        assert_eq!(filename(u), "jw01409-o031_t014_nircam_clear-f212n_i2d.fits");
        assert_eq!(obs_id(&filename(u)), "jw01409-o031_t014_nircam_clear-f212n");
        assert_eq!(obs_id("lwp13058.mxlo.gz"), "lwp13058");
        assert_eq!(obs_id("README"), "README");
        let hla = "mast:HLA/url/cgi-bin/fitscut.cgi?red=hst_1/x&blue=b";
        assert_eq!(collection(hla), "HLA");
        assert_eq!(filename(hla), "fitscut.cgi?red=hst_1_x&blue=b");
        assert_eq!(obs_id(&filename(hla)), "fitscut");
        // HLA's getdata.cgi names the file in its query: the Portal's layout.
        let getdata =
            "mast:HLA/url/cgi-bin/getdata.cgi?dataset=hst_10268_05_acs_wfc_f606w_09_drz.fits";
        assert_eq!(filename(getdata), "hst_10268_05_acs_wfc_f606w_09_drz.fits");
        assert_eq!(obs_id(&filename(getdata)), "hst_10268_05_acs_wfc_f606w_09");
        for odd in [
            "getdata.cgi?dataset=../x.fits",
            "getdata.cgi?dataset=",
            "getdata.cgi?dataset=a%2Fb",
        ] {
            let uri = format!("mast:HLA/url/cgi-bin/{odd}");
            assert!(filename(&uri).starts_with("getdata.cgi?"), "{odd}");
        }
    }

    #[test]
    fn hostile_uris_are_refused() {
        for bad in [
            "mast:HST/../etc/passwd",
            "mast:/etc/passwd",
            "mast:HST//a.fits",
            "mast:HST/a\\b.fits",
            "mast:HST/a\u{0}b.fits",
            "mast:HST/a\nb.fits",
            "mast:HST",
            "mast:HST/",
            "http://x/y",
            "mast:HST/./a.fits",
        ] {
            assert!(check_uri(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_uri("mast:HST/product/a_b.fits").is_ok());
        assert!(check_uri("MAST:hst/product/a_b.fits").is_ok());
        assert!(check_uri("mast:HLA/url/cgi-bin/fitscut.cgi?red=a&blue=../b").is_ok());
    }

    #[test]
    fn components_stay_relative() {
        assert_eq!(
            checked_components("A/b/c.fits").unwrap(),
            ["A", "b", "c.fits"]
        );
        assert!(checked_components("../x").is_err());
        assert!(checked_components("/x").is_err());
        assert!(checked_components("a//x").is_err());
        assert!(checked_components("").is_err());
    }

    #[test]
    fn windows_names_are_mapped_in_one_place() {
        assert_eq!(windows_safe("a_b.fits"), "a_b.fits");
        assert_eq!(
            windows_safe("fitscut.cgi?red=a&blue=b"),
            "fitscut.cgi_red=a&blue=b"
        );
        assert_eq!(windows_safe("a:b*c\"d<e>f|g"), "a_b_c_d_e_f_g");
        assert_eq!(windows_safe("name. . "), "name");
        assert_eq!(windows_safe("CON"), "CON_");
        assert_eq!(windows_safe("nul.txt"), "nul_.txt");
        assert_eq!(windows_safe("COM1.fits"), "COM1_.fits");
        assert_eq!(windows_safe("CONSOLE.fits"), "CONSOLE.fits");
        assert_eq!(windows_safe(".."), "_");
    }
}
