//! Intsets: sorted arrays of 16/32/64-bit integers.

/// Validates an intset (encoding, size, strictly ascending members) and returns its length.
pub(crate) fn validate(is: &[u8]) -> Result<u64, String> {
    let (hdr, body) = is
        .split_first_chunk::<8>()
        .ok_or_else(|| format!("intset of {} bytes is shorter than its header", is.len()))?;
    let enc = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
    let count = u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
    let width = match enc {
        2 | 4 | 8 => enc as usize,
        _ => return Err(format!("invalid intset encoding {enc}")),
    };
    if (count as usize).checked_mul(width) != Some(body.len()) {
        return Err(format!(
            "intset of {count} {width}-byte members does not fit its {} bytes",
            body.len()
        ));
    }
    if count == 0 {
        return Err("empty intset".to_owned());
    }
    let mut prev: Option<i64> = None;
    for chunk in body.chunks_exact(width) {
        let v = match *chunk {
            [a, b] => i64::from(i16::from_le_bytes([a, b])),
            [a, b, c, d] => i64::from(i32::from_le_bytes([a, b, c, d])),
            [a, b, c, d, e, f, g, h] => i64::from_le_bytes([a, b, c, d, e, f, g, h]),
            _ => return Err("intset member of an unexpected width".to_owned()),
        };
        if prev.is_some_and(|p| v <= p) {
            return Err("intset members are not strictly ascending".to_owned());
        }
        prev = Some(v);
    }
    Ok(u64::from(count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intsets() {
        let mut is = vec![2, 0, 0, 0, 3, 0, 0, 0];
        for v in [-5i16, 1, 300] {
            is.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(validate(&is).unwrap(), 3);
        let mut unsorted = is.clone();
        unsorted.swap(8, 10);
        unsorted.swap(9, 11);
        assert!(validate(&unsorted).is_err());
        assert!(validate(&is[..is.len() - 1]).is_err());
        assert!(validate(&[2, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(validate(&[3, 0, 0, 0, 1, 0, 0, 0, 1, 2, 3]).is_err());
    }
}
