//! What every service binary's command line shares: `--config FILE` and loading the settings
//! it names, so each binary declares its own subcommands only.

use std::path::PathBuf;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// `--config FILE`: the service's settings file (default `config/<service>.toml`, optional);
/// `TICKET_HUB_<SERVICE>__*` variables win over it. Flatten it into a binary's arguments:
/// `#[command(flatten)] pub config: platform::cli::ConfigFile`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigFile {
    /// Settings file (default `config/<service>.toml`, optional; `TICKET_HUB_<SERVICE>__*`
    /// variables win).
    #[arg(long = "config", global = true, value_name = "FILE")]
    pub path: Option<PathBuf>,
}

impl ConfigFile {
    /// The settings of `service` (defaults, then the file, then the environment); an unknown
    /// key or a bad value is an error naming it.
    /// A file named with `--config` must exist (a typo must not start the service on its
    /// defaults); the default file is optional.
    pub fn load<T: Serialize + DeserializeOwned + Default>(&self, service: &str) -> anyhow::Result<T> {
        if let Some(path) = &self.path {
            anyhow::ensure!(path.is_file(), "--config: no settings file at {}", path.display());
        }
        Ok(crate::settings::load(service, self.path.as_deref())?)
    }
}

/// The command line of a binary that only serves: `--config FILE` and `--help`.
#[derive(Debug, clap::Parser)]
struct Serve {
    #[command(flatten)]
    config: ConfigFile,
}

/// Parses a serving binary's command line (exits with usage on a bad flag, as clap does) and
/// loads the settings it names: `let settings: Settings = platform::cli::serve_settings(SERVICE)?`.
pub fn serve_settings<T: Serialize + DeserializeOwned + Default>(service: &'static str) -> anyhow::Result<T> {
    parse_as::<Serve>(service, format!("Ticket Hub {service} service")).config.load(service)
}

/// The command line of a binary with subcommands of its own: `--config FILE` and `C`, where no
/// subcommand means the binary's default (serving, for a service).
/// `pub type Args = platform::cli::Cli<Command>;`, parsed with [`Cli::parse_as`].
#[derive(Debug, clap::Parser)]
pub struct Cli<C: clap::Subcommand> {
    #[command(flatten)]
    pub config: ConfigFile,
    #[command(subcommand)]
    pub command: Option<C>,
}

impl<C: clap::Subcommand> Cli<C> {
    /// Parses the process's arguments for the binary `name`, which `--help` describes with
    /// `about`; a bad argument exits with its usage, as clap does.
    pub fn parse_as(name: &'static str, about: &'static str) -> Self {
        parse_as(name, about)
    }
}

/// The process's arguments as `P`, for the binary `name` described by `about`; a bad argument
/// exits with its usage.
fn parse_as<P: clap::Parser>(name: &'static str, about: impl Into<clap::builder::StyledStr>) -> P {
    let matches = P::command().name(name).about(about).get_matches();
    P::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Serialize, serde::Deserialize)]
    struct Demo {
        port: u16,
    }

    #[test]
    fn a_named_file_must_exist_and_the_default_one_need_not() {
        let missing = ConfigFile { path: Some(PathBuf::from("/nonexistent/ticket-hub.toml")) };
        let err = missing.load::<Demo>("demo-cli").unwrap_err().to_string();
        assert!(err.starts_with("--config: no settings file at /nonexistent/ticket-hub.toml"), "{err}");
        assert_eq!(ConfigFile::default().load::<Demo>("demo-cli-absent").unwrap().port, 0);
    }
}
