//! `backup-files`: configuration files or logs, as a tar archive, to the configured
//! destinations; after a log backup stored everywhere, local logs past their retention go.

use backup_core::PipelineConfig;
use backup_orchestrate::{BackupJob, RunStatus};
use backup_sources::files::{apply_log_retention, FilesConfig, FilesKind};
use clap::Parser;

use crate::common::{self, CommonArgs, CompressionArgs, Loaded};
use crate::exit::{CliError, ExitStatus};
use crate::outcome;

/// Back up configuration files or logs: a tar archive (modes, owners, mtimes and links kept;
/// never the encryption key or keyring) -> gzip/zstd -> AES-256-CBC (openssl-compatible) ->
/// backup directory and/or S3, with a signed manifest written last.
#[derive(Debug, Parser)]
#[command(
    name = "backup-files",
    version,
    after_help = crate::help::BACKUP_FILES,
    max_term_width = 100
)]
pub struct BackupFilesArgs {
    #[command(flatten)]
    common: CommonArgs,

    /// What to back up: the configuration paths (BACKUP_CONFIG_PATHS) or the log directory
    /// (BACKUP_LOG_DIR)
    #[arg(long, value_enum)]
    kind: FilesKind,

    #[command(flatten)]
    compression: CompressionArgs,

    /// Print the result as JSON (object name, manifest with the archive's figures and
    /// warnings, destinations)
    #[arg(long)]
    json: bool,
}

/// Runs `backup-files` with parsed arguments.
pub async fn run(args: BackupFilesArgs) -> Result<ExitStatus, CliError> {
    args.common.init_logging();
    let flags = args.compression.flags();
    let config = match args.common.load(flags)? {
        Loaded::Run(config) => config,
        Loaded::Printed(status) => return Ok(status),
    };
    let pipeline: PipelineConfig = common::component(&config)?;
    let files: FilesConfig = common::component(&config)?;
    let destinations = common::open_destinations(&config, false).await?;
    let options = pipeline
        .backup_options()
        .encrypted_with(common::load_key(&pipeline)?);
    let source = files
        .source(args.kind)
        .map_err(|e| CliError::usage(anyhow::anyhow!(e)))?;
    let mut source = source
        .excluding(&pipeline.key_file)
        .excluding(&pipeline.keyring_directory());
    let job = BackupJob {
        options,
        publish_latest: None,
    };
    let label = format!("{} archive", args.kind.name_prefix());
    let run = outcome::run_job(&args.common, &destinations, &mut source, &job, &label).await?;
    let status = outcome::report(&run, "tar", args.json);
    if let (FilesKind::Logs, Some(days), RunStatus::Success) =
        (args.kind, files.log_retention_days, run.status())
    {
        let now = std::time::SystemTime::now();
        for warning in apply_log_retention(&files.log_dir, days, now) {
            tracing::warn!("{warning}");
        }
    }
    status
}
