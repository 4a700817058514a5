//! Binary-level tests: the real `mastdl` executable against the mock MAST
//! archive on loopback. One test binary (see `Cargo.toml`, `autotests = false`);
//! the shared helpers live in `support.rs`, one behaviour per file.

mod auth;
mod cloud;
mod completions;
mod concurrency;
mod feed;
mod inputs;
mod integrity;
mod layout;
mod lists;
mod logs;
mod mock;
mod mock_index;
mod mock_invoke;
mod mock_latency;
mod mock_s3;
mod network;
mod plan;
mod query;
mod raw;
mod resume;
mod retries;
mod robust;
mod scale;
mod shards;
mod signals;
mod support;
mod unattended;
mod verify;

pub use support::*;
