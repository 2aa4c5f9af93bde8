//! `backup-redis`: one Redis snapshot to the configured destinations, plus the `redis/latest/`
//! copy the old script kept.

use std::path::PathBuf;

use backup_core::{BackupKind, PipelineConfig};
use backup_orchestrate::BackupJob;
use backup_sources::redis::{BackupMethod, RedisMethod, RedisSettings, RedisSource};
use clap::Parser;

use crate::common::{self, flag, CommonArgs, CompressionArgs, Loaded};
use crate::exit::{CliError, ExitStatus};
use crate::outcome;

/// Back up Redis: the RDB snapshot, fetched the way a replica gets it (SYNC) and streamed
/// -> gzip/zstd -> AES-256-CBC (openssl-compatible) -> backup directory and/or S3, with a
/// signed manifest written last; the newest backup is also copied to redis/latest/.
#[derive(Debug, Parser)]
#[command(
    name = "backup-redis",
    version,
    after_help = crate::help::BACKUP_REDIS,
    max_term_width = 100
)]
pub struct BackupRedisArgs {
    #[command(flatten)]
    common: CommonArgs,

    /// How to get the snapshot: replication (SYNC, streamed; works remotely) or file (BGSAVE,
    /// then read --rdb-path; for a local server where replication is not allowed)
    /// [env: BACKUP_REDIS_METHOD] [default: replication]
    #[arg(long, value_enum, value_name = "METHOD")]
    method: Option<RedisMethod>,

    /// The server's RDB file (its `dir` + `dbfilename`), for --method file
    /// [env: REDIS_RDB_PATH]
    #[arg(long, value_name = "PATH")]
    rdb_path: Option<PathBuf>,

    #[command(flatten)]
    compression: CompressionArgs,

    /// Store the backup unencrypted (`.rdb.gz`), as the old script did
    /// [env: BACKUP_REDIS_ENCRYPT=false]
    #[arg(long)]
    no_encrypt: bool,

    /// Do not update the redis/latest/ copy
    #[arg(long)]
    no_latest: bool,

    /// Print the result as JSON (object name, manifest, destinations)
    #[arg(long)]
    json: bool,
}

/// Runs `backup-redis` with parsed arguments.
pub async fn run(args: BackupRedisArgs) -> Result<ExitStatus, CliError> {
    args.common.init_logging();
    let rdb_path = args.rdb_path.as_ref().map(|p| p.display());
    let mut flags = args.compression.flags();
    flags.extend([
        flag("BACKUP_REDIS_METHOD", "--method", args.method),
        flag("REDIS_RDB_PATH", "--rdb-path", rdb_path),
        flag(
            "BACKUP_REDIS_ENCRYPT",
            "--no-encrypt",
            args.no_encrypt.then_some(false),
        ),
    ]);
    let config = match args.common.load(flags)? {
        Loaded::Run(config) => config,
        Loaded::Printed(status) => return Ok(status),
    };
    let pipeline: PipelineConfig = common::component(&config)?;
    let redis: RedisSettings = common::component(&config)?;
    let method = redis.backup_method().map_err(CliError::usage)?;
    let destinations = common::open_destinations(&config, false).await?;
    let (key, signing_key) = if redis.encrypt {
        (Some(common::load_key(&pipeline)?), None)
    } else {
        // Unencrypted, but signed when a key is at hand, so a restore can tell it from a
        // forged one.
        let signing = common::keyring_if_present(&pipeline)?.map(|ring| ring.current().clone());
        if signing.is_none() {
            tracing::warn!(
                "no key file at {}: the backup's manifest is not signed, so a restore cannot \
                 tell it from a forged one",
                pipeline.key_file.display()
            );
        }
        (None, signing)
    };
    // The Redis source names its backups redis_backup_..., as the old script did.
    let mut options = pipeline.backup_options();
    options.key = key;
    options.signing_key = signing_key;
    tracing::info!(
        "backing up Redis at {} ({}) to {}",
        redis.connection.endpoint(),
        match &method {
            BackupMethod::File { rdb_path } => format!("BGSAVE + {}", rdb_path.display()),
            other => other.name().to_owned(),
        },
        destinations.describe()
    );
    let mut source =
        RedisSource::new(redis.connection, method).with_parse_memory(redis.parse_memory);
    let job = BackupJob {
        options,
        publish_latest: (!args.no_latest).then_some(BackupKind::REDIS),
    };
    let label = "redis snapshot";
    let run = outcome::run_job(&args.common, &destinations, &mut source, &job, label).await?;
    outcome::report(&run, "RDB", args.json)
}
