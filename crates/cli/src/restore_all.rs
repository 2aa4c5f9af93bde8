//! `restore-database --all` (every database of a run, after its roles) and the listing of
//! every database's backups, grouped by database. The work is
//! `backup_orchestrate::restore_cluster`.

use backup_core::config::Config;
use backup_core::{BackupKind, LocalConfig, PipelineConfig, RestoreConfig, RestoreRules};
use backup_orchestrate::{restore_cluster, ClusterRestoreRequest};
use backup_sources::postgres::{database_of_series, PostgresConfig};

use crate::common::{self, CommonArgs};
use crate::exit::{CliError, ExitStatus};
use crate::select::{self, SelectionArgs};

/// Prints every series under `prefix` (the single-database one, `{prefix}_backup_...`, and
/// one per database, `{prefix}_{database}_backup_...`), grouped by database. With one series
/// only, the listing is the single-database one.
pub async fn print_list(
    args: &SelectionArgs,
    prefix: &str,
    config: &Config,
) -> Result<ExitStatus, CliError> {
    let resolved = select::resolve(BackupKind::DATABASE, prefix, args, config).await?;
    let catalogs = resolved
        .destinations
        .catalogs(BackupKind::DATABASE, &|p| {
            p == prefix || database_of_series(prefix, p).is_some()
        })
        .await
        .map_err(CliError::failure)?;
    if catalogs.len() <= 1 {
        resolved.print_list(args.json);
        return Ok(ExitStatus::Success);
    }
    let database = |series: &str, catalog: &backup_core::Catalog| {
        database_of_series(prefix, series).unwrap_or_else(|| {
            // The single-database series: the database its newest manifest names.
            let recorded = catalog
                .listed
                .iter()
                .rev()
                .find_map(|l| l.entry.manifest.as_ref()?.source.database.clone());
            recorded.unwrap_or_else(|| "(one database, old names)".to_owned())
        })
    };
    if args.json {
        let mut rows = Vec::new();
        for (series, catalog) in &catalogs {
            let db = database(series, catalog);
            if let serde_json::Value::Array(list) = catalog.to_json(&resolved.destinations) {
                for mut row in list {
                    if let Some(obj) = row.as_object_mut() {
                        obj.insert("database".into(), db.clone().into());
                        obj.insert("series".into(), series.clone().into());
                    }
                    rows.push(row);
                }
            }
        }
        println!("{}", serde_json::Value::Array(rows));
        return Ok(ExitStatus::Success);
    }
    for (series, catalog) in &catalogs {
        println!(
            "database {} ({series}_backup_*):",
            database(series, catalog)
        );
        print!("{}", catalog.table(&resolved.destinations));
        println!();
    }
    Ok(ExitStatus::Success)
}

/// How `--all` restores.
pub struct AllArgs {
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--with-globals`.
    pub with_globals: bool,
    /// `--replace`.
    pub replace: bool,
    /// `--terminate-connections`.
    pub terminate_connections: bool,
}

/// `restore-database --all --latest|--date`: every database of the newest run the selection
/// allows, after its roles with `--with-globals`. Exit 0 all restored and matching their
/// manifests, 1 some, 2 none (or refused before anything was written).
pub async fn run(
    common_args: &CommonArgs,
    select_args: &SelectionArgs,
    all: AllArgs,
    config: &Config,
) -> Result<ExitStatus, CliError> {
    if select_args.file.is_some() {
        return Err(CliError::usage(anyhow::anyhow!(
            "--all restores a whole run: choose it with --latest or --date, not --file"
        )));
    }
    let pipeline: PipelineConfig = common::component(config)?;
    let postgres: PostgresConfig = common::component(config)?;
    let restore: RestoreConfig = common::component(config)?;
    let local: LocalConfig = common::component(config)?;
    let resolved = select::resolve(
        BackupKind::DATABASE,
        &pipeline.name_prefix,
        select_args,
        config,
    )
    .await?;
    let keyring = common::load_keyring(&pipeline)?;
    let request = ClusterRestoreRequest {
        name_prefix: pipeline.name_prefix.clone(),
        selection: resolved.selection.clone(),
        rules: RestoreRules {
            allow_legacy: false,
            ..resolved.rules
        },
        with_globals: all.with_globals,
        dry_run: all.dry_run,
        replace: all.replace,
        terminate_connections: all.terminate_connections,
    };
    let progress = common_args.progress(None, "reading");
    let factory = |db: &str, _size: u64| {
        progress.as_ref().map(|(bar, f)| {
            bar.set_message(format!("database {db}"));
            f.clone()
        })
    };
    let report = restore_cluster(
        &resolved.destinations,
        &postgres,
        &request,
        Some(&keyring),
        &restore.spool_dir(&local),
        &factory,
    )
    .await;
    if let Some((bar, _)) = progress {
        bar.finish_and_clear();
    }
    let report = report.map_err(CliError::failure)?;
    if select_args.json {
        let json = serde_json::to_string_pretty(&report).map_err(CliError::failure)?;
        println!("{json}");
    } else {
        for line in report.lines() {
            println!("{line}");
        }
    }
    if report.ok() {
        Ok(ExitStatus::Success)
    } else if report.any_ok() {
        Ok(ExitStatus::Partial)
    } else {
        Err(CliError::failure(anyhow::anyhow!(
            "no database of the run was restored"
        )))
    }
}
