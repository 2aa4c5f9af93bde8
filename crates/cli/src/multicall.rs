//! One program for every command (`backup-tool`), so that the libraries are on disk once: the
//! command is the name it was started as (`argv[0]`, set by the per-command launchers or a
//! link), or its first argument (`backup-tool backup-database --help`).

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use crate::exit::{parse_args_from, run_interruptible, ExitStatus};

/// The commands, by name.
pub const COMMANDS: &[&str] = &[
    "backup-database",
    "restore-database",
    "backup-redis",
    "restore-redis",
    "backup-files",
    "restore-files",
    "backup-prune",
    "backup-all",
    "backup-status",
    "backup-key",
    "security-scan",
    "backup-wal",
];

/// Runs the command `args` name (see the module docs).
pub fn main(args: Vec<OsString>) -> ExitCode {
    let invoked = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    let (command, args) = if COMMANDS.contains(&invoked.as_str()) {
        (invoked, args)
    } else {
        let Some(first) = args.get(1).and_then(|a| a.to_str()).map(str::to_owned) else {
            return usage();
        };
        if !COMMANDS.contains(&first.as_str()) {
            return usage();
        }
        (first, args.into_iter().skip(1).collect())
    };
    run(&command, args)
}

fn run(command: &str, args: Vec<OsString>) -> ExitCode {
    match command {
        "backup-database" => run_interruptible(crate::database::run(parse_args_from(args))),
        "restore-database" => run_interruptible(crate::restore::run(parse_args_from(args))),
        "backup-redis" => run_interruptible(crate::redis_backup::run(parse_args_from(args))),
        "restore-redis" => run_interruptible(crate::redis_restore::run(parse_args_from(args))),
        "backup-files" => run_interruptible(crate::files_backup::run(parse_args_from(args))),
        "restore-files" => run_interruptible(crate::files_restore::run(parse_args_from(args))),
        "backup-prune" => run_interruptible(crate::prune::run(parse_args_from(args))),
        "backup-all" => run_interruptible(crate::backup_all::run(parse_args_from(args))),
        "backup-status" => run_interruptible(crate::status::run(parse_args_from(args))),
        "backup-key" => run_interruptible(crate::keys::run(parse_args_from(args))),
        "security-scan" => run_interruptible(crate::security::run(parse_args_from(args))),
        "backup-wal" => run_interruptible(crate::wal::run(parse_args_from(args))),
        _ => usage(),
    }
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: backup-tool COMMAND [ARGS]   (or run it under a command's name)\n\
         commands: {}\n\
         `backup-tool COMMAND --help` explains each one.",
        COMMANDS.join(", ")
    );
    ExitCode::from(ExitStatus::Usage as u8)
}
