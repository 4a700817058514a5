//! The `mastdl` binary: parse, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use mastdl::cli::Cli;
use mastdl::error::{exit_for, Exit};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (json, downloads) = (cli.json_logs(), cli.downloads());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(Exit::Failed as u8);
        }
    };
    match runtime.block_on(mastdl::main(cli)) {
        Ok(code) => ExitCode::from(code as u8),
        Err(err) => {
            let code = exit_for(&err);
            if json {
                mastdl::progress::json_error(&format!("{err:#}"), code as i32);
                return ExitCode::from(code as u8);
            }
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  Caused by: {cause}");
            }
            if code == Exit::Usage && downloads {
                eprintln!("hint: nothing was downloaded; fix the input and run again");
            }
            ExitCode::from(code as u8)
        }
    }
}
