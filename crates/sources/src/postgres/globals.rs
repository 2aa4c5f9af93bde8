//! A cluster's globals — roles with their attributes, passwords (as the hashes PostgreSQL
//! stores), settings and memberships, and tablespaces — which a `pg_dump` of one database
//! does not hold. [`capture`] takes them with `pg_dumpall --globals-only` beside each database
//! backup (the pipeline embeds them, compressed and encrypted, in the signed manifest); before
//! a restore into a new server, [`apply`] recreates them so that the restored objects keep
//! their owners and grants.
//!
//! [`apply`] never runs the text through `psql`: each statement is recognised and sent with
//! the extended protocol, so no meta-command can run. Roles that already exist on the target
//! are left exactly as they are (and reported), as are the statements about them; a second
//! apply therefore changes nothing.

use std::collections::BTreeSet;
use std::process::Stdio;

use tokio::io::AsyncReadExt;
use tokio::process::Command;
use zeroize::Zeroizing;

use super::connection::PgConnection;
use super::tools::PgTools;
use crate::error::SourceError;
use crate::process::ChildProcess;

/// Name of the attachment (see [`backup_core::Attachment`]) that holds the globals.
pub const GLOBALS_ATTACHMENT: &str = "globals.sql";
/// The largest globals output accepted (a cluster with tens of thousands of roles stays far
/// below it).
pub const MAX_GLOBALS_BYTES: usize = 16 * 1024 * 1024;

/// What [`capture`] took.
#[derive(Clone)]
pub struct CapturedGlobals {
    /// The `pg_dumpall --globals-only` output (it holds password hashes: kept zeroized).
    pub sql: Zeroizing<Vec<u8>>,
    /// Whether role passwords are in it (`false` when the server refused to show them and
    /// `--no-role-passwords` was used).
    pub role_passwords: bool,
}

/// Runs `pg_dumpall --globals-only` (from `tools`) against the server of `conn`, connecting
/// to its database. When the server refuses to show role passwords (a managed server without
/// superuser: `pg_authid` is not readable) or `role_passwords` is false, it runs again with
/// `--no-role-passwords` and says so in a warning.
///
/// # Errors
/// When `pg_dumpall` is missing or fails for another reason, or its output is larger than
/// [`MAX_GLOBALS_BYTES`].
pub async fn capture(
    tools: &PgTools,
    conn: &PgConnection,
    role_passwords: bool,
) -> Result<CapturedGlobals, SourceError> {
    if role_passwords {
        match run_pg_dumpall(tools, conn, true).await {
            Ok(sql) => {
                return Ok(CapturedGlobals {
                    sql,
                    role_passwords: true,
                })
            }
            Err(SourceError::ToolFailed { stderr, .. }) if stderr.contains("pg_authid") => {
                tracing::warn!(
                    "the server does not show role passwords to {} (no superuser?): the \
                     roles are backed up without them (--no-role-passwords); set them again \
                     after a restore into a new server",
                    conn.user()
                );
            }
            Err(e) => return Err(e),
        }
    }
    Ok(CapturedGlobals {
        sql: run_pg_dumpall(tools, conn, false).await?,
        role_passwords: false,
    })
}

async fn run_pg_dumpall(
    tools: &PgTools,
    conn: &PgConnection,
    role_passwords: bool,
) -> Result<Zeroizing<Vec<u8>>, SourceError> {
    if !tools.pg_dumpall().is_file() {
        return Err(SourceError::ToolsUnusable {
            dir: tools.bin_dir().display().to_string(),
            reason: "pg_dumpall, which captures the roles beside the dump, is missing there \
                     (install the PostgreSQL client package, or set POSTGRES_GLOBALS=false)"
                .to_owned(),
        });
    }
    let mut cmd = Command::new(tools.pg_dumpall());
    cmd.args(["--globals-only", "--no-password"])
        .arg(format!("--database={}", conn.dbname()));
    if !role_passwords {
        cmd.arg("--no-role-passwords");
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    conn.apply_env(&mut cmd);
    let mut process = ChildProcess::spawn("pg_dumpall", &mut cmd)?;
    let mut sql = Zeroizing::new(Vec::new());
    if let Some(stdout) = process.child.stdout.take() {
        let limit = MAX_GLOBALS_BYTES as u64 + 1;
        stdout
            .take(limit)
            .read_to_end(&mut sql)
            .await
            .map_err(|source| SourceError::Io {
                what: "reading the pg_dumpall output".to_owned(),
                source,
            })?;
    }
    if sql.len() > MAX_GLOBALS_BYTES {
        process.kill().await;
        return Err(SourceError::InvalidDump(format!(
            "pg_dumpall --globals-only wrote more than {MAX_GLOBALS_BYTES} bytes"
        )));
    }
    process.wait_success().await?;
    Ok(sql)
}

/// What [`apply`] did (or, [`plan`] only, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GlobalsReport {
    /// Roles created.
    pub roles_created: Vec<String>,
    /// Roles that already existed: left as they were.
    pub roles_existing: Vec<String>,
    /// Role memberships granted (to created roles).
    pub memberships: u64,
    /// Attribute, password, setting and comment statements applied to created roles.
    pub role_statements: u64,
    /// Tablespaces created.
    pub tablespaces_created: Vec<String>,
    /// Tablespaces that already existed: left as they were.
    pub tablespaces_existing: Vec<String>,
    /// Statements not applied because this tool does not know them (their first words).
    pub not_applied: Vec<String>,
}

impl GlobalsReport {
    /// One line per fact, for people; `planned` for a dry run's report (what the backup holds,
    /// from [`plan`]: which roles exist is only known on the target).
    pub fn lines(&self, planned: bool) -> Vec<String> {
        let created = if planned { "in the backup" } else { "created" };
        let list = |names: &[String]| {
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        };
        let mut lines = vec![format!(
            "roles {created}: {} ({} settings, {} memberships)",
            list(&self.roles_created),
            self.role_statements,
            self.memberships
        )];
        if !planned {
            lines.push(format!(
                "roles that already existed, left unchanged: {}",
                list(&self.roles_existing)
            ));
        }
        if !self.tablespaces_created.is_empty() || !self.tablespaces_existing.is_empty() {
            lines.push(format!(
                "tablespaces {created}: {}; already there: {}",
                list(&self.tablespaces_created),
                list(&self.tablespaces_existing)
            ));
        }
        if !self.not_applied.is_empty() {
            lines.push(format!(
                "{} statement(s) not applied (unknown to this tool): {}",
                self.not_applied.len(),
                self.not_applied.join("; ")
            ));
        }
        lines
    }
}

/// One statement of the globals, as [`apply`] understands it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Statement {
    /// `SET ...`: session settings.
    Set(String),
    /// `CREATE ROLE r;`
    CreateRole(String),
    /// `ALTER ROLE r ...`, `COMMENT ON ROLE r ...`, `SECURITY LABEL ... ON ROLE r ...`.
    AboutRole(String, String),
    /// `GRANT role TO member ...`: (member, statement).
    Membership {
        member: String,
        granted_by: Option<String>,
        sql: String,
    },
    /// `CREATE TABLESPACE t ...`
    CreateTablespace(String, String),
    /// `ALTER TABLESPACE t ...`, `GRANT ... ON TABLESPACE t ...`, `COMMENT ON TABLESPACE t`.
    AboutTablespace(String, String),
    /// Anything else.
    Unknown(String),
}

/// Splits `sql` into statements: comment lines, blank lines and meta-command lines (`\...`)
/// are dropped; a statement ends at a line ending with `;`.
fn statements(sql: &str) -> Vec<Statement> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if current.is_empty()
            && (trimmed.is_empty() || trimmed.starts_with("--") || trimmed.starts_with('\\'))
        {
            continue;
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(line);
        if trimmed.ends_with(';') {
            out.push(classify(std::mem::take(&mut current)));
        }
    }
    if !current.trim().is_empty() {
        out.push(Statement::Unknown(current));
    }
    out
}

/// Reads an identifier as `pg_dumpall` writes it (bare, or double-quoted with `""` for `"`)
/// from the start of `s`; returns it and the rest.
fn identifier(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start();
    if let Some(rest) = s.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if rest[i + 1..].starts_with('"') {
                    name.push('"');
                    chars.next();
                } else {
                    return Some((name, &rest[i + 1..]));
                }
            } else {
                name.push(c);
            }
        }
        None
    } else {
        let end = s
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
            .unwrap_or(s.len());
        (end > 0).then(|| (s[..end].to_owned(), &s[end..]))
    }
}

fn strip_words<'a>(s: &'a str, words: &[&str]) -> Option<&'a str> {
    let mut rest = s.trim_start();
    for word in words {
        let head = rest.get(..word.len())?;
        if !head.eq_ignore_ascii_case(word) {
            return None;
        }
        rest = rest[word.len()..].trim_start();
    }
    Some(rest)
}

fn classify(sql: String) -> Statement {
    let s = sql.trim();
    let role_of = |rest: &str| identifier(rest).map(|(name, _)| name);
    if strip_words(s, &["SET"]).is_some() {
        return Statement::Set(sql);
    }
    if let Some(rest) = strip_words(s, &["CREATE", "ROLE"]) {
        if let Some((name, tail)) = identifier(rest) {
            if tail.trim() == ";" {
                return Statement::CreateRole(name);
            }
        }
    }
    for prefix in [&["ALTER", "ROLE"][..], &["COMMENT", "ON", "ROLE"][..]] {
        if let Some(name) = strip_words(s, prefix).and_then(role_of) {
            return Statement::AboutRole(name, sql);
        }
    }
    if strip_words(s, &["SECURITY", "LABEL"]).is_some() {
        if let Some(at) = s.find(" ON ROLE ") {
            if let Some(name) = role_of(&s[at + " ON ROLE ".len()..]) {
                return Statement::AboutRole(name, sql);
            }
        }
    }
    if let Some(rest) = strip_words(s, &["GRANT"]) {
        // `GRANT role TO member ...` (a membership), not `GRANT ... ON TABLESPACE ...`.
        if let Some((_, after_role)) = identifier(rest) {
            if let Some((member, tail)) = strip_words(after_role, &["TO"]).and_then(identifier) {
                let granted_by = tail
                    .find("GRANTED BY ")
                    .and_then(|at| role_of(&tail[at + "GRANTED BY ".len()..]));
                return Statement::Membership {
                    member,
                    granted_by,
                    sql,
                };
            }
        }
        if let Some(at) = s.find(" ON TABLESPACE ") {
            if let Some(name) = role_of(&s[at + " ON TABLESPACE ".len()..]) {
                return Statement::AboutTablespace(name, sql);
            }
        }
    }
    if let Some(name) = strip_words(s, &["CREATE", "TABLESPACE"]).and_then(role_of) {
        return Statement::CreateTablespace(name, sql);
    }
    for prefix in [
        &["ALTER", "TABLESPACE"][..],
        &["COMMENT", "ON", "TABLESPACE"][..],
    ] {
        if let Some(name) = strip_words(s, prefix).and_then(role_of) {
            return Statement::AboutTablespace(name, sql);
        }
    }
    Statement::Unknown(sql)
}

/// The first words of a statement, for reports (never a whole `ALTER ROLE ... PASSWORD`).
fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// What [`apply`] would do with `sql` on a server whose roles and tablespaces are the given
/// ones, without connecting: the report, and the statements in the order to run them (roles,
/// then tablespaces).
fn plan_against(
    sql: &str,
    existing_roles: &BTreeSet<String>,
    existing_tablespaces: &BTreeSet<String>,
) -> (GlobalsReport, Vec<String>, Vec<String>) {
    let mut report = GlobalsReport::default();
    let mut created = BTreeSet::new();
    let mut created_spaces = BTreeSet::new();
    let (mut role_sql, mut space_sql) = (Vec::new(), Vec::new());
    let parsed = statements(sql);
    for statement in &parsed {
        match statement {
            Statement::CreateRole(name) if existing_roles.contains(name) => {
                report.roles_existing.push(name.clone());
            }
            Statement::CreateRole(name) => {
                created.insert(name.clone());
                report.roles_created.push(name.clone());
                role_sql.push(format!("CREATE ROLE {};", quote_identifier(name)));
            }
            Statement::CreateTablespace(name, _) if existing_tablespaces.contains(name) => {
                report.tablespaces_existing.push(name.clone());
            }
            Statement::CreateTablespace(name, sql) => {
                created_spaces.insert(name.clone());
                report.tablespaces_created.push(name.clone());
                space_sql.push(sql.clone());
            }
            _ => {}
        }
    }
    let known = |role: &str| created.contains(role) || existing_roles.contains(role);
    for statement in parsed {
        match statement {
            Statement::Set(sql) => role_sql.insert(0, sql),
            Statement::AboutRole(name, sql) if created.contains(&name) => {
                report.role_statements += 1;
                role_sql.push(sql);
            }
            Statement::Membership {
                member,
                granted_by,
                sql,
            } if created.contains(&member) => {
                report.memberships += 1;
                // A grantor this server does not have would fail the grant: drop the clause.
                let sql = match granted_by {
                    Some(grantor) if !known(&grantor) => match sql.find(" GRANTED BY ") {
                        Some(at) => format!("{};", &sql[..at]),
                        None => sql,
                    },
                    _ => sql,
                };
                role_sql.push(sql);
            }
            Statement::AboutTablespace(name, sql) if created_spaces.contains(&name) => {
                space_sql.push(sql);
            }
            Statement::Unknown(sql) => report.not_applied.push(first_words(&sql)),
            _ => {}
        }
    }
    (report, role_sql, space_sql)
}

/// What [`apply`] would do on a server without any of these roles and tablespaces (for a dry
/// run: no connection).
pub fn plan(sql: &[u8]) -> GlobalsReport {
    let sql = String::from_utf8_lossy(sql);
    plan_against(&sql, &BTreeSet::new(), &BTreeSet::new()).0
}

/// Applies globals captured by [`capture`] to the server of `conn` (any database of it; the
/// tool connects to `conn`'s): roles that do not exist there are created in one transaction
/// with their attributes, passwords, settings and memberships; existing ones are left alone.
/// Then tablespaces that do not exist are created (each on its own: PostgreSQL cannot create
/// one inside a transaction; their directories must exist on the server).
///
/// # Errors
/// When the server cannot be reached or refuses a statement: the roles' transaction is rolled
/// back; a tablespace that fails after the roles were committed says so.
pub async fn apply(conn: &PgConnection, sql: &[u8]) -> Result<GlobalsReport, SourceError> {
    let sql = String::from_utf8_lossy(sql);
    let mut client = conn.connect().await?;
    let names = |rows: Vec<tokio_postgres::Row>| -> BTreeSet<String> {
        rows.iter().map(|r| r.get::<_, String>(0)).collect()
    };
    let roles = names(
        client
            .query("SELECT rolname::text FROM pg_catalog.pg_roles", &[])
            .await
            .map_err(|e| SourceError::query("listing the roles", e))?,
    );
    let spaces = names(
        client
            .query("SELECT spcname::text FROM pg_catalog.pg_tablespace", &[])
            .await
            .map_err(|e| SourceError::query("listing the tablespaces", e))?,
    );
    let (report, role_sql, space_sql) = plan_against(&sql, &roles, &spaces);
    let tx = client
        .transaction()
        .await
        .map_err(|e| SourceError::query("starting the roles' transaction", e))?;
    for statement in &role_sql {
        tx.batch_execute(statement).await.map_err(|e| {
            SourceError::query(
                format!(
                    "creating the roles ({}; nothing was changed)",
                    first_words(statement)
                ),
                e,
            )
        })?;
    }
    tx.commit()
        .await
        .map_err(|e| SourceError::query("committing the roles", e))?;
    for statement in &space_sql {
        client.batch_execute(statement).await.map_err(|e| {
            SourceError::query(
                format!(
                    "{} (the roles were created; create the tablespace's directory on the \
                     server, or remove the tablespace from the backup's globals)",
                    first_words(statement)
                ),
                e,
            )
        })?;
    }
    Ok(report)
}

/// The globals of the fetched database backup `fetched` ([`GLOBALS_ATTACHMENT`]), applied to
/// the server of `conn` ([`apply`]), or with `dry_run` decrypted, decompressed and planned
/// only ([`plan`]: no connection).
///
/// # Errors
/// [`SourceError::NoGlobals`] when the backup has none; a damaged attachment; [`apply`]'s.
pub async fn apply_fetched(
    fetched: &backup_core::FetchedBackup,
    conn: &PgConnection,
    dry_run: bool,
) -> Result<GlobalsReport, SourceError> {
    let sql = fetched
        .attachment(GLOBALS_ATTACHMENT)
        .await
        .map_err(|e| SourceError::InvalidDump(e.to_string()))?
        .ok_or_else(|| SourceError::NoGlobals {
            backup: fetched.entry().key.clone(),
        })?;
    if dry_run {
        return Ok(plan(&sql));
    }
    apply(conn, &sql).await
}

/// `name` as an SQL identifier, double-quoted.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"--
-- PostgreSQL database cluster dump
--

\restrict abc123

SET default_transaction_read_only = off;

SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;

--
-- Roles
--

CREATE ROLE app_owner;
ALTER ROLE app_owner WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:xx';
CREATE ROLE postgres;
ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS;
CREATE ROLE "Read ""Only""";
ALTER ROLE "Read ""Only""" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS;
COMMENT ON ROLE app_owner IS 'owns the app';

--
-- User Configurations
--

ALTER ROLE app_owner SET search_path TO 'app', 'public';

--
-- Role memberships
--

GRANT "Read ""Only""" TO app_owner WITH INHERIT TRUE GRANTED BY ghost;
GRANT "Read ""Only""" TO postgres GRANTED BY postgres;

--
-- Tablespaces
--

CREATE TABLESPACE fast OWNER app_owner LOCATION '/srv/fast';
GRANT CREATE ON TABLESPACE fast TO app_owner;

REINDEX SYSTEM something;

\unrestrict abc123

--
-- PostgreSQL database cluster dump complete
--
"#;

    #[test]
    fn statements_are_recognised_and_meta_commands_dropped() {
        let parsed = statements(SAMPLE);
        assert!(parsed.contains(&Statement::CreateRole("Read \"Only\"".to_owned())));
        assert!(parsed
            .iter()
            .all(|s| !format!("{s:?}").contains("restrict")));
        assert!(matches!(
            parsed.iter().find(|s| matches!(s, Statement::Membership { .. })),
            Some(Statement::Membership { member, granted_by: Some(g), .. })
                if member == "app_owner" && g == "ghost"
        ));
    }

    #[test]
    fn existing_roles_and_statements_about_them_are_left_alone() {
        let existing: BTreeSet<String> = ["postgres".to_owned()].into();
        let (report, role_sql, space_sql) = plan_against(SAMPLE, &existing, &BTreeSet::new());
        assert_eq!(report.roles_created, ["app_owner", "Read \"Only\""]);
        assert_eq!(report.roles_existing, ["postgres"]);
        // ALTER x2, COMMENT, SET search_path for created roles; not postgres's ALTER.
        assert_eq!(report.role_statements, 4);
        // Only the membership of a created member; the unknown grantor's clause dropped.
        assert_eq!(report.memberships, 1);
        let joined = role_sql.join("\n");
        assert!(!joined.contains("ALTER ROLE postgres"), "{joined}");
        assert!(!joined.contains("TO postgres"), "{joined}");
        assert!(!joined.contains("ghost"), "{joined}");
        assert!(
            joined.contains("CREATE ROLE \"Read \"\"Only\"\"\";"),
            "{joined}"
        );
        assert!(role_sql[0].starts_with("SET"), "settings come first");
        assert_eq!(report.tablespaces_created, ["fast"]);
        assert_eq!(space_sql.len(), 2);
        assert_eq!(report.not_applied, ["REINDEX SYSTEM something;"]);

        // Everything already there: nothing to do.
        let all: BTreeSet<String> = ["postgres", "app_owner", "Read \"Only\""]
            .map(str::to_owned)
            .into();
        let spaces: BTreeSet<String> = ["fast".to_owned()].into();
        let (report, role_sql, space_sql) = plan_against(SAMPLE, &all, &spaces);
        assert!(report.roles_created.is_empty());
        assert_eq!(report.roles_existing.len(), 3);
        assert!(
            role_sql.iter().all(|s| s.starts_with("SET")),
            "{role_sql:?}"
        );
        assert!(space_sql.is_empty());
    }

    #[test]
    fn report_lines_never_hold_a_password() {
        let report = plan(SAMPLE.as_bytes());
        let text = report.lines(true).join("\n");
        assert!(!text.contains("SCRAM"), "{text}");
        assert!(text.contains("app_owner"), "{text}");
    }
}
