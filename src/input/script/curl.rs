//! The part of curl's command line that matters to a download script:
//! which words are URLs, where `-o`/`--output` writes them, and which
//! commands send a request body (and so download no product). Option
//! tables follow curl's `tool_getparam.c`.

use super::shell::{Part, Word};
use super::{uri_param, Fail, Found, Out, Pending, Reader};

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
    pub(super) fn curl(&mut self, line: usize, args: &[Word]) -> Result<(), Fail> {
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
                        self.curl_option(&mut cmd, long, arg)?;
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
                        self.curl_option(&mut cmd, short_name(letter), &arg)?;
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
            let method = cmd.method.as_deref().unwrap_or("POST").to_ascii_uppercase();
            self.skipped
                .request(&method, cmd.urls.first().map(String::as_str));
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
            self.items.push(Pending::File(Found {
                uri: uri.unwrap_or_else(|| url.clone()),
                url,
                out,
                line,
            }));
        }
        Ok(())
    }

    /// Applies an option that takes an argument; `name` is its long name.
    fn curl_option(&self, cmd: &mut Curl, name: &str, arg: &Word) -> Result<(), Fail> {
        match name {
            "output" => cmd.outputs.push(self.output(arg)?),
            "url" => cmd.urls.push(self.url(arg)?),
            "request" => cmd.method = self.expand(&arg.parts).ok(),
            _ if BODY_OPTIONS.contains(&name) => cmd.sends_body = true,
            _ => {}
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::input::LocalHint;

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
}
