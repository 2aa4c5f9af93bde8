//! The workspace's layering, checked from its sources: dependencies run one way
//! (cli -> orchestrate -> sources -> core -> storage, crypto, rdb), the lower crates read no
//! environment variable (configuration reaches them as plain values), and core names no
//! source's variables (each component owns its settings).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `backup-*` crates `crate_dir`'s manifest depends on (normal dependencies only).
fn workspace_dependencies(crate_dir: &str) -> BTreeSet<String> {
    let path = root().join("crates").join(crate_dir).join("Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let manifest: toml::Table = text.parse().unwrap();
    manifest
        .get("dependencies")
        .and_then(|d| d.as_table())
        .map(|d| {
            d.keys()
                .filter(|k| k.starts_with("backup-"))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out
}

/// `file:line: text` of every line of code (comments left out) in `crate_dir/src` containing
/// one of `needles`.
fn find_in_code(crate_dir: &str, needles: &[&str]) -> Vec<String> {
    search(crate_dir, needles, true)
}

/// `file:line: text` of every line in `crate_dir/src` containing one of `needles`.
fn find(crate_dir: &str, needles: &[&str]) -> Vec<String> {
    search(crate_dir, needles, false)
}

fn search(crate_dir: &str, needles: &[&str], code_only: bool) -> Vec<String> {
    let mut hits = Vec::new();
    for file in sources(&root().join("crates").join(crate_dir).join("src")) {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if code_only && line.starts_with("//") {
                continue;
            }
            if needles.iter().any(|needle| line.contains(needle)) {
                hits.push(format!("{}:{}: {line}", file.display(), n + 1));
            }
        }
    }
    hits
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn dependencies_run_one_way() {
    for (dir, allowed) in [
        ("crypto", set(&[])),
        ("rdb", set(&[])),
        ("storage", set(&[])),
        ("backup-core", set(&["backup-crypto", "backup-storage"])),
        (
            "sources",
            set(&[
                "backup-core",
                "backup-rdb",
                "backup-storage",
                "backup-crypto",
            ]),
        ),
        (
            "orchestrate",
            set(&[
                "backup-core",
                "backup-sources",
                "backup-storage",
                "backup-crypto",
            ]),
        ),
    ] {
        let found = workspace_dependencies(dir);
        let extra: Vec<&String> = found.difference(&allowed).collect();
        assert!(extra.is_empty(), "crates/{dir} depends on {extra:?}");
    }
    // And the chain is there: the binaries run through the orchestration, which runs the
    // sources, which build on core.
    assert!(workspace_dependencies("cli").contains("backup-orchestrate"));
    assert!(workspace_dependencies("orchestrate").contains("backup-sources"));
    assert!(workspace_dependencies("sources").contains("backup-core"));
}

#[test]
fn storage_crypto_and_rdb_read_no_environment_variable() {
    let reads = [
        "env::var",
        "env::vars",
        "var_os(",
        "vars_os(",
        "option_env!",
        "env!(",
    ];
    for dir in ["storage", "crypto", "rdb"] {
        let hits = find_in_code(dir, &reads);
        assert!(
            hits.is_empty(),
            "crates/{dir} reads the environment:\n{}",
            hits.join("\n")
        );
    }
    let hits = find_in_code("backup-core", &["env::var", "var_os(", "vars_os("]);
    assert!(
        hits.is_empty(),
        "core reads the environment:\n{}",
        hits.join("\n")
    );
}

#[test]
fn core_names_no_variable_of_a_source() {
    let hits = find(
        "backup-core",
        &[
            "POSTGRES_",
            "REDIS_",
            "DATABASE_URL",
            "PG_BIN_DIR",
            "PGPASSWORD",
        ],
    );
    assert!(
        hits.is_empty(),
        "core names a source's settings (they belong to the source's component):\n{}",
        hits.join("\n")
    );
}
