//! Timeline history files (`00000002.history`): where each ancestor timeline was left.

use super::lsn::Lsn;
use crate::error::SourceError;

/// The most bytes of a history file read (a real one holds a line per timeline switch).
pub const MAX_HISTORY_BYTES: u64 = 1024 * 1024;

/// One line of a history file: timeline `parent` was left at `switch` for the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineSwitch {
    /// The ancestor timeline.
    pub parent: u32,
    /// Where it was left: WAL before this position belongs to `parent`.
    pub switch: Lsn,
}

/// The history of a timeline: its ancestors, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineHistory {
    /// The timeline this history is of.
    pub timeline: u32,
    /// Its ancestors with their switch points, oldest first.
    pub switches: Vec<TimelineSwitch>,
}

impl TimelineHistory {
    /// Parses the history file of `timeline`.
    ///
    /// # Errors
    /// [`SourceError::Wal`] when a line is not `parent<TAB>X/Y<TAB>reason`, the parents do not
    /// rise, or the file is larger than [`MAX_HISTORY_BYTES`].
    pub fn parse(timeline: u32, text: &[u8]) -> Result<Self, SourceError> {
        if text.len() as u64 > MAX_HISTORY_BYTES {
            return Err(SourceError::Wal(format!(
                "the history file of timeline {timeline} has more than {MAX_HISTORY_BYTES} bytes"
            )));
        }
        let text = String::from_utf8_lossy(text);
        let mut switches: Vec<TimelineSwitch> = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || {
                SourceError::Wal(format!(
                    "the history file of timeline {timeline} has a line that is not \
                     `parent<TAB>X/Y<TAB>reason`: {:?}",
                    line.chars().take(80).collect::<String>()
                ))
            };
            let mut fields = line.split_whitespace();
            let parent: u32 = fields.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
            let switch: Lsn = fields.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
            let rising = switches
                .last()
                .is_none_or(|last| parent > last.parent && switch >= last.switch);
            if parent == 0 || parent >= timeline || !rising {
                return Err(bad());
            }
            switches.push(TimelineSwitch { parent, switch });
        }
        Ok(Self { timeline, switches })
    }

    /// Whether `ancestor` is this timeline or one of its ancestors.
    pub fn descends_from(&self, ancestor: u32) -> bool {
        ancestor == self.timeline || self.switches.iter().any(|s| s.parent == ancestor)
    }

    /// Where `ancestor` was left on the way to this timeline (`None` for this timeline).
    pub fn switch_of(&self, ancestor: u32) -> Option<Lsn> {
        self.switches
            .iter()
            .find(|s| s.parent == ancestor)
            .map(|s| s.switch)
    }

    /// The timeline that follows `ancestor` on the way to this one.
    pub fn next_after(&self, ancestor: u32) -> Option<u32> {
        let at = self.switches.iter().position(|s| s.parent == ancestor)?;
        Some(
            self.switches
                .get(at + 1)
                .map_or(self.timeline, |next| next.parent),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_lists_its_ancestors_and_bad_ones_are_refused() {
        let text = b"1\t0/3000158\tno recovery target specified\n\n\
                     2\t0/5000000\tbefore 2024-01-15 12:00:00+00\n";
        let history = TimelineHistory::parse(3, text).unwrap();
        assert_eq!(history.switches.len(), 2);
        assert!(history.descends_from(1) && history.descends_from(3));
        assert!(!history.descends_from(4));
        assert_eq!(history.switch_of(1), Some("0/3000158".parse().unwrap()));
        assert_eq!(history.next_after(1), Some(2));
        assert_eq!(history.next_after(2), Some(3));
        assert_eq!(history.next_after(3), None);
        for bad in [
            &b"x\t0/1\tr\n"[..],
            b"1\tzz\tr\n",
            b"3\t0/1\tr\n",
            b"2\t0/5\tr\n1\t0/6\tr\n",
            b"0\t0/1\tr\n",
        ] {
            assert!(TimelineHistory::parse(3, bad).is_err(), "{bad:?}");
        }
        let huge = vec![b'#'; MAX_HISTORY_BYTES as usize + 1];
        assert!(TimelineHistory::parse(3, &huge).is_err());
    }
}
