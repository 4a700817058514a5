//! The resolved configuration: built once from the command line and the
//! environment (defaults, token, shard, output mode). Nothing past this
//! module sees clap types.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::cli::{FetchArgs, LogFormat, ProgressMode};
use crate::error::UsageError;
use crate::plan::{PlanOptions, Shard};
use crate::query::Criteria;
use crate::token::{self, Token};

/// MAST's public bucket on AWS Open Data.
pub const DEFAULT_S3_URL: &str = "https://stpubdata.s3.us-east-1.amazonaws.com";

/// Where public products may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    /// The archive only.
    Off,
    /// The bucket when it has the product, else the archive (`--cloud`).
    Prefer,
    /// The bucket only (`--cloud-only`).
    Only,
}

/// The archive root when none is given.
pub const DEFAULT_BASE_URL: &str = "https://mast.stsci.edu";

/// How stderr looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// indicatif bars.
    Bars,
    /// Plain lines.
    Lines,
    /// JSON lines.
    Json,
}

/// One input to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSource {
    Stdin,
    File(PathBuf),
}

/// Everything a run needs, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub inputs: Vec<InputSource>,
    pub dest: PathBuf,
    pub token: Option<Token>,
    /// True if and only if a prompt may ask for a token (stdin is a terminal).
    pub interactive: bool,
    pub jobs: usize,
    /// `--limit-rate`: bytes per second for the whole run.
    pub limit_rate: Option<u64>,
    pub retries: u32,
    pub stall: Duration,
    pub plan: PlanOptions,
    pub force: bool,
    /// `--update`: HEAD complete files and replace changed ones.
    pub update: bool,
    pub output: Output,
    pub quiet: bool,
    pub trusted_hosts: Vec<String>,
    pub cacert: Option<PathBuf>,
    /// `--query`: the search whose products are the input.
    pub query: Option<Criteria>,
    /// `--cloud` / `--cloud-only`.
    pub cloud: Cloud,
    /// `--s3-url`.
    pub s3_url: Url,
}

impl Settings {
    /// Resolves `args` against the environment.
    pub fn resolve(args: FetchArgs) -> Result<Settings, UsageError> {
        let rebase = args.base_url.is_some();
        let base = base_url(args.base_url)?;
        let shard = args.shard.as_deref().map(resolve_shard).transpose()?;
        let query = match (args.query, args.criteria.is_empty()) {
            (true, true) => {
                return Err(UsageError(
                    "`--query` needs search criteria, e.g. `--collection JWST --proposal 1073`"
                        .into(),
                ))
            }
            (true, false) if !args.inputs.is_empty() => {
                return Err(UsageError(
                    "`--query` reads no INPUT: give either criteria or inputs".into(),
                ))
            }
            (false, false) => {
                return Err(UsageError(
                    "Search criteria (`--collection`, `--proposal`, ...) need `--query`".into(),
                ))
            }
            (true, false) => Some(args.criteria.clone()),
            (false, true) => None,
        };
        let mut inputs: Vec<InputSource> = args
            .inputs
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
        let stderr_tty = std::io::stderr().is_terminal();
        let output = match (args.log_format, args.progress) {
            (LogFormat::Json, _) => Output::Json,
            (_, ProgressMode::Always) if !args.quiet => Output::Bars,
            (_, ProgressMode::Auto) if stderr_tty && !args.quiet => Output::Bars,
            _ => Output::Lines,
        };
        let mut plan = PlanOptions::new(base);
        plan.rebase = rebase;
        plan.flat = args.flat;
        plan.extensions = args.extension;
        plan.shard = shard;
        plan.product_types = args.criteria.product_type.clone();
        plan.calib_levels = args.criteria.calib_level.clone();
        plan.mrp_only = args.criteria.mrp_only;
        Ok(Settings {
            inputs,
            dest: args.dest,
            token: resolve_token(args.token.as_deref())?,
            interactive: std::io::stdin().is_terminal(),
            jobs: args.jobs.get(),
            limit_rate: args.limit_rate,
            retries: args.retries,
            stall: Duration::from_secs(args.timeout.get()),
            plan,
            force: args.force,
            update: args.update,
            output,
            quiet: args.quiet,
            trusted_hosts: args.trusted_host,
            cacert: args.cacert,
            query,
            cloud: match (args.cloud_only, args.cloud) {
                (true, _) => Cloud::Only,
                (false, true) => Cloud::Prefer,
                (false, false) => Cloud::Off,
            },
            s3_url: args.s3_url,
        })
    }
}

/// Returns the archive root: `--base-url` (or `MASTDL_BASE_URL`), else MAST.
pub fn base_url(given: Option<Url>) -> Result<Url, UsageError> {
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
pub fn resolve_token(given: Option<&str>) -> Result<Option<Token>, UsageError> {
    let env = std::env::var(token::TOKEN_ENV).ok();
    token::resolve(given, env.as_deref()).map_err(|e| UsageError(e.to_string()))
}

/// Resolves `--shard`: `K/N`, or `auto` from the environment of Slurm job
/// arrays (`(SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP`
/// of `SLURM_ARRAY_TASK_COUNT`; ranges such as `0-7` or `1-8:2`, not lists)
/// or Kubernetes Indexed Jobs (`JOB_COMPLETION_INDEX` with `MASTDL_SHARD_COUNT`).
fn resolve_shard(s: &str) -> Result<Shard, UsageError> {
    if s != "auto" {
        return s
            .parse()
            .map_err(|e: String| UsageError(format!("`--shard`: {e}")));
    }
    let var = |k: &str| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
    };
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
