//! Restores the newest complete database backup into a new database (first argument): read
//! once, verified, then restored in one transaction. Settings as for `embed_backup`:
//! `cargo run --example embed_restore -- app_restored`.
use backup::core::{BackupKind, Destination, Destinations};
use backup::crypto::{EncryptionKey, Keyring};
use backup::sources::postgres::{PgConnection, PostgresRestore, RestoreOptions};
use backup::storage::LocalSink;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let key_file = std::env::var("BACKUP_ENCRYPTION_KEY_FILE")?;
    let ring = Keyring::new(EncryptionKey::from_file(key_file.as_ref())?);
    let local = LocalSink::new(std::env::var("BACKUP_LOCAL_DIR")?)?;
    let all = Destinations::new(vec![Destination::new("local", Box::new(local))]);
    let tmp = std::env::temp_dir();
    let fetch = all.fetch_latest(BackupKind::DATABASE, "randevubu", Some(&ring), &tmp);
    let mut fetched = fetch.await?;
    let db = std::env::args().nth(1).unwrap_or("restored".to_owned());
    let options = RestoreOptions::into_database(db).creating();
    let mut target = PostgresRestore::new(PgConnection::from_env()?, options);
    let summary = fetched.restore_into(&mut target, None);
    println!("restored {} bytes", summary.await?.plain_bytes);
    Ok(())
}
