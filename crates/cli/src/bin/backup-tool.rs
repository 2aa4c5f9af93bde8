//! `backup-tool`: every command in one program (see `backup_cli::multicall`).

use std::process::ExitCode;

fn main() -> ExitCode {
    backup_cli::multicall::main(std::env::args_os().collect())
}
