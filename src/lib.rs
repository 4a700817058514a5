//! mastdl: fast, resumable bulk downloads from MAST, the Mikulski Archive
//! for Space Telescopes.
//!
//! The data flows input → plan → fetch → manifest:
//! [`input`] reads URI lists, scripts and product tables into entries;
//! [`plan`] turns them into jobs (paths, URLs, shards); the
//! [`commands`] (one file each) drive them: `fetch` runs each job's
//! policy ([`job`]) over [`transfer`] (the one HTTP client, `.part` files)
//! with [`retry`] (the one retry loop) and reports through [`progress`];
//! [`manifest`] writes what happened. [`settings`] is the configuration
//! resolved once from [`cli`]; [`auth`] and [`token`] hold who the run is.

// stderr may be a pipe its reader closed: write it through `progress::say`.
#![deny(clippy::print_stderr)]
#![warn(unreachable_pub)]

mod auth;
mod budget;
mod cli;
mod cloud;
mod commands;
mod dest;
mod error;
mod input;
mod job;
mod layout;
mod manifest;
mod plan;
mod progress;
mod query;
mod rate;
mod retry;
mod settings;
mod token;
mod transfer;

pub use cli::Cli;
pub use commands::{exit_for, hint_for, is_broken_pipe, run};
pub use error::Exit;
pub use progress::{json_error, say};
pub use token::scrub;
