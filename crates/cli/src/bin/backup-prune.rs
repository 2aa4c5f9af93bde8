//! `backup-prune`: delete old backups by the retention policy.

use std::process::ExitCode;

use backup_cli::exit::{parse_args, run_interruptible};
use backup_cli::prune::{run, BackupPruneArgs};

fn main() -> ExitCode {
    let args: BackupPruneArgs = parse_args();
    run_interruptible(run(args))
}
