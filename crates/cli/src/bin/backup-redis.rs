//! `backup-redis`: drop-in replacement for `backup-redis.sh`.

use std::process::ExitCode;

use backup_cli::exit::{parse_args, run_interruptible};
use backup_cli::redis_backup::{run, BackupRedisArgs};

fn main() -> ExitCode {
    let args: BackupRedisArgs = parse_args();
    run_interruptible(run(args))
}
