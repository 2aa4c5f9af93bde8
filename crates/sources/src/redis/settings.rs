//! The Redis component's configuration (`[redis]`, `REDIS_*`, `BACKUP_REDIS_*`).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use backup_core::config::{check, Component, Config, Section, Setting};
use backup_core::CoreError;
use zeroize::Zeroizing;

use super::connection::RedisConfig;
use super::error::RedisError;
use super::source::BackupMethod;

/// How `backup-redis` gets the snapshot, as `--method` and `BACKUP_REDIS_METHOD` name it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum RedisMethod {
    /// As a replica: `SYNC`, streamed; works remotely.
    #[default]
    Replication,
    /// `BGSAVE`, then read the server's RDB file; for a local server where replication is
    /// not allowed.
    File,
}

impl RedisMethod {
    /// `replication` or `file`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Replication => "replication",
            Self::File => "file",
        }
    }
}

impl fmt::Display for RedisMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RedisMethod {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "replication" => Ok(Self::Replication),
            "file" => Ok(Self::File),
            _ => Err("must be replication or file".to_owned()),
        }
    }
}

/// The Redis server, how its backups are made, and where an online restore writes
/// (`[redis]`). The connection type itself is [`RedisConfig`].
#[derive(Clone)]
pub struct RedisSettings {
    /// The server backed up (and restored into, unless a target is named).
    pub connection: RedisConfig,
    /// Whether `REDIS_URL`, `REDIS_HOST` or `REDIS_PORT` was set (not only defaults), i.e.
    /// whether a server was named at all.
    pub server_named: bool,
    /// How backups fetch the snapshot.
    pub method: RedisMethod,
    /// The server's RDB file (`REDIS_RDB_PATH`), for [`RedisMethod::File`].
    pub rdb_path: Option<PathBuf>,
    /// Whether backups are encrypted (`BACKUP_REDIS_ENCRYPT`, default true); `false` stores
    /// plain `.rdb.gz` as the old script did.
    pub encrypt: bool,
    /// The RDB parser's memory budget in bytes (`BACKUP_REDIS_PARSE_MEMORY_MB`), for every
    /// check of a snapshot or backup and every restore; `None` for the parser's defaults
    /// ([`backup_rdb::ParseOptions::budget`]).
    pub parse_memory: Option<u64>,
    target_url: Option<Zeroizing<String>>,
    target_password_file: Option<String>,
    tls_ca_file: Option<String>,
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("connection", &self.connection)
            .field("method", &self.method)
            .field("rdb_path", &self.rdb_path)
            .field("encrypt", &self.encrypt)
            .field("parse_memory", &self.parse_memory)
            .field(
                "target_url",
                &self.target_url.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

impl RedisSettings {
    /// The server to ask about AOF before a file-mode restore
    /// ([`FileRestoreOptions::server`](super::FileRestoreOptions::server)): the configured one,
    /// when one is [named](Self::server_named).
    pub fn aof_server(&self) -> Option<RedisConfig> {
        self.server_named.then(|| self.connection.clone())
    }

    /// The backup method with its file.
    ///
    /// # Errors
    /// [`RedisError::Config`] for [`RedisMethod::File`] without an RDB path, saying how to
    /// find it.
    pub fn backup_method(&self) -> Result<BackupMethod, RedisError> {
        match self.method {
            RedisMethod::Replication => Ok(BackupMethod::Replication),
            RedisMethod::File => match &self.rdb_path {
                Some(rdb_path) => Ok(BackupMethod::File {
                    rdb_path: rdb_path.clone(),
                }),
                None => Err(RedisError::Config(
                    "--method file needs the server's RDB file: pass --rdb-path PATH or set \
                     REDIS_RDB_PATH (see `redis-cli CONFIG GET dir` and `CONFIG GET dbfilename`)"
                        .to_owned(),
                )),
            },
        }
    }

    /// The server an online restore writes into: `flag_url` (`--target-url`, no password
    /// allowed), else `REDIS_TARGET_URL`, else the [`connection`](Self::connection); see
    /// [`RedisConfig::restore_target`].
    ///
    /// # Errors
    /// As [`RedisConfig::restore_target`].
    pub fn online_target(&self, flag_url: Option<&str>) -> Result<RedisConfig, RedisError> {
        let lookup = |name: &str| match name {
            "REDIS_TARGET_URL" => self.target_url.as_ref().map(|u| u.as_str().to_owned()),
            "REDIS_TARGET_PASSWORD_FILE" => self.target_password_file.clone(),
            "REDIS_TLS_CA_FILE" => self.tls_ca_file.clone(),
            _ => None,
        };
        Ok(RedisConfig::restore_target(flag_url, &lookup)?
            .unwrap_or_else(|| self.connection.clone()))
    }
}

const REDIS: &[Setting] = &[
    Setting::new(
        "REDIS_URL",
        "url",
        "redis://[user:pass@]host:port or rediss:// (TLS), instead of host and port",
    )
    .secret(),
    Setting::new("REDIS_HOST", "host", "host").default("localhost"),
    Setting::new("REDIS_PORT", "port", "port").default("6379"),
    Setting::new(
        "REDIS_USERNAME",
        "username",
        "ACL user (default: the default user)",
    ),
    Setting::new("REDIS_PASSWORD", "password", "password").secret(),
    Setting::new(
        "REDIS_TLS_CA_FILE",
        "tls_ca_file",
        "extra CA certificate (PEM) to trust for rediss://",
    ),
    Setting::new(
        "BACKUP_REDIS_METHOD",
        "method",
        "replication (SYNC, streamed) or file (BGSAVE, then rdb_path)",
    )
    .default("replication"),
    Setting::new(
        "REDIS_RDB_PATH",
        "rdb_path",
        "the server's RDB file, for method = file",
    ),
    Setting::new(
        "BACKUP_REDIS_ENCRYPT",
        "encrypt",
        "false stores Redis backups as plain .rdb.gz, as the old script did",
    )
    .default("true"),
    Setting::new(
        "BACKUP_REDIS_PARSE_MEMORY_MB",
        "parse_memory_mb",
        "most memory the RDB parser may hold, in MiB (default 64; restores holding values: \
         512 + 64); a file needing more is refused",
    ),
    Setting::new(
        "REDIS_TARGET_URL",
        "target_url",
        "online restore target when it is not the server above",
    )
    .secret(),
    Setting::new(
        "REDIS_TARGET_PASSWORD_FILE",
        "target_password_file",
        "file whose first line is the online restore target's password",
    ),
];

impl Component for RedisSettings {
    const SECTION: Section = Section {
        table: "redis",
        about: "the Redis server and its backups (passwords: environment only)",
        settings: REDIS,
        check: check::<Self>,
    };

    fn from_config(config: &Config) -> backup_core::Result<Self> {
        let connection = RedisConfig::from_lookup(&config.lookup())
            .map_err(|e| CoreError::Config(e.to_string()))?;
        let server_named = ["REDIS_URL", "REDIS_HOST", "REDIS_PORT"]
            .iter()
            .any(|name| {
                !matches!(
                    config.origin(name),
                    None | Some(backup_core::config::Origin::Default)
                )
            });
        Ok(Self {
            connection,
            server_named,
            method: config
                .parse::<RedisMethod>("BACKUP_REDIS_METHOD")?
                .unwrap_or_default(),
            rdb_path: config.path("REDIS_RDB_PATH"),
            encrypt: config.bool("BACKUP_REDIS_ENCRYPT")?.unwrap_or(true),
            parse_memory: match config.number::<u64>("BACKUP_REDIS_PARSE_MEMORY_MB")? {
                Some(0) => {
                    return Err(CoreError::Config(
                        "BACKUP_REDIS_PARSE_MEMORY_MB must be at least 1 (MiB)".to_owned(),
                    ))
                }
                Some(mib) => Some(mib.saturating_mul(1 << 20)),
                None => None,
            },
            target_url: config
                .get("REDIS_TARGET_URL")
                .map(|u| Zeroizing::new(u.to_owned())),
            target_password_file: config.get("REDIS_TARGET_PASSWORD_FILE").map(str::to_owned),
            tls_ca_file: config.get("REDIS_TLS_CA_FILE").map(str::to_owned),
        })
    }
}
