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
    pub fn load<T: Serialize + DeserializeOwned + Default>(&self, service: &str) -> anyhow::Result<T> {
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
    use clap::{CommandFactory as _, FromArgMatches as _};
    let matches = Serve::command().name(service).about(format!("Ticket Hub {service} service")).get_matches();
    Serve::from_arg_matches(&matches)?.config.load(service)
}
