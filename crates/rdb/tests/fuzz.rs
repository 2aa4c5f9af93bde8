//! A bounded mutation fuzz run over the hand-built RDB that holds every encoding: bit flips,
//! interesting bytes, huge lengths and LZF headers, insertions, deletions, splices and cuts,
//! mostly with the CRC-64 fixed up so that the structure, not the checksum, is what is tested.
//! Each input is parsed walked (as a check does) under the default budget and under a tight
//! one, and captured (as an online restore does); asserted: no panic, the heap's peak under
//! the budget, and the walked and captured parses agreeing.
//!
//! `RDB_FUZZ_SECONDS` (default 8) bounds the run, `RDB_FUZZ_SEED` replays one; a failing input
//! is written to `target/rdb-fuzz-failure.rdb`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use backup_rdb::{crc64, Item, ParseOptions, RdbError, RdbReader};
use peak_alloc::PeakAlloc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

const MIB: u64 = 1 << 20;

/// Bytes that mean something to the parser: opcodes, length encodings, LZF, types.
const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x07, 0x0F, 0x12, 0x15, 0x3F, 0x40, 0x7F, 0x80, 0x81, 0xC0, 0xC3, 0xF5, 0xF7, 0xFA,
    0xFB, 0xFC, 0xFE, 0xFF,
];

fn mutate(rng: &mut StdRng, sample: &[u8]) -> Vec<u8> {
    let mut v = sample.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        if v.len() < 10 {
            break;
        }
        let at = rng.gen_range(9..v.len());
        match rng.gen_range(0..8) {
            0 => v[at] ^= 1 << rng.gen_range(0..8),
            1 => v[at] = INTERESTING[rng.gen_range(0..INTERESTING.len())],
            2 => {
                // A huge 64-bit length.
                let mut huge = vec![0x81];
                huge.extend_from_slice(&rng.gen_range(1u64 << 20..u64::MAX).to_be_bytes());
                v.splice(at..at, huge);
            }
            3 => {
                // An LZF header declaring up to 88 times a compressed length.
                let clen: u8 = rng.gen_range(1..60);
                let len = u32::from(clen) * rng.gen_range(1..=88);
                let mut lzf = vec![0xC3, clen, 0x80];
                lzf.extend_from_slice(&len.to_be_bytes());
                v.splice(at..at, lzf);
            }
            4 => {
                let n = rng.gen_range(1..16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
                v.splice(at..at, bytes);
            }
            5 => {
                let end = (at + rng.gen_range(1..32)).min(v.len());
                v.drain(at..end);
            }
            6 => {
                // Splice a chunk of the file somewhere else.
                let from = rng.gen_range(9..v.len());
                let end = (from + rng.gen_range(1..64)).min(v.len());
                let chunk = v[from..end].to_vec();
                v.splice(at..at, chunk);
            }
            _ => v.truncate(at),
        }
    }
    match rng.gen_range(0..10) {
        0 => {}
        1 => {
            let n = v.len();
            if n >= 8 {
                v[n - 8..].fill(0);
            }
        }
        _ => {
            let n = v.len();
            if n >= 17 {
                let crc = crc64(0, &v[..n - 8]);
                v[n - 8..].copy_from_slice(&crc.to_le_bytes());
            }
        }
    }
    v
}

/// Each key with its element count, or the error; and the heap's peak while parsing.
async fn parse(
    input: &[u8],
    options: ParseOptions,
) -> (Result<Vec<(Vec<u8>, u64)>, RdbError>, u64) {
    HEAP.reset_peak_usage();
    let before = HEAP.current_usage() as u64;
    let result = async {
        let mut reader = RdbReader::new(input, options);
        let mut keys = Vec::new();
        while let Some(item) = reader.next().await? {
            if let Item::Entry(e) = item {
                keys.push((e.key, e.elements));
            }
        }
        Ok(keys)
    }
    .await;
    let peak = (HEAP.peak_usage() as u64).saturating_sub(before);
    (result, peak)
}

#[tokio::test]
async fn mutated_rdb_files_never_panic_stay_in_budget_and_parse_alike_walked_and_captured() {
    let seconds = std::env::var("RDB_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let seed = std::env::var("RDB_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("RDB_FUZZ_SEED={seed} RDB_FUZZ_SECONDS={seconds}");
    let mut rng = StdRng::seed_from_u64(seed);
    let sample = common::full_file();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let tight = 2 * MIB;
    let (mut runs, mut accepted) = (0u64, 0u64);
    let mut worst = 0u64;
    while Instant::now() < deadline {
        let input = mutate(&mut rng, &sample);
        let keep = |what: &str| {
            let path = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../target/rdb-fuzz-failure.rdb"
            );
            let _ = std::fs::write(path, &input);
            format!("seed {seed}, run {runs}: {what} (input written to {path})")
        };
        let (walked, peak) = parse(&input, ParseOptions::default()).await;
        assert!(peak < 64 * MIB, "{}", keep(&format!("walked peak {peak}")));
        worst = worst.max(peak);
        let options = ParseOptions {
            memory_budget: Some(tight),
            ..ParseOptions::default()
        };
        let (tightly, peak) = parse(&input, options).await;
        assert!(
            peak <= tight,
            "{}",
            keep(&format!("tight-budget peak {peak}"))
        );
        let options = ParseOptions {
            capture_payload: true,
            max_value_bytes: Some(16 * MIB),
            ..ParseOptions::default()
        };
        let (captured, peak) = parse(&input, options).await;
        assert!(
            peak < 80 * MIB,
            "{}",
            keep(&format!("captured peak {peak}"))
        );
        match (&walked, &captured) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{}", keep("walked and captured keys differ")),
            (Err(_), Err(_)) => {}
            _ => panic!(
                "{}",
                keep(&format!("walked {walked:?} but captured {captured:?}"))
            ),
        }
        // A small file never needs more than the tight budget: same verdict.
        assert_eq!(
            walked.is_ok(),
            tightly.is_ok(),
            "{}",
            keep(&format!("default {walked:?} but tight {tightly:?}"))
        );
        runs += 1;
        accepted += u64::from(walked.is_ok());
    }
    eprintln!(
        "{runs} mutated files, {accepted} accepted, worst peak heap {} KiB",
        worst / 1024
    );
    assert!(runs > 100, "only {runs} runs in {seconds} s");
}
