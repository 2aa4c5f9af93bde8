//! `backup-database`: drop-in replacement for `backup-database.sh`.

use std::process::ExitCode;

use backup_cli::database::{run, BackupDatabaseArgs};
use backup_cli::exit::{parse_args, run_interruptible};

fn main() -> ExitCode {
    let args: BackupDatabaseArgs = parse_args();
    run_interruptible(run(args))
}
