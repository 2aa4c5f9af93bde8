//! The long help (`--help`, after the options) of every binary: what it writes where, its
//! exit codes and examples. Kept together so that the binaries' documentation reads alike and
//! is reviewed in one place; the README says the same at more length.

/// `backup-database --help`.
pub const BACKUP_DATABASE: &str = "\
Connection: POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER, POSTGRES_DB and POSTGRES_PASSWORD,
or DATABASE_URL. The password reaches pg_dump through its environment, never its arguments.

Output: DIR/database/PREFIX_backup_YYYYMMDD_HHMMSS.sql.gz.enc (UTC) and, written last,
DIR/database/PREFIX_backup_YYYYMMDD_HHMMSS.sql.gz.enc.manifest.json. The object name is printed
on stdout. A failed backup leaves nothing under either name.

Destinations: BACKUP_LOCAL_DIR and/or BACKUP_S3_BUCKET; with both, one pass writes both and
each commits on its own.

The cluster's roles and tablespaces (pg_dumpall --globals-only) are captured too, encrypted in
the signed manifest, for restore-database --with-globals (POSTGRES_GLOBALS=false: not).
A database without user tables (POSTGRES_DB unset: postgres) is a failed backup unless
--allow-empty.

Several databases: POSTGRES_DB=app,billing (or --database app,billing), or --all-databases for
every database of the server (templates and databases without user tables left out). Each is
its own object, DIR/database/PREFIX_DATABASE_backup_YYYYMMDD_HHMMSS.sql.gz.enc, one name per
line on stdout; the roles are captured once and embedded in each; every manifest records the
run, so restore-database --all brings them all back together.

Exit codes: 0 success, 1 stored on some destinations but not all (or, with several databases,
some databases not stored), 2 backup failed (also: the database has no user tables), 3 usage
or configuration error.

Examples:
  # Nightly backup as the old script made it
  BACKUP_LOCAL_DIR=/var/backups/randevubu POSTGRES_DB=randevubu backup-database

  # Every database of the server, each its own object
  backup-database --all-databases

  # zstd, faster and smaller; custom-format archive
  backup-database --local-dir /var/backups/randevubu --compression zstd --format custom

  # A physical base backup of the whole cluster, for point-in-time restores (the server
  # archives its WAL with backup-wal push; see backup-wal --help)
  backup-database --physical

  # Emergency decryption with stock tools, no need for this tool
  openssl enc -d -aes-256-cbc -pbkdf2 -pass file:/etc/backup/encryption.key \\
      -in FILE.sql.gz.enc | gunzip | psql -d newdb";

/// `restore-database --help`.
pub const RESTORE_DATABASE: &str = "\
Selection (exactly one): --list, --latest, --date YYYY-MM-DD, --file NAME.
--latest and --date choose complete backups (a signed manifest vouches for them). Backups
without a manifest made by the old scripts are listed as `legacy`: they cannot be
authenticated, restore by --file NAME (or by --latest/--date with --allow-legacy) and are
checked only by decryption padding, gzip CRC and pg_dump's end marker. An `incomplete` backup
(no manifest, newer than signed ones) restores only by --file NAME --allow-unverified.

Point in time (--pitr TIME|latest, --target-lsn, --target-xid or --target-name, with
--target-dir DIR): the newest physical base backup (backup-database --physical) that ended
before the target, then the WAL archived by backup-wal push, replayed up to the target. The
archive is checked first: a missing segment is named with the newest point reachable, and
nothing is written. The base backup is verified, extracted into a new data directory (absent
or empty; mode 0700, owned by --owner), and configured to recover: recovery.signal,
restore_command calling backup-wal fetch with this configuration (non-secret settings only;
credentials come from the server's environment or the config file),
recovery_target_action=promote, archive_mode=off (the restored cluster never writes into the
archive it reads). --start --port N starts it and reports where recovery stopped.

Exit codes: 0 success, 1 (--all) some databases restored, others not, 2 restore failed
(target unchanged; with --all: refused before anything was written, or nothing restored),
3 usage or configuration error.

Examples:
  # What is there?
  restore-database --list
  restore-database --list --json

  # Check the newest backup end to end without touching any database
  restore-database --latest --dry-run

  # Disaster recovery into a new database
  restore-database --latest --target-db randevubu_restored --create

  # Onto a new server: the backup's roles (owners, grants, passwords) first
  restore-database --latest --create --with-globals

  # A whole cluster backed up with --all-databases (or POSTGRES_DB=a,b): every database of
  # the newest run, roles first; each target checked before anything is written
  restore-database --all --latest --with-globals
  restore-database --database billing --latest --target-db billing_copy --create

  # Put last Monday's backup in place of the live database, keeping the old one aside
  restore-database --date 2024-01-15 --target-db randevubu --replace --terminate-connections

  # A file copied from elsewhere (its .manifest.json beside it is used when present)
  restore-database --file /tmp/randevubu_backup_20240115_020000.sql.gz.enc --target-db scratch --create

  # The cluster as it was at 12:00 UTC, started on port 5433
  restore-database --pitr '2024-01-15 12:00:00+00' --target-dir /var/lib/postgresql/15/pitr \
      --start --port 5433";

/// `backup-redis --help`.
pub const BACKUP_REDIS: &str = "\
Connection: REDIS_HOST (localhost), REDIS_PORT (6379), REDIS_USERNAME (ACL user) and
REDIS_PASSWORD, or REDIS_URL (redis://user:pass@host:port; rediss:// for TLS, with
REDIS_TLS_CA_FILE for a private CA). The password is sent with AUTH only.

Method replication (default) asks for the snapshot as a replica does (REPLCONF capa eof,
REPLCONF rdb-only 1, SYNC) and streams it without holding it in memory or on local disk; both
disk-based and diskless (repl-diskless-sync yes) transfers work. The user needs +sync +psync
+replconf (and +info +ping). The RDB's magic, version, structure and trailing CRC-64 are
checked while it streams: a bad snapshot is a failed backup, never a stored one.

Output: DIR/redis/redis_backup_YYYYMMDD_HHMMSS.rdb.gz.enc (UTC) and its .manifest.json (key
count per database, Redis and RDB version), then a copy under DIR/redis/latest/ replacing the
previous one. BACKUP_REDIS_ENCRYPT=false (or --no-encrypt) stores .rdb.gz as the old script did.

Exit codes: 0 success, 1 stored on some destinations but not all (or redis/latest/ not
updated), 2 backup failed, 3 usage or configuration error.

Examples:
  # Nightly, as the old script
  BACKUP_LOCAL_DIR=/var/backups/randevubu REDIS_PASSWORD=... backup-redis

  # A managed Redis over TLS, to S3
  REDIS_URL=rediss://backup:secret@redis.internal:6380 BACKUP_S3_BUCKET=backups backup-redis

  # Replication not allowed: BGSAVE and read the file
  backup-redis --method file --rdb-path /var/lib/redis/dump.rdb

  # Emergency restore with stock tools
  openssl enc -d -aes-256-cbc -pbkdf2 -pass file:/etc/backup/encryption.key \\
      -in redis_backup_X.rdb.gz.enc | gunzip > dump.rdb";

/// `restore-redis --help`.
pub const RESTORE_REDIS: &str = "\
Selection (exactly one): --list, --latest, --date YYYY-MM-DD, --file NAME.
Mode (one, except with --list): --dry-run, --rdb-path PATH, --docker-container NAME, --online.
--latest and --date choose complete backups (a signed manifest vouches for them); the old
script's .rdb.gz objects are `legacy`: by --file NAME, or with --allow-legacy.

File mode replaces the data file Redis loads at start. Redis must be stopped while the file is
replaced (it rewrites dump.rdb on shutdown), so give --stop-cmd/--start-cmd or use
--docker-container. If the server uses AOF (appendonly yes) it loads the AOF, not dump.rdb:
you are warned; move the AOF aside or start with --appendonly no, then BGREWRITEAOF.

Online mode writes into a running server with RESTORE ... ABSTTL, database by database. It
first parses the whole backup and checks the target (RDB version, clashing keys) without
writing; it is not atomic: a failure half-way (server gone) leaves the keys restored so far.

Exit codes: 0 success, 2 restore failed (target unchanged unless stated), 3 usage or
configuration error.

Examples:
  restore-redis --list
  restore-redis --latest --dry-run

  # The old procedure, for a container
  restore-redis --latest --docker-container redis

  # A systemd-managed Redis
  restore-redis --date 2024-01-15 --rdb-path /var/lib/redis/dump.rdb \\
      --stop-cmd 'systemctl stop redis-server' --start-cmd 'systemctl start redis-server'

  # Into a running (empty) server
  REDIS_TARGET_PASSWORD_FILE=/etc/backup/redis-target.pw \\
      restore-redis --latest --online --target-url redis://10.0.0.5:6379";

/// `backup-prune --help`.
pub const BACKUP_PRUNE: &str = "\
Rules (times are UTC, from the timestamp in each name; a backup kept by any rule stays):
  --retention-days N  keeps backups newer than now - N days (BACKUP_RETENTION_DAYS, default 30)
  --keep-last N       keeps the N newest
  --keep-daily N      keeps the newest backup of each of the N most recent days that have backups
  --keep-weekly N     the same per ISO week (Monday-Sunday)
  --keep-monthly N    the same per calendar month
The newest complete backup of each kind is always kept (the newest legacy one if none is
complete); the keep rules count complete backups only. Damaged backups (unreadable manifest)
are never deleted: inspect them by hand. A backup being written (its run's .claim is there) is
never deleted; one that lost its manifest (incomplete) is deleted once it is a day old.
Each kind is pruned on its own: database, redis, config, logs, plus the orchestration's run
reports (reports/orchestration/) and run logs (logs/orchestration/), on every configured
destination (BACKUP_LOCAL_DIR, BACKUP_S3_BUCKET). A backup's manifest is
deleted before its object, so an interrupted prune leaves at worst an object without its
manifest (incomplete, deleted by the next prune), never a manifest without its backup.
Temporary files and claims of interrupted runs older than 24 hours are removed too (not in a
dry run). It may run while backups are being written.

Exit codes: 0 success, 1 some deletions failed and others succeeded, 2 pruning failed,
3 usage or configuration error.

Examples:
  # What would go with the configured retention? Nothing is deleted.
  BACKUP_LOCAL_DIR=/var/backups/randevubu backup-prune --dry-run

  # Nightly, after the backups: 30 days, plus 7 dailies, 4 weeklies and 12 monthlies
  backup-prune --keep-daily 7 --keep-weekly 4 --keep-monthly 12

  # Only the newest 10 database backups, whatever their age
  backup-prune --kind database --retention-days 0 --keep-last 10

  # For scripts
  backup-prune --dry-run --json";

/// `backup-files --help`.
pub const BACKUP_FILES: &str = "\
Paths: --kind config archives BACKUP_CONFIG_PATHS (files or directories separated by ':', or
[files] config_paths); --kind logs archives BACKUP_LOG_DIR (default /var/log/randevubu). A
configured path that does not exist is an error (exit 2). Absolute paths are stored without
their leading '/', as GNU tar does. BACKUP_CONFIG_INCLUDE / BACKUP_CONFIG_EXCLUDE (globs over
full paths, separated by ':'; '*' stays in one folder, '**' crosses them) choose what of the
configuration paths goes in, e.g. BACKUP_CONFIG_EXCLUDE='**/cache/**:**/*.bak'.

What is kept: file contents, modes, owners, mtimes; symbolic links are stored as links and never
followed. The encryption key file and the keyring directory are never archived, even under a
configured path (logged). A file that grows or shrinks while it is read (a live log) is stored
at the size it had when opened and warned about; unreadable and special files are warnings in
the log and the manifest, not a failed backup.

Output: DIR/config/config_backup_YYYYMMDD_HHMMSS.tar.gz.enc (or logs/logs_backup_...) and its
.manifest.json (files, directories, links, bytes, warnings). Readable with stock tools:
  openssl enc -d -aes-256-cbc -pbkdf2 -pass file:/etc/backup/encryption.key \\
      -in FILE.tar.gz.enc | tar -xzf - -C /tmp/restored

Log retention: with BACKUP_LOG_RETENTION_DAYS=N, after a log backup stored on every
destination, local log files older than N days are deleted, never one a process has open.

Exit codes: 0 success, 1 stored on some destinations but not all, 2 backup failed,
3 usage or configuration error.

Examples:
  BACKUP_CONFIG_PATHS=/etc/nginx:/app/config backup-files --kind config
  BACKUP_LOG_RETENTION_DAYS=14 backup-files --kind logs --compression zstd";

/// `restore-files --help`.
pub const RESTORE_FILES: &str = "\
Selection (exactly one): --list, --latest, --date YYYY-MM-DD, --file NAME; --kind config|logs.

Safety: the backup is read once into a private copy and verified (size, SHA-256, signed
manifest); the whole archive is then checked before anything is written. Refused, with nothing
written: absolute names, '..', links whose target leaves the target directory, anything reached
through a link (in the archive or already on disk), hard links and special files, and, without
--overwrite, any file that already exists (all of them are listed). Each file is written to a
temporary name beside its place and renamed; modes, mtimes and (as root) owners are restored.
A failure half-way (a full disk) leaves the files restored until then, each one whole; the
temporary file a killed restore leaves (.NAME.restore-PID-RANDOM) goes with the next restore of
that file.

Exit codes: 0 success, 2 restore failed or refused, 3 usage or configuration error.

Examples:
  restore-files --kind config --list
  restore-files --kind config --latest --target-dir /tmp/config-restore --dry-run
  restore-files --kind config --date 2024-01-15 --target-dir / --overwrite   # back in place";

/// `backup-all --help`.
pub const BACKUP_ALL: &str = "\
Components: database (POSTGRES_* or DATABASE_URL) and redis (REDIS_HOST or REDIS_URL) run at
the same time, then config (BACKUP_CONFIG_PATHS) and logs (BACKUP_LOG_DIR). A component whose
server or paths are not configured is reported as skipped, not failed. Each has its own
result, error and timeout (--timeout-per-component); one that fails or hangs never stops the
others. Objects are named as by backup-database, backup-redis and backup-files.

After the backups: each stored copy is verified (--verify), PostgreSQL (SELECT 1) and Redis
(PING) are checked, the backup and log disks are measured (warning above
BACKUP_DISK_WARN_PERCENT, default 85), and retention is applied (unless --no-prune).

Drill (--drill, BACKUP_DRILL=true): the database backup is restored into a scratch database
DB_drill_YYYYMMDD_HHMMSS, dropped afterwards, and every table's row count is compared with the
counts taken in the dump's own snapshot (exported to pg_dump --snapshot); the Redis backup is
parsed to its end and its keys per database compared with its manifest. A mismatch, or a
restore that fails, fails the component.

Report: reports/orchestration/backup_report_YYYYMMDD_HHMMSS.json and the run's log
logs/orchestration/backup_YYYYMMDD_HHMMSS.log on every destination; the log is also appended
to BACKUP_LOG_DIR/backup_YYYYMMDD_HHMMSS.log. backup-status reads the newest report.

Notification: with BACKUP_NOTIFICATION_URL, a JSON POST with status (success, partial,
failure), a one-paragraph text (a Slack or Mattermost message) and the components; 10 s
timeout, 3 tries; BACKUP_NOTIFY_ON=failure announces only partial and failed runs. A failed
notification is a warning; it never changes the exit code.

One run at a time: a second run exits 3 naming the PID of the running one. The lock
(BACKUP_LOCK_FILE, default DIR/.backup-all.lock) is an flock: a crashed run never leaves it
held.

Exit codes: 0 every configured component succeeded, 1 some failed, 2 all failed, 3 nothing
configured, configuration error, or another run in progress.

Examples:
  # The nightly job (cron: 0 2 * * * cd /app && bash scripts/backup-all.sh)
  BACKUP_CONFIG=/etc/backup/backup.toml backup-all

  # Check the configuration first
  backup-all --config /etc/backup/backup.toml --print-config

  # Decrypt and parse every backup after writing it; keep everything
  backup-all --verify full --no-prune --json

  # Prove the database backup restores (a scratch database, dropped afterwards)
  backup-all --drill";

/// `backup-status --help`.
pub const BACKUP_STATUS: &str = "\
Reads the newest reports/orchestration/backup_report_*.json from the first destination that
can be listed (local, then S3) and prints its verdict and components.

Exit codes: 0 the newest run succeeded and ended less than --max-age ago, 1 it was partial,
2 it failed, is stale or there is none, 3 configuration error.

Prometheus: --prometheus FILE writes backup_status_exit_code, backup_last_run_timestamp_seconds,
backup_last_success_timestamp_seconds, backup_last_run_exit_code,
backup_last_run_duration_seconds and per component backup_component_success,
backup_component_raw_bytes, backup_component_stored_bytes and
backup_component_duration_seconds, replacing FILE atomically (for node_exporter's textfile
collector). Alert on time() - backup_last_success_timestamp_seconds > 93600.

Examples:
  backup-status
  backup-status --max-age 8d --json
  backup-status --prometheus /var/lib/prometheus/node-exporter/backup.prom";

/// `backup-key --help`, after the options.
pub const BACKUP_KEY: &str = "\
Keys: the key file (BACKUP_ENCRYPTION_KEY_FILE, default /etc/backup/encryption.key) holds the
current key; the keyring directory (BACKUP_KEYRING_DIR, default keys.d beside the key file,
i.e. /etc/backup/keys.d) holds older keys, one file per key named by its id. Restores find a
backup's key among both by the signature of its manifest; backups of the old scripts (no
manifest) are tried with each key.

Rotation, and retiring the old key:
  1. backup-key rotate        the current key moves to keys.d/ID.key, a new key takes its
                              place (atomically: a crash leaves one usable current key);
                              new backups use the new key, old ones stay readable
  2. backup-key reencrypt --key-id ID
                              every backup made with key ID, on every destination, is read,
                              checked against its signed manifest, decrypted, encrypted with
                              the current key and signed anew; constant memory; the old
                              object is replaced only once the new one is stored. A run that
                              is killed is finished by the next one. --dry-run prints the plan
  3. backup-key list          the old key shows `needed by no backup: retirable`; move its
                              file out of keys.d (keep an offline copy for a while)
Backups without a manifest (the old scripts') are never re-encrypted: they cannot be verified,
so their keys stay until retention deletes them. A backup that does not match its manifest is
never signed anew: it is reported and left as it is.

Exit codes: 0 success, 1 some backups could not be re-encrypted, 2 none could, 3 usage or
configuration error (a key file that exists, is missing, too open or in a writable directory).

Examples:
  # A first key, for a new installation
  backup-key generate

  # Monthly rotation, then retire last month's key
  backup-key rotate
  backup-key reencrypt --key-id 3f2a9c0d11e4b7a8 --dry-run
  backup-key reencrypt --key-id 3f2a9c0d11e4b7a8
  backup-key list
";

/// `security-scan --help`, after the options.
pub const SECURITY_SCAN: &str = "\
Checks, each finding with a severity (critical, high, medium, low), what was found and the fix;
a check that cannot be made (an S3-compatible server without that API, a missing permission)
is `unknown`, never a failure:
  key_file.*      present; mode 0600/0400; owned by the user running backups; strength (an
                  estimate: random keys count their bytes, passphrases their words or
                  characters); not inside a path config/log backups archive; no directory
                  above it writable by group or others
  keyring.*       each key with the backups that still need it (retirable when none), backups
                  whose key is missing, the current key's age against BACKUP_KEY_MAX_AGE_DAYS (90)
  local.*         nothing in BACKUP_LOCAL_DIR readable by group or others, no unencrypted
                  backup where encryption is configured, every file owned by the backup user
  s3.*            default encryption, public access block, a non-public policy, a TLS-only
                  policy, versioning, Object Lock, lifecycle rules against the retention
  exposure.delete whether these credentials can delete backups (Object Lock off and prune on)
  freshness.*     the newest complete backup of each kind younger than 26 h; the newest run
  process.root, config.secrets
  scanner.*       each command of [security] scanners (BACKUP_SECURITY_SCANNERS, separated by
                  ';'): trivy, grype, cargo audit and npm audit JSON become findings with the
                  package, installed and fixed version; a scanner that is not installed, fails
                  or times out (BACKUP_SECURITY_SCANNER_TIMEOUT, 10m) is a high finding

The report is stored as reports/security/security_scan_YYYYMMDD_HHMMSS.json on every
destination; the webhook (BACKUP_NOTIFICATION_URL) is told when anything is high or critical.

Exit codes: 0 nothing high or critical, 1 something high, 2 something critical, 3 the scan
itself could not run (usage or configuration error).

Examples:
  # Weekly, as the old schedule ran security-scan.sh (cron 0 3 * * 0)
  security-scan

  # With the container and dependency scanners
  BACKUP_SECURITY_SCANNERS='trivy image randevubu:latest --format json; cargo audit --json' \\
      security-scan --json > scan.json
";

/// `backup-wal --help`.
pub const BACKUP_WAL: &str = "\
Set in postgresql.conf (the command runs as the server's user, which must be able to read the
key file and reach the destinations; put the settings in a config file it can read):
  archive_mode = on
  archive_command = '/usr/local/bin/backup-wal --config /etc/backup/backup.toml push %p'
  restore_command = '/usr/local/bin/backup-wal --config /etc/backup/backup.toml fetch %f %p'
  (restore-database --pitr writes restore_command itself)

Output: wal/TIMELINE/NAME.gz.enc (or .zst.enc) with NAME.gz.enc.manifest.json on every
destination, e.g. wal/00000001/000000010000000000000003.gz.enc. The manifest records the
SHA-256 of the plain file: pushing a file that is already stored with the same contents
succeeds without writing; other contents under the same name are refused (two clusters
archiving into one place).

push exits 0 only once every destination holds the file, so PostgreSQL never recycles a WAL
file that is not stored. While PostgreSQL waits for one file, up to
BACKUP_WAL_PUSH_CONCURRENCY - 1 of the next ready ones (archive_status/*.ready) are pushed
beside it and recorded in the spool directory (pg_wal/backup_wal_spool), so PostgreSQL's own
calls for them return at once.

fetch checks the signed manifest, the stored bytes' SHA-256, decrypts, decompresses, checks the
plain SHA-256, then renames the file into place: PostgreSQL never reads an unverified byte. The
next BACKUP_WAL_FETCH_AHEAD - 1 segments are fetched ahead, verified, into the spool directory.
A copy that fails its checks on one destination is reported and the next destination's used.

Exit codes: push: 0 stored everywhere, 2 not stored everywhere (PostgreSQL keeps the file and
tries again), 3 usage or configuration error. fetch: 0 restored, 1 not in the archive (the end
of the archive: recovery ends there), 126 any other failure (tampered or unreadable copy,
unreachable destination, missing key): PostgreSQL stops the recovery rather than ending it.

Examples:
  # What PostgreSQL runs
  backup-wal push pg_wal/000000010000000000000003
  backup-wal fetch 000000010000000000000003 pg_wal/RECOVERYXLOG
";
