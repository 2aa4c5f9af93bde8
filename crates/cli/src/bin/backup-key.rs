//! `backup-key`: starts `backup-tool` as `backup-key` (see `src/launch.rs`).

use std::process::ExitCode;

#[path = "../launch.rs"]
mod launch;

fn main() -> ExitCode {
    launch::exec_as("backup-key")
}
