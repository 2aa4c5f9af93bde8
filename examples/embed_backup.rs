//! Backs up a PostgreSQL database, encrypted, into a local directory, with the settings the
//! binaries read (`POSTGRES_*` or `DATABASE_URL`, `BACKUP_LOCAL_DIR`,
//! `BACKUP_ENCRYPTION_KEY_FILE`): `cargo run --example embed_backup`. Prints the object's key.
use backup::core::{run_backup, BackupOptions};
use backup::crypto::EncryptionKey;
use backup::sources::postgres::{DumpFormat, PgConnection, PostgresSource};
use backup::storage::LocalSink;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let key_file = std::env::var("BACKUP_ENCRYPTION_KEY_FILE")?;
    let key = EncryptionKey::from_file(key_file.as_ref())?;
    let options = BackupOptions::default().encrypted_with(key);
    let sink = LocalSink::new(std::env::var("BACKUP_LOCAL_DIR")?)?;
    let mut source = PostgresSource::new(PgConnection::from_env()?, DumpFormat::Plain);
    let report = run_backup(&mut source, &sink, &options, None).await?;
    println!("{}", report.key);
    Ok(())
}
