//! The `accounts` command line: serve (default), create an admin, generate a signing key.

use std::io::BufRead;
use std::path::PathBuf;

use clap::Subcommand;
use platform::auth::Role;

use crate::domain::{Email, Password, UserName};
use crate::{Application, SERVICE, Settings, keys, password, repo};

/// What `accounts --help` says the binary is.
pub const ABOUT: &str = "Ticket Hub accounts service";

/// `accounts [--config FILE] [COMMAND]`.
pub type Cli = platform::cli::Cli<Command>;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve HTTP and gRPC (the default).
    Serve,
    /// Create an ADMIN user, the only way to get one. The password comes from the variable
    /// named by --password-env, else from the first line of standard input, never from an
    /// argument (which would show in `ps` and shell history).
    CreateAdmin {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        password_env: Option<String>,
    },
    /// Write a new Ed25519 signing key (PKCS#8 PEM, mode 0600); does nothing if the file exists.
    GenKey {
        #[arg(long)]
        out: PathBuf,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let settings: Settings = cli.config.load(SERVICE)?;
            let app = Application::build(settings).await?;
            app.run_until_stopped(platform::shutdown::on_signal()).await
        }
        Command::GenKey { out } => {
            if keys::generate_file(&out)? {
                println!("wrote a new signing key to {}", out.display());
            } else {
                println!("{} exists; left as it is", out.display());
            }
            Ok(())
        }
        Command::CreateAdmin { email, name, password_env } => {
            let settings: Settings = cli.config.load(SERVICE)?;
            settings.validate()?;
            let raw = match password_env {
                Some(var) => {
                    std::env::var(&var).map_err(|_| anyhow::anyhow!("--password-env: variable {var} is not set"))?
                }
                None => {
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            let email = Email::parse(&email).map_err(|m| anyhow::anyhow!("--email {m}"))?;
            let name = UserName::parse(&name).map_err(|m| anyhow::anyhow!("--name {m}"))?;
            let password = Password::parse(&raw).map_err(|m| anyhow::anyhow!("password {m}"))?;
            let db = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&settings.database_url).await?;
            let hash = password::Hasher::new(&settings.argon2).await?.hash(password).await?;
            let id = repo::insert(&db, &email, &name, &hash, Role::Admin).await?;
            println!("created ADMIN {id} <{}>", email.as_str());
            Ok(())
        }
    }
}
