//! LZF decompression (liblzf's format, as Redis uses for compressed strings).

/// The largest expansion LZF allows: a 3-byte back reference produces at most 264 bytes.
pub(crate) const MAX_RATIO: u64 = 88;

/// Decompresses `input` into `out`, which must be exactly as long as the uncompressed data.
///
/// # Errors
/// A description of the problem when the data is not valid LZF or does not decompress to
/// exactly `out.len()` bytes.
pub(crate) fn decompress(input: &[u8], out: &mut [u8]) -> Result<(), &'static str> {
    let mut ip = 0usize;
    let mut op = 0usize;
    while let Some(&ctrl) = input.get(ip) {
        ip += 1;
        let ctrl = usize::from(ctrl);
        if ctrl < 32 {
            // Literal run of ctrl + 1 bytes.
            let len = ctrl + 1;
            let src = input
                .get(ip..ip + len)
                .ok_or("a literal run reaches past the compressed data")?;
            let dst = out
                .get_mut(op..op + len)
                .ok_or("the data decompresses to more bytes than declared")?;
            dst.copy_from_slice(src);
            ip += len;
            op += len;
        } else {
            // Back reference.
            let mut len = ctrl >> 5;
            if len == 7 {
                len += usize::from(*input.get(ip).ok_or("a back reference is cut short")?);
                ip += 1;
            }
            let low = usize::from(*input.get(ip).ok_or("a back reference is cut short")?);
            ip += 1;
            let back = ((ctrl & 0x1f) << 8) + low + 1;
            len += 2;
            if op + len > out.len() {
                return Err("the data decompresses to more bytes than declared");
            }
            let from = op
                .checked_sub(back)
                .ok_or("a back reference points before the start of the output")?;
            if from + len <= op {
                out.copy_within(from..from + len, op);
            } else {
                for i in 0..len {
                    let b = out.get(from + i).copied().unwrap_or(0);
                    if let Some(slot) = out.get_mut(op + i) {
                        *slot = b;
                    }
                }
            }
            op += len;
        }
    }
    if op == out.len() {
        Ok(())
    } else {
        Err("the data decompresses to fewer bytes than declared")
    }
}

/// Checks that `input` is valid LZF decompressing to exactly `len` bytes, without producing
/// the output: the same checks as [`decompress`] (runs within the input, references within
/// the output so far, exact length), in no memory.
///
/// # Errors
/// As [`decompress`].
pub(crate) fn validate(input: &[u8], len: usize) -> Result<(), &'static str> {
    let mut ip = 0usize;
    let mut op = 0usize;
    while let Some(&ctrl) = input.get(ip) {
        ip += 1;
        let ctrl = usize::from(ctrl);
        let run = if ctrl < 32 {
            let run = ctrl + 1;
            if input.len() - ip < run {
                return Err("a literal run reaches past the compressed data");
            }
            ip += run;
            run
        } else {
            let mut run = ctrl >> 5;
            if run == 7 {
                run += usize::from(*input.get(ip).ok_or("a back reference is cut short")?);
                ip += 1;
            }
            let low = usize::from(*input.get(ip).ok_or("a back reference is cut short")?);
            ip += 1;
            let back = ((ctrl & 0x1f) << 8) + low + 1;
            if back > op {
                return Err("a back reference points before the start of the output");
            }
            run + 2
        };
        if len - op < run {
            return Err("the data decompresses to more bytes than declared");
        }
        op += run;
    }
    if op == len {
        Ok(())
    } else {
        Err("the data decompresses to fewer bytes than declared")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A simple (non-optimal but valid) LZF compressor for tests: literal runs plus
    /// back references to repeated 3-byte sequences found by a tiny hash table.
    pub(crate) fn compress(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut lit: Vec<u8> = Vec::new();
        let flush = |lit: &mut Vec<u8>, out: &mut Vec<u8>| {
            for chunk in lit.chunks(32) {
                out.push(u8::try_from(chunk.len() - 1).unwrap_or(0));
                out.extend_from_slice(chunk);
            }
            lit.clear();
        };
        let mut table = std::collections::HashMap::<[u8; 3], usize>::new();
        let mut i = 0;
        while i < input.len() {
            if i + 3 <= input.len() {
                let key = [input[i], input[i + 1], input[i + 2]];
                if let Some(&prev) = table.get(&key) {
                    let back = i - prev - 1;
                    if back < 8192 {
                        let mut len = 3;
                        while i + len < input.len()
                            && len < 264
                            && input[prev + len] == input[i + len]
                        {
                            len += 1;
                        }
                        flush(&mut lit, &mut out);
                        let l = len - 2;
                        if l < 7 {
                            out.push(u8::try_from((l << 5) | (back >> 8)).unwrap_or(0));
                        } else {
                            out.push(u8::try_from((7 << 5) | (back >> 8)).unwrap_or(0));
                            out.push(u8::try_from(l - 7).unwrap_or(0));
                        }
                        out.push(u8::try_from(back & 0xff).unwrap_or(0));
                        for j in i..i + len {
                            if j + 3 <= input.len() {
                                table.insert([input[j], input[j + 1], input[j + 2]], j);
                            }
                        }
                        i += len;
                        continue;
                    }
                }
                table.insert(key, i);
            }
            lit.push(input[i]);
            i += 1;
        }
        flush(&mut lit, &mut out);
        out
    }

    #[test]
    fn roundtrip_and_errors() {
        let data =
            b"hello hello hello hello world world world aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                .repeat(20);
        let c = compress(&data);
        assert!(c.len() < data.len());
        let mut out = vec![0; data.len()];
        decompress(&c, &mut out).unwrap();
        assert_eq!(out, data);
        let mut short = vec![0; data.len() - 1];
        assert!(decompress(&c, &mut short).is_err());
        let mut long = vec![0; data.len() + 1];
        assert!(decompress(&c, &mut long).is_err());
        // back reference before the start
        assert!(decompress(&[0x20, 0x05], &mut [0; 3]).is_err());
        // truncated literal
        assert!(decompress(&[0x05, b'a'], &mut [0; 6]).is_err());
        for cut in 0..c.len() {
            let mut out = vec![0; data.len()];
            assert!(decompress(&c[..cut], &mut out).is_err());
        }
    }

    #[test]
    fn validate_agrees_with_decompress() {
        let data = b"abcabcabcabc xyz xyz xyz 0123456789".repeat(50);
        let c = compress(&data);
        let mut inputs: Vec<(Vec<u8>, usize)> = vec![
            (c.clone(), data.len()),
            (c.clone(), data.len() - 1),
            (c.clone(), data.len() + 1),
            (vec![0x20, 0x05], 3),
            (vec![0x05, b'a'], 6),
            (vec![0x00, b'a', 0xE0, 0xff, 0x00], 300),
            (vec![0x00, b'a', 0xE0, 0xff], 300),
        ];
        for cut in 0..c.len() {
            inputs.push((c[..cut].to_vec(), data.len()));
        }
        for i in 0..c.len() {
            let mut flipped = c.clone();
            flipped[i] ^= 0x55;
            inputs.push((flipped, data.len()));
        }
        for (input, len) in inputs {
            let mut out = vec![0; len];
            assert_eq!(
                validate(&input, len).is_ok(),
                decompress(&input, &mut out).is_ok(),
                "{input:?} {len}"
            );
        }
    }
}
