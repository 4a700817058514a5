//! The `mastdl` binary: parse, run, map the outcome to an exit code.
//! Nothing here writes stderr but [`say`], which cannot panic.

#![deny(clippy::print_stderr)]

use std::process::ExitCode;

use clap::Parser;
use mastdl::{exit_for, hint_for, is_broken_pipe, say, Cli, Exit};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (json, downloads) = (cli.json_logs(), cli.downloads());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            say(format_args!("error: cannot start the async runtime: {e}"));
            return ExitCode::from(Exit::Failed as u8);
        }
    };
    match runtime.block_on(mastdl::run(cli)) {
        Ok(code) => ExitCode::from(code as u8),
        // stdout closed by its reader (`mastdl plan … | head`): not an error.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            let code = exit_for(&err);
            let scrub = |s: String| mastdl::scrub(&s).into_owned();
            if json {
                mastdl::json_error(&scrub(format!("{err:#}")), code as i32);
                return ExitCode::from(code as u8);
            }
            say(format_args!("error: {}", scrub(err.to_string())));
            for cause in err.chain().skip(1) {
                say(format_args!("  Caused by: {}", scrub(cause.to_string())));
            }
            if let Some(hint) = hint_for(&err, downloads) {
                say(format_args!("hint: {hint}"));
            }
            ExitCode::from(code as u8)
        }
    }
}
