//! `security-scan`: the weekly audit of the backup set-up (see `backup_orchestrate::security`).

use backup_core::config::Config;
use backup_core::{PipelineConfig, S3Settings};
use backup_orchestrate::security::{self, ScanInputs};
use backup_orchestrate::{Notifier, NotifyConfig};
use clap::Parser;

use crate::common::{self, CommonArgs, Loaded};
use crate::exit::{CliError, ExitStatus};

/// Audit the backup set-up: the key file and keyring, local backup directories, the process
/// and configuration file, the S3 bucket's security settings, how exposed the backups are,
/// their freshness, and the vulnerability scanners of `[security] scanners`. Prints a table
/// (or JSON), stores the report under reports/security/ on every destination, and tells the
/// webhook when anything is high or critical.
#[derive(Debug, Parser)]
#[command(
    name = "security-scan",
    version,
    after_help = crate::help::SECURITY_SCAN,
    max_term_width = 100
)]
pub struct SecurityScanArgs {
    #[command(flatten)]
    common: CommonArgs,

    /// Machine-readable output (the report as JSON on stdout)
    #[arg(long)]
    json: bool,
}

/// Runs `security-scan` with parsed arguments.
pub async fn run(args: SecurityScanArgs) -> Result<ExitStatus, CliError> {
    args.common.init_logging();
    let file =
        args.common.config.clone().or_else(|| {
            std::env::var_os(backup_core::config::CONFIG_FILE_VARIABLE).map(Into::into)
        });
    let sections = backup_orchestrate::sections();
    let secrets = file
        .as_deref()
        .map(|f| backup_core::config::secrets_in_file(f, &sections))
        .unwrap_or_default();
    let config = match args.common.load(Vec::new()) {
        Ok(Loaded::Run(config)) => config,
        Ok(Loaded::Printed(status)) => return Ok(status),
        // A file with secrets is refused by every command; the scan reports it and goes on
        // with the environment alone.
        Err(_) if !secrets.is_empty() => {
            tracing::warn!(
                "the configuration file holds secrets: checking with the environment alone"
            );
            let env = std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .filter(|(k, _)| k != backup_core::config::CONFIG_FILE_VARIABLE);
            Box::new(Config::load(&sections, env, None).map_err(CliError::usage)?)
        }
        Err(e) => return Err(e),
    };
    let inputs = ScanInputs::from_config(&config, file, secrets).map_err(CliError::usage)?;
    let pipeline: PipelineConfig = common::component(&config)?;
    let s3: S3Settings = common::component(&config)?;
    let ring = pipeline.load_keyring().ok();
    let destinations = common::open_destinations(&config, false).await.ok();
    let bucket = match &s3.config {
        Some(s3_config) => match backup_storage::S3Sink::new(s3_config.clone()).await {
            Ok(sink) => {
                let posture = sink.bucket_posture().await;
                let expect = security::bucket::BucketExpectations {
                    retention_days: inputs.retention_days,
                    object_lock_configured: inputs.object_lock,
                    prefix: s3_config.prefix.clone(),
                };
                security::bucket::bucket_findings(&s3_config.bucket, &posture, &expect)
            }
            Err(e) => vec![security::Finding::unknown(
                "s3",
                format!("the S3 destination cannot be used: {e}"),
            )],
        },
        None => Vec::new(),
    };
    let mut report = security::scan(
        &inputs,
        ring.as_ref(),
        destinations.as_ref(),
        bucket,
        chrono::Utc::now(),
    )
    .await;
    if let (Some(notification), Some(notifier)) = (
        report.notification(),
        Notifier::new(&common::component::<NotifyConfig>(&config)?),
    ) {
        let delivery = notifier.notify(&notification).await;
        report.notification = Some(delivery.to_json());
    }
    if let Some(destinations) = &destinations {
        for failure in report.store(destinations).await {
            tracing::warn!("the report could not be stored: {failure}");
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(CliError::failure)?
        );
    } else {
        print!("{}", report.text());
    }
    Ok(match report.exit_code() {
        0 => ExitStatus::Success,
        1 => ExitStatus::Partial,
        _ => ExitStatus::Failure,
    })
}
