//! What the archive holds, and whether a recovery from a base backup can reach its target:
//! the chain of WAL segments from the backup's start, along the timelines its history files
//! describe, without a gap.

use std::collections::{BTreeMap, BTreeSet};

use backup_core::{manifest_key_for, BackupKind, CoreError};
use backup_sources::postgres::PitrTarget;
use backup_sources::wal::{Lsn, TimelineHistory, WalFileName, WalFileType, MAX_HISTORY_BYTES};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{WalArchive, WalError};

/// The complete WAL files of the archive: an object with its manifest on at least one
/// destination.
#[derive(Debug, Clone, Default)]
pub struct ArchivedWal {
    /// Segments by timeline and number, with when they were stored.
    segments: BTreeMap<u32, BTreeMap<u64, DateTime<Utc>>>,
    /// Timelines whose history file is archived.
    histories: BTreeSet<u32>,
}

/// Where a base backup starts and ends in the WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaseWal {
    /// Its timeline.
    pub timeline: u32,
    /// `wal_segment_size`.
    pub segment_size: u64,
    /// The first segment it needs.
    pub start: u64,
    /// The last segment it needs to be consistent.
    pub stop: u64,
}

/// How a recovery will go through the archive.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayPlan {
    /// The timelines replayed, in order.
    pub timelines: Vec<u32>,
    /// The first segment read.
    pub first: String,
    /// The last segment the chain reaches without a gap.
    pub last: String,
    /// When that last segment was stored.
    pub last_stored_at: DateTime<Utc>,
    /// Segments in the chain.
    pub segments: u64,
}

/// One stretch of a timeline: segments `from..=to` of `timeline` (`to`: `None` to the end).
#[derive(Debug, Clone, Copy)]
struct Leg {
    timeline: u32,
    from: u64,
    to: Option<u64>,
}

impl WalArchive {
    /// Lists the complete WAL files on every destination.
    ///
    /// # Errors
    /// When a destination cannot be listed.
    pub async fn inventory(&self, segment_size: u64) -> Result<ArchivedWal, WalError> {
        let mut archived = ArchivedWal::default();
        for destination in self.destinations.iter() {
            let files = complete_files(destination.sink())
                .await
                .map_err(CoreError::from)?;
            for (name, meta) in files {
                match name.file_type() {
                    WalFileType::History => {
                        archived.histories.insert(name.timeline());
                    }
                    WalFileType::Segment => {
                        if let Some(number) = name.segment_number(segment_size) {
                            let stored = archived
                                .segments
                                .entry(name.timeline())
                                .or_default()
                                .entry(number)
                                .or_insert(meta.last_modified);
                            *stored = (*stored).min(meta.last_modified);
                        }
                    }
                    WalFileType::Partial | WalFileType::BackupLabel => {}
                }
            }
        }
        Ok(archived)
    }

    /// The history of `timeline` from the archive, fetched and verified like any WAL file.
    ///
    /// # Errors
    /// When it cannot be fetched or parsed.
    pub async fn history(&self, timeline: u32) -> Result<TimelineHistory, WalError> {
        let name = WalFileName::history(timeline);
        let dir = tempfile::tempdir().map_err(|source| {
            WalError::Source(backup_sources::SourceError::Io {
                what: "creating a temporary directory".to_owned(),
                source,
            })
        })?;
        let path = dir.path().join(name.as_str());
        self.fetch_to(&name, &path).await?;
        let meta = std::fs::metadata(&path).map_err(|source| {
            WalError::Source(backup_sources::SourceError::Io {
                what: format!("reading {name}"),
                source,
            })
        })?;
        if meta.len() > MAX_HISTORY_BYTES {
            return Err(WalError::Source(backup_sources::SourceError::Wal(format!(
                "{name} has {} bytes, more than a history file holds",
                meta.len()
            ))));
        }
        let text = std::fs::read(&path).map_err(|source| {
            WalError::Source(backup_sources::SourceError::Io {
                what: format!("reading {name}"),
                source,
            })
        })?;
        Ok(TimelineHistory::parse(timeline, &text)?)
    }

    /// Checks that a recovery from a base backup `base` can reach `target` with the WAL in
    /// the archive: every segment the backup needs, then an unbroken chain along the newest
    /// timeline that descends from the backup's (as `recovery_target_timeline = latest`
    /// follows), up to the target.
    ///
    /// # Errors
    /// [`WalError::Gap`] naming the missing segment and the newest point reachable.
    pub async fn plan_replay(
        &self,
        base: &BaseWal,
        target: &PitrTarget,
    ) -> Result<ReplayPlan, WalError> {
        let size = base.segment_size;
        let archived = self.inventory(size).await?;
        let mut newest = TimelineHistory {
            timeline: base.timeline,
            switches: Vec::new(),
        };
        for &timeline in archived.histories.range(base.timeline + 1..).rev() {
            let history = self.history(timeline).await?;
            if history.descends_from(base.timeline) {
                newest = history;
                break;
            }
        }
        let legs = legs(base, &newest, size);
        let name = |timeline: u32, number: u64| WalFileName::segment(timeline, number, size);
        let stored = |timeline: u32, number: u64| {
            archived
                .segments
                .get(&timeline)
                .and_then(|s| s.get(&number))
                .copied()
        };
        // The base backup's own WAL.
        for number in base.start..=base.stop {
            if stored(base.timeline, number).is_none() {
                return Err(WalError::Gap(format!(
                    "{} is not in the archive, and the base backup needs every segment from {} \
                     to {} to be consistent: it cannot be restored (choose an older base \
                     backup, or find the segment)",
                    name(base.timeline, number),
                    name(base.timeline, base.start),
                    name(base.timeline, base.stop)
                )));
            }
        }
        let mut last: Option<(u32, u64, DateTime<Utc>)> = None;
        let mut count = 0u64;
        let mut gap: Option<(u32, u64)> = None;
        'legs: for leg in &legs {
            let mut number = leg.from;
            loop {
                if leg.to.is_some_and(|to| number > to) {
                    break;
                }
                match stored(leg.timeline, number) {
                    Some(at) => {
                        last = Some((leg.timeline, number, at));
                        count += 1;
                    }
                    None => {
                        let later = archived
                            .segments
                            .get(&leg.timeline)
                            .is_some_and(|s| s.range(number + 1..).next().is_some());
                        if leg.to.is_some() || later {
                            gap = Some((leg.timeline, number));
                        }
                        break 'legs;
                    }
                }
                number += 1;
            }
        }
        let Some((last_timeline, last_number, last_stored_at)) = last else {
            return Err(WalError::Gap(format!(
                "no WAL segment of the base backup's timeline {} is in the archive",
                base.timeline
            )));
        };
        let reachable = format!(
            "the newest point reachable is the end of {} (stored {})",
            name(last_timeline, last_number),
            last_stored_at.format("%Y-%m-%d %H:%M:%S UTC")
        );
        if let Some((timeline, number)) = gap {
            let beyond = match target {
                PitrTarget::Time(t) => last_stored_at < *t,
                PitrTarget::Lsn(lsn) => lsn.segment(size) > last_number,
                PitrTarget::Latest | PitrTarget::Xid(_) | PitrTarget::Name(_) => true,
            };
            if beyond {
                return Err(WalError::Gap(format!(
                    "{} is missing from the archive while later WAL is there: recovery to {} \
                     would stop at the gap; {reachable}. Restore to a point before it \
                     (--pitr with an earlier time), or find the missing segment",
                    name(timeline, number),
                    target.describe()
                )));
            }
            tracing::warn!(
                "{} is missing from the archive; the target lies before it",
                name(timeline, number)
            );
        } else {
            let short = match target {
                PitrTarget::Time(t) => last_stored_at < *t,
                PitrTarget::Lsn(lsn) => {
                    last_timeline == newest.timeline && lsn.segment(size) > last_number
                }
                _ => false,
            };
            if short {
                return Err(WalError::Gap(format!(
                    "the archive ends before {}: {reachable}. The WAL after it is still in the \
                     server's current segment: run SELECT pg_switch_wal() on the server (or \
                     wait for archive_timeout) and try again",
                    target.describe()
                )));
            }
        }
        Ok(ReplayPlan {
            timelines: legs.iter().map(|l| l.timeline).collect(),
            first: name(base.timeline, base.start).to_string(),
            last: name(last_timeline, last_number).to_string(),
            last_stored_at,
            segments: count,
        })
    }
}

/// The stretches of timelines from the base backup's start to the newest timeline.
fn legs(base: &BaseWal, newest: &TimelineHistory, size: u64) -> Vec<Leg> {
    if newest.timeline == base.timeline {
        return vec![Leg {
            timeline: base.timeline,
            from: base.start,
            to: None,
        }];
    }
    let mut legs = Vec::new();
    let mut from = base.start;
    let mut timeline = base.timeline;
    while timeline != newest.timeline {
        let Some(switch) = newest.switch_of(timeline) else {
            break;
        };
        let switch_segment = Lsn::segment(switch, size);
        if switch_segment > from {
            legs.push(Leg {
                timeline,
                from,
                to: Some(switch_segment - 1),
            });
        }
        from = from.max(switch_segment);
        let Some(next) = newest.next_after(timeline) else {
            break;
        };
        timeline = next;
    }
    legs.push(Leg {
        timeline: newest.timeline,
        from,
        to: None,
    });
    legs
}

/// The complete WAL files on `sink`: objects of a WAL file's name with their manifest beside
/// them (a file being pushed, or left by a killed push, has none).
///
/// # Errors
/// When `sink` cannot be listed.
pub(super) async fn complete_files(
    sink: &dyn backup_storage::Sink,
) -> Result<Vec<(WalFileName, backup_storage::ObjectMeta)>, backup_storage::StorageError> {
    let listed = sink.list(&BackupKind::WAL.prefix()).await?;
    let keys: BTreeSet<&str> = listed.iter().map(|m| m.key.as_str()).collect();
    let complete: Vec<(WalFileName, backup_storage::ObjectMeta)> = listed
        .iter()
        .filter(|m| keys.contains(manifest_key_for(&m.key).as_str()))
        .filter_map(|m| Some((WalFileName::from_object_key(&m.key)?.0, m.clone())))
        .collect();
    Ok(complete)
}

/// The newest complete WAL file (an object with its manifest) on any of `destinations`, and
/// when it was stored: how far behind a point-in-time restore would be. `None` when there is
/// no WAL archive (or no destination could be listed).
pub async fn newest_wal(
    destinations: &backup_core::Destinations,
) -> Option<(String, DateTime<Utc>)> {
    let mut newest: Option<(String, DateTime<Utc>)> = None;
    for destination in destinations.iter() {
        let Ok(files) = complete_files(destination.sink()).await else {
            continue;
        };
        for (name, meta) in files {
            if newest
                .as_ref()
                .is_none_or(|(_, at)| meta.last_modified > *at)
            {
                newest = Some((name.to_string(), meta.last_modified));
            }
        }
    }
    newest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legs_follow_the_switch_points() {
        let size = 16 << 20;
        let base = BaseWal {
            timeline: 1,
            segment_size: size,
            start: 2,
            stop: 2,
        };
        let history = TimelineHistory::parse(3, b"1\t0/5000100\tr\n2\t0/8000000\tr\n").unwrap();
        let legs = legs(&base, &history, size);
        let got: Vec<(u32, u64, Option<u64>)> =
            legs.iter().map(|l| (l.timeline, l.from, l.to)).collect();
        assert_eq!(got, [(1, 2, Some(4)), (2, 5, Some(7)), (3, 8, None)]);
    }
}
