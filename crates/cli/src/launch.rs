// The per-command programs (`backup-database`, ...): each starts `backup-tool`, the one program
// that holds every command, under its own name (`exec`: same process, same PID, so signals and
// exit codes are those of the command). Only the standard library, so each is small.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

/// The multi-call program's name.
const TOOL: &str = "backup-tool";

/// Replaces this process with `backup-tool` started as `name`, with the same arguments;
/// `backup-tool` is looked for beside this program (through links), then on `PATH`.
pub fn exec_as(name: &str) -> ExitCode {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(TOOL)))
        .filter(|tool| tool.is_file());
    let on_path = || {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(TOOL))
                .find(|tool| tool.is_file())
        })
    };
    let Some(tool): Option<PathBuf> = beside.or_else(on_path) else {
        eprintln!(
            "error: {name} needs {TOOL}, which holds every command, beside it or on PATH; \
             install both (cargo build --release -p backup-cli builds them together)"
        );
        return ExitCode::from(3);
    };
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let error = Command::new(&tool).arg0(name).args(args).exec();
    eprintln!("error: cannot start {}: {error}", tool.display());
    ExitCode::from(3)
}
