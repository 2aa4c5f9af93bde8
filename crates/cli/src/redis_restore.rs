//! `restore-redis`: list, check and restore Redis backups, into a data file (the old manual
//! procedure, made safe) or into a running server.

use std::path::PathBuf;

use backup_core::config::Config;
use backup_core::{human_bytes, BackupKind, RestoreSummary};
use backup_sources::redis::{
    aof_warning, FileRestoreOptions, OnlineRestoreOptions, RdbCheck, RedisClient, RedisFileRestore,
    RedisOnlineRestore, RedisSettings,
};
use clap::{ArgGroup, Parser};

use crate::common::{self, CommonArgs, Loaded};
use crate::exit::{CliError, ExitStatus};
use crate::select::{self, SelectionArgs};

/// List, verify and restore Redis backups made by backup-redis (or by the old
/// backup-redis.sh). Every restore first checks the backup's size, SHA-256 and signed manifest,
/// then parses the whole RDB (structure and CRC-64) before anything is replaced.
#[derive(Debug, Parser)]
#[command(
    name = "restore-redis",
    version,
    after_help = AFTER_HELP,
    max_term_width = 100,
    group(ArgGroup::new("selection").args(["list", "latest", "date", "file"])),
    group(ArgGroup::new("mode").args(["dry_run", "rdb_path", "docker_container", "online"]))
)]
pub struct RestoreRedisArgs {
    #[command(flatten)]
    common: CommonArgs,

    #[command(flatten)]
    select: SelectionArgs,

    /// Download, verify, decrypt, decompress and parse the whole RDB; print the keys per
    /// database and type; change nothing
    #[arg(long)]
    dry_run: bool,

    /// File mode: write the verified RDB next to PATH (the server's dump.rdb) and rename it
    /// into place, keeping the old file's owner and mode and the old file itself as
    /// PATH.before-restore-YYYYMMDD_HHMMSS. Stop Redis first (--stop-cmd), or it overwrites
    /// the file on its next save or shutdown
    #[arg(long, value_name = "PATH")]
    rdb_path: Option<PathBuf>,

    /// Shell command run before the file is replaced, e.g. "systemctl stop redis-server"
    #[arg(long, value_name = "CMD", requires = "rdb_path")]
    stop_cmd: Option<String>,

    /// Shell command run after the file is replaced, e.g. "systemctl start redis-server"
    #[arg(long, value_name = "CMD", requires = "rdb_path")]
    start_cmd: Option<String>,

    /// File mode for a container: docker stop NAME, docker cp the RDB to NAME:/data/dump.rdb,
    /// docker start NAME
    #[arg(long, value_name = "NAME")]
    docker_container: Option<String>,

    /// Online mode: replay every key into a running server with RESTORE (REDIS_* or
    /// --target-url), keeping TTLs and logical databases; expired keys are skipped
    #[arg(long)]
    online: bool,

    /// With --online: the server to restore into, instead of REDIS_URL / REDIS_*; without a
    /// password (argv is visible to all): REDIS_TARGET_URL holds a whole URL,
    /// REDIS_TARGET_PASSWORD_FILE names a file with the password
    #[arg(long, value_name = "URL", requires = "online")]
    target_url: Option<String>,

    /// With --online: overwrite keys that exist on the target (otherwise any clash stops the
    /// restore before anything is written, listing the keys)
    #[arg(long, requires = "online")]
    replace: bool,
}

const AFTER_HELP: &str = "\
Selection (exactly one): --list, --latest, --date YYYY-MM-DD, --file NAME.
Mode (one, except with --list): --dry-run, --rdb-path PATH, --docker-container NAME, --online.
--latest and --date choose complete backups (a signed manifest vouches for them); the old
script's .rdb.gz objects are `legacy`: by --file NAME, or with --allow-legacy.

File mode replaces the data file Redis loads at start. Redis must be stopped while the file is
replaced (it rewrites dump.rdb on shutdown), so give --stop-cmd/--start-cmd or use
--docker-container. If the server uses AOF (appendonly yes) it loads the AOF, not dump.rdb:
you are warned; move the AOF aside or start with --appendonly no, then BGREWRITEAOF.

Online mode writes into a running server with RESTORE ... ABSTTL, database by database. It
first parses the whole backup and checks the target (RDB version, clashing keys) without
writing; it is not atomic: a failure half-way (server gone) leaves the keys restored so far.

Exit codes: 0 success, 2 restore failed (target unchanged unless stated), 3 usage or
configuration error.

Examples:
  restore-redis --list
  restore-redis --latest --dry-run

  # The old procedure, for a container
  restore-redis --latest --docker-container redis

  # A systemd-managed Redis
  restore-redis --date 2024-01-15 --rdb-path /var/lib/redis/dump.rdb \\
      --stop-cmd 'systemctl stop redis-server' --start-cmd 'systemctl start redis-server'

  # Into a running (empty) server
  REDIS_TARGET_PASSWORD_FILE=/etc/backup/redis-target.pw \\
      restore-redis --latest --online --target-url redis://10.0.0.5:6379";

/// Runs `restore-redis` with parsed arguments.
pub async fn run(args: RestoreRedisArgs) -> Result<ExitStatus, CliError> {
    args.common.init_logging();
    let config = match args.common.load(args.select.flags())? {
        Loaded::Run(config) => config,
        Loaded::Printed(status) => return Ok(status),
    };
    args.select.require_one()?;
    if !args.select.list
        && !args.dry_run
        && args.rdb_path.is_none()
        && args.docker_container.is_none()
        && !args.online
    {
        return Err(CliError::usage(anyhow::anyhow!(
            "say where to restore: --rdb-path PATH (the server's dump.rdb, with --stop-cmd / \
             --start-cmd), --docker-container NAME, or --online (into a running server); or \
             --dry-run to only check the backup"
        )));
    }
    let resolved = select::resolve(
        BackupKind::Redis,
        crate::redis_backup::REDIS_NAME_PREFIX,
        &args.select,
        &config,
    )
    .await?;
    if args.select.list {
        resolved.print_list(args.select.json);
        return Ok(ExitStatus::Success);
    }
    let (mut fetched, keyring) = resolved.fetch(&args.common, &config).await?;
    let entry = fetched.entry().clone();

    let online_config = if args.online {
        let redis: RedisSettings = common::component(&config)?;
        let target = redis.online_target(args.target_url.as_deref());
        Some(target.map_err(CliError::usage)?)
    } else {
        None
    };

    let (verdict, summary): (String, RestoreSummary) = if args.dry_run {
        let mut check = RdbCheck::default();
        let summary = common::restore_into(
            &args.common,
            &mut fetched,
            keyring.as_ref(),
            &mut check,
            "checking",
        )
        .await?;
        (
            format!(
                "dry run OK: {} and the RDB is intact",
                entry.status.checked_as()
            ),
            summary,
        )
    } else if let Some(config) = online_config {
        let endpoint = config.endpoint();
        tracing::info!("checking the backup and the target {endpoint} before writing");
        let mut check = RedisOnlineRestore::new(
            config.clone(),
            OnlineRestoreOptions {
                replace: args.replace,
                check_only: true,
                ..OnlineRestoreOptions::default()
            },
        );
        common::restore_into(
            &args.common,
            &mut fetched,
            keyring.as_ref(),
            &mut check,
            "checking",
        )
        .await?;
        tracing::info!("restoring into {endpoint}");
        let mut target = RedisOnlineRestore::new(
            config,
            OnlineRestoreOptions {
                replace: args.replace,
                check_only: false,
                ..OnlineRestoreOptions::default()
            },
        );
        let summary = common::restore_into(
            &args.common,
            &mut fetched,
            keyring.as_ref(),
            &mut target,
            "restoring",
        )
        .await?;
        (format!("online restore into {endpoint} complete"), summary)
    } else {
        let options = FileRestoreOptions {
            rdb_path: args.rdb_path.clone(),
            stop_cmd: args.stop_cmd.clone(),
            start_cmd: args.start_cmd.clone(),
            docker_container: args.docker_container.clone(),
            ..FileRestoreOptions::default()
        };
        // Warn about AOF before anything changes: the running server (when REDIS_* point at
        // it) and the data directory are asked.
        if let Some(warning) = aof_check(&config, args.rdb_path.as_deref()).await {
            tracing::warn!("{warning}");
        }
        let mut target = RedisFileRestore::new(options);
        let summary = common::restore_into(
            &args.common,
            &mut fetched,
            keyring.as_ref(),
            &mut target,
            "restoring",
        )
        .await?;
        let place = match (&args.rdb_path, &args.docker_container) {
            (_, Some(name)) => format!("container {name}:/data/dump.rdb"),
            (Some(path), None) => path.display().to_string(),
            (None, None) => "?".to_owned(),
        };
        (format!("restore into {place} complete"), summary)
    };
    println!(
        "{verdict}: {} ({} of RDB{})",
        entry.key,
        human_bytes(summary.plain_bytes),
        entry.status.note()
    );
    for note in &summary.notes {
        println!("  {note}");
    }
    Ok(ExitStatus::Success)
}

/// The AOF warning for a file-mode restore, if any: files in the target directory, and
/// `CONFIG GET appendonly` on the server REDIS_* / REDIS_URL name when one is named and
/// answers (a stopped server, or invalid Redis settings, are not an error here).
async fn aof_check(config: &Config, rdb_path: Option<&std::path::Path>) -> Option<String> {
    let mut client = None;
    let redis = config.component::<RedisSettings>().ok();
    if let Some(redis) = redis.filter(|r| r.server_named) {
        let connect = RedisClient::connect(&redis.connection);
        if let Ok(Ok(c)) = tokio::time::timeout(std::time::Duration::from_secs(3), connect).await {
            client = Some(c);
        }
    }
    aof_warning(rdb_path, client.as_mut()).await
}
