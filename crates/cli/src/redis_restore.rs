//! `restore-redis`: list, check and restore Redis backups, into a data file (the old manual
//! procedure, made safe) or into a running server.

use std::path::PathBuf;

use backup_core::{BackupKind, RestoreSummary};
use backup_sources::redis::{
    check_then_restore, FileRestoreOptions, OnlineRestoreOptions, RdbCheck, RedisFileRestore,
    RedisSettings, Staging,
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
    after_help = crate::help::RESTORE_REDIS,
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

    /// With --online: write keys straight into their databases. By default each database is
    /// restored into an empty spare database and swapped in whole (SWAPDB: all or nothing per
    /// database, Redis 6.2+, ACL +copy +swapdb +flushdb +scan +dbsize +set +get +del +multi
    /// +exec); in place, a failure half-way leaves the keys sent so far, but writes made
    /// meanwhile to other keys are kept
    #[arg(long, requires = "online")]
    in_place: bool,
}

/// Runs `restore-redis` with parsed arguments.
pub async fn run(args: RestoreRedisArgs) -> Result<ExitStatus, CliError> {
    args.common.init_logging();
    let config = match args.common.load(args.select.flags())? {
        Loaded::Run(config) => config,
        Loaded::Printed(status) => return Ok(status),
    };
    let no_mode =
        !args.dry_run && args.rdb_path.is_none() && args.docker_container.is_none() && !args.online;
    if no_mode && !args.select.list {
        return Err(CliError::usage(anyhow::anyhow!(
            "say where to restore: --rdb-path PATH (the server's dump.rdb, with --stop-cmd / \
             --start-cmd), --docker-container NAME, or --online (into a running server); or \
             --dry-run to only check the backup"
        )));
    }
    // The server settings are needed (and must be valid) only for an online restore; the file
    // mode asks the server about AOF when it can.
    let redis = config.component::<RedisSettings>();
    let online_target = match &redis {
        Ok(r) if args.online => Some(r.online_target(args.target_url.as_deref())),
        Err(e) if args.online => return Err(CliError::usage(anyhow::anyhow!("{e}"))),
        _ => None,
    };
    let online_target = online_target.transpose().map_err(CliError::usage)?;
    let parse_memory = redis.as_ref().ok().and_then(|r| r.parse_memory);
    let kind = BackupKind::REDIS;
    let prefix = backup_sources::redis::NAME_PREFIX;
    let selected = select::fetch_selected(&args.common, &args.select, kind, prefix, &config);
    let Some(mut fetched) = selected.await? else {
        return Ok(ExitStatus::Success);
    };
    let (verdict, summary): (String, RestoreSummary) = if args.dry_run {
        let verdict = format!(
            "dry run OK: {} and the RDB is intact",
            fetched.entry().status.checked_as()
        );
        let check = &mut RdbCheck {
            summary: None,
            parse_memory,
        };
        let common = &args.common;
        let summary = common::restore_into(common, &mut fetched, check, "checking");
        (verdict, summary.await?)
    } else if let Some(target) = online_target {
        let endpoint = target.endpoint();
        let options = OnlineRestoreOptions {
            replace: args.replace,
            parse_memory,
            staging: if args.in_place {
                Staging::InPlace
            } else {
                Staging::Auto
            },
            ..OnlineRestoreOptions::default()
        };
        // Two passes (check, then write) over the private copy.
        let total = fetched.entry().size.saturating_mul(2);
        let summary = common::with_progress(&args.common, total, "checking, restoring", |p| {
            check_then_restore(&mut fetched, target, options, p)
        })
        .await?;
        (format!("online restore into {endpoint} complete"), summary)
    } else {
        let options = FileRestoreOptions {
            rdb_path: args.rdb_path.clone(),
            stop_cmd: args.stop_cmd.clone(),
            start_cmd: args.start_cmd.clone(),
            docker_container: args.docker_container.clone(),
            // Asked about AOF when configured (invalid Redis settings only lose that check).
            server: redis.ok().and_then(|redis| redis.aof_server()),
            parse_memory,
            ..FileRestoreOptions::default()
        };
        let verdict = format!("restore into {} complete", options.destination());
        let target = &mut RedisFileRestore::new(options);
        let common = &args.common;
        let summary = common::restore_into(common, &mut fetched, target, "restoring");
        (verdict, summary.await?)
    };
    select::print_verdict(&verdict, &fetched, &summary, "RDB");
    Ok(ExitStatus::Success)
}
