//! WedSync Jobs: start-up wiring of the `wedsync-jobs` binary. Each subcommand builds its
//! configuration here and calls into the crates; nothing imports this crate.

pub mod cli;
mod commands;
pub mod settings;
mod shutdown;
mod startup;
mod telemetry;

use cli::{Cli, Command};

/// How a command failed, which decides the exit code.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Bad usage or configuration (exit 2); the message names the offending setting.
    #[error("{0:#}")]
    Usage(anyhow::Error),
    /// Anything else (exit 1).
    #[error("{0:#}")]
    Runtime(#[from] anyhow::Error),
}

pub async fn run(cli: Cli) -> Result<(), Failure> {
    let settings = settings::Settings::load(cli.config.as_deref())
        .map_err(|err| Failure::Usage(err.into()))?;
    let prometheus = telemetry::init(&settings);
    match cli.command {
        Command::All => commands::serve::all(settings, prometheus).await,
        Command::Api => commands::serve::api(settings, prometheus).await,
        Command::Worker(args) => commands::serve::worker(settings, args).await,
        Command::Scheduler => commands::serve::scheduler(settings).await,
        Command::Migrate => commands::admin::migrate(settings).await,
        Command::Keys(cmd) => commands::admin::keys(settings, cmd).await,
        Command::Jobs(cmd) => commands::jobs::run(settings, cmd).await,
        Command::Queues(output) => commands::admin::queues(settings, output).await,
        Command::Pools(cmd) => commands::pools::run(settings, cmd).await,
        Command::Bench(cmd) => commands::bench::run(settings, cmd).await,
    }
}
