//! The restore side: a dump stream into a database, atomically.

use async_trait::async_trait;
use backup_core::{BoxError, ByteStream, RestoreSummary, RestoreTarget};
use chrono::Utc;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::apply::{apply_dump, Applied, SqlTarget};
use super::connection::PgConnection;
use super::tools::{discover_async, PgTools};
use crate::error::SourceError;

/// PostgreSQL's limit on identifier length in bytes (`NAMEDATALEN - 1`).
pub const MAX_DB_NAME_BYTES: usize = 63;

/// Infix of the scratch database a `replace` restore goes into: `<target>_restore_<time>`.
pub const SCRATCH_INFIX: &str = "restore";
/// Infix of the name the replaced database is kept under: `<target>_before_restore_<time>`.
pub const ASIDE_INFIX: &str = "before_restore";

/// What to restore into and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreOptions {
    /// The database to restore into.
    pub target_db: String,
    /// Create the target database when it does not exist (it is dropped again if the restore
    /// fails).
    pub create: bool,
    /// Allow replacing a database that has tables: restore into a scratch database, then swap
    /// names, keeping the old one as `<target>_before_restore_<YYYYMMDD_HHMMSS>`.
    pub replace: bool,
    /// With `replace`: disconnect other sessions from the target when swapping. Without it a
    /// target with other sessions is refused before anything is restored.
    pub terminate_connections: bool,
    /// With `create`: the role to own a database this restore creates (the owner the backup
    /// recorded); when that role is missing or may not be given a database, the restoring user
    /// owns it and the summary says so. `None`: the restoring user.
    pub owner: Option<String>,
}

impl RestoreOptions {
    /// Into the existing, empty database `target_db`; see the fields for the other modes.
    pub fn into_database(target_db: impl Into<String>) -> Self {
        Self {
            target_db: target_db.into(),
            ..Self::default()
        }
    }

    /// Creates the target database when it does not exist.
    pub fn creating(mut self) -> Self {
        self.create = true;
        self
    }

    /// A database this restore creates is owned by `owner` (see [`Self::owner`]).
    pub fn owned_by(mut self, owner: Option<String>) -> Self {
        self.owner = owner;
        self
    }
}

/// Restores a `pg_dump` stream (plain SQL or custom archive, recognised by its first bytes)
/// into a database, all or nothing.
///
/// - Target missing: refused unless [`RestoreOptions::create`]; then created (`TEMPLATE
///   template0`), restored, and dropped again if the restore fails.
/// - Target exists without tables or views (and no `replace`): restored in place by
///   one `psql` transaction that this tool opens and commits only after the stream reached a
///   verified end; on any failure, or if this process dies, the transaction is rolled back.
/// - Target has tables: refused unless [`RestoreOptions::replace`]; then the dump goes into a
///   scratch database `<target>_restore_<time>` (same owner, encoding and locale as the
///   target), and only when that succeeded are the names swapped in one transaction: the old
///   database becomes `<target>_before_restore_<time>`, the scratch one `<target>`. On failure
///   the scratch database is dropped and the target is untouched.
///
/// Database-level settings (`ALTER DATABASE ... SET`) and grants on the database itself are
/// not part of a `pg_dump` and are not carried over to a replacing database.
#[derive(Debug)]
pub struct PostgresRestore {
    conn: PgConnection,
    options: RestoreOptions,
    tools: Option<PgTools>,
}

/// Double-quotes an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Single-quotes an SQL string literal (standard_conforming_strings).
fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Checks that `name` can be a database name as given (PostgreSQL would silently truncate a
/// longer one).
pub fn validate_db_name(name: &str) -> Result<(), SourceError> {
    let invalid = |reason: &str| SourceError::InvalidDatabaseName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.is_empty() {
        return Err(invalid(
            "it is empty; name the target database (--target-db)",
        ));
    }
    if name.len() > MAX_DB_NAME_BYTES {
        return Err(invalid(&format!(
            "it is {} bytes long, PostgreSQL allows at most {MAX_DB_NAME_BYTES}",
            name.len()
        )));
    }
    if name.contains('\0') {
        return Err(invalid("it contains a NUL character"));
    }
    Ok(())
}

/// `<target>_<infix>_<stamp>[_<n>]`, with `target` cut (at a character boundary) so the
/// result fits PostgreSQL's 63-byte limit.
pub fn derived_db_name(target: &str, infix: &str, stamp: &str, n: u32) -> String {
    let suffix = if n == 0 {
        format!("_{infix}_{stamp}")
    } else {
        format!("_{infix}_{stamp}_{n}")
    };
    let mut keep = MAX_DB_NAME_BYTES
        .saturating_sub(suffix.len())
        .min(target.len());
    while !target.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{suffix}", &target[..keep])
}

/// The properties of an existing database a replacement should keep.
#[derive(Debug, Clone)]
struct DbInfo {
    owner: String,
    encoding: String,
    collate: String,
    ctype: String,
    /// `LOCALE_PROVIDER ...` clause for ICU / builtin databases (PostgreSQL 15+).
    provider_clause: Option<String>,
}

async fn exec(client: &Client, what: &str, sql: &str) -> Result<(), SourceError> {
    client
        .batch_execute(sql)
        .await
        .map_err(|e| SourceError::query(what, e))
}

async fn db_info(client: &Client, name: &str) -> Result<Option<DbInfo>, SourceError> {
    let row = client
        .query_opt(
            "SELECT pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), \
                    to_jsonb(d)::text \
             FROM pg_database d WHERE d.datname = $1",
            &[&name],
        )
        .await
        .map_err(|e| SourceError::query(format!("looking up database {name:?}"), e))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let json: String = row.get(2);
    let fields: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
    let text = |key: &str| fields.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let provider_clause = match text("datlocprovider").as_deref() {
        Some("i") => text("daticulocale")
            .or_else(|| text("datlocale"))
            .map(|l| format!("LOCALE_PROVIDER icu ICU_LOCALE {}", quote_literal(&l))),
        Some("b") => text("datlocale").map(|l| {
            format!(
                "LOCALE_PROVIDER builtin BUILTIN_LOCALE {}",
                quote_literal(&l)
            )
        }),
        _ => None,
    };
    Ok(Some(DbInfo {
        owner: row.get(0),
        encoding: row.get(1),
        collate: text("datcollate").unwrap_or_default(),
        ctype: text("datctype").unwrap_or_default(),
        provider_clause,
    }))
}

async fn db_exists(client: &Client, name: &str) -> Result<bool, SourceError> {
    Ok(client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(|e| SourceError::query(format!("looking up database {name:?}"), e))?
        .is_some())
}

/// Client sessions on `db` other than ours and than `exclude`.
async fn other_sessions(
    client: &Client,
    db: &str,
    exclude: Option<i32>,
) -> Result<i64, SourceError> {
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid() \
               AND backend_type = 'client backend' AND pid IS DISTINCT FROM $2",
            &[&db, &exclude],
        )
        .await
        .map_err(|e| SourceError::query(format!("counting sessions on database {db:?}"), e))?;
    Ok(row.get(0))
}

/// Drops `name`, disconnecting leftover sessions (our killed psql's backend may linger).
async fn drop_db(client: &Client, name: &str, server_major: u32) -> Result<(), SourceError> {
    let force = if server_major >= 13 {
        " WITH (FORCE)"
    } else {
        ""
    };
    exec(
        client,
        &format!("dropping database {name:?}"),
        &format!("DROP DATABASE IF EXISTS {}{force}", quote_ident(name)),
    )
    .await
}

/// Drops the scratch database after a failure; says what state things are in.
async fn scratch_dropped(maint: &Client, target: &str, scratch: &str, server_major: u32) -> String {
    match drop_db(maint, scratch, server_major).await {
        Ok(()) => format!(
            "database {target:?} is unchanged; the scratch database {scratch:?} was dropped"
        ),
        Err(drop_error) => format!(
            "database {target:?} is unchanged; the scratch database {scratch:?} could not be \
             dropped ({drop_error}); drop it by hand"
        ),
    }
}

/// How old a scratch database of `target` must be (by the stamp in its name) before a later
/// `--replace` drops it as a leftover of an interrupted restore.
const LEFTOVER_SCRATCH_AGE: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// Whether `name` is a scratch database of `target` (`<target>_restore_<stamp>[_<n>]`) made
/// before `cutoff`.
fn leftover_scratch_of(target: &str, name: &str, cutoff: chrono::DateTime<Utc>) -> bool {
    let marker = format!("_{SCRATCH_INFIX}_");
    let Some(at) = name.rfind(&marker) else {
        return false;
    };
    let rest = &name[at + marker.len()..];
    let (stamp, n) = match rest.get(15..) {
        Some("") => (rest, 0),
        Some(tail) => match tail.strip_prefix('_').and_then(|n| n.parse::<u32>().ok()) {
            Some(n) => (&rest[..15], n),
            None => return false,
        },
        None => return false,
    };
    let Ok(made) = chrono::NaiveDateTime::parse_from_str(stamp, backup_core::TIMESTAMP_FORMAT)
    else {
        return false;
    };
    derived_db_name(target, SCRATCH_INFIX, stamp, n) == name && made.and_utc() < cutoff
}

/// Drops the scratch databases of `target` that interrupted `--replace` restores left (a
/// crash of the server or of the tool before it could drop them), when nobody is connected
/// to them. They never hold the target's data: a scratch database becomes the target only by
/// the rename at the very end. Returns a note per database dropped.
async fn drop_leftover_scratch(maint: &Client, target: &str) -> Vec<String> {
    let cutoff = Utc::now() - LEFTOVER_SCRATCH_AGE;
    let Ok(rows) = maint.query("SELECT datname FROM pg_database", &[]).await else {
        return Vec::new();
    };
    let mut notes = Vec::new();
    for row in rows {
        let name: String = row.get(0);
        if !leftover_scratch_of(target, &name, cutoff) {
            continue;
        }
        // Without FORCE: a database someone is connected to is not a leftover.
        let sql = format!("DROP DATABASE {}", quote_ident(&name));
        match exec(maint, &format!("dropping leftover {name:?}"), &sql).await {
            Ok(()) => {
                tracing::warn!("dropped {name:?}, left by an interrupted restore of {target:?}");
                notes.push(format!(
                    "dropped the scratch database {name:?} an interrupted restore had left"
                ));
            }
            Err(e) => tracing::info!("left {name:?} alone: {e}"),
        }
    }
    notes
}

impl PostgresRestore {
    /// A restore into `options.target_db` on the server `conn` names (its database is not
    /// used; the maintenance database `postgres` is, for creating and renaming databases).
    pub fn new(conn: PgConnection, options: RestoreOptions) -> Self {
        Self {
            conn,
            options,
            tools: None,
        }
    }

    /// Uses these tools instead of discovering them.
    pub fn with_tools(mut self, tools: PgTools) -> Self {
        self.tools = Some(tools);
        self
    }

    /// The options.
    pub fn options(&self) -> &RestoreOptions {
        &self.options
    }

    /// Refuses, before anything is read or written, what the restore itself would refuse: a
    /// missing target without `create`, a target with tables without `replace`, and with
    /// `replace` one that other sessions use without `terminate_connections`. A restore of
    /// several databases checks them all first, so it refuses as a whole or not at all.
    ///
    /// # Errors
    /// [`SourceError::DatabaseMissing`], [`SourceError::DatabaseNotEmpty`],
    /// [`SourceError::DatabaseInUse`], or when the server cannot be reached.
    pub async fn preflight(&self) -> Result<(), SourceError> {
        let target = &self.options.target_db;
        validate_db_name(target)?;
        let maint = self.maintenance().await?;
        if db_info(&maint, target).await?.is_none() {
            return if self.options.create {
                Ok(())
            } else {
                Err(SourceError::DatabaseMissing {
                    database: target.clone(),
                })
            };
        }
        let (relations, counting_pid) = self.count_relations(target).await?;
        if relations == 0 && !self.options.replace {
            return Ok(());
        }
        if !self.options.replace {
            return Err(SourceError::DatabaseNotEmpty {
                database: target.clone(),
                tables: relations,
            });
        }
        let sessions = other_sessions(&maint, target, Some(counting_pid)).await?;
        if sessions > 0 && !self.options.terminate_connections {
            return Err(SourceError::DatabaseInUse {
                database: target.clone(),
                sessions,
            });
        }
        Ok(())
    }

    /// Connects to the maintenance database (`postgres`, else `template1`; `template1` when
    /// the target is `postgres` itself, which could not be renamed while we are connected).
    async fn maintenance(&self) -> Result<Client, SourceError> {
        if self.options.target_db == "postgres" {
            return self.conn.with_dbname("template1").connect().await;
        }
        match self.conn.with_dbname("postgres").connect().await {
            Err(SourceError::NoSuchDatabase { .. }) => {
                self.conn.with_dbname("template1").connect().await
            }
            other => other,
        }
    }

    /// Tables, views and the like in `db` outside the system schemas; and the backend pid of
    /// the session that counted them.
    async fn count_relations(&self, db: &str) -> Result<(i64, i32), SourceError> {
        let client = self.conn.with_dbname(db).connect().await?;
        let row = client
            .query_one(
                "SELECT count(*), pg_backend_pid() FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') \
                   AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                   AND n.nspname !~ '^pg_toast'",
                &[],
            )
            .await
            .map_err(|e| SourceError::query(format!("counting tables in database {db:?}"), e))?;
        Ok((row.get(0), row.get(1)))
    }

    /// Creates `name` like `info` (owner, encoding, locale); returns a note if the owner could
    /// not be kept.
    async fn create_like(
        &self,
        client: &Client,
        name: &str,
        info: &DbInfo,
    ) -> Result<Option<String>, SourceError> {
        let mut sql = format!(
            "CREATE DATABASE {} TEMPLATE template0 ENCODING {}",
            quote_ident(name),
            quote_literal(&info.encoding)
        );
        if !info.collate.is_empty() && !info.ctype.is_empty() {
            sql.push_str(&format!(
                " LC_COLLATE {} LC_CTYPE {}",
                quote_literal(&info.collate),
                quote_literal(&info.ctype)
            ));
        }
        if let Some(clause) = &info.provider_clause {
            sql.push(' ');
            sql.push_str(clause);
        }
        let with_owner = format!("{sql} OWNER {}", quote_ident(&info.owner));
        match client.batch_execute(&with_owner).await {
            Ok(()) => Ok(None),
            Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
                exec(client, &format!("creating database {name:?}"), &sql).await?;
                Ok(Some(format!(
                    "the restored database is owned by {:?}, not {:?} like the one it replaced \
                     (not allowed to create databases for that role)",
                    self.conn.user(),
                    info.owner
                )))
            }
            Err(e) => Err(SourceError::query(format!("creating database {name:?}"), e)),
        }
    }

    /// A database name derived from the target that is not taken.
    async fn free_name(
        &self,
        client: &Client,
        target: &str,
        infix: &str,
        stamp: &str,
        also_taken: Option<&str>,
    ) -> Result<String, SourceError> {
        for n in 0..100 {
            let name = derived_db_name(target, infix, stamp, n);
            if Some(name.as_str()) != also_taken && !db_exists(client, &name).await? {
                return Ok(name);
            }
        }
        Err(SourceError::InvalidDatabaseName {
            name: derived_db_name(target, infix, stamp, 0),
            reason: "it and 99 numbered variants exist already".to_owned(),
        })
    }

    async fn apply(
        &self,
        db: &str,
        stream: ByteStream,
        tools: &PgTools,
        in_place: bool,
    ) -> Result<Applied, SourceError> {
        let conn = self.conn.with_dbname(db);
        apply_dump(
            stream,
            SqlTarget::Database {
                conn: &conn,
                in_place,
            },
            Some(tools),
        )
        .await
    }

    async fn run(&mut self, stream: ByteStream) -> Result<RestoreSummary, SourceError> {
        let target = self.options.target_db.clone();
        validate_db_name(&target)?;
        let mut maint = self.maintenance().await?;
        let server_major = maint
            .query_one("SELECT current_setting('server_version_num')::int4", &[])
            .await
            .map_err(|e| SourceError::query("reading the server version", e))
            .map(|r| u32::try_from(r.get::<_, i32>(0) / 10_000).unwrap_or(0))?;
        let tools = match &self.tools {
            Some(t) => t.clone(),
            None => discover_async(server_major).await?,
        };
        let server = self.conn.endpoint();
        let restore_failed = |error: SourceError, outcome: String| SourceError::Restore {
            database: target.clone(),
            server: server.clone(),
            error: Box::new(error),
            outcome,
        };

        let Some(info) = db_info(&maint, &target).await? else {
            if !self.options.create {
                return Err(SourceError::DatabaseMissing { database: target });
            }
            let create = format!(
                "CREATE DATABASE {} TEMPLATE template0",
                quote_ident(&target)
            );
            let mut owner_note = None;
            let created_with_owner = match &self.options.owner {
                Some(owner) => {
                    let sql = format!("{create} OWNER {}", quote_ident(owner));
                    match maint.batch_execute(&sql).await {
                        Ok(()) => true,
                        Err(e)
                            if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE)
                                || e.code() == Some(&SqlState::UNDEFINED_OBJECT) =>
                        {
                            owner_note = Some(format!(
                                "database {target:?} is owned by {:?}, not {owner:?} as recorded \
                                 in the backup ({}; restore --with-globals first to create the \
                                 role)",
                                self.conn.user(),
                                e.as_db_error().map_or("refused", |d| d.message())
                            ));
                            false
                        }
                        Err(e) => {
                            return Err(SourceError::query(
                                format!("creating database {target:?}"),
                                e,
                            ))
                        }
                    }
                }
                None => false,
            };
            if !created_with_owner {
                exec(&maint, &format!("creating database {target:?}"), &create).await?;
            }
            tracing::info!("created database {target:?}; restoring into it");
            return match self.apply(&target, stream, &tools, false).await {
                Ok(applied) => {
                    let mut notes =
                        vec![format!("created database {target:?} and restored into it")];
                    notes.extend(owner_note);
                    notes.extend(applied.notes());
                    Ok(RestoreSummary {
                        plain_bytes: applied.input_bytes,
                        notes,
                    })
                }
                Err(e) => {
                    let outcome = match drop_db(&maint, &target, server_major).await {
                        Ok(()) => format!(
                            "nothing was left behind: database {target:?}, created for this \
                             restore, was dropped again"
                        ),
                        Err(drop_error) => format!(
                            "database {target:?} was created for this restore and could not be \
                             dropped again ({drop_error}); drop it by hand"
                        ),
                    };
                    Err(restore_failed(e, outcome))
                }
            };
        };

        let (relations, counting_pid) = self.count_relations(&target).await?;
        if relations == 0 && !self.options.replace {
            tracing::info!("database {target:?} exists and is empty; restoring in place");
            return match self.apply(&target, stream, &tools, true).await {
                Ok(applied) => {
                    let mut notes = vec![format!(
                        "restored into the existing empty database {target:?}"
                    )];
                    notes.extend(applied.notes());
                    Ok(RestoreSummary {
                        plain_bytes: applied.input_bytes,
                        notes,
                    })
                }
                Err(e) => Err(restore_failed(
                    e,
                    format!(
                        "database {target:?} is unchanged: the restore transaction was rolled \
                         back"
                    ),
                )),
            };
        }
        if !self.options.replace {
            return Err(SourceError::DatabaseNotEmpty {
                database: target,
                tables: relations,
            });
        }

        let sessions = other_sessions(&maint, &target, Some(counting_pid)).await?;
        if sessions > 0 && !self.options.terminate_connections {
            return Err(SourceError::DatabaseInUse {
                database: target,
                sessions,
            });
        }
        let leftovers = drop_leftover_scratch(&maint, &target).await;
        let stamp = Utc::now().format(backup_core::TIMESTAMP_FORMAT).to_string();
        let scratch = self
            .free_name(&maint, &target, SCRATCH_INFIX, &stamp, None)
            .await?;
        let aside = self
            .free_name(&maint, &target, ASIDE_INFIX, &stamp, Some(&scratch))
            .await?;
        let owner_note = self.create_like(&maint, &scratch, &info).await?;
        tracing::info!("restoring into scratch database {scratch:?}, to replace {target:?}");
        let applied = match self.apply(&scratch, stream, &tools, false).await {
            Ok(applied) => applied,
            Err(e) => {
                let outcome = scratch_dropped(&maint, &target, &scratch, server_major).await;
                return Err(restore_failed(e, outcome));
            }
        };
        let terminated = match self.swap(&mut maint, &target, &scratch, &aside).await {
            Ok(n) => n,
            Err(e) => {
                let outcome = scratch_dropped(&maint, &target, &scratch, server_major).await;
                return Err(restore_failed(e, outcome));
            }
        };
        let mut notes = vec![format!(
            "restored into a new database that replaced {target:?}; the previous {target:?} is \
             kept as {aside:?} (drop it when no longer needed: DROP DATABASE {};)",
            quote_ident(&aside)
        )];
        notes.extend(leftovers);
        if terminated > 0 {
            notes.push(format!(
                "disconnected {terminated} session(s) from the previous {target:?}"
            ));
        }
        notes.extend(owner_note);
        notes.extend(applied.notes());
        Ok(RestoreSummary {
            plain_bytes: applied.input_bytes,
            notes,
        })
    }

    /// Renames `target` to `aside` and `scratch` to `target` in one transaction; returns how
    /// many sessions were terminated.
    async fn swap(
        &self,
        maint: &mut Client,
        target: &str,
        scratch: &str,
        aside: &str,
    ) -> Result<i64, SourceError> {
        const ATTEMPTS: u32 = 3;
        let mut terminated = 0;
        for attempt in 1..=ATTEMPTS {
            if self.options.terminate_connections {
                let row = maint
                    .query_one(
                        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) \
                         FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() \
                           AND backend_type = 'client backend'",
                        &[&target],
                    )
                    .await
                    .map_err(|e| {
                        SourceError::query(
                            format!(
                                "disconnecting sessions from {target:?} (needs superuser or \
                                 the pg_signal_backend role)"
                            ),
                            e,
                        )
                    })?;
                terminated += row.get::<_, i64>(0);
            }
            let tx = maint
                .transaction()
                .await
                .map_err(|e| SourceError::query("starting the rename transaction", e))?;
            let renamed = async {
                tx.batch_execute(&format!(
                    "ALTER DATABASE {} RENAME TO {}",
                    quote_ident(target),
                    quote_ident(aside)
                ))
                .await?;
                tx.batch_execute(&format!(
                    "ALTER DATABASE {} RENAME TO {}",
                    quote_ident(scratch),
                    quote_ident(target)
                ))
                .await
            }
            .await;
            match renamed {
                Ok(()) => {
                    tx.commit().await.map_err(|e| {
                        SourceError::query(format!("renaming databases ({target:?} to {aside:?}, {scratch:?} to {target:?})"), e)
                    })?;
                    return Ok(terminated);
                }
                Err(e) if e.code() == Some(&SqlState::OBJECT_IN_USE) => {
                    drop(tx);
                    if self.options.terminate_connections && attempt < ATTEMPTS {
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        continue;
                    }
                    let sessions = other_sessions(maint, target, None).await.unwrap_or(1);
                    return Err(SourceError::DatabaseInUse {
                        database: target.to_owned(),
                        sessions: sessions.max(1),
                    });
                }
                Err(e) => {
                    return Err(SourceError::query(
                        format!(
                            "renaming databases ({target:?} to {aside:?}, {scratch:?} to \
                             {target:?})"
                        ),
                        e,
                    ))
                }
            }
        }
        Err(SourceError::DatabaseInUse {
            database: target.to_owned(),
            sessions: 1,
        })
    }
}

#[async_trait]
impl RestoreTarget for PostgresRestore {
    async fn restore(&mut self, stream: ByteStream) -> Result<RestoreSummary, BoxError> {
        Ok(self.run(stream).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftover_scratch_databases_are_recognised_by_name_and_age() {
        let now = Utc::now();
        let old = (now - chrono::TimeDelta::hours(2))
            .format(backup_core::TIMESTAMP_FORMAT)
            .to_string();
        let fresh = now.format(backup_core::TIMESTAMP_FORMAT).to_string();
        let cutoff = now - LEFTOVER_SCRATCH_AGE;
        let name = |target: &str, stamp: &str, n| derived_db_name(target, SCRATCH_INFIX, stamp, n);
        assert!(leftover_scratch_of("app", &name("app", &old, 0), cutoff));
        assert!(leftover_scratch_of("app", &name("app", &old, 3), cutoff));
        assert!(
            !leftover_scratch_of("app", &name("app", &fresh, 0), cutoff),
            "too recent"
        );
        assert!(!leftover_scratch_of("other", &name("app", &old, 0), cutoff));
        assert!(!leftover_scratch_of("ap", &name("app", &old, 0), cutoff));
        assert!(!leftover_scratch_of(
            "app",
            &derived_db_name("app", ASIDE_INFIX, &old, 0),
            cutoff
        ));
        assert!(!leftover_scratch_of("app", "app", cutoff));
        assert!(!leftover_scratch_of(
            "app",
            &format!("app_restore_{old}_x"),
            cutoff
        ));
        let long = "ş".repeat(31);
        assert!(leftover_scratch_of(&long, &name(&long, &old, 0), cutoff));
    }

    #[test]
    fn derived_names_fit_the_limit() {
        assert_eq!(
            derived_db_name("app", ASIDE_INFIX, "20240115_020000", 0),
            "app_before_restore_20240115_020000"
        );
        assert_eq!(
            derived_db_name("app", SCRATCH_INFIX, "20240115_020000", 2),
            "app_restore_20240115_020000_2"
        );
        let long = "ş".repeat(31); // 62 bytes
        let name = derived_db_name(&long, ASIDE_INFIX, "20240115_020000", 0);
        assert!(name.len() <= MAX_DB_NAME_BYTES, "{}", name.len());
        assert!(name.ends_with("_before_restore_20240115_020000"));
        assert!(name.starts_with("şş"));
    }

    #[test]
    fn names_are_validated_and_quoted() {
        assert!(validate_db_name("randevubu").is_ok());
        assert!(validate_db_name("").is_err());
        assert!(validate_db_name(&"x".repeat(64)).is_err());
        assert!(validate_db_name(&"x".repeat(63)).is_ok());
        assert_eq!(quote_ident("we\"ird name"), "\"we\"\"ird name\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
