//! Ziplists (Redis < 7 compact encoding), validated as `ziplistValidateIntegrity(deep)`.

const HDR: usize = 10;
const END: u8 = 0xFF;

/// Validates a whole ziplist and returns its entry count.
pub(crate) fn validate(zl: &[u8]) -> Result<u64, String> {
    if zl.len() < HDR + 1 {
        return Err(format!(
            "ziplist of {} bytes is shorter than its header",
            zl.len()
        ));
    }
    let bytes = u32::from_le_bytes([zl[0], zl[1], zl[2], zl[3]]);
    if usize::try_from(bytes).ok() != Some(zl.len()) {
        return Err(format!(
            "ziplist header says {bytes} bytes but the blob has {}",
            zl.len()
        ));
    }
    let last = zl.len() - 1;
    if zl[last] != END {
        return Err("ziplist does not end with its 0xFF terminator".to_owned());
    }
    let tail = usize::try_from(u32::from_le_bytes([zl[4], zl[5], zl[6], zl[7]]))
        .map_err(|_| "ziplist tail offset overflows")?;
    if tail > last {
        return Err(format!("ziplist tail offset {tail} is outside the blob"));
    }
    let header_count = u16::from_le_bytes([zl[8], zl[9]]);

    let mut p = HDR;
    let mut prev: Option<usize> = None;
    let mut prev_raw = 0usize;
    let mut count = 0u64;
    let out = |at: usize| format!("ziplist entry at {at} reaches past the end");
    while zl.get(p).copied() != Some(END) {
        if p >= last {
            return Err(out(p));
        }
        // prevlen
        let (prevlen_size, prevlen) = if zl[p] < 254 {
            (1, usize::from(zl[p]))
        } else {
            let b = zl
                .get(p + 1..p + 5)
                .filter(|_| p + 5 <= last)
                .ok_or_else(|| out(p))?;
            (
                5,
                usize::try_from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(usize::MAX),
            )
        };
        let e = p + prevlen_size;
        if e >= last {
            return Err(out(p));
        }
        let enc = zl[e];
        let (len_size, len): (usize, usize) = match enc >> 6 {
            0 => (1, usize::from(enc & 0x3f)),
            1 => {
                let b = *zl
                    .get(e + 1)
                    .filter(|_| e + 2 <= last)
                    .ok_or_else(|| out(p))?;
                (2, (usize::from(enc & 0x3f) << 8) | usize::from(b))
            }
            2 => {
                // Redis masks the low six bits away; so do we.
                let b = zl
                    .get(e + 1..e + 5)
                    .filter(|_| e + 5 <= last)
                    .ok_or_else(|| out(p))?;
                (
                    5,
                    usize::try_from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                        .unwrap_or(usize::MAX),
                )
            }
            _ => match enc {
                0xC0 => (1, 2),
                0xD0 => (1, 4),
                0xE0 => (1, 8),
                0xF0 => (1, 3),
                0xFE => (1, 1),
                0xF1..=0xFD => (1, 0),
                _ => return Err(format!("invalid ziplist encoding byte {enc:#04x} at {e}")),
            },
        };
        let header = prevlen_size + len_size;
        let size = header.checked_add(len).ok_or_else(|| out(p))?;
        let next = p.checked_add(size).ok_or_else(|| out(p))?;
        if next > last {
            return Err(out(p));
        }
        if prevlen != prev_raw {
            return Err(format!(
                "ziplist entry at {p} records a previous entry of {prevlen} bytes, it was {prev_raw}"
            ));
        }
        prev_raw = size;
        prev = Some(p);
        p = next;
        count += 1;
    }
    if p != last {
        return Err(format!(
            "ziplist terminator at {p} before the end of the blob"
        ));
    }
    if let Some(prev) = prev {
        if prev != tail {
            return Err(format!(
                "ziplist tail offset {tail} is not the last entry ({prev})"
            ));
        }
    }
    if header_count != u16::MAX && u64::from(header_count) != count {
        return Err(format!(
            "ziplist header counts {header_count} entries, it holds {count}"
        ));
    }
    Ok(count)
}

/// Builds a ziplist of strings (tests and fixtures).
#[cfg(test)]
pub(crate) fn build(entries: &[&[u8]]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut prev_len = 0usize;
    let mut tail = HDR;
    for s in entries {
        let start = body.len();
        tail = HDR + start;
        if prev_len < 254 {
            body.push(u8::try_from(prev_len).unwrap_or(0));
        } else {
            body.push(254);
            body.extend_from_slice(&u32::try_from(prev_len).unwrap_or(0).to_le_bytes());
        }
        if s.len() < 64 {
            body.push(u8::try_from(s.len()).unwrap_or(0));
        } else if s.len() < 16384 {
            body.push(0x40 | u8::try_from(s.len() >> 8).unwrap_or(0));
            body.push(u8::try_from(s.len() & 0xff).unwrap_or(0));
        } else {
            body.push(0x80);
            body.extend_from_slice(&u32::try_from(s.len()).unwrap_or(0).to_be_bytes());
        }
        body.extend_from_slice(s);
        prev_len = body.len() - start;
    }
    let total = HDR + body.len() + 1;
    let mut out = Vec::new();
    out.extend_from_slice(&u32::try_from(total).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&u32::try_from(tail).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(
        &u16::try_from(entries.len())
            .unwrap_or(u16::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(&body);
    out.push(END);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_and_validate() {
        let big = vec![b'z'; 300];
        let zl = build(&[b"a", b"bb", &big, b"c"]);
        assert_eq!(validate(&zl).unwrap(), 4);
        assert_eq!(validate(&build(&[])).unwrap(), 0);
        for cut in 0..zl.len() {
            assert!(validate(&zl[..cut]).is_err());
        }
        for i in 0..zl.len() {
            let mut bad = zl.clone();
            bad[i] ^= 0x10;
            let _ = validate(&bad);
        }
        // integer encodings: int8 (0xFE), immediate (0xF5), int16
        let mut raw = vec![0u8; HDR];
        raw.extend_from_slice(&[0, 0xFE, 7]);
        raw.extend_from_slice(&[3, 0xF5]);
        let tail = raw.len();
        raw.extend_from_slice(&[2, 0xC0, 1, 2]);
        raw.push(END);
        let n = u32::try_from(raw.len()).unwrap();
        raw[..4].copy_from_slice(&n.to_le_bytes());
        raw[4..8].copy_from_slice(&u32::try_from(tail).unwrap().to_le_bytes());
        raw[8..10].copy_from_slice(&3u16.to_le_bytes());
        assert_eq!(validate(&raw).unwrap(), 3);
    }
}
