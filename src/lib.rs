//! mastdl: fast, resumable bulk downloads from MAST, the Mikulski Archive
//! for Space Telescopes.
//!
//! The data flows input → plan → fetch → manifest:
//! [`input`] reads URI lists, portal scripts and product tables into
//! entries; [`plan`] turns them into jobs (paths, URLs, shards); [`run`]
//! drives [`fetch`] over them with [`retry`] and reports through
//! [`progress`]; [`manifest`] writes what happened.

pub mod auth;
pub mod cli;
pub mod cloud;
pub mod dest;
pub mod error;
pub mod fetch;
pub mod input;
pub mod layout;
pub mod manifest;
pub mod plan;
pub mod progress;
pub mod query;
pub mod rate;
pub mod report;
pub mod retry;
pub mod run;
pub mod settings;
pub mod token;

use clap::CommandFactory;

use cli::{Cli, Command, ShellKind};
use error::Exit;
use settings::Settings;

/// Runs the parsed command line; returns the exit code.
pub async fn main(cli: Cli) -> anyhow::Result<Exit> {
    match cli.command {
        Command::Fetch(args) => {
            let dry = args.dry_run;
            let settings = Settings::resolve(args)?;
            if dry {
                run::plan(settings).await
            } else {
                run::fetch(settings).await
            }
        }
        Command::Plan(args) => run::plan(Settings::resolve(args)?).await,
        Command::Query(args) => run::query(args).await,
        Command::Report { dest } => report::report(&dest),
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
            clap_complete::generate(shell, &mut Cli::command(), "mastdl", &mut std::io::stdout());
            Ok(Exit::Success)
        }
    }
}
