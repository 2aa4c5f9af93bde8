//! Hostile RDB files, generated here (never stored), against a counting allocator: each cause
//! of unbounded memory the review found ends in a clear error or a correct result, with the
//! heap's peak under the parser's budget. The tests of this binary take turns (a lock taken
//! on each test's first line, so that even building another test's input cannot happen
//! meanwhile), so each peak is its own under `cargo test` as under nextest.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::pin::Pin;

use std::task::{Context, Poll};

use backup_rdb::{
    restore_payload, verify_restore_payload, Item, ParseOptions, RdbError, RdbReader, RdbSummary,
    DEFAULT_MEMORY_BUDGET, SUMMARY_AUX_FIELDS, SUMMARY_DATABASES,
};
use backup_testkit::hostile_rdb::{self, Generated};
use peak_alloc::PeakAlloc;
use tokio::io::{AsyncRead, ReadBuf};

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const MIB: u64 = 1 << 20;

/// Runs `parse` and returns its result with the heap's peak (bytes) while it ran. The
/// calling test holds its turn ([`TURN`]) from its first line, so no other test of this binary
/// allocates meanwhile (building a hostile file included).
async fn measured<T>(parse: impl std::future::Future<Output = T>) -> (T, u64) {
    HEAP.reset_peak_usage();
    let before = HEAP.current_usage() as u64;
    let out = parse.await;
    let peak = (HEAP.peak_usage() as u64).saturating_sub(before);
    (out, peak)
}

async fn parse_summary(
    file: Generated,
    options: ParseOptions,
) -> (Result<RdbSummary, RdbError>, u64) {
    measured(RdbSummary::read_with(file, options)).await
}

fn assert_peak(peak: u64, limit: u64, what: &str) {
    eprintln!("{what}: peak heap {:.1} MiB", peak as f64 / MIB as f64);
    assert!(
        peak < limit,
        "{what}: peak heap {peak} bytes, over {limit} bytes"
    );
}

#[tokio::test]
async fn an_lzf_key_declaring_100_mib_is_refused_by_the_budget_before_it_is_decompressed() {
    let _turn = TURN.lock().await;
    let (result, peak) =
        parse_summary(hostile_rdb::lzf_key(100 * MIB), ParseOptions::default()).await;
    let err = result.unwrap_err();
    assert!(
        matches!(&err, RdbError::OverBudget { budget, needed, .. }
            if *budget == DEFAULT_MEMORY_BUDGET && *needed > 100 * MIB),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("a key") && text.contains("BACKUP_REDIS_PARSE_MEMORY_MB"),
        "{text}"
    );
    assert_peak(peak, 8 * MIB, "LZF key");
}

#[tokio::test]
async fn an_lzf_value_of_88_times_its_size_is_checked_without_being_decompressed() {
    let _turn = TURN.lock().await;
    // 1 GiB of value from about 12 MB of LZF: a correct file, checked within the budget.
    let (result, peak) =
        parse_summary(hostile_rdb::lzf_value(1 << 30), ParseOptions::default()).await;
    let summary = result.unwrap();
    assert_eq!(summary.keys(), 1);
    assert_peak(peak, DEFAULT_MEMORY_BUDGET, "LZF value");
    // Captured for RESTORE it would be too large for Redis: refused at its declared size.
    let capture = ParseOptions {
        capture_payload: true,
        max_value_bytes: Some(512 * MIB),
        ..ParseOptions::default()
    };
    let (result, peak) = summary_of(hostile_rdb::lzf_value(1 << 30), capture).await;
    let err = result.unwrap_err();
    assert!(
        matches!(err, RdbError::TooLarge { size, .. } if size == 1 << 30),
        "{err}"
    );
    assert_peak(peak, 8 * MIB, "LZF value, captured");
}

/// Every item of `file` read with `options` (payloads dropped as they come).
async fn summary_of(file: Generated, options: ParseOptions) -> (Result<u64, RdbError>, u64) {
    measured(async move {
        let mut reader = RdbReader::new(file, options);
        let mut keys = 0;
        while let Some(item) = reader.next().await? {
            if let Item::Entry(_) = item {
                keys += 1;
            }
        }
        Ok(keys)
    })
    .await
}

#[tokio::test]
async fn an_lzf_stream_id_must_declare_16_bytes() {
    let _turn = TURN.lock().await;
    let (result, peak) = parse_summary(
        hostile_rdb::lzf_stream_id(100 * MIB),
        ParseOptions::default(),
    )
    .await;
    let err = result.unwrap_err();
    assert!(
        matches!(&err, RdbError::OverLimit { size, limit: 16, .. } if *size == 100 * MIB),
        "{err}"
    );
    assert!(err.to_string().contains("stream node ID"), "{err}");
    assert_peak(peak, 8 * MIB, "LZF stream ID");
}

#[tokio::test]
async fn aux_names_of_0xff_bytes_are_capped_and_kept_short_in_the_summary() {
    let _turn = TURN.lock().await;
    // Over the 16 MiB cap of an AUX field: refused before it is decompressed.
    let (result, peak) =
        parse_summary(hostile_rdb::lzf_aux_name(32 * MIB), ParseOptions::default()).await;
    let err = result.unwrap_err();
    assert!(matches!(err, RdbError::OverLimit { .. }), "{err}");
    assert!(err.to_string().contains("AUX field name"), "{err}");
    assert_peak(peak, 8 * MIB, "LZF AUX name over the cap");
    // Under it: parsed, and the summary keeps 256 bytes of the name, not a lossy copy of
    // three times its size.
    let (result, peak) =
        parse_summary(hostile_rdb::lzf_aux_name(8 * MIB), ParseOptions::default()).await;
    let summary = result.unwrap();
    let longest = summary.aux.keys().map(String::len).max().unwrap();
    assert_eq!(longest, 256 * '\u{FFFD}'.len_utf8());
    assert_peak(peak, 24 * MIB, "LZF AUX name under the cap");
}

#[tokio::test]
async fn a_600_mb_raw_aux_value_is_refused_at_its_length() {
    let _turn = TURN.lock().await;
    let (result, peak) = parse_summary(
        hostile_rdb::raw_aux_value(600_000_000),
        ParseOptions::default(),
    )
    .await;
    let err = result.unwrap_err();
    assert!(
        matches!(
            &err,
            RdbError::OverLimit {
                size: 600_000_000,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("AUX field value"), "{err}");
    assert_peak(peak, 8 * MIB, "raw AUX value");
}

#[tokio::test]
async fn a_stream_listpack_of_2_byte_entries_is_validated_without_collecting_them() {
    let _turn = TURN.lock().await;
    // 100 MiB of listpack is more than the default budget may buffer...
    let (result, peak) = parse_summary(
        hostile_rdb::stream_listpack(100 * MIB),
        ParseOptions::default(),
    )
    .await;
    let err = result.unwrap_err();
    assert!(matches!(err, RdbError::OverBudget { .. }), "{err}");
    assert!(err.to_string().contains("stream listpack"), "{err}");
    assert_peak(peak, 8 * MIB, "stream listpack, default budget");
    // ... and with a budget that allows it, the node is walked entry by entry: the blob and
    // nothing per entry (collected, its 52 million entries took about 8 times the blob).
    let options = ParseOptions {
        memory_budget: Some(256 * MIB),
        ..ParseOptions::default()
    };
    let (result, peak) = parse_summary(hostile_rdb::stream_listpack(100 * MIB), options).await;
    let summary = result.unwrap();
    assert_eq!(summary.keys(), 1);
    // The counting allocator sees the buffer's last growth as old + new (glibc moves large
    // blocks with mremap, so the process does not): under twice the blob, under the budget.
    assert_peak(peak, 208 * MIB, "stream listpack, 256 MiB budget");
}

#[tokio::test]
async fn thousands_of_databases_and_aux_fields_keep_a_bounded_summary() {
    let _turn = TURN.lock().await;
    let n = 100_000;
    let (result, peak) =
        parse_summary(hostile_rdb::many_selectdb(n), ParseOptions::default()).await;
    let summary = result.unwrap();
    assert_eq!(summary.keys(), n);
    assert_eq!(summary.keys_per_db.len(), SUMMARY_DATABASES);
    assert_eq!(summary.types_per_db.len(), SUMMARY_DATABASES);
    assert_eq!(summary.keys_in_other_dbs, n - SUMMARY_DATABASES as u64);
    assert_peak(peak, 4 * MIB, "SELECTDB records");

    let (result, peak) = parse_summary(hostile_rdb::many_aux(n), ParseOptions::default()).await;
    let summary = result.unwrap();
    // The n fields and the generator's own redis-ver.
    assert_eq!(summary.aux_fields, n + 1);
    assert_eq!(summary.aux.len(), SUMMARY_AUX_FIELDS);
    assert_peak(peak, 4 * MIB, "AUX records");
}

#[tokio::test]
async fn an_lzf_listpack_declaring_more_than_the_budget_is_refused_before_it_is_decompressed() {
    let _turn = TURN.lock().await;
    let (result, peak) = parse_summary(
        hostile_rdb::lzf_hash_listpack(1 << 30),
        ParseOptions::default(),
    )
    .await;
    let err = result.unwrap_err();
    assert!(matches!(err, RdbError::OverBudget { .. }), "{err}");
    assert_peak(peak, 32 * MIB, "LZF hash listpack");
}

#[tokio::test]
async fn a_stream_with_8_million_pending_entries_is_read_in_pieces() {
    let _turn = TURN.lock().await;
    // About 200 MB of consumer group: a correct file, walked a thousand entries at a time.
    let (result, peak) = parse_summary(hostile_rdb::pel(8_000_000), ParseOptions::default()).await;
    let summary = result.unwrap();
    assert_eq!(summary.keys(), 1);
    assert_peak(peak, 4 * MIB, "stream PEL");
}

#[tokio::test]
async fn a_module_value_with_a_600_mb_string_is_skipped_as_it_streams() {
    let _turn = TURN.lock().await;
    let (result, peak) = parse_summary(
        hostile_rdb::module_string(600_000_000),
        ParseOptions::default(),
    )
    .await;
    let summary = result.unwrap();
    assert_eq!(summary.keys(), 1);
    assert_peak(peak, 4 * MIB, "module value");
}

/// `REDIS0010`, SELECTDB 0, a string key `big` of `size` raw bytes of `x`, a key `after` =
/// `ok`, EOF with a zero checksum; produced a MiB at a time.
struct BigValue {
    pieces: Box<dyn Iterator<Item = Vec<u8>> + Send + Unpin>,
    piece: Vec<u8>,
}

impl BigValue {
    fn new(size: u32) -> Self {
        let mut head = b"REDIS0010\xfe\x00\x00\x03big\x80".to_vec();
        head.extend_from_slice(&size.to_be_bytes());
        let body = (0..size.div_ceil(1 << 20)).map(move |i| {
            let n = (size - i * (1 << 20)).min(1 << 20);
            vec![b'x'; n as usize]
        });
        let tail = b"\x00\x05after\x02ok\xff\x00\x00\x00\x00\x00\x00\x00\x00".to_vec();
        Self {
            pieces: Box::new(
                std::iter::once(head)
                    .chain(body)
                    .chain(std::iter::once(tail)),
            ),
            piece: Vec::new(),
        }
    }
}

impl AsyncRead for BigValue {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.piece.is_empty() {
            if let Some(next) = self.pieces.next() {
                self.piece = next;
            }
        }
        let n = self.piece.len().min(buf.remaining());
        buf.put_slice(&self.piece[..n]);
        self.piece.drain(..n);
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_captured_value_is_held_once() {
    let _turn = TURN.lock().await;
    const SIZE: u32 = 100 << 20;
    let options = ParseOptions {
        capture_payload: true,
        max_value_bytes: Some(512 * MIB),
        ..ParseOptions::default()
    };
    let (entries, peak) = measured(async move {
        let mut reader = RdbReader::new(BigValue::new(SIZE), options);
        let mut entries = Vec::new();
        while let Some(item) = reader.next().await.unwrap() {
            if let Item::Entry(mut e) = item {
                // Check the payload as RESTORE will, then keep only its length and ends.
                let payload = e.payload.take().unwrap();
                let len = payload.len();
                let ends = (
                    payload[..len.min(6)].to_vec(),
                    payload[len.saturating_sub(3)..].to_vec(),
                );
                let all_x = len > 6 && payload[6..].iter().all(|&b| b == b'x');
                let dump = restore_payload(&payload, reader.version().unwrap());
                verify_restore_payload(&dump).unwrap();
                drop(payload);
                drop(dump);
                entries.push((e.key, len, ends, all_x));
            }
        }
        entries
    })
    .await;
    assert_eq!(entries.len(), 2);
    let (key, len, (head, tail), all_x) = &entries[0];
    assert_eq!(key, b"big");
    assert_eq!(*len, 1 + 5 + SIZE as usize);
    assert_eq!(head, b"\x00\x80\x06\x40\x00\x00");
    assert_eq!(tail, b"xxx");
    assert!(all_x);
    assert_eq!(entries[1].0, b"after");
    assert_eq!(entries[1].1, 4);
    // The value itself, its RESTORE copy made by this test, and the parser's buffer around
    // the value: not a second copy of the value inside the parser.
    assert_peak(
        peak,
        2 * u64::from(SIZE) + 48 * MIB,
        "captured 100 MiB value",
    );
}

#[tokio::test]
async fn a_walked_stream_tail_agrees_with_the_captured_one_at_every_piece_boundary() {
    let _turn = TURN.lock().await;
    // The tail is read a thousand pending entries at a time when walked; the same file read
    // whole (captured) must give the same key and element count, however the bytes arrive.
    for n in [0u64, 1, 5, 1023, 1024, 1025, 2048, 3000, 50_000] {
        let walked = entries(hostile_rdb::pel(n), ParseOptions::default()).await;
        let capture = ParseOptions {
            capture_payload: true,
            ..ParseOptions::default()
        };
        let captured = entries(hostile_rdb::pel(n), capture).await;
        assert_eq!(walked, captured, "{n} pending entries");
        assert_eq!(walked, [(b"stream".to_vec(), 1)], "{n} pending entries");
    }
}

/// Each key of `file` with its element count, read with `options`.
async fn entries(file: Generated, options: ParseOptions) -> Vec<(Vec<u8>, u64)> {
    let mut reader = RdbReader::new(file, options);
    let mut out = Vec::new();
    while let Some(item) = reader.next().await.unwrap() {
        if let Item::Entry(e) = item {
            out.push((e.key, e.elements));
        }
    }
    out
}
