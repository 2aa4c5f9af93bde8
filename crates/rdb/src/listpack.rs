//! Listpacks (Redis 7 compact encoding): walked and validated as Redis's
//! `lpValidateIntegrity(deep)` does.

const HDR: usize = 6;
const EOF_BYTE: u8 = 0xFF;
const NUMELE_UNKNOWN: u16 = u16::MAX;

/// One listpack element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LpEntry<'a> {
    /// An integer encoding.
    Int(i64),
    /// A string encoding.
    Str(&'a [u8]),
}

impl LpEntry<'_> {
    /// The element as an integer, as `lpGetIntegerIfValid` does (strings that are canonical
    /// decimal integers count).
    pub(crate) fn as_int(&self) -> Option<i64> {
        match *self {
            Self::Int(v) => Some(v),
            Self::Str(s) => parse_canonical_i64(s),
        }
    }
}

/// Parses a canonical decimal integer (no sign but `-`, no leading zeros, no spaces), like
/// Redis's `string2ll`.
pub(crate) fn parse_canonical_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let text = std::str::from_utf8(s).ok()?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    if text == "-0" {
        return None;
    }
    text.parse().ok()
}

fn backlen_size(len: u64) -> usize {
    if len <= 127 {
        1
    } else if len < 16383 {
        2
    } else if len < 2_097_151 {
        3
    } else if len < 268_435_455 {
        4
    } else {
        5
    }
}

fn sign_extend(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    // Reinterpret the bits, then arithmetic-shift to sign-extend.
    #[allow(clippy::cast_possible_wrap)]
    let v = (v << shift) as i64;
    v >> shift
}

/// A validating iterator over a listpack's elements.
pub(crate) struct LpIter<'a> {
    lp: &'a [u8],
    pos: usize,
    done: bool,
}

/// Checks the header (total bytes, terminator) and returns an iterator over the elements and
/// the element count the header records (`None` when unknown, i.e. 65535).
pub(crate) fn open(lp: &[u8]) -> Result<(LpIter<'_>, Option<u16>), String> {
    if lp.len() < HDR + 1 {
        return Err(format!(
            "listpack of {} bytes is shorter than its header",
            lp.len()
        ));
    }
    let total = u32::from_le_bytes([lp[0], lp[1], lp[2], lp[3]]);
    if usize::try_from(total).ok() != Some(lp.len()) {
        return Err(format!(
            "listpack header says {total} bytes but the blob has {}",
            lp.len()
        ));
    }
    if lp.last() != Some(&EOF_BYTE) {
        return Err("listpack does not end with its 0xFF terminator".to_owned());
    }
    let numele = u16::from_le_bytes([lp[4], lp[5]]);
    Ok((
        LpIter {
            lp,
            pos: HDR,
            done: false,
        },
        (numele != NUMELE_UNKNOWN).then_some(numele),
    ))
}

impl<'a> LpIter<'a> {
    fn bytes(&self, from: usize, n: usize) -> Result<&'a [u8], String> {
        // Nothing of an entry may reach the terminator byte.
        let limit = self.lp.len() - 1;
        from.checked_add(n)
            .filter(|&end| end <= limit)
            .and_then(|end| self.lp.get(from..end))
            .ok_or_else(|| format!("listpack entry at {} reaches past the end", self.pos))
    }

    fn next_entry(&mut self) -> Result<Option<LpEntry<'a>>, String> {
        if self.done {
            return Ok(None);
        }
        let p = self.pos;
        let b = *self
            .lp
            .get(p)
            .ok_or_else(|| format!("listpack entry at {p} is out of range"))?;
        if b == EOF_BYTE {
            if p != self.lp.len() - 1 {
                return Err(format!(
                    "listpack terminator at {p} before the end of the blob"
                ));
            }
            self.done = true;
            return Ok(None);
        }
        let (entry, size): (LpEntry<'a>, usize) = if b & 0x80 == 0 {
            (LpEntry::Int(i64::from(b & 0x7f)), 1)
        } else if b & 0xC0 == 0x80 {
            let len = usize::from(b & 0x3f);
            (LpEntry::Str(self.bytes(p + 1, len)?), 1 + len)
        } else if b & 0xE0 == 0xC0 {
            let h = self.bytes(p, 2)?;
            let v = (u64::from(h[0] & 0x1f) << 8) | u64::from(h[1]);
            (LpEntry::Int(sign_extend(v, 13)), 2)
        } else if b & 0xF0 == 0xE0 {
            let h = self.bytes(p, 2)?;
            let len = (usize::from(h[0] & 0x0f) << 8) | usize::from(h[1]);
            (LpEntry::Str(self.bytes(p + 2, len)?), 2 + len)
        } else {
            match b {
                0xF0 => {
                    let h = self.bytes(p + 1, 4)?;
                    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
                    let len = usize::try_from(len).map_err(|_| "listpack string too long")?;
                    (LpEntry::Str(self.bytes(p + 5, len)?), 5 + len)
                }
                0xF1..=0xF4 => {
                    let n = match b {
                        0xF1 => 2,
                        0xF2 => 3,
                        0xF3 => 4,
                        _ => 8,
                    };
                    let h = self.bytes(p + 1, n)?;
                    let mut v = 0u64;
                    for (i, byte) in h.iter().enumerate() {
                        v |= u64::from(*byte) << (8 * i);
                    }
                    #[allow(clippy::cast_possible_truncation)]
                    let bits = (n * 8) as u32;
                    (LpEntry::Int(sign_extend(v, bits)), 1 + n)
                }
                _ => return Err(format!("invalid listpack encoding byte {b:#04x} at {p}")),
            }
        };
        let bl = backlen_size(size as u64);
        let back = self.bytes(p + size, bl)?;
        // Decode the backlen from its last byte backwards, as lpDecodeBacklen does.
        let mut val = 0u64;
        let mut shift = 0u32;
        let mut used = 0usize;
        for byte in back.iter().rev() {
            val |= u64::from(byte & 127) << shift;
            used += 1;
            if byte & 128 == 0 {
                break;
            }
            shift += 7;
        }
        if val != size as u64 || used != bl {
            return Err(format!(
                "listpack entry at {p}: back length {val} does not match the entry size {size}"
            ));
        }
        self.pos = p + size + bl;
        Ok(Some(entry))
    }
}

impl<'a> Iterator for LpIter<'a> {
    type Item = Result<LpEntry<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_entry() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Validates a whole listpack and returns its element count.
pub(crate) fn validate(lp: &[u8]) -> Result<u64, String> {
    let (iter, numele) = open(lp)?;
    let mut count = 0u64;
    for entry in iter {
        entry?;
        count += 1;
    }
    if let Some(n) = numele {
        if u64::from(n) != count {
            return Err(format!(
                "listpack header counts {n} elements, it holds {count}"
            ));
        }
    }
    Ok(count)
}

/// Builds a listpack (tests and hand-crafted fixtures).
#[cfg(test)]
pub(crate) fn build(entries: &[LpEntry<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for e in entries {
        let start = body.len();
        match *e {
            LpEntry::Int(v) => {
                if (0..=127).contains(&v) {
                    body.push(u8::try_from(v).unwrap_or(0));
                } else {
                    body.push(0xF4);
                    body.extend_from_slice(&v.to_le_bytes());
                }
            }
            LpEntry::Str(s) => {
                if s.len() < 64 {
                    body.push(0x80 | u8::try_from(s.len()).unwrap_or(0));
                } else if s.len() < 4096 {
                    body.push(0xE0 | u8::try_from(s.len() >> 8).unwrap_or(0));
                    body.push(u8::try_from(s.len() & 0xff).unwrap_or(0));
                } else {
                    body.push(0xF0);
                    body.extend_from_slice(&u32::try_from(s.len()).unwrap_or(0).to_le_bytes());
                }
                body.extend_from_slice(s);
            }
        }
        let l = (body.len() - start) as u64;
        match backlen_size(l) {
            1 => body.push(u8::try_from(l).unwrap_or(0)),
            2 => {
                body.push(u8::try_from(l >> 7).unwrap_or(0));
                body.push(u8::try_from((l & 127) | 128).unwrap_or(0));
            }
            _ => {
                body.push(u8::try_from(l >> 14).unwrap_or(0));
                body.push(u8::try_from(((l >> 7) & 127) | 128).unwrap_or(0));
                body.push(u8::try_from((l & 127) | 128).unwrap_or(0));
            }
        }
    }
    let total = HDR + body.len() + 1;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&u32::try_from(total).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(
        &u16::try_from(entries.len())
            .unwrap_or(u16::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(&body);
    out.push(EOF_BYTE);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_and_validate() {
        let big = vec![b'x'; 5000];
        let mid = vec![b'y'; 300];
        let lp = build(&[
            LpEntry::Str(b"a"),
            LpEntry::Int(5),
            LpEntry::Int(-123_456_789),
            LpEntry::Str(&mid),
            LpEntry::Str(&big),
        ]);
        assert_eq!(validate(&lp).unwrap(), 5);
        let items: Vec<_> = open(&lp).unwrap().0.collect::<Result<_, _>>().unwrap();
        assert_eq!(items[2], LpEntry::Int(-123_456_789));
        assert_eq!(items[4], LpEntry::Str(&big));
        // Every single-byte corruption is caught or still decodes without panicking.
        for i in 0..lp.len().min(400) {
            let mut bad = lp.clone();
            bad[i] ^= 0x41;
            let _ = validate(&bad);
        }
        for cut in 0..lp.len() {
            assert!(validate(&lp[..cut]).is_err());
        }
        // 13-bit, 16-bit, 24-bit and 32-bit ints
        let mut raw = vec![0u8; 6];
        for (enc, bl) in [
            (vec![0xC0 | 0x1f, 0xff], 2u8),
            (vec![0xF1, 0x00, 0x80], 3),
            (vec![0xF2, 0x01, 0x00, 0x80], 4),
            (vec![0xF3, 0xff, 0xff, 0xff, 0xff], 5),
        ] {
            raw.extend_from_slice(&enc);
            raw.push(bl);
        }
        raw.push(0xff);
        let n = u32::try_from(raw.len()).unwrap();
        raw[..4].copy_from_slice(&n.to_le_bytes());
        raw[4..6].copy_from_slice(&4u16.to_le_bytes());
        let items: Vec<_> = open(&raw).unwrap().0.collect::<Result<_, _>>().unwrap();
        assert_eq!(
            items,
            vec![
                LpEntry::Int(-1),
                LpEntry::Int(-32768),
                LpEntry::Int(-8_388_607),
                LpEntry::Int(-1)
            ]
        );
    }

    #[test]
    fn canonical_ints() {
        assert_eq!(parse_canonical_i64(b"123"), Some(123));
        assert_eq!(parse_canonical_i64(b"-5"), Some(-5));
        assert_eq!(parse_canonical_i64(b"0"), Some(0));
        assert_eq!(parse_canonical_i64(b"007"), None);
        assert_eq!(parse_canonical_i64(b"-0"), None);
        assert_eq!(parse_canonical_i64(b"+1"), None);
        assert_eq!(parse_canonical_i64(b""), None);
        assert_eq!(parse_canonical_i64(b"99999999999999999999"), None);
    }
}
