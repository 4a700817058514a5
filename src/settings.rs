//! The resolved configuration: built once from the command line and the
//! environment (defaults, token, shard, output mode). Nothing past this
//! module sees clap types.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::budget::Jobs;
use crate::cli::{
    CriteriaArgs, FetchArgs, FilterArgs, LogFormat, NetworkArgs, OutputArgs, ProgressMode,
    QueryArgs,
};
use crate::error::UsageError;
pub(crate) use crate::input::InputSource;
use crate::plan::{PlanOptions, Shard};
use crate::query::Criteria;
use crate::token::{self, Token};

/// Where public products may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cloud {
    /// The archive only.
    Off,
    /// The bucket when it has the product, else the archive (`--cloud`).
    Prefer,
    /// The bucket only (`--cloud-only`).
    Only,
}

/// The archive root when none is given.
pub(crate) const DEFAULT_BASE_URL: &str = "https://mast.stsci.edu";

/// How stderr looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    /// indicatif bars.
    Bars,
    /// Plain lines.
    Lines,
    /// JSON lines.
    Json,
}

impl Output {
    /// Resolves `--log-format`, `--progress` and `--quiet`: bars only
    /// when asked for (or on a terminal) and not quiet. Returns the
    /// output and whether it is quiet.
    pub(crate) fn resolve(args: OutputArgs) -> (Output, bool) {
        let OutputArgs {
            quiet,
            progress,
            log_format,
        } = args;
        let output = match (log_format, progress) {
            (LogFormat::Json, _) => Output::Json,
            (_, ProgressMode::Always) if !quiet => Output::Bars,
            (_, ProgressMode::Auto) if !quiet && std::io::stderr().is_terminal() => Output::Bars,
            _ => Output::Lines,
        };
        (output, quiet)
    }
}

/// The network flags ([`NetworkArgs`]), resolved once for every command
/// that talks to MAST.
#[derive(Debug, Clone)]
pub(crate) struct Network {
    /// The archive root.
    pub(crate) base: Url,
    /// `--base-url` given: URLs taken from scripts are re-rooted at it.
    pub(crate) rebase: bool,
    pub(crate) token: Option<Token>,
    /// How the one HTTP client connects.
    pub(crate) client: ClientSettings,
}

/// What the one HTTP client is built with, besides the connection limits
/// each command sets (see `commands::http`).
#[derive(Debug, Clone)]
pub(crate) struct ClientSettings {
    /// `--timeout`.
    pub(crate) stall: Duration,
    /// `--cacert`.
    pub(crate) cacert: Option<PathBuf>,
    /// `--trusted-host`.
    pub(crate) trusted_hosts: Vec<String>,
}

impl Network {
    /// Resolves `args` against the environment (`MAST_API_TOKEN`).
    pub(crate) fn resolve(args: NetworkArgs) -> Result<Network, UsageError> {
        let NetworkArgs {
            token,
            base_url: given,
            cacert,
            timeout,
            trusted_host,
        } = args;
        Ok(Network {
            rebase: given.is_some(),
            base: base_url(given)?,
            token: resolve_token(token.as_deref())?,
            client: ClientSettings {
                stall: Duration::from_secs(timeout.get()),
                cacert,
                trusted_hosts: trusted_host,
            },
        })
    }
}

/// Everything a run needs, resolved.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) inputs: Vec<InputSource>,
    pub(crate) dest: PathBuf,
    pub(crate) token: Option<Token>,
    /// True if and only if a prompt may ask for a token (stdin is a terminal).
    pub(crate) interactive: bool,
    pub(crate) jobs: Jobs,
    /// `--limit-rate`: bytes per second for the whole run.
    pub(crate) limit_rate: Option<u64>,
    pub(crate) retries: u32,
    pub(crate) plan: PlanOptions,
    pub(crate) force: bool,
    /// `--update`: HEAD complete files and replace changed ones.
    pub(crate) update: bool,
    pub(crate) output: Output,
    pub(crate) quiet: bool,
    /// How the one client connects: the rest of the [`Network`], whose
    /// archive root and re-rooting are `plan.base` and `plan.rebase`, and
    /// whose token is `token`.
    pub(crate) client: ClientSettings,
    /// `--query`: the search whose products are the input.
    pub(crate) query: Option<Criteria>,
    /// `--cloud` / `--cloud-only`.
    pub(crate) cloud: Cloud,
    /// `--s3-url`.
    pub(crate) s3_url: Url,
}

impl Settings {
    /// Resolves `args` against the environment.
    pub(crate) fn resolve(args: FetchArgs) -> Result<Settings, UsageError> {
        let FetchArgs {
            inputs,
            dest,
            network,
            jobs,
            limit_rate,
            retries,
            flat,
            filter: FilterArgs { extension },
            shard,
            force,
            update,
            cloud,
            cloud_only,
            s3_url,
            // `plan` instead of `fetch`: decided by `commands::run`.
            dry_run: _,
            output,
            query,
            criteria,
        } = args;
        let Network {
            base,
            rebase,
            token,
            client,
        } = Network::resolve(network)?;
        let shard = shard.as_deref().map(resolve_shard).transpose()?;
        let criteria = Criteria::from(criteria);
        let query = match (query, criteria.is_empty()) {
            (true, true) => {
                return Err(UsageError(
                    "`--query` needs search criteria, e.g. `--collection JWST --proposal 1073`"
                        .into(),
                ))
            }
            (true, false) if !inputs.is_empty() => {
                return Err(UsageError(
                    "`--query` reads no INPUT: give either criteria or inputs".into(),
                ))
            }
            (false, false) => {
                return Err(UsageError(
                    "Search criteria (`--collection`, `--proposal`, ...) need `--query`".into(),
                ))
            }
            (true, false) => Some(criteria.clone()),
            (false, true) => None,
        };
        let mut inputs: Vec<InputSource> = inputs
            .into_iter()
            .map(|p| {
                if p.as_os_str() == "-" {
                    InputSource::Stdin
                } else {
                    InputSource::File(p)
                }
            })
            .collect();
        if inputs.is_empty() {
            inputs.push(InputSource::Stdin);
        }
        let (output, quiet) = Output::resolve(output);
        let mut plan = PlanOptions::new(base);
        plan.rebase = rebase;
        plan.flat = flat;
        plan.extensions = extension;
        plan.shard = shard;
        plan.product_types = criteria.product_type.clone();
        plan.calib_levels = criteria.calib_level.clone();
        plan.mrp_only = criteria.mrp_only;
        Ok(Settings {
            inputs,
            dest,
            token,
            interactive: std::io::stdin().is_terminal(),
            jobs,
            limit_rate,
            retries,
            plan,
            force,
            update,
            output,
            quiet,
            client,
            query,
            cloud: match (cloud_only, cloud) {
                (true, _) => Cloud::Only,
                (false, true) => Cloud::Prefer,
                (false, false) => Cloud::Off,
            },
            s3_url,
        })
    }
}

impl From<CriteriaArgs> for Criteria {
    fn from(a: CriteriaArgs) -> Criteria {
        let CriteriaArgs {
            collection,
            proposal,
            instrument,
            target,
            obs_id,
            filters,
            dataproduct_type,
            product_type,
            calib_level,
            mrp_only,
            chunk_size,
        } = a;
        Criteria {
            collection,
            proposal,
            instrument,
            target,
            obs_id,
            filters,
            dataproduct_type,
            product_type,
            calib_level,
            mrp_only,
            chunk_size,
        }
    }
}

/// Where `query` writes the products.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum QueryOutput {
    /// A URI list, to a file or (`None`) stdout.
    List(Option<PathBuf>),
    /// A product table, to a file or stdout.
    Table(Option<PathBuf>),
}

impl QueryOutput {
    /// Returns the file to write, if not stdout.
    pub(crate) fn path(&self) -> Option<&std::path::Path> {
        match self {
            QueryOutput::List(p) | QueryOutput::Table(p) => p.as_deref(),
        }
    }
}

/// Everything `query` needs, resolved.
#[derive(Debug, Clone)]
pub(crate) struct QuerySettings {
    pub(crate) network: Network,
    pub(crate) criteria: Criteria,
    pub(crate) extensions: Vec<String>,
    pub(crate) output: QueryOutput,
}

impl QuerySettings {
    /// Resolves `args` against the environment.
    pub(crate) fn resolve(args: QueryArgs) -> Result<QuerySettings, UsageError> {
        let QueryArgs {
            criteria,
            filter: FilterArgs { extension },
            output,
            table,
            network,
        } = args;
        let criteria = Criteria::from(criteria);
        if criteria.is_empty() {
            return Err(UsageError(
                "`query` needs search criteria, e.g. `--collection JWST --proposal 1073 --instrument NIRCAM*`".into(),
            ));
        }
        Ok(QuerySettings {
            network: Network::resolve(network)?,
            criteria,
            extensions: extension,
            output: match table {
                Some(t) => QueryOutput::Table(Some(t)),
                None => QueryOutput::List(output),
            },
        })
    }
}

/// Returns the archive root: `--base-url` (or `MASTDL_BASE_URL`), else MAST.
pub(crate) fn base_url(given: Option<Url>) -> Result<Url, UsageError> {
    let base = match given {
        Some(u) => u,
        None => Url::parse(DEFAULT_BASE_URL).map_err(|e| UsageError(e.to_string()))?,
    };
    if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
        return Err(UsageError(format!(
            "`--base-url` must be an http(s) URL, got `{}`",
            crate::layout::redact_url(&base)
        )));
    }
    if let Some(p) = base.password() {
        // Userinfo is a credential: scrubbed from every output.
        token::register_secret(p);
        if let Ok(decoded) = percent_encoding::percent_decode_str(p).decode_utf8() {
            token::register_secret(&decoded);
        }
    }
    Ok(base)
}

/// Returns the token from `--token`, else `MAST_API_TOKEN`; a token no
/// HTTP header can carry is a usage error.
pub(crate) fn resolve_token(given: Option<&str>) -> Result<Option<Token>, UsageError> {
    let env = std::env::var(token::TOKEN_ENV).ok();
    token::resolve(given, env.as_deref()).map_err(|e| UsageError(e.to_string()))
}

/// Resolves `--shard`: `K/N`, or `auto` from the environment of Slurm job
/// arrays (`(SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP`
/// of `SLURM_ARRAY_TASK_COUNT`; ranges such as `0-7` or `1-8:2`, not lists)
/// or Kubernetes Indexed Jobs (`JOB_COMPLETION_INDEX` with `MASTDL_SHARD_COUNT`).
fn resolve_shard(s: &str) -> Result<Shard, UsageError> {
    resolve_shard_with(s, &|k| std::env::var(k).ok())
}

/// [`resolve_shard`] with the environment given as a lookup.
fn resolve_shard_with(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Shard, UsageError> {
    if s != "auto" {
        return s
            .parse()
            .map_err(|e: String| UsageError(format!("`--shard`: {e}")));
    }
    let var = |k: &str| env(k).and_then(|v| v.trim().parse::<u32>().ok());
    let found = if let (Some(id), Some(count)) =
        (var("SLURM_ARRAY_TASK_ID"), var("SLURM_ARRAY_TASK_COUNT"))
    {
        let step = var("SLURM_ARRAY_TASK_STEP").unwrap_or(1).max(1);
        Some((
            id.saturating_sub(var("SLURM_ARRAY_TASK_MIN").unwrap_or(0)) / step,
            count,
        ))
    } else if let (Some(id), Some(count)) = (var("JOB_COMPLETION_INDEX"), var("MASTDL_SHARD_COUNT"))
    {
        Some((id, count))
    } else {
        None
    };
    let (k, n) = found.ok_or_else(|| {
        UsageError(
            "`--shard auto` found no shard in the environment: set SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT (Slurm), or JOB_COMPLETION_INDEX and MASTDL_SHARD_COUNT (Kubernetes Indexed Job)".into(),
        )
    })?;
    format!("{k}/{n}")
        .parse()
        .map_err(|e: String| UsageError(format!("`--shard auto`: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn flags_parse_with_defaults() {
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            criteria: CriteriaArgs,
        }
        let cli = Cli::try_parse_from([
            "x",
            "--collection",
            "JWST",
            "--proposal",
            "1073",
            "--instrument",
            "NIRCAM/IMAGE",
            "--obs-id",
            "jw1",
            "--target",
            "M31",
            "--filters",
            "F150W",
            "--dataproduct-type",
            "image",
            "--product-type",
            "SCIENCE",
            "--calib-level",
            "2",
            "--calib-level",
            "3",
            "--mrp-only",
        ])
        .unwrap();
        let c = Criteria::from(cli.criteria);
        assert_eq!(c.collection, ["JWST"]);
        assert_eq!(c.proposal, ["1073"]);
        assert_eq!(c.instrument, ["NIRCAM/IMAGE"]);
        assert_eq!(c.obs_id, ["jw1"]);
        assert_eq!(c.target, ["M31"]);
        assert_eq!(c.filters, ["F150W"]);
        assert_eq!(c.dataproduct_type, ["image"]);
        assert_eq!(c.product_type, ["SCIENCE"]);
        assert_eq!(c.calib_level, [2, 3]);
        assert!(c.mrp_only);
        assert_eq!(c.chunk_size, crate::query::DEFAULT_CHUNK_SIZE);
        assert_eq!(
            Criteria::default().chunk_size,
            crate::query::DEFAULT_CHUNK_SIZE
        );
        assert!(Criteria::default().is_empty());
        let cli = Cli::try_parse_from(["x", "--chunk-size", "9"]).unwrap();
        assert_eq!(Criteria::from(cli.criteria).chunk_size, 9);
    }

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn shards_come_from_the_flag_slurm_or_kubernetes() {
        let none = env(&[]);
        assert_eq!(resolve_shard_with("2/5", &none).unwrap().to_string(), "2/5");
        assert!(resolve_shard_with("5/5", &none).is_err());
        assert!(resolve_shard_with("0/4294967295", &none).is_err());
        assert!(resolve_shard_with("auto", &none).is_err());
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "14"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "8"),
        ]);
        assert_eq!(
            resolve_shard_with("auto", &slurm).unwrap().to_string(),
            "7/8"
        );
        let one_based = env(&[
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "8"),
        ]);
        assert_eq!(
            resolve_shard_with("auto", &one_based).unwrap().to_string(),
            "0/8"
        );
        let k8s = env(&[("JOB_COMPLETION_INDEX", "3"), ("MASTDL_SHARD_COUNT", "4")]);
        assert_eq!(resolve_shard_with("auto", &k8s).unwrap().to_string(), "3/4");
        let half = env(&[("JOB_COMPLETION_INDEX", "3")]);
        assert!(resolve_shard_with("auto", &half).is_err());
    }

    #[test]
    fn base_urls_must_be_http_and_passwords_are_secrets() {
        assert!(base_url(Some(Url::parse("ftp://x.org").unwrap())).is_err());
        let b = base_url(Some(Url::parse("https://u:Pw-123456@x.org").unwrap())).unwrap();
        assert_eq!(b.host_str(), Some("x.org"));
        assert_eq!(crate::token::scrub("a Pw-123456 b"), "a (redacted) b");
        assert_eq!(base_url(None).unwrap().as_str(), "https://mast.stsci.edu/");
    }
}
