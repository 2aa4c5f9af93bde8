//! `restore-files`: list, check and restore configuration or log backups into a directory.

use std::path::PathBuf;

use backup_sources::files::{check_then_extract, FilesCheck, FilesKind, FilesRestoreOptions};
use clap::{ArgGroup, Parser};

use crate::common::{self, CommonArgs, Loaded};
use crate::exit::{CliError, ExitStatus};
use crate::select::{self, SelectionArgs};

/// List, verify and restore configuration and log backups made by backup-files. The whole
/// archive is verified (size, SHA-256, signed manifest) and every entry checked before the
/// first file is written; each file is then written to a temporary name and renamed.
#[derive(Debug, Parser)]
#[command(
    name = "restore-files",
    version,
    after_help = crate::help::RESTORE_FILES,
    max_term_width = 100,
    group(ArgGroup::new("selection").args(["list", "latest", "date", "file"]))
)]
pub struct RestoreFilesArgs {
    #[command(flatten)]
    common: CommonArgs,

    #[command(flatten)]
    select: SelectionArgs,

    /// Which backups: configuration (config/) or logs (logs/)
    #[arg(long, value_enum)]
    kind: FilesKind,

    /// The directory to restore into (created if missing); the archive's names (the original
    /// absolute paths without their leading '/') land under it
    #[arg(long, value_name = "DIR")]
    target_dir: Option<PathBuf>,

    /// Verify and check everything, print what would be written, write nothing
    #[arg(long)]
    dry_run: bool,

    /// Replace files that exist under the target directory (otherwise any existing file
    /// stops the restore before anything is written)
    #[arg(long)]
    overwrite: bool,
}

/// Runs `restore-files` with parsed arguments.
pub async fn run(args: RestoreFilesArgs) -> Result<ExitStatus, CliError> {
    args.common.init_logging();
    let config = match args.common.load(args.select.flags())? {
        Loaded::Run(config) => config,
        Loaded::Printed(status) => return Ok(status),
    };
    let target_dir = match (&args.target_dir, args.select.list) {
        (Some(dir), _) => dir.clone(),
        (None, true) => PathBuf::new(),
        (None, false) => {
            return Err(CliError::usage(anyhow::anyhow!(
                "say where to restore: --target-dir DIR (the archive's paths land under it); \
                 add --dry-run to only check"
            )))
        }
    };
    let (kind, prefix) = (args.kind.backup_kind(), args.kind.name_prefix());
    let selected = select::fetch_selected(&args.common, &args.select, kind, prefix, &config);
    let Some(mut fetched) = selected.await? else {
        return Ok(ExitStatus::Success);
    };
    let options = FilesRestoreOptions {
        target_dir,
        overwrite: args.overwrite,
    };
    let checked = fetched.entry().status.checked_as();
    let (verdict, summary) = if args.dry_run {
        let mut check = FilesCheck::new(options);
        let common = &args.common;
        let summary = common::restore_into(common, &mut fetched, &mut check, "checking");
        let summary = summary.await?;
        for planned in &check.plan {
            println!("would restore {planned}");
        }
        (format!("dry run OK: {checked}, nothing written"), summary)
    } else {
        let total = fetched.entry().size.saturating_mul(2);
        let summary = common::with_progress(&args.common, total, "checking, restoring", |p| {
            check_then_extract(&mut fetched, options, p)
        })
        .await?;
        ("restore complete".to_owned(), summary)
    };
    select::print_verdict(&verdict, &fetched, &summary, "archive");
    Ok(ExitStatus::Success)
}
