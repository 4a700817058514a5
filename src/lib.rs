//! mastdl: fast, resumable bulk downloads from MAST, the Mikulski Archive
//! for Space Telescopes.
//!
//! The data flows input → plan → fetch → manifest:
//! [`input`] reads URI lists, scripts and product tables into entries;
//! [`plan`] turns them into jobs (paths, URLs, shards); the
//! [`commands`] (one file each) drive them: `fetch` runs each job's
//! policy ([`job`]) over [`fetch`] (the one HTTP client, `.part` files)
//! with [`retry`] (the one retry loop) and reports through [`progress`];
//! [`manifest`] writes what happened. [`settings`] is the configuration
//! resolved once from [`cli`]; [`auth`] and [`token`] hold who the run is.

// stderr may be a pipe its reader closed: write it through `progress::say`.
#![deny(clippy::print_stderr)]

pub mod auth;
pub mod budget;
pub mod cli;
pub mod cloud;
pub mod commands;
pub mod dest;
pub mod error;
pub mod fetch;
pub mod input;
pub mod job;
pub mod layout;
pub mod manifest;
pub mod plan;
pub mod progress;
pub mod query;
pub mod rate;
pub mod retry;
pub mod settings;
pub mod token;

pub use commands::run;
