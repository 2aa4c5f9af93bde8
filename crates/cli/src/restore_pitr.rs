//! `restore-database --pitr`: a physical base backup plus the archived WAL, into a new data
//! directory (`backup_orchestrate::restore_pitr` does the work).

use std::path::PathBuf;
use std::time::Duration;

use backup_core::config::Config;
use backup_core::PipelineConfig;
use backup_orchestrate::{restore_command, restore_pitr, PitrRequest, WalArchive};
use backup_sources::postgres::{DataDirectory, PitrTarget, PostgresConfig};
use backup_sources::wal::{Lsn, WalConfig};
use clap::Args;

use crate::common::{self, CommonArgs};
use crate::exit::{CliError, ExitStatus};

/// The point-in-time restore flags of `restore-database`.
#[derive(Debug, Clone, Args)]
pub struct PitrArgs {
    /// Point-in-time restore: the newest physical base backup that ended before TIME, then the
    /// archived WAL replayed up to TIME ('YYYY-MM-DD HH:MM:SS+00'; UTC without an offset), or
    /// `latest` to replay everything archived; into --target-dir
    #[arg(long, value_name = "TIME|latest", requires = "target_dir")]
    pub pitr: Option<String>,

    /// Point-in-time restore to this WAL position (e.g. 0/3000028) instead of a time
    #[arg(long, value_name = "LSN", requires = "target_dir", conflicts_with_all = ["pitr", "target_xid", "target_name"])]
    pub target_lsn: Option<String>,

    /// Point-in-time restore up to and including this transaction id
    #[arg(long, value_name = "XID", requires = "target_dir", conflicts_with_all = ["pitr", "target_name"])]
    pub target_xid: Option<u64>,

    /// Point-in-time restore to this restore point (SELECT pg_create_restore_point('NAME'))
    #[arg(
        long,
        value_name = "NAME",
        requires = "target_dir",
        conflicts_with = "pitr"
    )]
    pub target_name: Option<String>,

    /// The new data directory of a point-in-time restore (absent or empty); made mode 0700,
    /// owned by --owner
    #[arg(long, value_name = "DIR")]
    pub target_dir: Option<PathBuf>,

    /// Start the restored server and wait until recovery reached the target and it accepts
    /// connections (on --port)
    #[arg(long, requires = "port")]
    pub start: bool,

    /// The port of the restored server, with --start
    #[arg(long, value_name = "PORT", requires = "start")]
    pub port: Option<u16>,

    /// The user that owns the restored data directory and runs the server [default: postgres
    /// when run as root, else the current user]
    #[arg(long, value_name = "USER")]
    pub owner: Option<String>,

    /// With --start: the longest wait for the recovery, e.g. 30m or 2h [default: 1h]
    #[arg(long, value_name = "DURATION", value_parser = backup_orchestrate::parse_duration)]
    pub recovery_timeout: Option<Duration>,
}

impl PitrArgs {
    /// Whether a point-in-time restore was asked for.
    pub fn requested(&self) -> bool {
        self.pitr.is_some()
            || self.target_lsn.is_some()
            || self.target_xid.is_some()
            || self.target_name.is_some()
    }

    fn target(&self) -> Result<PitrTarget, CliError> {
        if let Some(lsn) = &self.target_lsn {
            let lsn: Lsn = lsn.parse().map_err(CliError::usage)?;
            return Ok(PitrTarget::Lsn(lsn));
        }
        if let Some(xid) = self.target_xid {
            return Ok(PitrTarget::Xid(xid));
        }
        if let Some(name) = &self.target_name {
            return Ok(PitrTarget::Name(name.clone()));
        }
        match self.pitr.as_deref() {
            None => Ok(PitrTarget::Latest),
            Some(text) => text
                .parse()
                .map_err(|e| CliError::usage(anyhow::anyhow!("--pitr {e}"))),
        }
    }
}

/// Runs a point-in-time restore with the loaded `config`.
pub async fn run(
    common_args: &CommonArgs,
    args: &PitrArgs,
    json: bool,
    config: &Config,
) -> Result<ExitStatus, CliError> {
    let target = args.target()?;
    let Some(data_dir) = args.target_dir.clone() else {
        return Err(CliError::usage(anyhow::anyhow!(
            "a point-in-time restore needs --target-dir DIR, the new data directory"
        )));
    };
    let pipeline: PipelineConfig = common::component(config)?;
    let wal: WalConfig = common::component(config)?;
    let postgres: PostgresConfig = common::component(config)?;
    let keyring = common::load_keyring(&pipeline)?;
    let destinations = common::open_destinations(config, true).await?;
    let options = pipeline
        .backup_options()
        .encrypted_with(keyring.current().clone());
    let archive = WalArchive::new(destinations, options, Some(keyring.clone()), wal);
    let exe = std::env::current_exe().map_err(CliError::usage)?;
    let beside = exe.with_file_name("backup-wal");
    let (program, multicall) = if beside.is_file() {
        (beside, false)
    } else {
        (exe, true)
    };
    let request = PitrRequest {
        target,
        data_dir: absolute(data_dir)?,
        owner: DataDirectory::owner_named(args.owner.as_deref()).map_err(CliError::usage)?,
        restore_command: restore_command(
            &program,
            multicall,
            config.file_path(),
            &config.non_secret_overrides(),
        ),
        start: args.start.then_some(args.port).flatten(),
        bin_dir: postgres.bin_dir.clone(),
        wait: args.recovery_timeout.unwrap_or(Duration::from_secs(3600)),
    };
    let progress = common_args.progress(None, "base backup");
    let result = restore_pitr(
        &archive,
        &keyring,
        &pipeline.name_prefix,
        &request,
        progress.as_ref().map(|(_, f)| f.clone()),
    )
    .await;
    if let Some((bar, _)) = progress {
        bar.finish_and_clear();
    }
    let report = result.map_err(CliError::failure)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", report.text());
    }
    Ok(ExitStatus::Success)
}

/// `path`, made absolute against the current directory (it goes into the server's config).
fn absolute(path: PathBuf) -> Result<PathBuf, CliError> {
    if path.is_absolute() {
        return Ok(path);
    }
    Ok(std::env::current_dir().map_err(CliError::usage)?.join(path))
}
