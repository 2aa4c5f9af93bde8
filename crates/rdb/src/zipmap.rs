//! Zipmaps (Redis < 2.6 hashes), validated as `zipmapValidateIntegrity(deep)`.

const BIGLEN: u8 = 254;
const END: u8 = 0xFF;

/// Validates a zipmap and returns its number of field/value pairs.
pub(crate) fn validate(zm: &[u8]) -> Result<u64, String> {
    if zm.len() < 2 {
        return Err(format!("zipmap of {} bytes is too short", zm.len()));
    }
    let last = zm.len() - 1;
    if zm[last] != END {
        return Err("zipmap does not end with its 0xFF terminator".to_owned());
    }
    let out = |p: usize| format!("zipmap entry at {p} reaches past the end");
    // Reads an encoded length at p; returns (length, bytes used).
    let read_len = |p: usize| -> Result<(usize, usize), String> {
        let b = *zm.get(p).ok_or_else(|| out(p))?;
        if b < BIGLEN {
            if p + 1 > last {
                return Err(out(p));
            }
            Ok((usize::from(b), 1))
        } else {
            if p + 5 > last {
                return Err(out(p));
            }
            let v = zm.get(p + 1..p + 5).ok_or_else(|| out(p))?;
            let l = u32::from_le_bytes([v[0], v[1], v[2], v[3]]);
            Ok((usize::try_from(l).unwrap_or(usize::MAX), 5))
        }
    };
    let mut p = 1usize;
    let mut count = 0u64;
    while zm.get(p).copied() != Some(END) {
        if p >= last {
            return Err(out(p));
        }
        let (klen, s) = read_len(p)?;
        p = p
            .checked_add(s)
            .and_then(|x| x.checked_add(klen))
            .ok_or_else(|| out(p))?;
        if p > last {
            return Err(out(p));
        }
        let (vlen, s) = read_len(p)?;
        p += s;
        let free = usize::from(*zm.get(p).ok_or_else(|| out(p))?);
        p = p
            .checked_add(1)
            .and_then(|x| x.checked_add(vlen))
            .and_then(|x| x.checked_add(free))
            .ok_or_else(|| out(p))?;
        if p > last {
            return Err(out(p));
        }
        count += 1;
    }
    if p != last {
        return Err(format!(
            "zipmap terminator at {p} before the end of the blob"
        ));
    }
    if count == 0 {
        return Err("empty zipmap".to_owned());
    }
    if zm[0] != BIGLEN && u64::from(zm[0]) != count {
        return Err(format!(
            "zipmap header counts {} pairs, it holds {count}",
            zm[0]
        ));
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipmaps() {
        // {"a": "xy", "bb": "z"} with one free byte after "z"
        let zm = [
            2, 1, b'a', 2, 0, b'x', b'y', 2, b'b', b'b', 1, 1, b'z', 0, END,
        ];
        assert_eq!(validate(&zm).unwrap(), 2);
        for cut in 0..zm.len() {
            assert!(validate(&zm[..cut]).is_err());
        }
        let mut bad = zm;
        bad[0] = 3;
        assert!(validate(&bad).is_err());
        for i in 0..zm.len() {
            let mut bad = zm;
            bad[i] ^= 0x80;
            let _ = validate(&bad);
        }
    }
}
