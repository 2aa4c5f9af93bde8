//! Values of any size are checked in bounded memory when payloads are not captured: a 256 MiB
//! string and a set of two million members, generated on the fly, are parsed while a counting
//! allocator watches the heap. (One test in this binary, so the peak is its own.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::pin::Pin;
use std::task::{Context, Poll};

use backup_rdb::{Item, ParseOptions, RdbReader, ValueType};
use peak_alloc::PeakAlloc;
use tokio::io::{AsyncRead, ReadBuf};

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

const BIG_STRING: u64 = 256 << 20;
const MEMBERS: u64 = 2_000_000;

/// An RDB (checksum 0: disabled) produced piece by piece, never held whole.
struct Generated {
    stage: u8,
    left: u64,
    pending: Vec<u8>,
}

impl Generated {
    fn new() -> Self {
        let mut head = b"REDIS0010".to_vec();
        head.extend_from_slice(&[0xFE, 0x00]); // SELECTDB 0
        head.extend_from_slice(&[0x00, 0x03]); // a string key "big"
        head.extend_from_slice(b"big");
        head.push(0x80); // 32-bit length
        head.extend_from_slice(&u32::try_from(BIG_STRING).unwrap().to_be_bytes());
        Self {
            stage: 0,
            left: BIG_STRING,
            pending: head,
        }
    }

    fn refill(&mut self) {
        match self.stage {
            0 => {
                let n = self.left.min(1 << 20);
                self.pending = vec![b'x'; usize::try_from(n).unwrap()];
                self.left -= n;
                if self.left == 0 {
                    self.stage = 1;
                }
            }
            1 => {
                // A set (type 2) "members" of MEMBERS strings.
                let mut v = vec![0x02, 0x07];
                v.extend_from_slice(b"members");
                v.push(0x80);
                v.extend_from_slice(&u32::try_from(MEMBERS).unwrap().to_be_bytes());
                self.pending = v;
                self.left = MEMBERS;
                self.stage = 2;
            }
            2 => {
                let mut v = Vec::with_capacity(64 * 1024);
                while self.left > 0 && v.len() < 60 * 1024 {
                    let m = format!("member:{:012}:padding-padding", self.left);
                    v.push(u8::try_from(m.len()).unwrap());
                    v.extend_from_slice(m.as_bytes());
                    self.left -= 1;
                }
                if self.left == 0 {
                    self.stage = 3;
                }
                self.pending = v;
            }
            3 => {
                let mut v = vec![0xFF];
                v.extend_from_slice(&[0u8; 8]);
                self.pending = v;
                self.stage = 4;
            }
            _ => {}
        }
    }
}

impl AsyncRead for Generated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pending.is_empty() {
            self.refill();
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn huge_values_are_checked_in_bounded_memory() {
    let mut reader = RdbReader::new(Generated::new(), ParseOptions::default());
    let mut entries = Vec::new();
    while let Some(item) = reader.next().await.unwrap() {
        if let Item::Entry(e) = item {
            entries.push((e.key, e.value_type, e.elements));
        }
    }
    assert_eq!(
        entries,
        [
            (b"big".to_vec(), ValueType::String, 1),
            (b"members".to_vec(), ValueType::Set, MEMBERS),
        ]
    );
    assert!(!reader.checksum_verified());
    // The data is ~330 MB; the parser's buffer, the generator's chunks and the runtime stay
    // well under 16 MiB of heap over the whole life of this test process.
    let peak = HEAP.peak_usage();
    assert!(
        peak < 16 << 20,
        "peak heap {peak} bytes while parsing ~330 MB of values"
    );
}
