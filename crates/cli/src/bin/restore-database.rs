//! `restore-database`: drop-in replacement for `restore-database.sh`.

use std::process::ExitCode;

use backup_cli::exit::{finish, parse_args, CliError};
use backup_cli::restore::{run, RestoreDatabaseArgs};

fn main() -> ExitCode {
    let args: RestoreDatabaseArgs = parse_args();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return finish(Err(CliError::usage(e))),
    };
    finish(runtime.block_on(run(args)))
}
