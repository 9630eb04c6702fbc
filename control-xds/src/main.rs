//! The `switchyard` binary: parses the command line and hands it to
//! [`switchyard::cli`].

use std::process::ExitCode;

use clap::Parser;
use switchyard::cli::{run, Cli};

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
