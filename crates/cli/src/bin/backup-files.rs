//! `backup-files`: configuration files and logs, as the old setup's "configs" and "logs".

use std::process::ExitCode;

use backup_cli::exit::{parse_args, run_interruptible};
use backup_cli::files_backup::{run, BackupFilesArgs};

fn main() -> ExitCode {
    let args: BackupFilesArgs = parse_args();
    run_interruptible(run(args))
}
