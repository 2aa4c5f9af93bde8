//! Finding `pg_dump`, `pg_restore` and `psql` of a version that can talk to the server.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::SourceError;

/// The programs a backup and restore needs, all from one directory.
const TOOLS: [&str; 3] = ["pg_dump", "pg_restore", "psql"];

/// Where Debian and Ubuntu install each PostgreSQL major version's programs.
pub const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// A directory with `pg_dump`, `pg_restore` and `psql` of one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTools {
    bin_dir: PathBuf,
    major: u32,
    version: String,
}

/// Parses `pg_dump (PostgreSQL) 15.4 (Debian 15.4-1)` into `15.4`.
pub(crate) fn parse_tool_version(output: &str) -> Option<String> {
    let line = output.lines().next()?;
    let after = line.split_once(')').map_or(line, |(_, rest)| rest);
    let version = after.split_whitespace().next()?;
    version
        .chars()
        .next()
        .filter(char::is_ascii_digit)
        .map(|_| version.to_owned())
}

/// The major version of `15.4`, `9.6.24` (9), `16beta1` (16).
pub(crate) fn major_of(version: &str) -> Option<u32> {
    let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn has_tools(dir: &Path) -> bool {
    TOOLS.iter().all(|t| dir.join(t).is_file())
}

/// Runs `pg_dump --version` in `dir`.
fn probe(dir: &Path) -> Result<(u32, String), String> {
    let mut cmd = std::process::Command::new(dir.join("pg_dump"));
    for name in crate::process::inherited_secret_names() {
        cmd.env_remove(name);
    }
    let out = cmd
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", dir.join("pg_dump").display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = parse_tool_version(&text)
        .filter(|_| out.status.success())
        .ok_or_else(|| {
            format!(
                "{}: unexpected --version output {:?}",
                dir.join("pg_dump").display(),
                text.trim()
            )
        })?;
    let major =
        major_of(&version).ok_or_else(|| format!("{}: version {version:?}", dir.display()))?;
    Ok((major, version))
}

impl PgTools {
    /// Uses the tools in `bin_dir` (checked by running `pg_dump --version`).
    ///
    /// # Errors
    /// When a tool is missing or does not run.
    pub fn in_dir(bin_dir: impl Into<PathBuf>) -> Result<Self, SourceError> {
        let bin_dir = bin_dir.into();
        if !has_tools(&bin_dir) {
            return Err(SourceError::ToolsUnusable {
                dir: bin_dir.display().to_string(),
                reason: "pg_dump, pg_restore or psql is missing".to_owned(),
            });
        }
        let (major, version) = probe(&bin_dir).map_err(|reason| SourceError::ToolsUnusable {
            dir: bin_dir.display().to_string(),
            reason,
        })?;
        Ok(Self {
            bin_dir,
            major,
            version,
        })
    }

    /// Finds the newest tools whose major version is at least `server_major` (0: any): the
    /// newest `/usr/lib/postgresql/*/bin`, else the directory of `pg_dump` on `PATH`. A
    /// configured directory (`PG_BIN_DIR`) is not searched here: it is used as it is, through
    /// [`PostgresConfig::tools`](super::PostgresConfig::tools) and `with_tools`.
    ///
    /// This runs `pg_dump --version`, a short blocking call.
    ///
    /// # Errors
    /// [`SourceError::ToolsNotFound`], saying which version is needed and how to install it.
    pub fn discover(server_major: u32) -> Result<Self, SourceError> {
        Self::discover_in(
            server_major,
            None,
            Path::new(DEBIAN_ROOT),
            std::env::var_os("PATH"),
        )
    }

    /// [`discover`](Self::discover) with explicit inputs (for tests and unusual layouts).
    ///
    /// # Errors
    /// As [`discover`](Self::discover).
    pub fn discover_in(
        server_major: u32,
        pg_bin_dir: Option<OsString>,
        versions_root: &Path,
        path: Option<OsString>,
    ) -> Result<Self, SourceError> {
        let not_found = |found: String| SourceError::ToolsNotFound {
            needed_major: server_major,
            found,
        };
        if let Some(dir) = pg_bin_dir {
            let dir = PathBuf::from(dir);
            if !has_tools(&dir) {
                return Err(not_found(format!(
                    "PG_BIN_DIR={} lacks pg_dump, pg_restore or psql",
                    dir.display()
                )));
            }
            let (major, version) = probe(&dir).map_err(&not_found)?;
            if major < server_major {
                return Err(not_found(format!(
                    "PG_BIN_DIR={} holds version {version}",
                    dir.display()
                )));
            }
            return Ok(Self {
                bin_dir: dir,
                major,
                version,
            });
        }

        let mut seen = Vec::new();
        let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir(versions_root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let major = major_of(entry.file_name().to_str()?)?;
                let bin = entry.path().join("bin");
                has_tools(&bin).then_some((major, bin))
            })
            .collect();
        candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
        for (dir_major, dir) in candidates {
            if dir_major < server_major {
                seen.push(format!("{} ({dir_major})", dir.display()));
                continue;
            }
            if let Some(tools) = Self::accept(dir, server_major, &mut seen) {
                return Ok(tools);
            }
        }

        if let Some(path) = path {
            for dir in std::env::split_paths(&path) {
                if !dir.join("pg_dump").is_file() {
                    continue;
                }
                if !has_tools(&dir) {
                    seen.push(format!("{} lacks pg_restore or psql", dir.display()));
                    continue;
                }
                if let Some(tools) = Self::accept(dir, server_major, &mut seen) {
                    return Ok(tools);
                }
                break;
            }
        }
        Err(not_found(if seen.is_empty() {
            format!("none found in {}/*/bin or PATH", versions_root.display())
        } else {
            format!("found only {}", seen.join(", "))
        }))
    }

    /// The tools in `dir` when `pg_dump --version` there is at least `server_major`; otherwise
    /// records in `seen` what was found, for the error message.
    fn accept(dir: PathBuf, server_major: u32, seen: &mut Vec<String>) -> Option<Self> {
        match probe(&dir) {
            Ok((major, version)) if major >= server_major => Some(Self {
                bin_dir: dir,
                major,
                version,
            }),
            Ok((_, version)) => {
                seen.push(format!("{} ({version})", dir.display()));
                None
            }
            Err(e) => {
                seen.push(e);
                None
            }
        }
    }

    /// The directory holding the tools.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Their major version, e.g. 15.
    pub fn major(&self) -> u32 {
        self.major
    }

    /// Their full version, e.g. `15.4`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Path of `pg_dump`.
    pub fn pg_dump(&self) -> PathBuf {
        self.bin_dir.join("pg_dump")
    }

    /// Path of `pg_restore`.
    pub fn pg_restore(&self) -> PathBuf {
        self.bin_dir.join("pg_restore")
    }

    /// Path of `pg_dumpall` (beside `pg_dump` in every PostgreSQL client package).
    pub fn pg_dumpall(&self) -> PathBuf {
        self.bin_dir.join("pg_dumpall")
    }

    /// Path of `psql`.
    pub fn psql(&self) -> PathBuf {
        self.bin_dir.join("psql")
    }

    /// Path of `pg_basebackup` (in the client package too).
    pub fn pg_basebackup(&self) -> PathBuf {
        self.bin_dir.join("pg_basebackup")
    }

    /// Path of `pg_ctl` (in the server package: `postgresql-NN`).
    pub fn pg_ctl(&self) -> PathBuf {
        self.bin_dir.join("pg_ctl")
    }
}

/// Discovers tools without blocking the async runtime.
pub(crate) async fn discover_async(server_major: u32) -> Result<PgTools, SourceError> {
    tokio::task::spawn_blocking(move || PgTools::discover(server_major))
        .await
        .map_err(|e| SourceError::Io {
            what: "looking for pg_dump".to_owned(),
            source: std::io::Error::other(e.to_string()),
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(
            parse_tool_version("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)\n").as_deref(),
            Some("15.20")
        );
        assert_eq!(
            parse_tool_version("pg_dump (PostgreSQL) 9.6.24").as_deref(),
            Some("9.6.24")
        );
        assert_eq!(parse_tool_version("garbage"), None);
        assert_eq!(major_of("15.20"), Some(15));
        assert_eq!(major_of("9.6.24"), Some(9));
        assert_eq!(major_of("17beta2"), Some(17));
    }

    #[test]
    fn finds_the_installed_tools() {
        let tools = PgTools::discover_in(0, None, Path::new(DEBIAN_ROOT), None).unwrap();
        assert!(tools.pg_dump().is_file());
        assert!(tools.major() >= 10);
        assert_eq!(major_of(tools.version()), Some(tools.major()));
    }

    #[test]
    fn too_new_a_server_says_what_to_install() {
        let err = PgTools::discover_in(99, None, Path::new(DEBIAN_ROOT), None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("postgresql-client-99"), "{msg}");
        assert!(msg.contains("version 99 or newer"), "{msg}");
        assert!(msg.contains("found only"), "{msg}");
    }

    #[test]
    fn pg_bin_dir_overrides_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let err = PgTools::discover_in(
            15,
            Some(dir.path().as_os_str().to_owned()),
            Path::new(DEBIAN_ROOT),
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("PG_BIN_DIR="), "{err}");
        let real = PgTools::discover_in(0, None, Path::new(DEBIAN_ROOT), None).unwrap();
        let chosen = PgTools::discover_in(
            0,
            Some(real.bin_dir().as_os_str().to_owned()),
            Path::new("/nonexistent"),
            None,
        )
        .unwrap();
        assert_eq!(chosen, real);
    }

    #[test]
    fn path_is_the_fallback() {
        let real = PgTools::discover_in(0, None, Path::new(DEBIAN_ROOT), None).unwrap();
        let found = PgTools::discover_in(
            real.major(),
            None,
            Path::new("/nonexistent"),
            Some(
                std::env::join_paths(["/nonexistent-bin", real.bin_dir().to_str().unwrap()])
                    .unwrap(),
            ),
        )
        .unwrap();
        assert_eq!(found.bin_dir(), real.bin_dir());
        let err = PgTools::discover_in(
            0,
            None,
            Path::new("/nonexistent"),
            Some("/nonexistent-bin".into()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("none found"), "{err}");
    }
}
