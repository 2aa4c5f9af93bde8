//! `backup-wal`: continuous WAL archiving, for PostgreSQL's `archive_command` (`push`) and
//! `restore_command` (`fetch`). The work is `backup_orchestrate::WalArchive`'s.

use std::path::PathBuf;

use backup_core::PipelineConfig;
use backup_orchestrate::{WalArchive, WalError};
use backup_sources::wal::WalConfig;
use clap::{Parser, Subcommand};

use crate::common::{self, CommonArgs, CompressionArgs, Loaded};
use crate::exit::{CliError, ExitStatus};

/// Archive PostgreSQL's WAL continuously and fetch it back for a recovery: each WAL file is
/// compressed, encrypted and stored with its signed manifest under wal/TIMELINE/ on every
/// destination, like every other backup.
#[derive(Debug, Parser)]
#[command(
    name = "backup-wal",
    version,
    after_help = crate::help::BACKUP_WAL,
    max_term_width = 100
)]
pub struct BackupWalArgs {
    #[command(flatten)]
    common: CommonArgs,

    #[command(flatten)]
    compression: CompressionArgs,

    #[command(subcommand)]
    command: WalCommand,
}

#[derive(Debug, Subcommand)]
enum WalCommand {
    /// Archive one WAL file: archive_command = 'backup-wal push %p'. Exits 0 only once every
    /// destination holds it (or already held the same file); pushes the next ready files
    /// beside it (BACKUP_WAL_PUSH_CONCURRENCY)
    Push {
        /// The WAL file (PostgreSQL's %p)
        #[arg(value_name = "PATH")]
        path: PathBuf,
        /// Print what was done as JSON on stdout
        #[arg(long)]
        json: bool,
    },
    /// Restore one WAL file: restore_command = 'backup-wal fetch %f %p'. Exits 0 with the
    /// verified file in place, 1 when the archive does not hold it (the end of the archive for
    /// a recovery), 126 on any other failure, which makes PostgreSQL stop the recovery instead
    /// of ending it there
    Fetch {
        /// The WAL file's name (PostgreSQL's %f)
        #[arg(value_name = "NAME")]
        name: String,
        /// Where to put it (PostgreSQL's %p)
        #[arg(value_name = "PATH")]
        target: PathBuf,
        /// Print what was done as JSON on stdout
        #[arg(long)]
        json: bool,
    },
}

/// Runs `backup-wal` with parsed arguments.
pub async fn run(args: BackupWalArgs) -> Result<ExitStatus, CliError> {
    args.common.init_logging();
    let fetching = matches!(args.command, WalCommand::Fetch { .. });
    let archive = match archive(&args, fetching).await {
        Ok(Ok(archive)) => archive,
        Ok(Err(printed)) => return Ok(printed),
        Err(e) if fetching => return Err(fatal(e.error)),
        Err(e) => return Err(e),
    };
    match args.command {
        WalCommand::Push { path, json } => {
            let report = archive.push(&path).await.map_err(CliError::failure)?;
            if json {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
            }
            tracing::info!(
                "archived {} ({}; {} pushed ahead) in {:.2}s",
                report.file,
                where_stored(&report.stored, &report.already, report.pushed_ahead_earlier),
                report.ahead.iter().filter(|a| a.error.is_none()).count(),
                report.seconds
            );
            Ok(ExitStatus::Success)
        }
        WalCommand::Fetch { name, target, json } => match archive.fetch(&name, &target).await {
            Ok(report) => {
                if json {
                    println!("{}", serde_json::to_string(&report).unwrap_or_default());
                }
                tracing::info!(
                    "restored {} from {} ({} fetched ahead) in {:.2}s",
                    report.file,
                    report.from,
                    report.ahead.len(),
                    report.seconds
                );
                Ok(ExitStatus::Success)
            }
            Err(e @ WalError::NotFound { .. }) => {
                // The end of the archive: PostgreSQL asks for files past it as a matter of
                // course, so this is no error in its log.
                tracing::info!("{e}");
                Ok(ExitStatus::Partial)
            }
            Err(e) => Err(fatal(e.into())),
        },
    }
}

/// The archive the configuration describes; the exit status after `--print-config`.
async fn archive(
    args: &BackupWalArgs,
    fetching: bool,
) -> Result<Result<WalArchive, ExitStatus>, CliError> {
    let config = match args.common.load(args.compression.flags())? {
        Loaded::Run(config) => config,
        Loaded::Printed(status) => return Ok(Err(status)),
    };
    let pipeline: PipelineConfig = common::component(&config)?;
    let wal: WalConfig = common::component(&config)?;
    let keyring = common::load_keyring(&pipeline)?;
    let options = pipeline
        .backup_options()
        .encrypted_with(keyring.current().clone());
    let destinations = common::open_destinations(&config, fetching).await?;
    Ok(Ok(WalArchive::new(
        destinations,
        options,
        Some(keyring),
        wal,
    )))
}

fn where_stored(stored: &[String], already: &[String], ahead: bool) -> String {
    if ahead {
        return "pushed ahead by the previous call".to_owned();
    }
    let mut parts = Vec::new();
    if !stored.is_empty() {
        parts.push(format!("stored on {}", stored.join(", ")));
    }
    if !already.is_empty() {
        parts.push(format!("already on {}", already.join(", ")));
    }
    parts.join("; ")
}

fn fatal(error: anyhow::Error) -> CliError {
    CliError {
        status: ExitStatus::StopRecovery,
        error,
    }
}
