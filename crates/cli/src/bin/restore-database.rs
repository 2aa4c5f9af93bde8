//! `restore-database`: drop-in replacement for `restore-database.sh`.

use std::process::ExitCode;

use backup_cli::exit::{parse_args, run_interruptible};
use backup_cli::restore::{run, RestoreDatabaseArgs};

fn main() -> ExitCode {
    let args: RestoreDatabaseArgs = parse_args();
    run_interruptible(run(args))
}
