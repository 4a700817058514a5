//! The commands, one file each (as uv lays out its commands): `fetch`,
//! `plan`, `query`, `report`, `verify`; and what they share: building the one HTTP
//! client, reading the inputs (or running the search) through the planner,
//! choosing the reporter, and mapping a
//! run-ending error to its exit code and hint.

pub(crate) mod fetch;
pub(crate) mod plan;
pub(crate) mod query;
pub(crate) mod report;
pub(crate) mod verify;

use std::sync::Arc;

use clap::CommandFactory;

use crate::cli::{Cli, Command, ShellKind};
use crate::dest::Locked;
use crate::error::{Exit, UsageError};
use crate::input::listing::Lister;
use crate::input::read::{Reading, Sink};
use crate::input::{InputError, Origin};
use crate::plan::ahead::Ahead;
use crate::plan::{Job, Planned, Planner};
use crate::progress::{Bars, Json, Lines, Reporter};
use crate::settings::{ClientSettings, Output, QuerySettings, Settings};
use crate::transfer::http::{ClientError, ClientOptions};
use crate::transfer::{Http, Trust};

/// Runs the parsed command line; returns the exit code.
pub async fn run(cli: Cli) -> anyhow::Result<Exit> {
    match cli.command {
        Command::Fetch(args) => {
            let dry = args.dry_run;
            let settings = Settings::resolve(args)?;
            if dry {
                plan::plan(settings).await
            } else {
                fetch::fetch(settings).await
            }
        }
        Command::Plan(args) => plan::plan(Settings::resolve(args)?).await,
        Command::Query(args) => query::query(QuerySettings::resolve(args)?).await,
        Command::Report { dest } => report::report(&dest),
        Command::Verify(args) => verify::verify(args).await,
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            Ok(Exit::Success)
        }
        Command::Completions { shell } => {
            let shell = match shell {
                ShellKind::Bash => clap_complete::Shell::Bash,
                ShellKind::Zsh => clap_complete::Shell::Zsh,
                ShellKind::Fish => clap_complete::Shell::Fish,
            };
            // Written whole here: clap_complete panics on a write error (`| head`).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "mastdl", &mut script);
            std::io::Write::write_all(&mut std::io::stdout(), &script)?;
            Ok(Exit::Success)
        }
    }
}

/// Returns the exit code for an error that ended the run early.
pub fn exit_for(err: &anyhow::Error) -> Exit {
    if is_broken_pipe(err) {
        Exit::Success
    } else if err.downcast_ref::<Locked>().is_some() {
        Exit::Locked
    } else if err.downcast_ref::<InputError>().is_some()
        || err.downcast_ref::<UsageError>().is_some()
    {
        Exit::Usage
    } else {
        Exit::Failed
    }
}

/// Returns true if and only if `err` is stdout closed by its reader (`| head`):
/// not an error for a command whose output is data.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Returns what to do about a run-ending error, when there is something
/// to say (the hints live here, not in the messages).
pub fn hint_for(err: &anyhow::Error, downloads: bool) -> Option<&'static str> {
    if err.downcast_ref::<Locked>().is_some() {
        return Some("wait for the other run to finish, or use another `-d DEST`");
    }
    if downloads && exit_for(err) == Exit::Usage {
        return Some("nothing was downloaded; fix the input and run again");
    }
    None
}

/// Builds the one HTTP client (with its trust rules) for every request
/// of a command: the only place its options are assembled. `per_host` is
/// the most connections to one host; `wider` names the hosts allowed more.
pub(crate) fn http(
    base: &url::Url,
    client: &ClientSettings,
    per_host: usize,
    wider: Vec<(url::Url, usize)>,
) -> anyhow::Result<Http> {
    let ClientSettings {
        stall,
        cacert,
        trusted_hosts,
    } = client;
    let options = ClientOptions {
        stall: *stall,
        cacert: cacert.as_deref(),
        per_host,
        wider,
        no_proxy: false,
    };
    Http::new(&options, Trust::new(base.clone(), trusted_hosts.clone())).map_err(|e| match e {
        e @ (ClientError::ReadCa { .. } | ClientError::NoCert { .. }) => {
            anyhow::Error::new(UsageError(crate::error::chain(&e)))
        }
        e => anyhow::Error::new(e),
    })
}

/// Returns the one HTTP client of a `fetch` or `plan` run.
pub(crate) fn run_http(settings: &Settings) -> anyhow::Result<Http> {
    http(
        &settings.plan.base,
        &settings.client,
        settings.jobs.ceiling(),
        // The bucket has its own connection limit (S3 serves each
        // connection at its own speed).
        vec![(settings.s3_url.clone(), fetch::BUCKET_CONNECTIONS)],
    )
}

/// Returns the reporter the settings ask for; without `transfers` to
/// show (`plan`), bars are plain lines.
pub(crate) fn reporter(settings: &Settings, transfers: bool) -> Arc<dyn Reporter> {
    match settings.output {
        Output::Bars if transfers => Arc::new(Bars::new(settings.quiet)),
        Output::Bars | Output::Lines => Arc::new(Lines {
            quiet: settings.quiet,
        }),
        Output::Json => Arc::new(Json),
    }
}

/// Feeds the plan's jobs to `f`, in order: the inputs' (or the `--query`
/// search's) entries, through one [`Planner`]. A bad entry ends it with an
/// input error after the jobs before it. Returns the notes for the
/// manifest (what the plan left out, already said on stderr).
pub(crate) async fn plan_each(
    settings: &Settings,
    http: &Http,
    reporter: &dyn Reporter,
    f: &mut dyn FnMut(Planned),
) -> anyhow::Result<Vec<String>> {
    // Each entry is checked alone on a second core, a batch ahead.
    let mut ahead = Ahead::new(Planner::new(settings.plan.clone()), f);
    let read = match &settings.query {
        Some(criteria) => {
            let products = crate::query::products(
                http,
                &settings.plan.base,
                settings.token.as_ref(),
                criteria,
            )
            .await?;
            products
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    p.to_entry(Origin {
                        file: "<query>".into(),
                        line: i + 1,
                    })
                })
                .try_for_each(|e| ahead.push(e))
                .map(|()| Vec::new())
                .map_err(anyhow::Error::from)
        }
        None => {
            let plan = &settings.plan;
            let rebase = plan.rebase.then(|| plan.base.clone());
            let lister = Lister::new(http, rebase, plan.flat);
            Reading::new(lister, reporter)
                .each_entry(&settings.inputs, &mut ahead)
                .await
        }
    };
    // The entries read before an error are planned first: one of them
    // refused is the error to report, being the earlier. (After a
    // refusal, nothing is left to plan.)
    ahead.settle()?;
    read
}

/// Reads the inputs (or runs the `--query` search) and builds the plan.
/// Returns the jobs and the notes for the manifest.
pub(crate) async fn plan_jobs(
    settings: &Settings,
    http: &Http,
    reporter: &dyn Reporter,
) -> anyhow::Result<(Vec<Job>, Vec<String>)> {
    let mut jobs = Vec::new();
    let mut bad = None;
    let notes = plan_each(settings, http, reporter, &mut |p| match p.job() {
        Ok(job) => jobs.push(job),
        Err((p, e)) => {
            bad.get_or_insert_with(|| InputError {
                message: format!("cannot build a URL from `{}`: {e}", p.url),
                origin: p.origin,
            });
        }
    })
    .await?;
    match bad {
        Some(e) => Err(e.into()),
        None => Ok((jobs, notes)),
    }
}
