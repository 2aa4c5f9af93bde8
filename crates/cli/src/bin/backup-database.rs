//! `backup-database`: drop-in replacement for `backup-database.sh`.

use std::process::ExitCode;

use backup_cli::database::{run, BackupDatabaseArgs};
use backup_cli::exit::{finish, parse_args, CliError};

fn main() -> ExitCode {
    let args: BackupDatabaseArgs = parse_args();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return finish(Err(CliError::usage(e))),
    };
    finish(runtime.block_on(run(args)))
}
