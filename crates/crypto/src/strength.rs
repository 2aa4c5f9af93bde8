//! A conservative estimate of how hard a key is to guess, for `security-scan`.

use base64::Engine as _;

use crate::key::EncryptionKey;

/// What [`EncryptionKey::strength`] estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyStrength {
    /// Estimated bits of entropy (an upper bound for random keys, a rough one for words).
    pub bits: u32,
    /// How the key looks: `base64` or `hex` (random bytes, counted as their decoded length),
    /// `words` (space-separated words, about 11 bits each, as from a large word list), or
    /// `characters` (length x log2 of the character classes used).
    pub form: &'static str,
}

/// Bits credited per word of a passphrase of words: a little under a Diceware word (12.9),
/// since people pick words that are easier to guess than dice do.
const BITS_PER_WORD: f64 = 11.0;

impl EncryptionKey {
    /// Estimates the key's strength without revealing anything about it. Keys of
    /// `backup-key generate` and `openssl rand -base64 N` count as their N random bytes.
    pub fn strength(&self) -> KeyStrength {
        estimate(self.passphrase())
    }
}

/// Estimates the strength of the key in `path` as openssl would read it (its first line),
/// without the checks of [`EncryptionKey::from_file`]: an audit must judge a key file whose
/// mode is wrong too. Nothing of the key is returned.
///
/// # Errors
/// When the file cannot be read.
pub fn key_file_strength(path: &std::path::Path) -> Result<KeyStrength, crate::CryptoError> {
    use std::io::Read as _;
    let unreadable = |source| crate::CryptoError::KeyFileUnreadable {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if !meta.is_file() {
        return Err(unreadable(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    let mut buf = zeroize::Zeroizing::new(Vec::with_capacity(crate::key::OPENSSL_PASS_MAX));
    std::fs::File::open(path)
        .map_err(unreadable)?
        .take(crate::key::OPENSSL_PASS_MAX as u64)
        .read_to_end(&mut buf)
        .map_err(unreadable)?;
    Ok(estimate(crate::key::openssl_first_line(&buf)))
}

pub(crate) fn estimate(passphrase: &[u8]) -> KeyStrength {
    let text = String::from_utf8_lossy(passphrase);
    let trimmed = text.trim();
    let distinct = {
        let mut seen: Vec<char> = trimmed.chars().collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    };
    // Random bytes, encoded, use many different characters; `aaaa...` is valid base64 too.
    let looks_random = |alphabet: usize| distinct >= (trimmed.len() / 2).min(alphabet / 2);
    let is_hex =
        trimmed.len() >= 16 && trimmed.bytes().all(|b| b.is_ascii_hexdigit()) && looks_random(16);
    if is_hex {
        return KeyStrength {
            bits: saturating_bits(trimmed.len() as f64 * 4.0),
            form: "hex",
        };
    }
    let base64 = base64::engine::general_purpose::STANDARD;
    if trimmed.len() >= 16 && trimmed.len().is_multiple_of(4) && looks_random(64) {
        if let Ok(raw) = base64.decode(trimmed) {
            return KeyStrength {
                bits: saturating_bits(raw.len() as f64 * 8.0),
                form: "base64",
            };
        }
    }
    let words: Vec<&str> = trimmed.split_whitespace().collect();
    if words.len() >= 2 {
        return KeyStrength {
            bits: saturating_bits(words.len() as f64 * BITS_PER_WORD),
            form: "words",
        };
    }
    let mut pool = 0u32;
    let classes: [fn(char) -> bool; 4] = [
        |c| c.is_ascii_lowercase(),
        |c| c.is_ascii_uppercase(),
        |c| c.is_ascii_digit(),
        |c| c.is_ascii_punctuation() || c == ' ',
    ];
    let sizes = [26, 26, 10, 33];
    for (class, size) in classes.iter().zip(sizes) {
        if trimmed.chars().any(class) {
            pool += size;
        }
    }
    if !trimmed.is_ascii() {
        pool += 100;
    }
    let length = trimmed.chars().count() as f64;
    // Repeated characters add little: count at most the distinct characters twice.
    let counted = length.min(distinct as f64 * 2.0);
    KeyStrength {
        bits: saturating_bits(counted * f64::from(pool.max(1)).log2()),
        form: "characters",
    }
}

fn saturating_bits(bits: f64) -> u32 {
    if bits.is_finite() && bits > 0.0 {
        bits.min(f64::from(u32::MAX)) as u32
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_bytes(n: usize) -> Vec<u8> {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn random_keys_count_their_bytes_and_weak_passphrases_little() {
        let generated = base64::engine::general_purpose::STANDARD.encode(random_bytes(32));
        assert_eq!(
            estimate(generated.as_bytes()),
            KeyStrength {
                bits: 256,
                form: "base64"
            }
        );
        let openssl48 = base64::engine::general_purpose::STANDARD.encode(random_bytes(48));
        assert_eq!(estimate(openssl48.as_bytes()).bits, 384);
        assert_eq!(estimate(b"3f9a0c1e77d24b58a6e1f03c9b2d8e47").form, "hex");
        assert_eq!(estimate(b"3f9a0c1e77d24b58a6e1f03c9b2d8e47").bits, 128);
        let words = estimate(b"correct horse battery staple");
        assert_eq!(
            words,
            KeyStrength {
                bits: 44,
                form: "words"
            }
        );
        assert!(estimate(b"password").bits < 40);
        assert!(estimate(b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").bits < 10);
        let mixed = estimate(b"G7#kp2!Qz9@Lm4$Xw8&Rt5^Vb1*Nc6(Yh3)Jd0%");
        assert!(mixed.bits >= 200, "{mixed:?}");
        assert_eq!(estimate(b"").bits, 0);
    }
}
