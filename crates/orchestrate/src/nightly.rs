//! The nightly job (`backup-all`): database and Redis at the same time, then configuration
//! files and logs, each backup verified on every destination; then the services' health, the
//! disks, and retention; the whole as one [`RunReport`].

use std::sync::Arc;
use std::time::SystemTime;

use backup_core::config::Config;
use backup_core::prune::PruneKind;
use backup_core::{
    BackupKind, CoreError, Destinations, LocalConfig, PipelineConfig, ProgressFn, RestoreConfig,
    RestoreTarget, RetentionConfig, RunStatus,
};
use backup_crypto::Keyring;
use backup_sources::files::{
    apply_log_retention, FilesCheck, FilesConfig, FilesKind, FilesRestoreOptions,
};
use backup_sources::postgres::{DatabaseRunPlan, DumpFormat, PhysicalSource, PostgresConfig};
use backup_sources::redis::{RdbCheck, RedisSettings, RedisSource};
use backup_sources::wal::WalConfig;
use chrono::Utc;

use crate::checks::{self, Disk, Health};
use crate::components::{overall, run_stages, Component, ComponentResult};
use crate::drill::{database_drill, recorded_keys_per_db, recorded_row_counts, redis_drill};
use crate::job::{back_up, BackupJob, BackupRun};
use crate::report::{self, ComponentReport, RunReport, REPORT_FORMAT_VERSION};
use crate::run_config::RunConfig;

/// Makes the progress callback of one component (by its name), e.g. a progress bar.
pub type ProgressFactory<'a> = &'a (dyn Fn(&str) -> Option<ProgressFn> + Sync);

/// What a component's task owns: the job, the destinations, the keys, the spool directory.
#[derive(Clone)]
struct Ctx {
    this: Arc<Nightly>,
    destinations: Arc<Destinations>,
    keyring: Arc<Keyring>,
    spool: std::path::PathBuf,
}

impl Ctx {
    fn parts(&self) -> (&Nightly, &Destinations, &Keyring, &std::path::Path) {
        (&self.this, &self.destinations, &self.keyring, &self.spool)
    }
}

/// Everything the nightly job needs, read from one [`Config`].
#[derive(Debug, Clone)]
pub struct Nightly {
    /// Compression, key file, names.
    pub pipeline: PipelineConfig,
    /// The database, or why it is skipped.
    pub postgres: Result<PostgresConfig, String>,
    /// Redis, or why it is skipped.
    pub redis: Result<RedisSettings, String>,
    /// Configuration paths and the log directory.
    pub files: FilesConfig,
    /// Why the configuration backup is skipped (no paths configured).
    pub config_skip: Option<String>,
    /// Why the log backup is skipped (no log directory).
    pub logs_skip: Option<String>,
    /// WAL archiving: how often a physical base backup is taken.
    pub wal: WalConfig,
    /// Timeouts, verification, drill, retention, lock.
    pub run: RunConfig,
    /// What retention keeps.
    pub retention: RetentionConfig,
    /// The local directory (disk check, spool of verifications).
    pub local: LocalConfig,
    /// Where full verifications keep their private copy.
    pub restore: RestoreConfig,
}

/// Whether any of `envs` is set other than by its default.
fn named(config: &Config, envs: &[&str]) -> bool {
    envs.iter().any(|env| {
        !matches!(
            config.origin(env),
            None | Some(backup_core::config::Origin::Default)
        )
    })
}

impl Nightly {
    /// Reads every component from `config`. A component whose server or paths are not named
    /// at all is skipped (with the reason); one that is named but misconfigured is an error.
    ///
    /// # Errors
    /// [`CoreError::Config`] naming the setting.
    pub fn from_config(config: &Config) -> Result<Self, CoreError> {
        let postgres = if named(config, &["DATABASE_URL", "POSTGRES_DB", "POSTGRES_HOST"]) {
            Ok(config.component::<PostgresConfig>()?)
        } else {
            Err("no database configured (set POSTGRES_DB, POSTGRES_HOST or DATABASE_URL)".into())
        };
        let redis_settings: RedisSettings = config.component()?;
        let redis = if redis_settings.server_named {
            redis_settings
                .backup_method()
                .map_err(|e| CoreError::Config(e.to_string()))?;
            Ok(redis_settings)
        } else {
            Err("no Redis server configured (set REDIS_HOST or REDIS_URL)".into())
        };
        let files: FilesConfig = config.component()?;
        let run: RunConfig = config.component()?;
        let skipped = |name: &str| run.skip.iter().any(|s| s == name);
        let left_out = |name: &str| format!("left out by BACKUP_SKIP_COMPONENTS / --skip {name}");
        let postgres = if skipped("database") {
            Err(left_out("database"))
        } else {
            postgres
        };
        let redis = if skipped("redis") {
            Err(left_out("redis"))
        } else {
            redis
        };
        let config_skip = files
            .config_paths
            .is_empty()
            .then(|| "no configuration paths configured (set BACKUP_CONFIG_PATHS)".to_owned());
        let logs_skip =
            (!named(config, &["BACKUP_LOG_DIR"]) && !files.log_dir.is_dir()).then(|| {
                format!(
                    "BACKUP_LOG_DIR is not set and {} does not exist",
                    files.log_dir.display()
                )
            });
        let config_skip = if skipped("config") {
            Some(left_out("config"))
        } else {
            config_skip
        };
        let logs_skip = if skipped("logs") {
            Some(left_out("logs"))
        } else {
            logs_skip
        };
        Ok(Self {
            pipeline: config.component()?,
            postgres,
            redis,
            files,
            config_skip,
            logs_skip,
            wal: config.component()?,
            run,
            retention: config.component()?,
            local: config.component()?,
            restore: config.component()?,
        })
    }

    /// Runs the job into `destinations` with `keyring` (its current key encrypts), each
    /// component's progress told to `progress`. Never fails: every failure is in the report,
    /// whose `exit_code` is 0 (all succeeded), 1 (some failed), 2 (all failed) or 3 (nothing
    /// is configured).
    ///
    /// Each component runs as a task of its own, so the components of a stage use as many
    /// cores as they need (the database's compression and encryption beside Redis').
    pub async fn run(
        &self,
        destinations: Arc<Destinations>,
        keyring: Arc<Keyring>,
        progress: ProgressFactory<'_>,
    ) -> RunReport {
        let started = Utc::now();
        let mut warnings = self.space_before(&destinations).await;
        let ctx = Ctx {
            this: Arc::new(self.clone()),
            destinations: Arc::clone(&destinations),
            keyring,
            spool: self.restore.spool_dir(&self.local),
        };
        let mut first = self.database_components(&ctx, progress).await;
        first.push(Self::redis(&ctx, progress("redis")));
        let stages = vec![
            first,
            vec![
                Self::files_component(FilesKind::Config, &ctx, progress("config")),
                Self::files_component(FilesKind::Logs, &ctx, progress("logs")),
                Self::base_component(&ctx, progress("base")).await,
            ],
        ];
        let results = run_stages(stages, self.run.component_timeout).await;
        let destinations = &*destinations;
        let health = self.health().await;
        if let Ok(pg) = &self.postgres {
            // A server that archives its WAL: say when the archiving fails or falls behind.
            if let Ok(status) = backup_sources::postgres::ArchiverStatus::read(&pg.connection).await
            {
                warnings.extend(status.warnings());
            }
        }
        for h in health.iter().filter(|h| !h.ok) {
            warnings.push(format!(
                "{} at {} is unhealthy: {}",
                h.service,
                h.endpoint,
                h.error.as_deref().unwrap_or("no answer")
            ));
        }
        let disks = self.disks();
        for d in &disks {
            tracing::info!(
                "{} disk {}: {:.0}% used, {} free",
                d.role,
                d.path.display(),
                d.used_percent,
                backup_core::human_bytes(d.available_bytes)
            );
        }
        for d in disks.iter().filter(|d| d.warning) {
            warnings.push(format!(
                "the {} disk ({}) is {:.0}% full, above the {}% of BACKUP_DISK_WARN_PERCENT",
                d.role,
                d.path.display(),
                d.used_percent,
                self.run.disk_warn_percent
            ));
        }
        let retention = if self.run.prune {
            let report = crate::Retention::apply(
                destinations,
                &PruneKind::ALL,
                &self.retention.policy,
                Utc::now(),
                false,
            )
            .await;
            let text = report.text();
            for line in text.lines() {
                tracing::info!("retention: {}", line.trim());
            }
            if report.result() != RunStatus::Success {
                let failed: Vec<&str> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| l.contains("FAILED") || l.contains("failed"))
                    .collect();
                warnings.push(format!("retention did not complete: {}", failed.join("; ")));
            }
            Some(report.to_json())
        } else {
            tracing::info!("retention skipped (--no-prune)");
            None
        };
        let status = overall(&results);
        let exit_code = status.map_or(3, |s| i32::from(s.exit_code()));
        if status.is_none() {
            warnings.push(
                "nothing is configured to back up: set POSTGRES_DB, REDIS_HOST, \
                 BACKUP_CONFIG_PATHS or BACKUP_LOG_DIR"
                    .to_owned(),
            );
        }
        let components: Vec<ComponentReport> = results
            .iter()
            .map(|r: &ComponentResult| ComponentReport::new(r))
            .collect();
        for c in &components {
            warnings.extend(c.warnings.iter().map(|w| format!("{}: {w}", c.component)));
        }
        let finished = Utc::now();
        RunReport {
            format_version: REPORT_FORMAT_VERSION,
            run_id: report::run_id(started),
            host: report::host_name(),
            tool: format!("backup-all {}", env!("CARGO_PKG_VERSION")),
            started_at: started,
            finished_at: finished,
            duration_seconds: (finished - started)
                .to_std()
                .map_or(0.0, |d| d.as_secs_f64()),
            status: report::status_word(status).to_owned(),
            exit_code,
            components,
            health,
            disks,
            retention,
            warnings,
            notification: None,
        }
    }

    /// The database component, or with several databases one per database
    /// (`database:NAME`), sharing one capture of the roles.
    async fn database_components(
        &self,
        ctx: &Ctx,
        progress: ProgressFactory<'_>,
    ) -> Vec<Component<'static>> {
        let postgres = match &self.postgres {
            Ok(postgres) => postgres,
            Err(why) => return vec![Component::skip("database", why)],
        };
        let plan = match DatabaseRunPlan::prepare(postgres, &self.pipeline.name_prefix).await {
            Ok(plan) => Arc::new(plan),
            Err(e) => {
                let error = CoreError::Config(e.to_string());
                return vec![Component::run("database", async move { Err(error) })];
            }
        };
        if !plan.skipped_empty.is_empty() {
            tracing::info!(
                "database: left out, without user tables: {}",
                plan.skipped_empty.join(", ")
            );
        }
        (0..plan.databases.len())
            .map(|i| {
                let name = match &plan.run {
                    None => "database".to_owned(),
                    Some(_) => format!("database:{}", plan.databases[i].database),
                };
                let bar = progress(&name);
                Self::database(ctx, name, Arc::clone(&plan), i, bar)
            })
            .collect()
    }

    fn database(
        ctx: &Ctx,
        name: String,
        plan: Arc<DatabaseRunPlan>,
        index: usize,
        progress: Option<ProgressFn>,
    ) -> Component<'static> {
        let ctx = ctx.clone();
        let label = name.clone();
        Component::run(name, async move {
            let (this, destinations, keyring, spool) = ctx.parts();
            let configured = this
                .postgres
                .as_ref()
                .map_err(|e| CoreError::Config(e.clone()))?;
            let planned = plan
                .databases
                .get(index)
                .ok_or_else(|| CoreError::Config(format!("{label}: not in the plan")))?;
            let postgres = &PostgresConfig {
                connection: configured.connection.with_dbname(&planned.database),
                ..configured.clone()
            };
            tracing::info!(
                "{label}: backing up {} on {}",
                planned.database,
                postgres.connection.endpoint()
            );
            let mut source = plan
                .source(configured, planned, DumpFormat::Plain)
                .map_err(|e| CoreError::Config(e.to_string()))?;
            if this.run.drill {
                source = source.with_row_counts();
            }
            let mut options = this
                .pipeline
                .backup_options()
                .encrypted_with(keyring.current().clone());
            options.name_prefix = planned.name_prefix.clone();
            let job = BackupJob {
                options,
                publish_latest: None,
            };
            let mut run = back_up(&mut source, destinations, &job, progress).await?;
            let check = || -> Box<dyn RestoreTarget> {
                match postgres.dump_check() {
                    Ok(check) => Box::new(check),
                    Err(_) => Box::new(backup_sources::postgres::PgDumpCheck::new()),
                }
            };
            this.verify(
                &mut run,
                destinations,
                BackupKind::DATABASE,
                keyring,
                spool,
                &check,
            )
            .await;
            if this.run.drill && run.committed().is_some() {
                let recorded = run
                    .committed()
                    .and_then(|r| recorded_row_counts(&r.manifest));
                database_drill(&mut run, destinations, postgres, keyring, spool, recorded).await;
            }
            Ok(run)
        })
    }

    fn redis(ctx: &Ctx, progress: Option<ProgressFn>) -> Component<'static> {
        if let Err(why) = &ctx.this.redis {
            return Component::skip("redis", why);
        }
        let ctx = ctx.clone();
        Component::run("redis", async move {
            let (this, destinations, keyring, spool) = ctx.parts();
            let redis = this
                .redis
                .as_ref()
                .map_err(|e| CoreError::Config(e.clone()))?;
            let method = redis
                .backup_method()
                .map_err(|e| CoreError::Config(e.to_string()))?;
            tracing::info!(
                "redis: backing up {} ({})",
                redis.connection.endpoint(),
                method.name()
            );
            let mut options = this.pipeline.backup_options();
            if redis.encrypt {
                options = options.encrypted_with(keyring.current().clone());
            } else {
                options.signing_key = Some(keyring.current().clone());
            }
            let job = BackupJob {
                options,
                publish_latest: Some(BackupKind::REDIS),
            };
            let parse_memory = redis.parse_memory;
            let mut source =
                RedisSource::new(redis.connection.clone(), method).with_parse_memory(parse_memory);
            let mut run = back_up(&mut source, destinations, &job, progress).await?;
            let check = move || -> Box<dyn RestoreTarget> {
                Box::new(RdbCheck {
                    summary: None,
                    parse_memory,
                })
            };
            this.verify(
                &mut run,
                destinations,
                BackupKind::REDIS,
                keyring,
                spool,
                &check,
            )
            .await;
            if this.run.drill && run.committed().is_some() {
                let recorded = run
                    .committed()
                    .and_then(|r| recorded_keys_per_db(&r.manifest));
                redis_drill(
                    &mut run,
                    destinations,
                    keyring,
                    spool,
                    recorded,
                    parse_memory,
                )
                .await;
            }
            Ok(run)
        })
    }

    /// The physical base backup, when [`WalConfig::base_backup`] says one is due: the newest
    /// complete one is older than its period.
    async fn base_component(ctx: &Ctx, progress: Option<ProgressFn>) -> Component<'static> {
        let this = &ctx.this;
        let Some(period) = this.wal.base_backup.period() else {
            return Component::skip("base", "no base backups scheduled ([wal] base_backup)");
        };
        if this.run.skip.iter().any(|s| s == "base") {
            return Component::skip("base", "left out by BACKUP_SKIP_COMPONENTS / --skip base");
        }
        let postgres = match &this.postgres {
            Ok(postgres) => postgres.clone(),
            Err(why) => return Component::skip("base", why),
        };
        if let Ok(catalog) = ctx
            .destinations
            .catalog(BackupKind::BASE, &this.pipeline.name_prefix)
            .await
        {
            let newest = catalog
                .listed
                .iter()
                .rev()
                .find(|l| l.entry.status == backup_core::BackupStatus::Complete);
            if let Some(newest) = newest {
                let age = Utc::now() - newest.entry.timestamp();
                if age.to_std().is_ok_and(|age| age < period) {
                    return Component::skip(
                        "base",
                        format!(
                            "the newest base backup, {}, is {}h old: not due yet",
                            newest.entry.key,
                            age.num_hours()
                        ),
                    );
                }
            }
        }
        let ctx = ctx.clone();
        Component::run("base", async move {
            let (this, destinations, keyring, spool) = ctx.parts();
            tracing::info!(
                "base: physical base backup of {}",
                postgres.connection.endpoint()
            );
            let label = format!("{} base backup", this.pipeline.name_prefix);
            let mut source = PhysicalSource::new(postgres.connection.clone(), label);
            if let Ok(Some(tools)) = postgres.tools() {
                source = source.with_tools(tools);
            }
            let job = BackupJob {
                options: this
                    .pipeline
                    .backup_options()
                    .encrypted_with(keyring.current().clone()),
                publish_latest: None,
            };
            let mut run = back_up(&mut source, destinations, &job, progress).await?;
            let scratch = spool.join(".base-backup-check");
            let check = move || -> Box<dyn RestoreTarget> {
                Box::new(FilesCheck::new(FilesRestoreOptions {
                    target_dir: scratch.clone(),
                    overwrite: false,
                }))
            };
            this.verify(
                &mut run,
                destinations,
                BackupKind::BASE,
                keyring,
                spool,
                &check,
            )
            .await;
            Ok(run)
        })
    }

    fn files_component(
        kind: FilesKind,
        ctx: &Ctx,
        progress: Option<ProgressFn>,
    ) -> Component<'static> {
        let name = kind.name_prefix();
        let skip = match kind {
            FilesKind::Config => &ctx.this.config_skip,
            FilesKind::Logs => &ctx.this.logs_skip,
        };
        if let Some(why) = skip {
            return Component::skip(name, why);
        }
        let ctx = ctx.clone();
        Component::run(name, async move {
            let (this, destinations, keyring, spool) = ctx.parts();
            let mut source = this
                .files
                .source(kind)
                .map_err(CoreError::Config)?
                .excluding(&this.pipeline.key_file)
                .excluding(&this.pipeline.keyring_directory());
            tracing::info!(
                "{name}: archiving {}",
                this.files
                    .paths(kind)
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let job = BackupJob {
                options: this
                    .pipeline
                    .backup_options()
                    .encrypted_with(keyring.current().clone()),
                publish_latest: None,
            };
            let mut run = back_up(&mut source, destinations, &job, progress).await?;
            let target = spool.join(".backup-all-verify");
            let check = move || -> Box<dyn RestoreTarget> {
                Box::new(FilesCheck::new(FilesRestoreOptions {
                    target_dir: target.clone(),
                    overwrite: true,
                }))
            };
            this.verify(
                &mut run,
                destinations,
                kind.backup_kind(),
                keyring,
                spool,
                &check,
            )
            .await;
            if kind == FilesKind::Logs && run.status() == RunStatus::Success {
                this.log_retention(&mut run);
            }
            Ok(run)
        })
    }

    async fn verify(
        &self,
        run: &mut BackupRun,
        destinations: &Destinations,
        kind: BackupKind,
        keyring: &Keyring,
        spool: &std::path::Path,
        check: &(dyn Fn() -> Box<dyn RestoreTarget> + Sync),
    ) {
        checks::verify_run(
            run,
            destinations,
            kind,
            self.run.verify,
            Some(keyring),
            spool,
            check,
        )
        .await;
    }

    /// Deletes local logs past `BACKUP_LOG_RETENTION_DAYS` (after a log backup stored
    /// everywhere), never open ones.
    fn log_retention(&self, run: &mut BackupRun) {
        let Some(days) = self.files.log_retention_days else {
            return;
        };
        let warnings = apply_log_retention(&self.files.log_dir, days, SystemTime::now());
        run.warnings.extend(warnings);
    }

    /// `SELECT 1` and `PING` on the configured servers, at the same time.
    async fn health(&self) -> Vec<Health> {
        let postgres = async {
            match &self.postgres {
                Ok(pg) => Some(checks::postgres_health(&pg.connection).await),
                Err(_) => None,
            }
        };
        let redis = async {
            match &self.redis {
                Ok(redis) => Some(checks::redis_health(&redis.connection).await),
                Err(_) => None,
            }
        };
        let (postgres, redis) = tokio::join!(postgres, redis);
        postgres.into_iter().chain(redis).collect()
    }

    /// The local backup disk and the log disk.
    fn disks(&self) -> Vec<Disk> {
        let percent = self.run.disk_warn_percent;
        let backups = self
            .local
            .dir
            .as_deref()
            .and_then(|dir| checks::disk_usage("backups", dir, percent));
        let logs = checks::disk_usage("logs", &self.files.log_dir, percent)
            .filter(|_| self.files.log_dir.is_dir());
        backups.into_iter().chain(logs).collect()
    }

    /// Before the run: whether the local backup directory can hold at least what the previous
    /// backups of each kind took.
    async fn space_before(&self, destinations: &Destinations) -> Vec<String> {
        let Some(dir) = &self.local.dir else {
            return Vec::new();
        };
        let Some(local) = destinations.iter().find(|d| d.name() == "local") else {
            return Vec::new();
        };
        let mut previous = 0u64;
        for kind in BackupKind::BUILT_IN {
            if let Ok(entries) = backup_core::list_backups(local.sink(), kind).await {
                previous += entries.last().map_or(0, |e| e.size);
            }
        }
        match checks::disk_usage("backups", dir, self.run.disk_warn_percent) {
            Some(disk) if disk.available_bytes < previous => {
                let warning = format!(
                    "the local backup directory {} has {} free, less than the {} the previous \
                     backups took: this run may fill the disk",
                    dir.display(),
                    backup_core::human_bytes(disk.available_bytes),
                    backup_core::human_bytes(previous)
                );
                tracing::warn!("{warning}");
                vec![warning]
            }
            _ => Vec::new(),
        }
    }
}
