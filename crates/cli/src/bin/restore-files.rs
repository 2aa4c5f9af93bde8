//! `restore-files`: starts `backup-tool` as `restore-files` (see `src/launch.rs`).

use std::process::ExitCode;

#[path = "../launch.rs"]
mod launch;

fn main() -> ExitCode {
    launch::exec_as("restore-files")
}
