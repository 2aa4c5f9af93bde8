//! Retention: `plan` over fixed times and generated histories (which entries survive each rule,
//! the newest-complete guarantee, damaged entries), and `apply` against MemorySink and
//! LocalSink (manifest deleted before object; a half-done delete leaves a restorable legacy
//! backup; a plan for another sink deletes nothing).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use backup_core::retention::{self, Action, Reason};
use backup_core::{
    list_backups, list_dated, restore_backup, run_backup, BackupEntry, BackupKind, BackupName,
    BackupOptions, BackupStatus, BoxError, ByteStream, Compression, Dated, EncryptionInfo,
    Manifest, MemorySource, RestoreSummary, RestoreTarget, RetentionPolicy, SourceFacts,
    MANIFEST_FORMAT_VERSION,
};
use backup_crypto::{EncryptionKey, Keyring};
use backup_storage::{
    LocalSink, MemorySink, ObjectMeta, ObjectReader, ObjectWriter, Sink, StorageError,
};
use bytes::Bytes;
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use tokio::io::AsyncReadExt;

// ---------------------------------------------------------------------------------------------
// Helpers

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

fn name_at(t: DateTime<Utc>) -> BackupName {
    BackupName::new(
        BackupKind::DATABASE,
        "randevubu",
        t,
        "sql",
        Compression::gzip(),
        true,
    )
}

fn entry(t: DateTime<Utc>, status: BackupStatus) -> BackupEntry {
    let name = name_at(t);
    BackupEntry {
        key: name.key(),
        name,
        size: 100,
        status,
        manifest: None,
    }
}

fn complete(t: DateTime<Utc>) -> BackupEntry {
    entry(t, BackupStatus::Complete)
}

fn legacy(t: DateTime<Utc>) -> BackupEntry {
    entry(t, BackupStatus::Legacy)
}

fn damaged(t: DateTime<Utc>) -> BackupEntry {
    entry(t, BackupStatus::Damaged("manifest is not JSON".into()))
}

fn policy() -> RetentionPolicy {
    RetentionPolicy {
        within_days: None,
        keep_last: None,
        keep_daily: None,
        keep_weekly: None,
        keep_monthly: None,
    }
}

/// The times of the entries the plan keeps, oldest first.
fn kept_times(plan: &retention::PrunePlan) -> Vec<DateTime<Utc>> {
    let mut kept: Vec<_> = plan.to_keep().map(|d| d.entry.timestamp).collect();
    kept.sort();
    kept
}

fn decision_for(plan: &retention::PrunePlan, t: DateTime<Utc>) -> &retention::Decision {
    plan.decisions()
        .iter()
        .find(|d| d.entry.timestamp == t)
        .expect("an entry at that time")
}

/// Two complete backups a day (02:00 and 14:00 UTC) for `days` days ending on `last_day`,
/// oldest first, skipping the days in `gaps`.
fn history(last_day: NaiveDate, days: i64, gaps: &[NaiveDate]) -> Vec<BackupEntry> {
    let mut out = Vec::new();
    for back in (0..days).rev() {
        let day = last_day - Duration::days(back);
        if gaps.contains(&day) {
            continue;
        }
        for hour in [2, 14] {
            let t = Utc.from_utc_datetime(&day.and_hms_opt(hour, 0, 0).unwrap());
            out.push(complete(t));
        }
    }
    out
}

/// Independent model of a GFS rule: group by period, take each period's newest, keep the
/// newest `n` periods.
fn model_keep<K: Ord>(
    entries: &[BackupEntry],
    n: u32,
    period: impl Fn(DateTime<Utc>) -> K,
) -> BTreeSet<DateTime<Utc>> {
    let mut newest: BTreeMap<K, DateTime<Utc>> = BTreeMap::new();
    for e in entries {
        let t = e.timestamp();
        let slot = newest.entry(period(t)).or_insert(t);
        if t > *slot {
            *slot = t;
        }
    }
    newest.values().rev().take(n as usize).copied().collect()
}

// ---------------------------------------------------------------------------------------------
// plan: the age rule

#[test]
fn day_policy_keeps_strictly_newer_than_now_minus_n_days() {
    let now = at(2024, 6, 30, 12, 0, 0);
    let cutoff = now - Duration::days(30);
    let just_inside = cutoff + Duration::seconds(1);
    let exactly = cutoff;
    let just_outside = cutoff - Duration::seconds(1);
    let newest = at(2024, 6, 30, 2, 0, 0);
    let entries = vec![
        complete(just_outside),
        complete(exactly),
        complete(just_inside),
        complete(newest),
    ];
    let plan = retention::plan(&entries, &RetentionPolicy::within_days(30), now);
    let actions: Vec<(DateTime<Utc>, Action)> = plan
        .decisions()
        .iter()
        .map(|d| (d.entry.timestamp, d.action))
        .collect();
    assert_eq!(
        actions,
        vec![
            (just_outside, Action::Delete),
            (exactly, Action::Delete),
            (just_inside, Action::Keep),
            (newest, Action::Keep),
        ]
    );
    assert_eq!(
        decision_for(&plan, exactly).to_string(),
        "delete: older than 30 days and kept by no rule"
    );
    assert_eq!(
        decision_for(&plan, just_inside).to_string(),
        "keep: within 30 days"
    );
    assert_eq!(
        decision_for(&plan, newest).to_string(),
        "keep: newest complete backup, within 30 days"
    );
    // The default policy is the 30 days of BACKUP_RETENTION_DAYS.
    assert_eq!(
        retention::plan(&entries, &RetentionPolicy::default(), now),
        plan
    );
}

#[test]
fn future_timestamps_count_as_within() {
    let now = at(2024, 6, 30, 12, 0, 0);
    let entries = vec![
        complete(now - Duration::days(40)),
        legacy(now + Duration::hours(3)),
    ];
    let plan = retention::plan(&entries, &RetentionPolicy::within_days(30), now);
    assert_eq!(
        plan.decisions()[1].reasons,
        vec![Reason::WithinDays { days: 30 }]
    );
    // The older one is the newest *complete* backup: kept although 40 days old.
    assert_eq!(plan.decisions()[0].reasons, vec![Reason::NewestComplete]);
}

#[test]
fn huge_day_counts_keep_everything_without_overflow() {
    let now = at(2024, 6, 30, 12, 0, 0);
    let entries = vec![complete(at(1990, 1, 1, 0, 0, 0)), complete(now)];
    let plan = retention::plan(&entries, &RetentionPolicy::within_days(u32::MAX), now);
    assert_eq!(plan.to_delete().count(), 0);
}

// ---------------------------------------------------------------------------------------------
// plan: keep-last and the GFS rules

#[test]
fn keep_last_keeps_the_n_newest() {
    let now = at(2024, 6, 30, 12, 0, 0);
    let entries: Vec<BackupEntry> = (0..10)
        .map(|i| complete(at(2024, 1, 1, 0, 0, 0) + Duration::hours(i)))
        .collect();
    let p = RetentionPolicy {
        keep_last: Some(3),
        ..policy()
    };
    let plan = retention::plan(&entries, &p, now);
    let kept: Vec<&str> = plan.to_keep().map(|d| d.entry.file_name()).collect();
    assert_eq!(
        kept,
        vec![
            "randevubu_backup_20240101_070000.sql.gz.enc",
            "randevubu_backup_20240101_080000.sql.gz.enc",
            "randevubu_backup_20240101_090000.sql.gz.enc",
        ]
    );
    assert_eq!(
        plan.decisions()[9].to_string(),
        "keep: newest complete backup, last #1"
    );
    assert_eq!(plan.decisions()[7].to_string(), "keep: last #3");
    assert_eq!(plan.decisions()[0].to_string(), "delete: kept by no rule");
    // keep-last 0 keeps nothing by that rule; more than there are keeps all.
    let zero = RetentionPolicy {
        keep_last: Some(0),
        ..policy()
    };
    assert_eq!(retention::plan(&entries, &zero, now).to_keep().count(), 1);
    let many = RetentionPolicy {
        keep_last: Some(50),
        ..policy()
    };
    assert_eq!(retention::plan(&entries, &many, now).to_delete().count(), 0);
}

#[test]
fn gfs_over_400_days_of_two_backups_a_day_keeps_exactly_the_expected_ones() {
    // 2023-05-28 .. 2024-06-30 (a Sunday): 400 days, 800 backups.
    let last_day = NaiveDate::from_ymd_opt(2024, 6, 30).unwrap();
    let entries = history(last_day, 400, &[]);
    assert_eq!(entries.len(), 800);
    assert_eq!(
        entries[0].timestamp(),
        at(2023, 5, 28, 2, 0, 0),
        "history starts where the hand-computed cases below assume"
    );
    let now = at(2024, 6, 30, 23, 0, 0);
    let afternoon = |y, m, d| at(y, m, d, 14, 0, 0);

    // Hand-computed survivors of each rule alone (plus the newest, which every rule keeps).
    let daily = retention::plan(
        &entries,
        &RetentionPolicy {
            keep_daily: Some(3),
            ..policy()
        },
        now,
    );
    assert_eq!(
        kept_times(&daily),
        vec![
            afternoon(2024, 6, 28),
            afternoon(2024, 6, 29),
            afternoon(2024, 6, 30)
        ]
    );
    assert_eq!(
        decision_for(&daily, afternoon(2024, 6, 28)).to_string(),
        "keep: daily #3"
    );
    let weekly = retention::plan(
        &entries,
        &RetentionPolicy {
            keep_weekly: Some(3),
            ..policy()
        },
        now,
    );
    // ISO weeks end on Sunday: the newest of each week is its Sunday afternoon.
    assert_eq!(
        kept_times(&weekly),
        vec![
            afternoon(2024, 6, 16),
            afternoon(2024, 6, 23),
            afternoon(2024, 6, 30)
        ]
    );
    let monthly = retention::plan(
        &entries,
        &RetentionPolicy {
            keep_monthly: Some(3),
            ..policy()
        },
        now,
    );
    assert_eq!(
        kept_times(&monthly),
        vec![
            afternoon(2024, 4, 30),
            afternoon(2024, 5, 31),
            afternoon(2024, 6, 30)
        ]
    );
    assert_eq!(
        decision_for(&monthly, afternoon(2024, 4, 30)).to_string(),
        "keep: monthly #3"
    );
    // Asking for more months than have backups keeps one per month that has any: 14, the
    // oldest being the last backup of May 2023.
    let all_months = retention::plan(
        &entries,
        &RetentionPolicy {
            keep_monthly: Some(24),
            ..policy()
        },
        now,
    );
    let kept = kept_times(&all_months);
    assert_eq!(kept.len(), 14);
    assert_eq!(kept[0], afternoon(2023, 5, 31));

    // Against the independent model, for a range of counts.
    for n in [1, 2, 7, 10, 30, 60, 500] {
        let cases: [(RetentionPolicy, BTreeSet<DateTime<Utc>>); 3] = [
            (
                RetentionPolicy {
                    keep_daily: Some(n),
                    ..policy()
                },
                model_keep(&entries, n, |t| t.date_naive()),
            ),
            (
                RetentionPolicy {
                    keep_weekly: Some(n),
                    ..policy()
                },
                model_keep(&entries, n, |t| {
                    let w = t.iso_week();
                    (w.year(), w.week())
                }),
            ),
            (
                RetentionPolicy {
                    keep_monthly: Some(n),
                    ..policy()
                },
                model_keep(&entries, n, |t| (t.year(), t.month())),
            ),
        ];
        for (p, expected) in cases {
            let plan = retention::plan(&entries, &p, now);
            let kept: BTreeSet<DateTime<Utc>> = kept_times(&plan).into_iter().collect();
            assert_eq!(kept, expected, "{p}");
            // Everything else is deleted, each with the no-rule reason.
            assert_eq!(
                plan.to_delete().count(),
                entries.len() - expected.len(),
                "{p}"
            );
            assert!(plan
                .to_delete()
                .all(|d| d.reasons == vec![Reason::Expired { within_days: None }]));
        }
    }
}

#[test]
fn daily_counts_only_days_that_have_backups() {
    let last_day = NaiveDate::from_ymd_opt(2024, 6, 30).unwrap();
    // No backups for the 5 days before the last one.
    let gaps: Vec<NaiveDate> = (1..=5).map(|i| last_day - Duration::days(i)).collect();
    let entries = history(last_day, 30, &gaps);
    let plan = retention::plan(
        &entries,
        &RetentionPolicy {
            keep_daily: Some(3),
            ..policy()
        },
        at(2024, 6, 30, 23, 0, 0),
    );
    assert_eq!(
        kept_times(&plan),
        vec![
            at(2024, 6, 23, 14, 0, 0),
            at(2024, 6, 24, 14, 0, 0),
            at(2024, 6, 30, 14, 0, 0),
        ]
    );
}

#[test]
fn weeks_are_iso_weeks_across_the_new_year() {
    // 2024-12-29 is a Sunday (week 52 of 2024); 2024-12-30 is the Monday of week 1 of 2025.
    let sunday = at(2024, 12, 29, 2, 0, 0);
    let monday = at(2024, 12, 30, 2, 0, 0);
    let thursday = at(2025, 1, 2, 2, 0, 0);
    let entries = vec![complete(sunday), complete(monday), complete(thursday)];
    let p = RetentionPolicy {
        keep_weekly: Some(2),
        ..policy()
    };
    let plan = retention::plan(&entries, &p, at(2025, 1, 3, 0, 0, 0));
    assert_eq!(kept_times(&plan), vec![sunday, thursday]);
    assert_eq!(
        decision_for(&plan, sunday).reasons,
        vec![Reason::Weekly { rank: 2 }]
    );
    // Monthly, the same three fall in two months.
    let p = RetentionPolicy {
        keep_monthly: Some(2),
        ..policy()
    };
    let plan = retention::plan(&entries, &p, at(2025, 1, 3, 0, 0, 0));
    assert_eq!(kept_times(&plan), vec![monday, thursday]);
}

#[test]
fn rules_combine_a_backup_kept_by_any_rule_stays() {
    let last_day = NaiveDate::from_ymd_opt(2024, 6, 30).unwrap();
    let entries = history(last_day, 400, &[]);
    let now = at(2024, 6, 30, 23, 0, 0);
    let singles = [
        RetentionPolicy::within_days(10),
        RetentionPolicy {
            keep_last: Some(5),
            ..policy()
        },
        RetentionPolicy {
            keep_daily: Some(14),
            ..policy()
        },
        RetentionPolicy {
            keep_weekly: Some(8),
            ..policy()
        },
        RetentionPolicy {
            keep_monthly: Some(12),
            ..policy()
        },
    ];
    let kept_by = |p: &RetentionPolicy| -> BTreeSet<DateTime<Utc>> {
        kept_times(&retention::plan(&entries, p, now))
            .into_iter()
            .collect()
    };
    // Every combination of the single rules keeps exactly the union of what each keeps.
    for mask in 1u32..(1 << singles.len()) {
        let mut combined = policy();
        let mut expected = BTreeSet::new();
        for (i, single) in singles.iter().enumerate() {
            if mask & (1 << i) == 0 {
                continue;
            }
            combined.within_days = combined.within_days.or(single.within_days);
            combined.keep_last = combined.keep_last.or(single.keep_last);
            combined.keep_daily = combined.keep_daily.or(single.keep_daily);
            combined.keep_weekly = combined.keep_weekly.or(single.keep_weekly);
            combined.keep_monthly = combined.keep_monthly.or(single.keep_monthly);
            expected.extend(kept_by(single));
        }
        assert_eq!(kept_by(&combined), expected, "{combined}");
    }

    // A backup kept by several rules lists them all, in a fixed order.
    let all = RetentionPolicy {
        within_days: Some(10),
        keep_last: Some(5),
        keep_daily: Some(14),
        keep_weekly: Some(8),
        keep_monthly: Some(12),
    };
    let plan = retention::plan(&entries, &all, now);
    assert_eq!(
        decision_for(&plan, at(2024, 6, 30, 14, 0, 0)).to_string(),
        "keep: newest complete backup, within 10 days, last #1, daily #1, weekly #1, monthly #1"
    );
    assert_eq!(
        decision_for(&plan, at(2024, 6, 16, 14, 0, 0)).to_string(),
        "keep: weekly #3",
        "16 June is the 15th day back: only keep-weekly keeps it"
    );
    assert_eq!(
        decision_for(&plan, at(2024, 6, 17, 14, 0, 0)).to_string(),
        "keep: daily #14"
    );
    assert_eq!(
        decision_for(&plan, at(2024, 5, 31, 2, 0, 0)).to_string(),
        "delete: older than 10 days and kept by no rule"
    );
}

// ---------------------------------------------------------------------------------------------
// plan: the newest-backup guarantee and damaged entries

#[test]
fn newest_complete_backup_is_kept_with_zero_days_and_no_rules() {
    let now = at(2024, 6, 30, 12, 0, 0);
    let old = |d| at(2024, 1, d, 2, 0, 0);
    for p in [RetentionPolicy::within_days(0), policy()] {
        let entries = vec![complete(old(1)), complete(old(2)), complete(old(3))];
        let plan = retention::plan(&entries, &p, now);
        assert_eq!(kept_times(&plan), vec![old(3)], "{p}");
        assert_eq!(
            decision_for(&plan, old(3)).to_string(),
            "keep: newest complete backup"
        );

        // A newer legacy backup does not replace the guarantee: the newest *complete* one is
        // kept, the newer legacy one is subject to the rules like any other.
        let entries = vec![complete(old(1)), complete(old(2)), legacy(old(3))];
        let plan = retention::plan(&entries, &p, now);
        assert_eq!(kept_times(&plan), vec![old(2)], "{p}");
        assert_eq!(decision_for(&plan, old(3)).action, Action::Delete);

        // With no complete backup at all, the newest legacy one is kept.
        let entries = vec![legacy(old(1)), legacy(old(2))];
        let plan = retention::plan(&entries, &p, now);
        assert_eq!(kept_times(&plan), vec![old(2)], "{p}");
        assert_eq!(
            decision_for(&plan, old(2)).to_string(),
            "keep: newest backup (none is complete)"
        );
        assert_eq!(plan.guaranteed().unwrap().entry.timestamp, old(2));

        // Damaged entries are not backups for the guarantee: the newest legacy one is kept.
        let entries = vec![legacy(old(1)), damaged(old(2))];
        let plan = retention::plan(&entries, &p, now);
        assert_eq!(kept_times(&plan), vec![old(1), old(2)], "{p}");
    }
    let empty: Vec<BackupEntry> = Vec::new();
    let plan = retention::plan(&empty, &RetentionPolicy::within_days(0), now);
    assert!(plan.decisions().is_empty());
    assert!(plan.guaranteed().is_none());
}

#[test]
fn each_series_keeps_its_newest_backup_and_counts_its_own_keep_rules() {
    let in_series = |prefix: &str, t: DateTime<Utc>| {
        let mut e = complete(t);
        e.name.prefix = prefix.to_owned();
        e.key = e.name.key();
        e
    };
    let now = at(2024, 6, 30, 12, 0, 0);
    // "app" backed up daily for 10 days; "billing" dropped from the list 60 days ago.
    let mut entries: Vec<BackupEntry> = (0..10)
        .map(|d| in_series("randevubu_app", now - Duration::days(10 - d)))
        .collect();
    entries.push(in_series("randevubu_billing", now - Duration::days(61)));
    entries.push(in_series("randevubu_billing", now - Duration::days(60)));
    let rules = RetentionPolicy {
        within_days: Some(0),
        keep_last: Some(2),
        ..policy()
    };
    let plan = retention::plan_series(&entries, &rules, now);
    assert_eq!(plan.decisions().len(), entries.len());
    // Decisions keep the input order.
    for (d, e) in plan.decisions().iter().zip(&entries) {
        assert_eq!(d.entry.key, e.key);
    }
    let kept: Vec<&str> = plan.to_keep().map(|d| d.entry.key.as_str()).collect();
    assert_eq!(
        kept,
        [
            entries[8].key.as_str(),
            entries[9].key.as_str(),
            entries[10].key.as_str(),
            entries[11].key.as_str()
        ],
        "keep-last 2 counts within each series, so the old series' two stay"
    );
    let guaranteed: Vec<&str> = plan
        .guaranteed_all()
        .map(|d| d.entry.key.as_str())
        .collect();
    assert_eq!(
        guaranteed,
        [entries[9].key.as_str(), entries[11].key.as_str()]
    );
    // One plan over everything would have let the newer series push the old one out.
    let mixed = retention::plan(&entries, &rules, now);
    assert_eq!(mixed.to_keep().count(), 2);
    assert!(mixed.to_delete().any(|d| d.entry.key.contains("billing")));
}

#[test]
fn damaged_entries_are_never_deleted_and_never_counted() {
    let now = at(2024, 6, 30, 12, 0, 0);
    let entries = vec![
        damaged(at(2023, 1, 1, 2, 0, 0)),
        complete(at(2024, 1, 1, 2, 0, 0)),
        complete(at(2024, 1, 2, 2, 0, 0)),
        damaged(at(2024, 1, 3, 2, 0, 0)),
    ];
    let p = RetentionPolicy {
        within_days: Some(0),
        keep_last: Some(1),
        ..policy()
    };
    let plan = retention::plan(&entries, &p, now);
    let summary: Vec<String> = plan.decisions().iter().map(|d| d.to_string()).collect();
    assert_eq!(
        summary,
        vec![
            "keep: damaged, inspect by hand (manifest is not JSON)".to_owned(),
            "delete: older than 0 days and kept by no rule".to_owned(),
            "keep: newest complete backup, last #1".to_owned(),
            "keep: damaged, inspect by hand (manifest is not JSON)".to_owned(),
        ]
    );
    // Only damaged entries: nothing to delete, no guarantee needed.
    let only = vec![damaged(at(2020, 1, 1, 0, 0, 0))];
    let plan = retention::plan(&only, &RetentionPolicy::within_days(0), now);
    assert_eq!(plan.to_delete().count(), 0);
}

#[test]
fn the_plan_does_not_depend_on_input_order() {
    let last_day = NaiveDate::from_ymd_opt(2024, 6, 30).unwrap();
    let mut entries = history(last_day, 60, &[]);
    // A legacy backup at the same time as a complete one (another name prefix).
    let t = at(2024, 6, 30, 14, 0, 0);
    let name = BackupName::new(
        BackupKind::DATABASE,
        "old",
        t,
        "sql",
        Compression::gzip(),
        true,
    );
    entries.push(BackupEntry {
        key: name.key(),
        name,
        size: 1,
        status: BackupStatus::Legacy,
        manifest: None,
    });
    let p = RetentionPolicy {
        within_days: Some(7),
        keep_weekly: Some(3),
        keep_monthly: Some(2),
        ..policy()
    };
    let now = at(2024, 6, 30, 23, 0, 0);
    let forward = retention::plan(&entries, &p, now);
    entries.reverse();
    let backward = retention::plan(&entries, &p, now);
    let by_key = |plan: &retention::PrunePlan| -> BTreeMap<String, String> {
        plan.decisions()
            .iter()
            .map(|d| (d.entry.key.clone(), d.to_string()))
            .collect()
    };
    assert_eq!(by_key(&forward), by_key(&backward));
}

#[test]
fn plans_and_decisions_serialize_for_json_output() {
    let now = at(2024, 6, 30, 12, 0, 0);
    let entries = vec![
        complete(at(2024, 1, 1, 2, 0, 0)),
        damaged(at(2024, 1, 2, 2, 0, 0)),
    ];
    let plan = retention::plan(&entries, &RetentionPolicy::within_days(0), now);
    let json = serde_json::to_value(&plan).unwrap();
    let first = &json["decisions"][0];
    assert_eq!(first["action"], "keep");
    assert_eq!(first["reasons"][0]["rule"], "newest_complete");
    assert_eq!(first["entry"]["status"], "complete");
    assert_eq!(first["entry"]["time"], "2024-01-01T02:00:00Z");
    let second = &json["decisions"][1];
    assert_eq!(second["entry"]["status"], "damaged");
    assert_eq!(second["entry"]["detail"], "manifest is not JSON");
    assert_eq!(second["reasons"][0]["rule"], "damaged");
    assert_eq!(json["policy"]["within_days"], 0);
}

// ---------------------------------------------------------------------------------------------
// apply

/// A manifest for `key` (valid JSON; not the real stored bytes' hash, which pruning never
/// reads).
fn manifest_json(key: &str, kind: BackupKind) -> Vec<u8> {
    let t = Utc::now();
    let mut m = Manifest {
        format_version: MANIFEST_FORMAT_VERSION,
        kind,
        object_key: key.to_owned(),
        started_at: t,
        finished_at: t,
        source: SourceFacts {
            source_type: "test".into(),
            ..Default::default()
        },
        compression: Compression::gzip(),
        encryption: Some(EncryptionInfo {
            cipher: "aes-256-cbc".into(),
            kdf: "pbkdf2-hmac-sha256".into(),
            iterations: 10_000,
            key_id: "0123456789abcdef".into(),
        }),
        raw_bytes: 3,
        stored_bytes: 3,
        sha256: "00".repeat(32),
        tool: "test".into(),
        hmac: None,
        mac_kdf: None,
        attachments: Default::default(),
        compression_threads: None,
    };
    // Signed, as this tool signs every manifest of an encrypted backup (pruning never checks
    // the signature itself, only that there is one).
    let signer = EncryptionKey::from_passphrase("retention test").unwrap();
    m.to_signed_json(Some(&signer)).unwrap()
}

/// Puts a complete backup (object, then manifest) of time `t`; returns its key.
async fn put_complete(sink: &dyn Sink, t: DateTime<Utc>) -> String {
    let key = name_at(t).key();
    sink.put(&key, Bytes::from_static(b"obj")).await.unwrap();
    sink.put(
        &name_at(t).manifest_key(),
        Bytes::from(manifest_json(&key, BackupKind::DATABASE)),
    )
    .await
    .unwrap();
    key
}

async fn put_legacy(sink: &dyn Sink, t: DateTime<Utc>) -> String {
    let key = name_at(t).key();
    sink.put(&key, Bytes::from_static(b"old")).await.unwrap();
    key
}

async fn keys(sink: &dyn Sink) -> Vec<String> {
    sink.list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

/// Complete backups on Jan 1..=4 2024, a legacy one on Dec 31 2023, a damaged one on Dec 30
/// 2023; with 0 days and keep-last 2 (at `now`) Jan 1 and 2 and the legacy one go.
async fn populate(sink: &dyn Sink) -> (Vec<String>, Vec<String>) {
    let damaged_key = name_at(at(2023, 12, 30, 2, 0, 0)).key();
    sink.put(&damaged_key, Bytes::from_static(b"d"))
        .await
        .unwrap();
    sink.put(
        &name_at(at(2023, 12, 30, 2, 0, 0)).manifest_key(),
        Bytes::from_static(b"{not json"),
    )
    .await
    .unwrap();
    let legacy_key = put_legacy(sink, at(2023, 12, 31, 2, 0, 0)).await;
    let mut complete_keys = Vec::new();
    for d in 1..=4 {
        complete_keys.push(put_complete(sink, at(2024, 1, d, 2, 0, 0)).await);
    }
    // Something else in the folder, never touched.
    sink.put("database/README.txt", Bytes::from_static(b"hi"))
        .await
        .unwrap();
    let doomed = vec![
        legacy_key,
        complete_keys[0].clone(),
        complete_keys[1].clone(),
    ];
    (doomed, complete_keys)
}

fn prune_policy() -> RetentionPolicy {
    RetentionPolicy {
        within_days: Some(0),
        keep_last: Some(2),
        ..policy()
    }
}

async fn apply_deletes_exactly_the_plan(sink: &dyn Sink) {
    let (doomed, _) = populate(sink).await;
    let before = keys(sink).await;
    let entries = list_backups(sink, BackupKind::DATABASE).await.unwrap();
    let plan = retention::plan(&entries, &prune_policy(), at(2024, 6, 1, 0, 0, 0));
    let planned: Vec<String> = plan.to_delete().map(|d| d.entry.key.clone()).collect();
    assert_eq!(planned, doomed);

    // A dry run is the plan alone: nothing changes.
    assert_eq!(keys(sink).await, before);

    let outcome = retention::apply(sink, &plan).await.unwrap();
    assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
    let deleted: Vec<String> = outcome.deleted.iter().map(|d| d.key.clone()).collect();
    assert_eq!(deleted, doomed);
    let mut expected: Vec<String> = before
        .iter()
        .filter(|k| {
            !doomed
                .iter()
                .any(|d| *k == d || **k == format!("{d}.manifest.json"))
        })
        .cloned()
        .collect();
    expected.sort();
    assert_eq!(keys(sink).await, expected);
    // What is left: the damaged one (with its manifest), Jan 3 and 4, the README.
    let left = list_backups(sink, BackupKind::DATABASE).await.unwrap();
    let summary: Vec<(String, String)> = left
        .iter()
        .map(|e| (e.file_name().to_owned(), e.status.to_string()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "randevubu_backup_20231230_020000.sql.gz.enc".into(),
                "damaged".into()
            ),
            (
                "randevubu_backup_20240103_020000.sql.gz.enc".into(),
                "complete".into()
            ),
            (
                "randevubu_backup_20240104_020000.sql.gz.enc".into(),
                "complete".into()
            ),
        ]
    );
    // Applying the same plan again is harmless (deleting absent keys is not an error).
    let again = retention::apply(sink, &plan).await.unwrap();
    assert!(again.failed.is_empty());
}

#[tokio::test]
async fn apply_deletes_exactly_the_plan_in_a_memory_sink() {
    apply_deletes_exactly_the_plan(&MemorySink::new()).await;
}

#[tokio::test]
async fn apply_deletes_exactly_the_plan_in_a_local_sink() {
    let dir = tempfile::tempdir().unwrap();
    let sink = LocalSink::new(dir.path()).unwrap();
    apply_deletes_exactly_the_plan(&sink).await;
    assert!(!dir
        .path()
        .join("database/randevubu_backup_20240101_020000.sql.gz.enc.manifest.json")
        .exists());
    assert!(dir
        .path()
        .join("database/randevubu_backup_20240104_020000.sql.gz.enc")
        .exists());
}

/// A MemorySink that records deletes and fails those of chosen keys.
#[derive(Debug, Clone, Default)]
struct FlakySink {
    inner: MemorySink,
    fail_deletes: Arc<Mutex<BTreeSet<String>>>,
    deletes: Arc<Mutex<Vec<String>>>,
}

impl FlakySink {
    fn fail_delete_of(&self, key: &str) {
        self.fail_deletes.lock().unwrap().insert(key.to_owned());
    }
}

#[async_trait]
impl Sink for FlakySink {
    fn describe(&self) -> String {
        "flaky test store".into()
    }
    async fn writer_with(
        &self,
        key: &str,
        mode: backup_storage::WriteMode,
    ) -> backup_storage::Result<Box<dyn ObjectWriter>> {
        self.inner.writer_with(key, mode).await
    }
    async fn get(&self, key: &str) -> backup_storage::Result<ObjectReader> {
        self.inner.get(key).await
    }
    async fn head(&self, key: &str) -> backup_storage::Result<ObjectMeta> {
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str) -> backup_storage::Result<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> backup_storage::Result<()> {
        self.deletes.lock().unwrap().push(key.to_owned());
        if self.fail_deletes.lock().unwrap().contains(key) {
            return Err(StorageError::io(
                "delete",
                key,
                io::Error::new(io::ErrorKind::PermissionDenied, "injected failure"),
            ));
        }
        self.inner.delete(key).await
    }
    async fn copy(&self, from: &str, to: &str) -> backup_storage::Result<()> {
        self.inner.copy(from, to).await
    }
}

#[tokio::test]
async fn apply_deletes_each_manifest_before_its_object() {
    let sink = FlakySink::default();
    let (doomed, _) = populate(&sink).await;
    let entries = list_backups(&sink, BackupKind::DATABASE).await.unwrap();
    let plan = retention::plan(&entries, &prune_policy(), at(2024, 6, 1, 0, 0, 0));
    retention::apply(&sink, &plan).await.unwrap();
    let deletes = sink.deletes.lock().unwrap().clone();
    // Legacy: object only. Complete: manifest, then object.
    assert_eq!(
        deletes,
        vec![
            doomed[0].clone(),
            format!("{}.manifest.json", doomed[1]),
            doomed[1].clone(),
            format!("{}.manifest.json", doomed[2]),
            doomed[2].clone(),
        ]
    );
}

#[tokio::test]
async fn a_failed_manifest_delete_leaves_the_backup_complete_and_the_rest_proceeds() {
    let sink = FlakySink::default();
    let (doomed, _) = populate(&sink).await;
    sink.fail_delete_of(&format!("{}.manifest.json", doomed[1]));
    let entries = list_backups(&sink, BackupKind::DATABASE).await.unwrap();
    let plan = retention::plan(&entries, &prune_policy(), at(2024, 6, 1, 0, 0, 0));
    let outcome = retention::apply(&sink, &plan).await.unwrap();
    assert_eq!(outcome.failed.len(), 1);
    assert!(!outcome.failed[0].manifest_deleted);
    assert_eq!(outcome.failed[0].entry.key, doomed[1]);
    assert!(outcome.failed[0].error.contains("injected failure"));
    let deleted: Vec<&str> = outcome.deleted.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(deleted, vec![doomed[0].as_str(), doomed[2].as_str()]);
    // The object itself was never asked to be deleted: still a complete backup.
    assert!(!sink.deletes.lock().unwrap().contains(&doomed[1]));
    let left = list_backups(&sink, BackupKind::DATABASE).await.unwrap();
    let it = left.iter().find(|e| e.key == doomed[1]).unwrap();
    assert_eq!(it.status, BackupStatus::Complete);
}

/// A source of fixed bytes.
fn bytes_source(data: Vec<u8>) -> MemorySource {
    MemorySource::new(BackupKind::DATABASE, "sql", data)
}
/// Keeps what it read once the stream ended.
#[derive(Default)]
struct Collect(Option<Vec<u8>>);

#[async_trait]
impl RestoreTarget for Collect {
    async fn restore(&mut self, mut stream: ByteStream) -> Result<RestoreSummary, BoxError> {
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await?;
        let n = buf.len() as u64;
        self.0 = Some(buf);
        Ok(RestoreSummary {
            plain_bytes: n,
            notes: vec![],
        })
    }
}

#[tokio::test]
async fn an_object_delete_failing_after_its_manifest_leaves_a_restorable_legacy_backup() {
    let sink = FlakySink::default();
    let key = EncryptionKey::from_passphrase("prune test").unwrap();
    let data =
        b"-- dump\nINSERT INTO t VALUES (1);\n-- PostgreSQL database dump complete\n".repeat(50);
    let report = run_backup(
        &mut bytes_source(data.clone()),
        &sink,
        &BackupOptions {
            name_prefix: "randevubu".into(),
            compression: Compression::gzip(),
            key: Some(key.clone()),
            signing_key: None,
            // A legacy backup is decrypted with the default iterations (no manifest says
            compression_threads: 1,
            // otherwise), as the old scripts' `openssl enc -pbkdf2` wrote them.
            iterations: backup_crypto::DEFAULT_PBKDF2_ITERATIONS,
        },
        None,
    )
    .await
    .unwrap();
    // A newer complete backup, so the real one is not the newest.
    let later = Utc::now().with_nanosecond(0).unwrap() + Duration::days(1);
    put_complete(&sink, later).await;
    sink.fail_delete_of(&report.key);

    let entries = list_backups(&sink, BackupKind::DATABASE).await.unwrap();
    let plan = retention::plan(
        &entries,
        &RetentionPolicy::within_days(0),
        later + Duration::days(1),
    );
    let planned: Vec<&str> = plan.to_delete().map(|d| d.entry.key.as_str()).collect();
    assert_eq!(planned, vec![report.key.as_str()]);
    let outcome = retention::apply(&sink, &plan).await.unwrap();
    assert!(outcome.deleted.is_empty());
    assert_eq!(outcome.failed.len(), 1);
    assert!(outcome.failed[0].manifest_deleted);
    assert!(
        outcome.failed[0]
            .to_string()
            .contains("never restored automatically"),
        "{}",
        outcome.failed[0]
    );

    // The object is still listed, now as legacy, and restores to the original bytes.
    let entries = list_backups(&sink, BackupKind::DATABASE).await.unwrap();
    let left = entries.iter().find(|e| e.key == report.key).unwrap();
    assert_eq!(left.status, BackupStatus::Legacy);
    let mut target = Collect::default();
    restore_backup(&sink, left, Some(&Keyring::new(key)), &mut target, None)
        .await
        .unwrap();
    assert_eq!(target.0.unwrap(), data);
}

#[tokio::test]
async fn a_plan_for_another_sink_deletes_nothing() {
    let first = MemorySink::new();
    populate(&first).await;
    let entries = list_backups(&first, BackupKind::DATABASE).await.unwrap();
    let plan = retention::plan(&entries, &prune_policy(), at(2024, 6, 1, 0, 0, 0));

    // The other sink holds the doomed backups but not the one the plan keeps as newest.
    let other = FlakySink::default();
    populate(&other).await;
    other
        .inner
        .delete(&plan.guaranteed().unwrap().entry.key)
        .await
        .unwrap();
    let err = retention::apply(&other, &plan)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("nothing was deleted"), "{err}");
    assert!(other.deletes.lock().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// dated objects: run reports and run logs

#[tokio::test]
async fn dated_objects_under_a_prefix_are_listed_planned_and_pruned() {
    let sink = MemorySink::new();
    let put = |key: &'static str| {
        let sink = sink.clone();
        async move { sink.put(key, Bytes::from_static(b"x")).await.unwrap() }
    };
    put("logs/orchestration/backup_20240101_020000.log").await;
    put("logs/orchestration/backup_20240102_020000.log").await;
    put("logs/orchestration/backup_20240103_020000.log").await;
    put("logs/orchestration/README").await;
    put("reports/orchestration/backup_report_20240101_020000.json").await;
    put("reports/orchestration/2024/backup_report_20240102_020000.json").await;
    // A backup of the `logs` kind beside the run logs is not a run log.
    put("logs/logs_backup_20240101_020000.tar.gz").await;

    let logs = list_dated(&sink, "logs/orchestration/").await.unwrap();
    let names: Vec<&str> = logs.iter().map(Dated::file_name).collect();
    assert_eq!(
        names,
        vec![
            "backup_20240101_020000.log",
            "backup_20240102_020000.log",
            "backup_20240103_020000.log",
        ]
    );
    assert!(logs.iter().all(|d| d.status == BackupStatus::Complete));
    assert_eq!(logs[0].timestamp, at(2024, 1, 1, 2, 0, 0));

    let reports = list_dated(&sink, "reports/orchestration/").await.unwrap();
    assert_eq!(reports.len(), 2, "nested folders are listed too");

    let now = at(2024, 2, 15, 0, 0, 0);
    let plan = retention::plan(&logs, &RetentionPolicy::within_days(30), now);
    let summary: Vec<String> = plan
        .decisions()
        .iter()
        .map(|d| format!("{} {d}", d.entry.file_name()))
        .collect();
    assert_eq!(
        summary,
        vec![
            "backup_20240101_020000.log delete: older than 30 days and kept by no rule",
            "backup_20240102_020000.log delete: older than 30 days and kept by no rule",
            "backup_20240103_020000.log keep: newest complete backup",
        ]
    );
    let outcome = retention::apply(&sink, &plan).await.unwrap();
    assert_eq!(outcome.deleted.len(), 2);
    assert_eq!(
        keys(&sink).await,
        vec![
            "logs/logs_backup_20240101_020000.tar.gz",
            "logs/orchestration/README",
            "logs/orchestration/backup_20240103_020000.log",
            "reports/orchestration/2024/backup_report_20240102_020000.json",
            "reports/orchestration/backup_report_20240101_020000.json",
        ]
    );
}

#[tokio::test]
async fn a_dated_object_with_a_manifest_loses_the_manifest_first() {
    let sink = FlakySink::default();
    for key in [
        "reports/orchestration/r_20240101_000000.json",
        "reports/orchestration/r_20240101_000000.json.manifest.json",
        "reports/orchestration/r_20240201_000000.json",
    ] {
        sink.put(key, Bytes::from_static(b"{}")).await.unwrap();
    }
    let dated = list_dated(&sink, "reports/").await.unwrap();
    assert_eq!(dated.len(), 2);
    assert_eq!(
        dated[0].manifest_key.as_deref(),
        Some("reports/orchestration/r_20240101_000000.json.manifest.json")
    );
    let plan = retention::plan(
        &dated,
        &RetentionPolicy::within_days(1),
        at(2024, 3, 1, 0, 0, 0),
    );
    retention::apply(&sink, &plan).await.unwrap();
    assert_eq!(
        *sink.deletes.lock().unwrap(),
        vec![
            "reports/orchestration/r_20240101_000000.json.manifest.json".to_owned(),
            "reports/orchestration/r_20240101_000000.json".to_owned(),
        ]
    );
}

#[test]
fn policy_from_config_reads_backup_retention_days() {
    use backup_core::config::{Config, RetentionConfig, SECTIONS};
    let policy = |pairs: &[(&str, &str)]| {
        let env = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load(SECTIONS, env, None)
            .unwrap()
            .component::<RetentionConfig>()
            .map(|r| r.policy)
    };
    assert_eq!(policy(&[]).unwrap(), RetentionPolicy::within_days(30));
    assert_eq!(
        policy(&[("BACKUP_RETENTION_DAYS", "7")])
            .unwrap()
            .within_days,
        Some(7)
    );
    let err = policy(&[("BACKUP_RETENTION_DAYS", "a week")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("BACKUP_RETENTION_DAYS"), "{err}");
}

/// A memory sink whose objects are locked (S3 Object Lock) until the dates given per key.
#[derive(Debug)]
struct LockedUntil {
    inner: MemorySink,
    until: BTreeMap<String, DateTime<Utc>>,
}

#[async_trait]
impl Sink for LockedUntil {
    fn describe(&self) -> String {
        "a store with locked objects".to_owned()
    }
    async fn writer_with(
        &self,
        key: &str,
        mode: backup_storage::WriteMode,
    ) -> backup_storage::Result<Box<dyn ObjectWriter>> {
        self.inner.writer_with(key, mode).await
    }
    async fn get(&self, key: &str) -> backup_storage::Result<ObjectReader> {
        self.inner.get(key).await
    }
    async fn head(&self, key: &str) -> backup_storage::Result<ObjectMeta> {
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str) -> backup_storage::Result<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> backup_storage::Result<()> {
        self.inner.delete(key).await
    }
    async fn copy(&self, from: &str, to: &str) -> backup_storage::Result<()> {
        self.inner.copy(from, to).await
    }
    async fn retained_until(&self, key: &str) -> backup_storage::Result<Option<DateTime<Utc>>> {
        Ok(self.until.get(key).copied())
    }
}

#[tokio::test]
async fn expired_backups_still_locked_are_kept_with_the_date_and_go_once_it_passed() {
    let now = at(2026, 11, 27, 12, 0, 0);
    let entries = vec![
        complete(at(2026, 11, 1, 2, 0, 0)),
        complete(at(2026, 11, 10, 2, 0, 0)),
        complete(at(2026, 11, 26, 2, 0, 0)),
    ];
    let (old, locked) = (entries[0].key.clone(), entries[1].key.clone());
    let lock_end = at(2026, 12, 10, 2, 0, 0);
    let sink = LockedUntil {
        inner: MemorySink::new(),
        until: BTreeMap::from([
            (old.clone(), at(2026, 11, 20, 0, 0, 0)),
            // The manifest alone locked is enough to keep the backup.
            (format!("{locked}.manifest.json"), lock_end),
        ]),
    };
    let mut plan = retention::plan(&entries, &RetentionPolicy::within_days(7), now);
    assert_eq!(plan.to_delete().count(), 2);
    assert_eq!(plan.keep_locked(&sink).await.unwrap(), 1);
    let decision = plan
        .decisions()
        .iter()
        .find(|d| d.entry.key == locked)
        .unwrap();
    assert_eq!(decision.action, Action::Keep);
    assert_eq!(decision.reasons, vec![Reason::Locked { until: lock_end }]);
    assert!(
        decision.reasons[0]
            .to_string()
            .contains("locked until 2026-12-10 02:00:00 UTC"),
        "{}",
        decision.reasons[0]
    );
    // A lock that ended before now holds nothing.
    let gone = plan
        .decisions()
        .iter()
        .find(|d| d.entry.key == old)
        .unwrap();
    assert_eq!(gone.action, Action::Delete);
}
