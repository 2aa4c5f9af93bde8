//! `security-scan`: starts `backup-tool` as `security-scan` (see `src/launch.rs`).

use std::process::ExitCode;

#[path = "../launch.rs"]
mod launch;

fn main() -> ExitCode {
    launch::exec_as("security-scan")
}
