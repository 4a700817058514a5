//! The command line as the user typed it: clap derive, validated, no I/O.
//! Nothing past [`crate::settings`] sees these types.

use std::num::NonZeroU64;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use url::Url;

/// MAST's public bucket on AWS Open Data.
pub(crate) const DEFAULT_S3_URL: &str = "https://stpubdata.s3.us-east-1.amazonaws.com";

/// The version string: the crate version and, when built from git, the commit.
pub(crate) const VERSION: &str = env!("MASTDL_VERSION");

/// Fast, resumable bulk downloads from MAST, the Mikulski Archive for Space Telescopes.
#[derive(Debug, Parser)]
#[command(name = "mastdl", version = VERSION, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Download the files an input names into DEST, with MANIFEST.HTML and MANIFEST.json.
    Fetch(FetchArgs),
    /// Print the download plan (URI, URL, PATH; TAB-separated) and download nothing.
    Plan(FetchArgs),
    /// Search MAST and print the products' `mast:` URIs (or write a product table).
    Query(QueryArgs),
    /// Merge the shard manifests in DEST into DEST/MANIFEST.json and MANIFEST.HTML.
    Report {
        /// The payload folder the shards wrote to.
        #[arg(value_name = "DEST")]
        dest: PathBuf,
    },
    /// Check a mirror, read-only: every recorded file present, same size, same MD5 (exit 0 clean, 1 not).
    Verify(VerifyArgs),
    /// Print the man page (roff) on standard output: `mastdl man > mastdl.1`.
    Man,
    /// Generate shell completions.
    Completions {
        /// bash, zsh or fish.
        #[arg(value_enum, value_name = "SHELL")]
        shell: ShellKind,
    },
}

impl Cli {
    /// Returns true if and only if stderr is to carry JSON events.
    pub fn json_logs(&self) -> bool {
        match &self.command {
            Command::Fetch(a) | Command::Plan(a) => a.output.log_format == LogFormat::Json,
            Command::Verify(a) => a.output.log_format == LogFormat::Json,
            _ => false,
        }
    }

    /// Returns true if and only if the command downloads (so an input error
    /// means nothing was downloaded).
    pub fn downloads(&self) -> bool {
        matches!(self.command, Command::Fetch(_) | Command::Plan(_))
    }
}

/// Shells completions are generated for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ShellKind {
    Bash,
    Zsh,
    Fish,
}

/// When to draw progress bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProgressMode {
    /// Only when stderr is a terminal.
    Auto,
    Always,
    Never,
}

/// How messages on stderr look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Lines for people.
    Text,
    /// One JSON object per event.
    Json,
}

/// Options shared by `fetch` and `plan`.
#[derive(Debug, Args)]
pub(crate) struct FetchArgs {
    /// A URI list, MAST download script or product table (CSV/ECSV); `-` or none reads standard input.
    #[arg(value_name = "INPUT")]
    pub(crate) inputs: Vec<PathBuf>,

    /// Payload folder.
    #[arg(short = 'd', long, value_name = "DIR", default_value = "mastDownload")]
    pub(crate) dest: PathBuf,

    #[command(flatten)]
    pub(crate) network: NetworkArgs,

    /// Concurrent transfers: a number (at most N connections to a host) or `auto` (start at 4, grow with throughput to 16).
    #[arg(short = 'j', long, value_name = "N|auto", default_value = "auto")]
    pub(crate) jobs: crate::budget::Jobs,

    /// Run-wide cap in bytes per second, curl's syntax (`500k`, `20M`, `1G`), shared by all transfers.
    #[arg(long, value_name = "RATE", value_parser = crate::rate::parse_rate)]
    pub(crate) limit_rate: Option<u64>,

    /// Retries per file on transient errors.
    #[arg(long, value_name = "N", default_value_t = crate::retry::DEFAULT_RETRIES)]
    pub(crate) retries: u32,

    /// Put files straight into DEST (no COLL/OBS_ID folders).
    #[arg(long)]
    pub(crate) flat: bool,

    #[command(flatten)]
    pub(crate) filter: FilterArgs,

    /// Only the K-th (0-based) of N disjoint shards; `auto` reads SLURM_ARRAY_TASK_ID/COUNT or JOB_COMPLETION_INDEX (+ MASTDL_SHARD_COUNT).
    #[arg(long, value_name = "K/N")]
    pub(crate) shard: Option<String>,

    /// Re-download files even if complete.
    #[arg(long)]
    pub(crate) force: bool,

    /// Ask the archive whether complete files changed (reprocessed) and replace those that did.
    #[arg(long, conflicts_with = "force")]
    pub(crate) update: bool,

    /// Fetch public products from MAST's AWS Open Data bucket when they are there.
    #[arg(long, env = "MASTDL_CLOUD", value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) cloud: bool,

    /// Like `--cloud`, and never download from the archive: what is not in the bucket is SKIPPED.
    #[arg(long)]
    pub(crate) cloud_only: bool,

    /// Bucket endpoint (objects at `{URL}/{key}`).
    #[arg(long, value_name = "URL", env = "MASTDL_S3_URL", default_value = DEFAULT_S3_URL)]
    pub(crate) s3_url: Url,

    /// Same as `plan`: print the plan, download nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,

    #[command(flatten)]
    pub(crate) output: OutputArgs,

    /// Fetch what a MAST search returns (criteria below) instead of reading an input.
    #[arg(long)]
    pub(crate) query: bool,

    #[command(flatten)]
    pub(crate) criteria: CriteriaArgs,
}

/// Options of `verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The payload folder a `mastdl fetch` filled.
    #[arg(value_name = "DEST")]
    pub(crate) dest: PathBuf,

    /// Also list files below DEST that no record lists.
    #[arg(long)]
    pub(crate) extra: bool,

    /// Also ask each file's source (one HEAD each) whether its size or validators changed.
    #[arg(long)]
    pub(crate) remote: bool,

    /// Also print on standard output, as a download script `mastdl fetch` reads, the files `fetch --force` would repair.
    #[arg(long)]
    pub(crate) print_repair: bool,

    /// With `--remote`: HEAD requests at once (at most N connections to a host).
    #[arg(short = 'j', long, value_name = "N", default_value = "4")]
    pub(crate) jobs: std::num::NonZeroUsize,

    // The archive and the token, for `--remote`.
    #[command(flatten)]
    pub(crate) network: NetworkArgs,

    #[command(flatten)]
    pub(crate) output: OutputArgs,
}

/// Options of `query`.
#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    #[command(flatten)]
    pub(crate) criteria: CriteriaArgs,

    #[command(flatten)]
    pub(crate) filter: FilterArgs,

    /// Write the URI list to FILE instead of standard output.
    #[arg(short = 'o', long, value_name = "FILE", conflicts_with = "table")]
    pub(crate) output: Option<PathBuf>,

    /// Write a product table (CSV) to FILE instead of a URI list.
    #[arg(long, value_name = "FILE")]
    pub(crate) table: Option<PathBuf>,

    #[command(flatten)]
    pub(crate) network: NetworkArgs,
}

/// How to reach the archive, with which token, trusting whom: one
/// declaration for every command that talks to MAST (resolved once, by
/// `settings::Network::resolve`).
#[derive(Debug, Args)]
pub(crate) struct NetworkArgs {
    /// MAST API token [default: env MAST_API_TOKEN, else (`fetch`, on a terminal) a hidden prompt].
    #[arg(short = 't', long, value_name = "TOKEN", hide_default_value = true)]
    pub(crate) token: Option<String>,

    /// Archive root [default: https://mast.stsci.edu]; also re-roots URLs taken from download scripts.
    #[arg(long, value_name = "URL", env = "MASTDL_BASE_URL")]
    pub(crate) base_url: Option<Url>,

    /// Extra CA certificates (PEM file) added to the system roots.
    #[arg(long, value_name = "PATH")]
    pub(crate) cacert: Option<PathBuf>,

    /// Stall timeout: a request receiving no bytes for SECS is aborted and retried.
    #[arg(long, value_name = "SECS", default_value = "60")]
    pub(crate) timeout: NonZeroU64,

    /// Also send the token on redirects to HOST (repeatable).
    #[arg(long, value_name = "HOST")]
    pub(crate) trusted_host: Vec<String>,
}

/// Which of the listed files to keep, by name (`fetch`, `plan`, `query`).
#[derive(Debug, Args)]
pub(crate) struct FilterArgs {
    /// Keep only files whose name ends with EXT (case-insensitive; repeatable).
    #[arg(long, value_name = "EXT")]
    pub(crate) extension: Vec<String>,
}

/// How stderr looks (`fetch`, `plan`, `verify`; resolved once, by
/// `settings::Output::resolve`).
#[derive(Debug, Args)]
pub(crate) struct OutputArgs {
    /// Only problems and the final summary (no progress bars).
    #[arg(short, long)]
    pub(crate) quiet: bool,

    /// When to draw progress bars.
    #[arg(long, value_enum, value_name = "WHEN", default_value = "auto")]
    pub(crate) progress: ProgressMode,

    /// stderr as human lines or one JSON object per event.
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "text")]
    pub(crate) log_format: LogFormat,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_that_talks_to_mast_takes_the_network_flags() {
        let cli = Cli::command();
        for name in ["fetch", "plan", "query", "verify"] {
            let cmd = cli.find_subcommand(name).unwrap();
            for id in ["token", "base_url", "cacert", "timeout", "trusted_host"] {
                assert!(
                    cmd.get_arguments().any(|a| a.get_id() == id),
                    "{name}: {id}"
                );
            }
        }
        for name in ["fetch", "plan", "query"] {
            let cmd = cli.find_subcommand(name).unwrap();
            assert!(
                cmd.get_arguments().any(|a| a.get_id() == "extension"),
                "{name}"
            );
        }
    }
}

/// The search criteria as typed (see `query::Criteria`).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "MAST search")]
pub(crate) struct CriteriaArgs {
    /// obs_collection, e.g. JWST (repeatable)
    #[arg(long = "collection", value_name = "NAME")]
    pub(crate) collection: Vec<String>,
    /// proposal_id, e.g. 1073 (repeatable)
    #[arg(long = "proposal", value_name = "ID")]
    pub(crate) proposal: Vec<String>,
    /// instrument_name, e.g. NIRCAM/IMAGE or NIRCAM* (repeatable; * is a wildcard)
    #[arg(long = "instrument", value_name = "NAME")]
    pub(crate) instrument: Vec<String>,
    /// target_name (repeatable; * is a wildcard)
    #[arg(long = "target", value_name = "NAME")]
    pub(crate) target: Vec<String>,
    /// obs_id, e.g. jw01073-o001_t001_nircam_clear-f150w (repeatable; * is a wildcard)
    #[arg(long = "obs-id", value_name = "ID")]
    pub(crate) obs_id: Vec<String>,
    /// filters, e.g. F150W (repeatable)
    #[arg(long = "filters", value_name = "NAME")]
    pub(crate) filters: Vec<String>,
    /// dataproduct_type, e.g. image, spectrum, cube (repeatable)
    #[arg(long = "dataproduct-type", value_name = "TYPE")]
    pub(crate) dataproduct_type: Vec<String>,
    /// Keep products whose productType is TYPE, e.g. SCIENCE (repeatable, any case)
    #[arg(long = "product-type", value_name = "TYPE")]
    pub(crate) product_type: Vec<String>,
    /// Keep products whose calib_level is N, e.g. 2 (repeatable)
    #[arg(long = "calib-level", value_name = "N")]
    pub(crate) calib_level: Vec<i64>,
    /// Keep only "Minimum Recommended Products"
    #[arg(long = "mrp-only")]
    pub(crate) mrp_only: bool,
    /// Observations per product-list request
    #[arg(long = "chunk-size", value_name = "N", default_value_t = crate::query::DEFAULT_CHUNK_SIZE)]
    pub(crate) chunk_size: usize,
}
