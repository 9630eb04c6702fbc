//! The verb that writes the shell completion script for this CLI's grammar:
//! `switchyard completions bash|zsh|fish` ([`crate::completions`]).

use std::process::ExitCode;

use clap::{CommandFactory, Subcommand};

use super::output::write_stdout;
use super::Cli;
use crate::completions::{script, Shell};

#[derive(Subcommand)]
pub enum CompletionsCommand {
    /// Print the shell completion script: `source <(switchyard completions bash)`.
    Completions { shell: Shell },
}

impl CompletionsCommand {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let CompletionsCommand::Completions { shell } = self;
        write_stdout(&script(shell, &mut Cli::command(), "switchyard"));
        Ok(ExitCode::SUCCESS)
    }
}
