//! Stream listpacks: the master entry and the delta-encoded entries, validated as
//! `streamValidateListpackIntegrity(deep)` does.

use crate::listpack::{self, LpEntry, LpIter};

const FLAG_SAMEFIELDS: i64 = 2;

/// Validates one stream node's listpack; returns (live entries, deleted entries) as its
/// master entry records them. The listpack is walked one element at a time: nothing is
/// collected, so the memory used is the blob itself whatever the number of elements.
pub(crate) fn validate_listpack(lp: &[u8]) -> Result<(u64, u64), String> {
    let (iter, numele) = listpack::open(lp)?;
    let mut c = Walk { iter, seen: 0 };
    let count = c.int("the entry count")?;
    let deleted = c.int("the deleted count")?;
    let master_fields = c.int("the master field count")?;
    if count < 0 || deleted < 0 || master_fields < 0 {
        return Err("stream listpack: negative count in the master entry".to_owned());
    }
    c.skip(master_fields, "the master fields")?;
    if c.int("the master terminator")? != 0 {
        return Err("stream listpack: the master entry is not terminated by 0".to_owned());
    }
    let total = count
        .checked_add(deleted)
        .ok_or("stream listpack: entry count overflows")?;
    for _ in 0..total {
        let flags = c.int("an entry's flags")?;
        c.int("an entry's ms delta")?;
        c.int("an entry's seq delta")?;
        let mut fields = master_fields;
        let mut extra = 3i64;
        if flags & FLAG_SAMEFIELDS == 0 {
            fields = c.int("an entry's field count")?;
            if fields < 0 {
                return Err("stream listpack: negative field count".to_owned());
            }
            c.skip(fields, "an entry's field names")?;
            extra = extra
                .checked_add(fields)
                .and_then(|x| x.checked_add(1))
                .ok_or("stream listpack: field count overflows")?;
        }
        c.skip(fields, "an entry's values")?;
        let lp_count = c.int("an entry's lp-count")?;
        if Some(lp_count) != fields.checked_add(extra) {
            return Err(format!(
                "stream listpack: an entry's lp-count {lp_count} does not match its {fields} fields"
            ));
        }
    }
    if c.next_entry()?.is_some() {
        return Err("stream listpack: extra elements after the last entry".to_owned());
    }
    if let Some(n) = numele {
        if u64::from(n) != c.seen {
            return Err(format!(
                "listpack header counts {n} elements, it holds {}",
                c.seen
            ));
        }
    }
    // count and deleted are non-negative here.
    Ok((count.unsigned_abs(), deleted.unsigned_abs()))
}

/// Reads a stream node's listpack element by element.
struct Walk<'a> {
    iter: LpIter<'a>,
    /// Elements read so far.
    seen: u64,
}

impl<'a> Walk<'a> {
    fn next_entry(&mut self) -> Result<Option<LpEntry<'a>>, String> {
        match self.iter.next() {
            Some(Ok(e)) => {
                self.seen += 1;
                Ok(Some(e))
            }
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    }

    fn int(&mut self, what: &str) -> Result<i64, String> {
        let e = self
            .next_entry()?
            .ok_or_else(|| format!("stream listpack ends before {what}"))?;
        e.as_int()
            .ok_or_else(|| format!("stream listpack: {what} is not an integer"))
    }

    fn skip(&mut self, n: i64, what: &str) -> Result<(), String> {
        let n = u64::try_from(n).map_err(|_| format!("stream listpack: bad count for {what}"))?;
        for _ in 0..n {
            if self.next_entry()?.is_none() {
                return Err(format!("stream listpack ends inside {what}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listpack::build;

    #[test]
    fn stream_node() {
        // master: count 2, deleted 0, 1 field "f", terminator 0
        // entry 1: flags SAMEFIELDS, ms 0, seq 0, value "v1", lp-count 4
        // entry 2: flags NONE, ms 1, seq 0, 1 field "g" "v2", lp-count 6
        let lp = build(&[
            LpEntry::Int(2),
            LpEntry::Int(0),
            LpEntry::Int(1),
            LpEntry::Str(b"f"),
            LpEntry::Int(0),
            LpEntry::Int(2),
            LpEntry::Int(0),
            LpEntry::Int(0),
            LpEntry::Str(b"v1"),
            LpEntry::Int(4),
            LpEntry::Int(0),
            LpEntry::Int(1),
            LpEntry::Int(0),
            LpEntry::Int(1),
            LpEntry::Str(b"g"),
            LpEntry::Str(b"v2"),
            LpEntry::Int(6),
        ]);
        assert_eq!(validate_listpack(&lp).unwrap(), (2, 0));
        let bad = build(&[
            LpEntry::Int(1),
            LpEntry::Int(0),
            LpEntry::Int(0),
            LpEntry::Int(0),
        ]);
        assert!(validate_listpack(&bad).is_err());
    }
}
