//! `projector [serve] | rebuild [--hold-switch] | switch | status`: the service and its
//! operator commands, one binary.
//!
//! The operator commands talk to the `read_models` database (and the broker, for watermarks)
//! directly; the running service's supervisor picks up what they change within a second.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use sqlx::PgPool;

use crate::generations::{self, Generation, State, SwitchOutcome};
use crate::{Application, SERVICE, Settings};

/// What `projector --help` says the binary is.
pub const ABOUT: &str = "Read models of orders.events, rebuilt in generations, and their operator commands";

/// `projector [--config FILE] [COMMAND]`.
pub type Args = platform::cli::Cli<Command>;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the read API and project until SIGTERM; the default.
    Serve,
    /// Start generation N+1 from offset 0 beside the LIVE one and follow it until switched
    /// (Ctrl-C stops following; the rebuild goes on in the service).
    Rebuild {
        /// Do not switch automatically once caught up: compare, then run `projector switch`.
        #[arg(long)]
        hold_switch: bool,
    },
    /// Switch to the BUILDING generation now if it caught up; otherwise say how far behind.
    Switch,
    /// Per generation: state, checkpoint against high watermark per partition, last event,
    /// events applied, progress.
    Status,
}

/// Runs the parsed command.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let settings: Settings = args.config.load(SERVICE)?;
    match args.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let _telemetry = platform::telemetry::init(SERVICE);
            let app = Application::build(settings).await?;
            app.run_until_stopped(platform::shutdown::on_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rebuild { hold_switch } => {
            let pool = settings.pool()?;
            generations::bootstrap(&pool).await?;
            let g = generations::start_rebuild(&pool, hold_switch).await?;
            println!("generation {} is BUILDING from offset 0 (consumer {})", g.get(), g.consumer_name());
            tokio::select! {
                r = follow(&settings, &pool, g, hold_switch) => r,
                () = platform::shutdown::signal() => {
                    println!("stopped following; the rebuild goes on in the running service (`projector status`)");
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        Command::Switch => {
            let pool = settings.pool()?;
            switch(&pool, &settings.consumer.topic, &mut std::io::stdout().lock()).await
        }
        Command::Status => {
            let pool = settings.pool()?;
            status(&settings, &pool, &mut std::io::stdout().lock()).await
        }
    }
}

/// Prints progress of `g` every 2 s until it is LIVE (or, held, caught up).
async fn follow(settings: &Settings, pool: &PgPool, g: Generation, hold: bool) -> anyhow::Result<ExitCode> {
    loop {
        let rows = generations::list(pool, false).await?;
        let Some(row) = rows.iter().find(|r| r.generation == g) else {
            anyhow::bail!("generation {} disappeared", g.get());
        };
        if row.state != State::Building {
            println!("generation {} is {} now", g.get(), row.state.as_str());
            return Ok(ExitCode::SUCCESS);
        }
        let cps = generations::checkpoints(pool, &settings.consumer.topic).await?;
        match generations::watermarks(&settings.consumer.kafka_bootstrap, &settings.consumer.topic).await {
            Ok(marks) => {
                let p = generations::progress(&cps.get(&g).cloned().unwrap_or_default(), &marks);
                println!(
                    "generation {}: {:.1}% read, {} records behind, {} applied",
                    g.get(),
                    p.ratio * 100.0,
                    p.lag,
                    row.applied
                );
                if hold && p.lag == 0 {
                    println!("caught up and held: compare, then run `projector switch`");
                    return Ok(ExitCode::SUCCESS);
                }
            }
            Err(e) => println!("generation {}: broker not answering ({e}); {} applied", g.get(), row.applied),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// `projector switch`: exit code 1 when the BUILDING generation is behind.
pub async fn switch(pool: &PgPool, topic: &str, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    match generations::try_switch(pool, topic, false).await? {
        SwitchOutcome::Switched { from, to } => {
            writeln!(out, "switched: generation {} is LIVE, {} RETIRED", to.get(), from.get())?;
            Ok(ExitCode::SUCCESS)
        }
        SwitchOutcome::Behind { building, partitions } => {
            let total: i64 = partitions.iter().map(|(_, b, l)| l - b).sum();
            writeln!(out, "not switched: generation {} is {total} records behind the LIVE one", building.get())?;
            for (p, b, l) in partitions {
                writeln!(out, "  partition {p}: {b} of {l} ({} behind)", l - b)?;
            }
            Ok(ExitCode::from(1))
        }
        SwitchOutcome::Held { building } => {
            writeln!(out, "generation {} is caught up but held", building.get())?;
            Ok(ExitCode::from(1))
        }
        SwitchOutcome::NothingToSwitch => {
            writeln!(out, "nothing to switch: no generation is BUILDING (start one with `projector rebuild`)")?;
            Ok(ExitCode::from(1))
        }
    }
}

fn at(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// `projector status`: exit code 1 when the broker or the database cannot be read.
pub async fn status(settings: &Settings, pool: &PgPool, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let rows = generations::list(pool, false).await?;
    let cps = generations::checkpoints(pool, &settings.consumer.topic).await?;
    let marks = generations::watermarks(&settings.consumer.kafka_bootstrap, &settings.consumer.topic).await;
    writeln!(
        out,
        "{:<4} {:<9} {:>10} {:>10} {:>9}  {:<21} {:<21}",
        "GEN", "STATE", "APPLIED", "DUPLICATES", "PROGRESS", "LAST EVENT", "LAST APPLIED"
    )?;
    let mut code = ExitCode::SUCCESS;
    for r in &rows {
        let mine = cps.get(&r.generation).cloned().unwrap_or_default();
        let progress = marks.as_ref().ok().map(|m| generations::progress(&mine, m));
        let state = if r.state == State::Building && r.hold_switch { "BUILDING*" } else { r.state.as_str() };
        writeln!(
            out,
            "{:<4} {:<9} {:>10} {:>10} {:>9}  {:<21} {:<21}",
            r.generation.get(),
            state,
            r.applied,
            r.duplicates,
            progress.as_ref().map_or_else(|| "?".to_owned(), |p| format!("{:.1}%", p.ratio * 100.0)),
            at(r.last_event_at),
            at(r.last_applied_at)
        )?;
        if r.state == State::Retired {
            continue;
        }
        if let Some(p) = &progress {
            for pp in &p.partitions {
                writeln!(
                    out,
                    "     partition {:>3}: checkpoint {:>10} of {:>10}, lag {}",
                    pp.partition, pp.checkpoint, pp.high, pp.lag
                )?;
            }
        }
    }
    if rows.iter().any(|r| r.hold_switch && r.state == State::Building) {
        writeln!(out, "* held: switch with `projector switch` once caught up")?;
    }
    if let Err(e) = marks {
        writeln!(out, "broker: {e} (lag and progress unknown)")?;
        code = ExitCode::from(1);
    }
    Ok(code)
}
