//! `backup-key`: make the key, show its id, rotate it, list the keyring, and re-encrypt stored
//! backups with the current key so that an old one can be retired.

use backup_core::reencrypt::{key_usage, ReencryptOptions, ReencryptSelection};
use backup_core::{BackupKind, PipelineConfig};
use backup_crypto::{EncryptionKey, KeyId};
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Parser, Subcommand};

use crate::common::{self, CommonArgs, Loaded};
use crate::exit::{CliError, ExitStatus};

/// Make, rotate and retire encryption keys: `generate` a new key file, print its `id`,
/// `rotate` it (the old key goes to the keyring directory), `list` the keyring with the
/// backups that still need each key, and `reencrypt` stored backups with the current key.
#[derive(Debug, Parser)]
#[command(
    name = "backup-key",
    version,
    after_help = crate::help::BACKUP_KEY,
    max_term_width = 100
)]
pub struct BackupKeyArgs {
    #[command(flatten)]
    common: CommonArgs,

    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Write a new key (32 random bytes, base64) into the key file, mode 0600; never
    /// overwrites one
    Generate,
    /// Print the id of the key in the key file (the name of its file in the keyring)
    Id,
    /// Move the current key into the keyring directory and write a new current key
    Rotate,
    /// List the current and older keys, each with the number of stored backups that need it
    List {
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Re-encrypt stored backups with the current key (on every destination), so that an
    /// older key is no longer needed
    #[command(group(clap::ArgGroup::new("which").required(true).args(["older_than", "key_id"])))]
    Reencrypt {
        /// Backups taken before this date (YYYY-MM-DD, UTC, or RFC 3339) not made with the
        /// current key
        #[arg(long, value_name = "DATE", value_parser = parse_date)]
        older_than: Option<DateTime<Utc>>,
        /// Backups made with the key with this id (see `backup-key list`)
        #[arg(long, value_name = "ID")]
        key_id: Option<KeyId>,
        /// Print the plan; change nothing
        #[arg(long)]
        dry_run: bool,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
}

/// Runs `backup-key` with parsed arguments.
pub async fn run(args: BackupKeyArgs) -> Result<ExitStatus, CliError> {
    args.common.init_logging();
    let config = match args.common.load(Vec::new())? {
        Loaded::Run(config) => config,
        Loaded::Printed(status) => return Ok(status),
    };
    let pipeline: PipelineConfig = common::component(&config)?;
    match args.command {
        KeyCommand::Generate => {
            let key =
                backup_crypto::generate_key_file(&pipeline.key_file).map_err(CliError::usage)?;
            println!("{}", key.id());
            eprintln!(
                "wrote a new key to {} (key id {}); keep a copy off this server: without it no \
                 backup made with it can be restored",
                pipeline.key_file.display(),
                key.id()
            );
        }
        KeyCommand::Id => println!("{}", common::load_key(&pipeline)?.id()),
        KeyCommand::Rotate => {
            let dir = pipeline.keyring_directory();
            let rotation = backup_crypto::rotate_key_file(&pipeline.key_file, &dir)
                .map_err(CliError::usage)?;
            println!("{}", rotation.current);
            eprintln!(
                "the new current key is {} ({}); the old key {} is in {}: backups made with it \
                 stay readable. Keep a copy of the new key off this server. To retire the old \
                 key, run `backup-key reencrypt --key-id {}`, then `backup-key list` shows it \
                 needed by no backup.",
                rotation.current,
                pipeline.key_file.display(),
                rotation.retired,
                rotation.retired_file.display(),
                rotation.retired
            );
        }
        KeyCommand::List { json } => {
            let ring = common::load_keyring(&pipeline)?;
            let destinations = common::open_destinations(&config, true).await?;
            let usage = key_usage(&destinations, &BackupKind::BUILT_IN, &ring)
                .await
                .map_err(CliError::failure)?;
            let keys: Vec<(&EncryptionKey, usize)> = ring
                .keys()
                .map(|k| (k, usage.by_key.get(k.id().as_str()).copied().unwrap_or(0)))
                .collect();
            if json {
                let rows: Vec<_> = keys
                    .iter()
                    .enumerate()
                    .map(|(i, (k, n))| {
                        serde_json::json!({"id": k.id().as_str(), "current": i == 0, "backups": n})
                    })
                    .collect();
                let doc = serde_json::json!({"keys": rows, "unverifiable": usage.unknown,
                    "legacy_encrypted": usage.legacy_encrypted});
                println!("{doc:#}");
            } else {
                for (i, (k, n)) in keys.iter().enumerate() {
                    let role = if i == 0 { "current" } else { "older" };
                    let retire = if i > 0 && *n == 0 {
                        "  (needed by no backup: retirable)"
                    } else {
                        ""
                    };
                    println!("{}  {role:<7}  {n} backup(s){retire}", k.id());
                }
                if !usage.unknown.is_empty() {
                    println!(
                        "{} backup(s) need a key that is not loaded: {}",
                        usage.unknown.len(),
                        usage.unknown.join(", ")
                    );
                }
                if !usage.legacy_encrypted.is_empty() {
                    println!(
                        "{} encrypted backup(s) without a manifest (the old scripts'): their key is \
                         not recorded; keep the old keys until retention deletes them",
                        usage.legacy_encrypted.len()
                    );
                }
            }
        }
        KeyCommand::Reencrypt {
            older_than,
            key_id,
            dry_run,
            json,
        } => {
            let ring = common::load_keyring(&pipeline)?;
            let destinations = common::open_destinations(&config, true).await?;
            let selection = match (older_than, key_id) {
                (_, Some(id)) => ReencryptSelection::KeyId(id),
                (Some(date), None) => ReencryptSelection::OlderThan(date),
                (None, None) => {
                    return Err(CliError::usage(anyhow::anyhow!(
                        "give --older-than DATE or --key-id ID"
                    )))
                }
            };
            let options = ReencryptOptions {
                selection,
                kinds: BackupKind::BUILT_IN.to_vec(),
                iterations: pipeline.pbkdf2_iterations,
                dry_run,
            };
            let report = destinations.reencrypt(&ring, &options).await;
            if json {
                println!(
                    "{:#}",
                    serde_json::to_value(&report).map_err(CliError::failure)?
                );
            } else {
                print!("{}", report.text());
            }
            return Ok(report.status().into());
        }
    }
    Ok(ExitStatus::Success)
}

/// `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time.
fn parse_date(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{text:?} is not a date: use YYYY-MM-DD (UTC) or RFC 3339"))
}
