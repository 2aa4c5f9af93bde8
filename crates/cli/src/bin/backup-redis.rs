//! `backup-redis`: starts `backup-tool` as `backup-redis` (see `src/launch.rs`).

use std::process::ExitCode;

#[path = "../launch.rs"]
mod launch;

fn main() -> ExitCode {
    launch::exec_as("backup-redis")
}
