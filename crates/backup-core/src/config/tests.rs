use super::*;
use crate::compression::Compression;

const TEST_SETTINGS: &[Setting] = &[
    Setting::new("TEST_HOST", "host", "host").default("localhost"),
    Setting::new("TEST_PORT", "port", "port").default("5432"),
    Setting::new("TEST_PASSWORD", "password", "password").secret(),
    Setting::new("TEST_HOOK", "hook", "webhook").redacted(),
];

#[derive(Debug)]
struct TestComponent {
    host: String,
    port: u16,
}

impl Component for TestComponent {
    const SECTION: Section = Section {
        table: "test",
        about: "a component for the tests",
        settings: TEST_SETTINGS,
        check: check::<Self>,
    };

    fn from_config(config: &Config) -> Result<Self> {
        let port = config.get("TEST_PORT").unwrap_or("5432");
        Ok(Self {
            host: config.get("TEST_HOST").unwrap_or("localhost").to_owned(),
            port: port
                .parse()
                .map_err(|_| CoreError::Config(format!("TEST_PORT={port:?} is not a port")))?,
        })
    }
}

fn sections() -> Vec<Section> {
    let mut all = SECTIONS.to_vec();
    all.push(TestComponent::SECTION);
    all
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn file_with(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.toml");
    std::fs::write(&file, text).unwrap();
    (dir, file)
}

#[test]
fn flags_beat_environment_which_beats_the_file_which_beats_defaults() {
    let (_dir, file) =
        file_with("[local]\ndir = \"/from/file\"\n[test]\nhost = \"filehost\"\nport = 6543\n");
    let mut config = Config::load(
        &sections(),
        env(&[("BACKUP_LOCAL_DIR", "/from/env"), ("TEST_HOST", "envhost")]),
        Some(&file),
    )
    .unwrap();
    config
        .set_flag("BACKUP_LOCAL_DIR", "--local-dir", "/from/flag")
        .unwrap();
    assert_eq!(config.get("BACKUP_LOCAL_DIR"), Some("/from/flag"));
    assert_eq!(
        config.origin("BACKUP_LOCAL_DIR"),
        Some(Origin::Flag("--local-dir".into()))
    );
    let test: TestComponent = config.component().unwrap();
    assert_eq!((test.host.as_str(), test.port), ("envhost", 6543));
    assert_eq!(config.origin("TEST_HOST"), Some(Origin::Env("TEST_HOST")));
    assert_eq!(
        config.origin("TEST_PORT"),
        Some(Origin::File {
            path: file.clone(),
            key: "[test] port".into()
        })
    );
    assert_eq!(config.get("BACKUP_RETENTION_DAYS"), Some("30"));
    assert_eq!(
        config.origin("BACKUP_RETENTION_DAYS"),
        Some(Origin::Default)
    );
    assert_eq!(config.get("BACKUP_KEYRING_DIR"), None);
    assert!(config.warnings().is_empty());
}

#[test]
fn config_file_comes_from_backup_config_variable() {
    let (_dir, file) = file_with("[pipeline]\nname_prefix = \"shop\"\n");
    let config = Config::load(
        &sections(),
        env(&[("BACKUP_CONFIG", file.to_str().unwrap())]),
        None,
    )
    .unwrap();
    let pipeline: PipelineConfig = config.component().unwrap();
    assert_eq!(pipeline.name_prefix, "shop");
    assert_eq!(config.file_path(), Some(file.as_path()));
}

#[test]
fn flat_names_still_work_with_a_deprecation_warning() {
    let (_dir, file) = file_with("backup_local_dir = \"/flat\"\ntest_port = 7000\n");
    let config = Config::load(&sections(), env(&[]), Some(&file)).unwrap();
    assert_eq!(config.get("BACKUP_LOCAL_DIR"), Some("/flat"));
    assert_eq!(config.component::<TestComponent>().unwrap().port, 7000);
    let warnings = config.warnings().join("\n");
    assert!(
        warnings.contains("backup_local_dir") && warnings.contains("[local]"),
        "{warnings}"
    );
    assert!(warnings.contains("`port = ...` under [test]"), "{warnings}");
    // The table form wins over a flat name for the same setting.
    let (_dir, file) = file_with("backup_local_dir = \"/flat\"\n[local]\ndir = \"/table\"\n");
    let config = Config::load(&sections(), env(&[]), Some(&file)).unwrap();
    assert_eq!(config.get("BACKUP_LOCAL_DIR"), Some("/table"));
}

#[test]
fn unknown_names_and_secrets_in_the_file_are_refused() {
    for (text, expected) in [
        ("backup_locl_dir = \"/x\"\n", "backup_locl_dir"),
        ("[locl]\ndir = \"/x\"\n", "[locl]"),
        ("[local]\ndirectory = \"/x\"\n", "directory"),
        ("backup_config = \"/x\"\n", "backup_config"),
        ("[local]\ndir = [\"/x\"]\n", "array"),
        ("[local\n", "not valid TOML"),
    ] {
        let (_dir, file) = file_with(text);
        let err = Config::load(&sections(), env(&[]), Some(&file))
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{text}: {err}");
    }
    for text in [
        "[test]\npassword = \"hunter2\"\n",
        "test_password = \"hunter2\"\n",
    ] {
        let (_dir, file) = file_with(text);
        let err = Config::load(&sections(), env(&[]), Some(&file))
            .unwrap_err()
            .to_string();
        assert!(err.contains("TEST_PASSWORD in the environment"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
    let err = Config::load(
        &sections(),
        env(&[]),
        Some(Path::new("/nonexistent/b.toml")),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("cannot read config file /nonexistent/b.toml"),
        "{err}"
    );
}

#[test]
fn errors_say_where_a_value_was_set() {
    let (_dir, file) = file_with("[test]\nport = \"eighty\"\n");
    let config = Config::load(&sections(), env(&[]), Some(&file)).unwrap();
    let err = config.component::<TestComponent>().unwrap_err().to_string();
    assert!(
        err.contains("TEST_PORT=\"eighty\"") && err.contains("[test] port"),
        "{err}"
    );
    let problems = config.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("[test]:"), "{problems:?}");
    let mut config = Config::load(&sections(), env(&[]), None).unwrap();
    config.set_flag("TEST_PORT", "--port", "x").unwrap();
    let err = config.component::<TestComponent>().unwrap_err().to_string();
    assert!(err.contains("set by flag --port"), "{err}");
    assert!(config.set_flag("NOT_A_SETTING", "--x", "1").is_err());
}

#[test]
fn render_shows_values_and_origins_but_never_secrets() {
    let (_dir, file) = file_with("[test]\nhook = \"https://hooks.example/T0KEN\"\n");
    let mut config = Config::load(
        &sections(),
        env(&[
            ("TEST_PASSWORD", "hunter2"),
            ("BACKUP_LOCAL_DIR", "/var/backups"),
            ("UNRELATED", "x"),
        ]),
        Some(&file),
    )
    .unwrap();
    config
        .set_flag("BACKUP_COMPRESSION", "--compression", "zstd")
        .unwrap();
    let text = config.render();
    assert!(
        !text.contains("hunter2") && !text.contains("T0KEN"),
        "{text}"
    );
    assert!(!text.contains("UNRELATED"), "{text}");
    for expected in [
        "[local]",
        "dir = \"/var/backups\"",
        "BACKUP_LOCAL_DIR: environment BACKUP_LOCAL_DIR",
        "compression = \"zstd\"",
        "BACKUP_COMPRESSION: flag --compression",
        "# password = <redacted>",
        "# hook = <redacted>",
        "[test] hook",
        "days = \"30\"",
        "BACKUP_RETENTION_DAYS: default",
        "# keyring_dir =",
    ] {
        assert!(text.contains(expected), "{expected:?} missing in\n{text}");
    }
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("hunter2") && !debug.contains("/var/backups"),
        "{debug}"
    );
    // What it prints is a config file that configures the same (secrets left out).
    let (_dir2, again) = file_with(&text);
    let reloaded = Config::load(&sections(), env(&[]), Some(&again)).unwrap();
    assert_eq!(reloaded.get("BACKUP_LOCAL_DIR"), Some("/var/backups"));
    assert_eq!(reloaded.get("BACKUP_COMPRESSION"), Some("zstd"));
}

#[test]
fn one_table_or_variable_for_two_components_is_refused() {
    let mut twice = sections();
    twice.push(TestComponent::SECTION);
    assert!(Config::load(&twice, env(&[]), None).is_err());
}

#[test]
fn core_components_validate_their_values() {
    let config = Config::load(
        &sections(),
        env(&[
            ("BACKUP_COMPRESSION", "zstd"),
            ("BACKUP_COMPRESSION_LEVEL", "9"),
        ]),
        None,
    )
    .unwrap();
    let pipeline: PipelineConfig = config.component().unwrap();
    assert_eq!(pipeline.compression, Compression::Zstd { level: 9 });
    for (name, value) in [
        ("BACKUP_COMPRESSION", "lz4"),
        ("BACKUP_COMPRESSION_LEVEL", "99"),
        ("BACKUP_PBKDF2_ITERATIONS", "0"),
        ("BACKUP_NAME_PREFIX", "../evil"),
    ] {
        let config = Config::load(&sections(), env(&[(name, value)]), None).unwrap();
        let err = config
            .component::<PipelineConfig>()
            .unwrap_err()
            .to_string();
        assert!(err.contains(name), "{name}={value}: {err}");
    }
    for (name, value) in [
        ("BACKUP_RETENTION_DAYS", "a month"),
        ("BACKUP_KEEP_DAILY", "-1"),
    ] {
        let config = Config::load(&sections(), env(&[(name, value)]), None).unwrap();
        let err = config
            .component::<RetentionConfig>()
            .unwrap_err()
            .to_string();
        assert!(err.contains(name), "{err}");
    }
    let config = Config::load(&sections(), env(&[("BACKUP_ALLOW_LEGACY", "maybe")]), None).unwrap();
    assert!(config.component::<RestoreConfig>().is_err());
}

#[test]
fn defaults_match_the_typed_defaults() {
    let config = Config::load(&sections(), env(&[]), None).unwrap();
    assert_eq!(
        config.component::<PipelineConfig>().unwrap(),
        PipelineConfig::default()
    );
    assert_eq!(
        config.component::<RetentionConfig>().unwrap(),
        RetentionConfig::default()
    );
    assert_eq!(
        config.component::<RestoreConfig>().unwrap(),
        RestoreConfig::default()
    );
    assert_eq!(
        config.component::<LocalConfig>().unwrap(),
        LocalConfig::default()
    );
    assert_eq!(
        config.component::<S3Settings>().unwrap(),
        S3Settings::default()
    );
    assert_eq!(
        config.get("BACKUP_PBKDF2_ITERATIONS"),
        Some(
            backup_crypto::DEFAULT_PBKDF2_ITERATIONS
                .to_string()
                .as_str()
        )
    );
    assert!(config.problems().is_empty(), "{:?}", config.problems());
}

#[test]
fn retention_keep_rules_come_from_the_table_too() {
    let (_dir, file) = file_with("[retention]\ndays = 7\nkeep_daily = 7\nkeep_monthly = 12\n");
    let config = Config::load(&sections(), env(&[]), Some(&file)).unwrap();
    let policy = config.component::<RetentionConfig>().unwrap().policy;
    assert_eq!(policy.within_days, Some(7));
    assert_eq!(policy.keep_daily, Some(7));
    assert_eq!(policy.keep_monthly, Some(12));
    assert_eq!(policy.keep_last, None);
}

#[test]
fn compression_algorithms_parse_and_print_their_names() {
    for algorithm in [
        CompressionAlgorithm::Gzip,
        CompressionAlgorithm::Zstd,
        CompressionAlgorithm::None,
    ] {
        assert_eq!(
            algorithm.to_string().parse::<CompressionAlgorithm>(),
            Ok(algorithm)
        );
        assert_eq!(algorithm.compression().name(), algorithm.name());
    }
}

#[test]
fn overrides_for_another_process_carry_flags_and_environment_but_no_secret() {
    let (_dir, file) = file_with("[test]\nport = 6543\n");
    let mut config = Config::load(
        &sections(),
        env(&[
            ("TEST_HOST", "envhost"),
            ("TEST_PASSWORD", "hunter2"),
            ("TEST_HOOK", "https://hook/secret-token"),
        ]),
        Some(&file),
    )
    .unwrap();
    config
        .set_flag("BACKUP_LOCAL_DIR", "--local-dir", "/from/flag")
        .unwrap();
    let overrides = config.non_secret_overrides();
    assert!(overrides.contains(&("TEST_HOST", "envhost".to_owned())));
    assert!(overrides.contains(&("BACKUP_LOCAL_DIR", "/from/flag".to_owned())));
    // The file's values come with the file; defaults need nothing.
    assert!(!overrides.iter().any(|(k, _)| *k == "TEST_PORT"));
    assert!(!overrides.iter().any(|(k, _)| *k == "BACKUP_RETENTION_DAYS"));
    let all = format!("{overrides:?}");
    assert!(
        !all.contains("hunter2") && !all.contains("secret-token"),
        "{all}"
    );
}
