//! `security-scan` end to end: real files, a real backup, a fake scanner printing a recorded
//! trivy report, a scanner that is not installed, a configuration file with a secret, the
//! report stored on the destination and the webhook told.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::backup_all::Webhook;
use crate::harness::*;

/// A recorded `trivy image --format json` report with one critical vulnerability.
const TRIVY_REPORT: &str = r#"{
  "SchemaVersion": 2,
  "ArtifactName": "randevubu:latest",
  "ArtifactType": "container_image",
  "Results": [
    {
      "Target": "randevubu:latest (debian 12.5)",
      "Class": "os-pkgs",
      "Type": "debian",
      "Vulnerabilities": [
        {
          "VulnerabilityID": "CVE-2024-6387",
          "PkgName": "openssh-server",
          "InstalledVersion": "1:9.2p1-2+deb12u2",
          "FixedVersion": "1:9.2p1-2+deb12u3",
          "Severity": "CRITICAL",
          "Title": "openssh: regreSSHion: RCE in OpenSSH's server"
        }
      ]
    }
  ]
}"#;

fn finding<'a>(report: &'a serde_json::Value, check: &str) -> &'a serde_json::Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == check)
        .unwrap_or_else(|| panic!("no {check} in {report:#}"))
}

#[tokio::test]
async fn the_scan_reports_each_problem_stores_its_report_and_tells_the_webhook() {
    let w = World::new(1).await;
    w.backup(&[]);
    let dir = w.dir.path();
    // A fake trivy that prints the recorded report.
    let bin_dir = dir.join("scanners");
    std::fs::create_dir(&bin_dir).unwrap();
    let report_file = dir.join("trivy.json");
    std::fs::write(&report_file, TRIVY_REPORT).unwrap();
    let trivy = bin_dir.join("trivy");
    std::fs::write(
        &trivy,
        format!("#!/bin/sh\ncat {}\n", report_file.display()),
    )
    .unwrap();
    std::fs::set_permissions(&trivy, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A configuration file that holds a secret.
    let config = dir.join("backup.toml");
    std::fs::write(&config, "[postgres]\npassword = \"hunter2\"\n").unwrap();
    let hook = Webhook::start(Duration::ZERO);

    let scanners = format!(
        "{} image randevubu:latest --format json; grype-not-installed-here randevubu:latest -o json",
        trivy.display()
    );
    let out = w.run(
        "security-scan",
        &["--json"],
        &[
            ("BACKUP_SECURITY_SCANNERS", scanners.as_str()),
            ("BACKUP_SKIP_COMPONENTS", "redis,config,logs"),
            ("BACKUP_CONFIG", config.to_str().unwrap()),
            ("BACKUP_NOTIFICATION_URL", hook.url.as_str()),
        ],
    );
    assert_exit(&out, 2, "a critical finding");
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    // The world's key is four words: weak.
    assert_eq!(finding(&report, "key_file.strength")["severity"], "high");
    assert_eq!(finding(&report, "key_file.mode")["state"], "pass");
    let trivy_finding = finding(&report, "scanner.trivy");
    assert_eq!(trivy_finding["severity"], "critical");
    assert_eq!(trivy_finding["vulnerability"]["id"], "CVE-2024-6387");
    assert_eq!(trivy_finding["vulnerability"]["fixed"], "1:9.2p1-2+deb12u3");
    let missing = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| {
            f["what"]
                .as_str()
                .unwrap_or("")
                .contains("grype-not-installed-here")
        })
        .unwrap_or_else(|| panic!("no finding for the missing scanner in {report:#}"));
    assert_eq!(missing["severity"], "high");
    let secrets = finding(&report, "config.secrets");
    assert_eq!(secrets["severity"], "high");
    assert!(secrets["what"]
        .as_str()
        .unwrap()
        .contains("[postgres] password"));
    assert!(!stdout(&out).contains("hunter2"), "never the secret");
    assert_eq!(finding(&report, "freshness.database")["state"], "pass");
    assert_eq!(finding(&report, "freshness.run")["severity"], "high");
    assert_eq!(finding(&report, "local.permissions")["state"], "pass");

    // Stored on the destination under its id.
    let stored = w
        .files()
        .into_iter()
        .filter(|f| f.starts_with("reports/security/security_scan_") && f.ends_with(".json"))
        .collect::<Vec<_>>();
    assert_eq!(stored.len(), 1, "{:?}", w.files());
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.object_path(&stored[0])).unwrap()).unwrap();
    assert_eq!(on_disk["scan_id"], report["scan_id"]);
    // The webhook was told, once, with the serious findings only.
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let text = bodies[0]["text"].as_str().unwrap();
    assert!(
        text.contains("CVE-2024-6387") || text.contains("scanner.trivy"),
        "{text}"
    );
    assert!(!bodies[0].to_string().contains("hunter2"));

    // The table for people, and an invalid setting is the scan's own failure (exit 3).
    let out = w.run(
        "security-scan",
        &[],
        &[("BACKUP_SKIP_COMPONENTS", "redis,config,logs")],
    );
    assert_exit(&out, 1, "high findings only");
    assert!(stdout(&out).starts_with("SEVERITY"), "{}", stdout(&out));
    assert!(stdout(&out).contains("fix: "), "{}", stdout(&out));
    let out = w.run("security-scan", &[], &[("BACKUP_KEY_MAX_AGE_DAYS", "0")]);
    assert_exit(&out, 3, "invalid setting");
}
