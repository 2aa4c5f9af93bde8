//! `restore-redis`: safe replacement for the manual Redis restore procedure.

use std::process::ExitCode;

use backup_cli::exit::{parse_args, run_interruptible};
use backup_cli::redis_restore::{run, RestoreRedisArgs};

fn main() -> ExitCode {
    let args: RestoreRedisArgs = parse_args();
    run_interruptible(run(args))
}
