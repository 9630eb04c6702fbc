//! `switchyard completions bash|zsh|fish`: the shell completion script for the
//! CLI's grammar, written by clap_complete from the `clap::Command` it is given.

/// The shells a completion script is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl Shell {
    fn generator(self) -> clap_complete::Shell {
        match self {
            Shell::Bash => clap_complete::Shell::Bash,
            Shell::Zsh => clap_complete::Shell::Zsh,
            Shell::Fish => clap_complete::Shell::Fish,
        }
    }
}

/// `shell`'s completion script for `command` (named `bin`). Written to memory
/// first: clap_complete panics when its writer fails, and stdout may be a
/// closed pipe (`switchyard completions bash | head`).
pub fn script(shell: Shell, command: &mut clap::Command, bin: &str) -> String {
    let mut out = Vec::new();
    clap_complete::generate(shell.generator(), command, bin, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> clap::Command {
        clap::Command::new("switchyard")
            .subcommand(clap::Command::new("release").arg(clap::Arg::new("deployment")))
            .subcommand(clap::Command::new("rollback"))
    }

    #[test]
    fn every_shell_gets_a_script_naming_the_subcommands() {
        for (shell, marker) in [
            (Shell::Bash, "complete -F"),
            (Shell::Zsh, "#compdef switchyard"),
            (Shell::Fish, "complete -c switchyard"),
        ] {
            let text = script(shell, &mut cli(), "switchyard");
            assert!(text.contains(marker), "{shell:?}: {text}");
            assert!(text.contains("release") && text.contains("rollback"));
        }
    }
}
