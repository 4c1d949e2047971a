//! Help text that names the engines, filled in from the engine table when berth starts, so a backend added to
//! the table shows up in `--help` (its name, its environment variables, what `berth doctor` checks for it) with
//! no edit here. The texts in [`crate::args`] carry tokens where the table's words go.

use clap::{Command, CommandFactory as _, FromArgMatches as _};

use crate::args::Cli;

/// `docker, podman, containerd`.
pub const ENGINES: &str = "@ENGINES@";
/// `docker, podman or containerd`.
pub const ENGINES_OR: &str = "@ENGINES_OR@";
/// `docker | podman | containerd`.
pub const ENGINE_CHOICES: &str = "@ENGINE_CHOICES@";
/// Every environment variable of the engines' settings: `DOCKER_HOST, CONTAINER_HOST, ...`.
pub const ENGINE_ENV: &str = "@ENGINE_ENV@";
/// What each engine's own doctor checks look at, one indented paragraph each, each followed by a blank line.
pub const ENGINE_CHECKS: &str = "@ENGINE_CHECKS@";

/// The command line, parsed with the help text filled in (exits with clap's message on an error, or after
/// printing help).
pub fn parse() -> Cli {
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// berth's command with its help text filled in from the engine table.
pub fn command() -> Command {
    fill_command(Cli::command(), &Words::from_table())
}

/// The table's words for each token.
struct Words(Vec<(&'static str, String)>);

impl Words {
    fn from_table() -> Words {
        let names: Vec<&str> = berth_engines::providers().map(|k| k.name()).collect();
        let engines_or = match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.join(""),
        };
        let env: Vec<&str> = berth_engines::providers()
            .flat_map(|k| k.info().settings().filter_map(|s| s.env))
            .collect();
        let checks: String = berth_engines::providers()
            .filter_map(|k| k.provider().doctor_help())
            .map(|text| format!("{text}\n\n  "))
            .collect();
        Words(vec![
            (ENGINES, names.join(", ")),
            (ENGINES_OR, engines_or),
            (ENGINE_CHOICES, names.join(" | ")),
            (ENGINE_ENV, env.join(", ")),
            (ENGINE_CHECKS, checks),
        ])
    }

    fn in_text(&self, text: &str) -> bool {
        self.0.iter().any(|(token, _)| text.contains(token))
    }

    fn fill(&self, text: &str) -> String {
        self.0
            .iter()
            .fold(text.to_string(), |text, (token, words)| {
                text.replace(token, words)
            })
    }
}

/// Fills the tokens in `command`'s texts, its arguments' and its subcommands'.
fn fill_command(mut command: Command, words: &Words) -> Command {
    // the text with its tokens filled in, for a text that has any
    let filled = |text: Option<&clap::builder::StyledStr>| {
        let text = text?.to_string();
        words.in_text(&text).then(|| words.fill(&text))
    };
    if let Some(text) = filled(command.get_about()) {
        command = command.about(text);
    }
    if let Some(text) = filled(command.get_long_about()) {
        command = command.long_about(text);
    }
    if let Some(text) = filled(command.get_after_help()) {
        command = command.after_help(text);
    }
    if let Some(text) = filled(command.get_after_long_help()) {
        command = command.after_long_help(text);
    }
    let args: Vec<clap::Id> = command
        .get_arguments()
        .filter(|a| filled(a.get_help()).is_some() || filled(a.get_long_help()).is_some())
        .map(|a| a.get_id().clone())
        .collect();
    for id in args {
        command = command.mut_arg(id, |mut arg| {
            if let Some(text) = filled(arg.get_help()) {
                arg = arg.help(text);
            }
            if let Some(text) = filled(arg.get_long_help()) {
                arg = arg.long_help(text);
            }
            arg
        });
    }
    let subcommands: Vec<String> = command
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    for name in subcommands {
        command = command.mut_subcommand(name, |sub| fill_command(sub, words));
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every help text of `command` and its subcommands, rendered.
    fn all_help(mut command: Command) -> String {
        let mut text = command.render_long_help().to_string();
        for sub in command.get_subcommands_mut() {
            text.push_str(&all_help(sub.clone()));
        }
        text
    }

    fn help_of(name: &str) -> String {
        let mut command = command();
        command.build();
        let sub = command.find_subcommand_mut(name).expect(name);
        sub.render_long_help().to_string()
    }

    #[test]
    fn every_engine_of_the_table_and_its_variables_are_in_the_help() {
        let top = command().render_long_help().to_string();
        let config = help_of("config");
        let doctor = help_of("doctor");
        let build = help_of("build");
        for kind in berth_engines::providers() {
            let info = kind.info();
            for text in [&top, &config, &doctor, &build] {
                assert!(text.contains(info.name), "{} not in {text}", info.name);
            }
            for setting in info.settings() {
                let var = setting.env.expect("every engine setting has a variable");
                assert!(config.contains(var), "{var} not in {config}");
            }
            if let Some(checks) = kind.provider().doctor_help() {
                // wrapped by clap: compare words
                let words: Vec<&str> = checks.split_whitespace().collect();
                let shown: Vec<&str> = doctor.split_whitespace().collect();
                assert!(
                    shown.windows(words.len()).any(|w| w == words.as_slice()),
                    "{}'s checks not in {doctor}",
                    info.name
                );
            }
        }
    }

    #[test]
    fn no_token_is_left_unfilled() {
        let mut command = command();
        command.build();
        let text = all_help(command);
        for token in [
            ENGINES,
            ENGINES_OR,
            ENGINE_CHOICES,
            ENGINE_ENV,
            ENGINE_CHECKS,
        ] {
            assert!(!text.contains(token), "{token} left in the help");
        }
    }
}
