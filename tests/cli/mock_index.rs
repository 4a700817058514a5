//! The archive's public directory tree, as Apache serves it: index pages
//! (sort links, a parent link, files, sub-folders, an off-site link and a
//! link outside the folder) below `/pub/`, and the files themselves. Index
//! pages answer 401 to a request that carries credentials, so a test
//! proves listings send none.

use axum::extract::Path;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The Kepler target folder the tests pull.
pub const KEPLER_DIR: &str = "/pub/kepler/lightcurves/0024/002439243/";

/// The files below [`KEPLER_DIR`] (path below it, size).
pub const KEPLER_FILES: &[(&str, usize)] = &[
    ("kplr002439243-2009131105131_llc.fits", 2880),
    ("kplr002439243-2009131110544_slc.fits", 5760),
    ("kplr002439243-2009166043257_llc.fits", 2881),
    ("sub/kplr002439243-2010078095331_llc.fits", 100),
    ("sub/deeper/kplr002439243-2011073133259_llc.fits", 101),
];

/// A file beside [`KEPLER_DIR`], linked from its index page.
pub const SIBLING_FILE: &str =
    "/pub/kepler/lightcurves/0024/002436324/kplr002436324-2009131105131_llc.fits";

/// A folder whose index page links to names that cannot be local files
/// (each must be skipped) beside [`BAD_DIR_FILES`] (each must be kept).
pub const BAD_DIR: &str = "/pub/bad/";

/// The links of [`BAD_DIR`] that cannot be local files: a `/` inside a
/// name, mastdl's own manifest at the top of DEST (with `-nd`), a `.part`
/// temporary, a NUL.
pub const BAD_NAMES: &[&str] = &[
    "a%2F..%2Fb_llc.fits",
    "MANIFEST.json",
    "x.fits.part",
    "c%00d_llc.fits",
];

/// The good files of [`BAD_DIR`] (name, size).
pub const BAD_DIR_FILES: &[(&str, usize)] = &[("good1_llc.fits", 1200), ("good2_llc.fits", 1300)];

/// Returns the routes of the directory tree (the smallest hook into the
/// mock's router: `.merge(mock_index::router())`).
pub fn router() -> Router {
    Router::new().route("/pub/{*path}", get(serve))
}

/// The bytes of the file at `path` (below `/pub/`).
pub fn file_bytes(path: &str, size: usize) -> Vec<u8> {
    path.bytes().cycle().take(size).collect()
}

fn index(title: &str, rows: &[&str]) -> String {
    let mut html = format!(
        "<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 3.2 Final//EN\">\n<html><head><title>Index of {title}</title></head><body>\n\
         <h1>Index of {title}</h1><table>\n\
         <tr><th><a href=\"?C=N;O=D\">Name</a></th><th><a href=\"?C=M;O=A\">Last modified</a></th><th><a href=\"?C=S;O=A\">Size</a></th></tr>\n\
         <tr><td><a href=\"../\">Parent Directory</a></td></tr>\n"
    );
    for r in rows {
        html.push_str(&format!(
            "<tr><td><a href=\"{r}\">{r}</a></td><td>2016-05-02 12:00</td></tr>\n"
        ));
    }
    html.push_str("</table><address>Apache Server</address></body></html>\n");
    html
}

fn page(path: &str) -> Option<String> {
    if path == BAD_DIR {
        let mut rows: Vec<&str> = BAD_NAMES.to_vec();
        rows.insert(1, BAD_DIR_FILES[0].0);
        rows.push(BAD_DIR_FILES[1].0);
        return Some(index(BAD_DIR, &rows));
    }
    let dir = path.strip_prefix(KEPLER_DIR);
    Some(match dir? {
        "" => index(
            KEPLER_DIR,
            &[
                "kplr002439243-2009131105131_llc.fits",
                "kplr002439243-2009131110544_slc.fits",
                "kplr002439243-2009166043257_llc.fits",
                "sub/",
                "http://other.invalid/pub/x_llc.fits",
                "../002436324/kplr002436324-2009131105131_llc.fits",
                "/pub/kepler/lightcurves/",
                "index.html",
            ],
        ),
        "sub/" => index(
            "sub",
            &["kplr002439243-2010078095331_llc.fits", "deeper/", "../"],
        ),
        "sub/deeper/" => index("deeper", &["kplr002439243-2011073133259_llc.fits"]),
        _ => return None,
    })
}

async fn serve(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let full = format!("/pub/{path}");
    if full.ends_with('/') {
        if headers.contains_key(header::AUTHORIZATION) || headers.contains_key(header::COOKIE) {
            return (StatusCode::UNAUTHORIZED, "no credentials for index pages").into_response();
        }
        return match page(&full) {
            Some(html) => {
                ([(header::CONTENT_TYPE, "text/html;charset=UTF-8")], html).into_response()
            }
            None => (StatusCode::NOT_FOUND, "no such folder").into_response(),
        };
    }
    let size = KEPLER_FILES
        .iter()
        .find(|(p, _)| format!("{KEPLER_DIR}{p}") == full)
        .map(|(_, s)| *s)
        .or_else(|| {
            BAD_DIR_FILES
                .iter()
                .find(|(p, _)| format!("{BAD_DIR}{p}") == full)
                .map(|(_, s)| *s)
        })
        .or_else(|| (full == SIBLING_FILE).then_some(10));
    match size {
        Some(size) => (
            [(header::CONTENT_TYPE, "application/fits")],
            file_bytes(&full, size),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}
