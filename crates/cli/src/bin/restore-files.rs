//! `restore-files`: configuration and log backups back into a directory.

use std::process::ExitCode;

use backup_cli::exit::{parse_args, run_interruptible};
use backup_cli::files_restore::{run, RestoreFilesArgs};

fn main() -> ExitCode {
    let args: RestoreFilesArgs = parse_args();
    run_interruptible(run(args))
}
