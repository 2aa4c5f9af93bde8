//! CRC-64/Jones as Redis computes it (reflected, polynomial 0xad93d23594c935a9, init 0,
//! no final xor): the `crc` crate's `CRC_64_REDIS`.

const ALGORITHM: crc::Crc<u64, crc::Table<16>> =
    crc::Crc::<u64, crc::Table<16>>::new(&crc::CRC_64_REDIS);

/// CRC-64 of `bytes`, continuing from `crc` (0 to start).
pub fn crc64(crc: u64, bytes: &[u8]) -> u64 {
    let mut digest = Crc64::resume(crc);
    digest.update(bytes);
    digest.value()
}

/// A running CRC-64.
#[derive(Clone, Copy, Debug, Default)]
pub struct Crc64 {
    value: u64,
}

impl Crc64 {
    /// A new digest.
    pub fn new() -> Self {
        Self::default()
    }

    /// Continues from an earlier value.
    pub fn resume(value: u64) -> Self {
        Self { value }
    }

    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        // CRC_64_REDIS has no final xor, so the running value is the register; resuming means
        // starting a digest with that register. The crc crate reflects the initial value of a
        // reflected algorithm, hence `reverse_bits` to hand it the register as it expects.
        let mut digest = ALGORITHM.digest_with_initial(self.value.reverse_bits());
        digest.update(bytes);
        self.value = digest.finalize();
    }

    /// The CRC so far.
    pub fn value(&self) -> u64 {
        self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_redis_test_vector() {
        // redis/src/crc64.c: crc64(0, "123456789") == 0xe9c6d914c4b8d9ca
        assert_eq!(crc64(0, b"123456789"), 0xe9c6_d914_c4b8_d9ca);
        let mut split = Crc64::new();
        split.update(b"1234");
        split.update(b"56789");
        assert_eq!(split.value(), 0xe9c6_d914_c4b8_d9ca);
    }
}
