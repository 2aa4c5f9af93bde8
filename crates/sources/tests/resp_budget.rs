#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The RESP reply parser against a hostile server: deep nesting, huge declared lengths and
//! endless arrays end in a clean protocol error while a counting allocator watches the heap,
//! a legitimate large reply still parses, and a seeded fuzz run of broken replies ends every
//! reply in `Ok` or `Err`, never a panic or a hang.
//!
//! The tests of this binary share one allocator counter, so they run one at a time (`SERIAL`);
//! each resets the peak before it starts. The fuzz seed is printed; set `RESP_FUZZ_SEED` to
//! replay a run.

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use backup_sources::redis::{RedisClient, RedisConfig, RedisError, Resp};
use peak_alloc::PeakAlloc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

/// One test at a time: the heap counter is global.
static SERIAL: Mutex<()> = Mutex::new(());

/// `MAX_REPLY_BYTES` and `MAX_REPLY_DEPTH` of the client (its connection module is private).
const MAX_REPLY_BYTES: usize = 64 * 1024 * 1024;
const MAX_REPLY_DEPTH: usize = 32;
const MIB: usize = 1024 * 1024;

/// How long one reply may take before the test calls it a hang.
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `f` alone (see `SERIAL`) on a fresh runtime; returns its output and the peak heap
/// (bytes) while it ran.
fn measured<T>(f: impl Future<Output = T>) -> (T, usize) {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    HEAP.reset_peak_usage();
    let output = runtime.block_on(f);
    let peak = HEAP.peak_usage();
    drop(runtime);
    (output, peak)
}

/// A server on a free port that answers the client's handshake (`CLIENT SETNAME`, `+OK`)
/// and hands the socket to `reply` for the next command.
async fn hostile<F, Fut>(reply: F) -> RedisConfig
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let Ok((socket, _)) = listener.accept().await else {
            return;
        };
        let mut reader = BufReader::new(socket);
        while let Some(args) = backup_testkit::read_resp_command(&mut reader).await {
            if args[0].eq_ignore_ascii_case(b"CLIENT") {
                if reader.get_mut().write_all(b"+OK\r\n").await.is_err() {
                    return;
                }
            } else {
                reply(reader.into_inner()).await;
                return;
            }
        }
    });
    RedisConfig::from_lookup(&move |name: &str| match name {
        "REDIS_HOST" => Some("127.0.0.1".to_owned()),
        "REDIS_PORT" => Some(port.to_string()),
        _ => None,
    })
    .unwrap()
}

/// Connects to `config` and sends `PING`; the reply, or a panic when nothing ends it in time.
async fn ping(config: RedisConfig) -> Result<Resp, RedisError> {
    let attempt = async {
        let mut client = RedisClient::connect(&config).await?;
        client.command(&[b"PING"]).await
    };
    tokio::time::timeout(REPLY_TIMEOUT, attempt)
        .await
        .expect("the reply neither ended nor failed in time (a hang)")
}

/// Writes `head`, then `chunk` `times` times (stopping when the client hangs up).
async fn stream(mut socket: TcpStream, head: Vec<u8>, chunk: Vec<u8>, times: usize) {
    if socket.write_all(&head).await.is_err() {
        return;
    }
    for _ in 0..times {
        if socket.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = socket.shutdown().await;
}

/// Asserts a protocol error whose message contains `needle`.
fn assert_refused(result: &Result<Resp, RedisError>, needle: &str) {
    match result {
        Err(e @ RedisError::Protocol { .. }) => {
            let message = e.to_string();
            assert!(message.contains(needle), "{message:?} lacks {needle:?}");
        }
        Err(other) => panic!("expected a protocol error naming {needle:?}, got {other}"),
        Ok(reply) => panic!("expected an error naming {needle:?}, got a reply of {reply:.80?}"),
    }
}

fn budget_message() -> String {
    format!("a reply larger than {MAX_REPLY_BYTES} bytes")
}

#[test]
fn deeply_nested_arrays_stop_at_the_depth_limit() {
    // `*1024\r\n` 100_000 times: 700 KB that once cost ~32 KB of slots per line.
    let (result, peak) = measured(async {
        let config =
            hostile(|socket| stream(socket, Vec::new(), b"*1024\r\n".repeat(1000), 100)).await;
        ping(config).await
    });
    eprintln!(
        "nested *1024: peak heap {:.2} MiB",
        peak as f64 / MIB as f64
    );
    assert_refused(
        &result,
        &format!("nested deeper than {MAX_REPLY_DEPTH} arrays"),
    );
    assert!(peak < 8 * MIB, "peak heap {peak} bytes");
}

#[test]
fn an_endless_array_stops_at_the_reply_budget() {
    // `*100000000` and then 20 million `:1` (80 MB), streamed: each 4-byte integer is a
    // 32-byte slot, so the budget is reached after a few MB of input.
    let (result, peak) = measured(async {
        let config = hostile(|socket| {
            stream(
                socket,
                b"*100000000\r\n".to_vec(),
                b":1\r\n".repeat(16 * 1024),
                20_000_000 / (16 * 1024),
            )
        })
        .await;
        ping(config).await
    });
    eprintln!(
        "*100000000 of :1: peak heap {:.2} MiB",
        peak as f64 / MIB as f64
    );
    assert_refused(&result, &budget_message());
    assert!(peak < 80 * MIB, "peak heap {peak} bytes");
}

#[test]
fn a_huge_bulk_string_is_refused_before_it_is_read() {
    let (result, peak) = measured(async {
        let config = hostile(|socket| {
            stream(
                socket,
                b"$4294967296\r\n".to_vec(),
                vec![b'x'; 64 * 1024],
                usize::MAX,
            )
        })
        .await;
        ping(config).await
    });
    eprintln!("$4294967296: peak heap {:.2} MiB", peak as f64 / MIB as f64);
    assert_refused(&result, "a bulk string of 4294967296 bytes");
    assert_refused(&result, &budget_message());
    assert!(peak < 8 * MIB, "peak heap {peak} bytes");
}

/// The `i`-th element of the legitimate large reply: 100 bytes.
fn element(i: usize) -> Vec<u8> {
    let mut e = format!("element {i:08} ").into_bytes();
    e.resize(100, b'a' + u8::try_from(i % 26).unwrap());
    e
}

#[test]
fn a_legitimate_large_reply_still_parses() {
    const ELEMENTS: usize = 100_000;
    let (result, peak) = measured(async {
        let config = hostile(|mut socket| async move {
            let mut out = format!("*{ELEMENTS}\r\n").into_bytes();
            for i in 0..ELEMENTS {
                out.extend_from_slice(b"$100\r\n");
                out.extend_from_slice(&element(i));
                out.extend_from_slice(b"\r\n");
                if out.len() >= 64 * 1024 || i + 1 == ELEMENTS {
                    if socket.write_all(&out).await.is_err() {
                        return;
                    }
                    out.clear();
                }
            }
            let _ = socket.shutdown().await;
        })
        .await;
        ping(config).await
    });
    eprintln!(
        "{ELEMENTS} bulk strings of 100 bytes: peak heap {:.2} MiB",
        peak as f64 / MIB as f64
    );
    let Ok(Resp::Array(Some(items))) = result else {
        panic!("expected an array, got {result:.200?}");
    };
    assert_eq!(items.len(), ELEMENTS);
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item, &Resp::Bulk(Some(element(i))), "element {i}");
    }
    assert!(peak < 40 * MIB, "peak heap {peak} bytes");
}

/// A valid reply and the value it encodes.
fn valid(rng: &mut StdRng, depth: u32, out: &mut Vec<u8>) -> Resp {
    let kind = if depth >= 4 {
        rng.gen_range(0..6)
    } else {
        rng.gen_range(0..9)
    };
    match kind {
        0 | 1 => {
            let text: String = (0..rng.gen_range(0..20))
                .map(|_| char::from(rng.gen_range(b' '..=b'~')))
                .collect();
            let error = kind == 1;
            out.push(if error { b'-' } else { b'+' });
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(b"\r\n");
            if error {
                Resp::Error(text)
            } else {
                Resp::Simple(text)
            }
        }
        2 => {
            let n: i64 = if rng.gen_bool(0.2) {
                rng.gen()
            } else {
                rng.gen_range(-100..1000)
            };
            out.extend_from_slice(format!(":{n}\r\n").as_bytes());
            Resp::Integer(n)
        }
        3 | 4 => {
            let len = if rng.gen_bool(0.1) {
                rng.gen_range(0..100_000)
            } else {
                rng.gen_range(0..40)
            };
            let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            out.extend_from_slice(format!("${len}\r\n").as_bytes());
            out.extend_from_slice(&data);
            out.extend_from_slice(b"\r\n");
            Resp::Bulk(Some(data))
        }
        5 => {
            if rng.gen_bool(0.5) {
                out.extend_from_slice(b"$-1\r\n");
                Resp::Bulk(None)
            } else {
                out.extend_from_slice(b"*-1\r\n");
                Resp::Array(None)
            }
        }
        _ => {
            let n = rng.gen_range(0..8);
            out.extend_from_slice(format!("*{n}\r\n").as_bytes());
            Resp::Array(Some((0..n).map(|_| valid(rng, depth + 1, out)).collect()))
        }
    }
}

/// A random reply: valid (with the value it encodes) or broken in one of several ways.
fn fuzz_case(rng: &mut StdRng) -> (Vec<u8>, Option<Resp>) {
    let mut out = Vec::new();
    let value = valid(rng, 0, &mut out);
    match rng.gen_range(0..9) {
        0 | 1 => (out, Some(value)),
        2 => {
            // Byte flips.
            for _ in 0..rng.gen_range(1..5) {
                let at = rng.gen_range(0..out.len());
                out[at] = rng.gen();
            }
            (out, None)
        }
        3 => {
            // Truncation.
            let at = rng.gen_range(0..out.len());
            out.truncate(at);
            (out, None)
        }
        4 => {
            // Garbage inserted.
            let at = rng.gen_range(0..=out.len());
            let garbage: Vec<u8> = (0..rng.gen_range(1..16)).map(|_| rng.gen()).collect();
            out.splice(at..at, garbage);
            (out, None)
        }
        5 => {
            // A huge declared length, then a little data (or a valid value).
            let huge = [
                (MAX_REPLY_BYTES + 1).to_string(),
                (MAX_REPLY_BYTES - 5).to_string(),
                "4294967296".to_owned(),
                i64::MAX.to_string(),
                "99999999999999999999999".to_owned(),
                "60000000".to_owned(),
                "-7".to_owned(),
            ];
            let n = &huge[rng.gen_range(0..huge.len())];
            let mut head =
                format!("{}{n}\r\n", if rng.gen_bool(0.5) { '$' } else { '*' }).into_bytes();
            head.extend_from_slice(&out);
            (head, None)
        }
        6 => {
            // Deep nesting around a value.
            let mut head = b"*1\r\n".repeat(rng.gen_range(1..80));
            head.extend_from_slice(&out);
            (head, None)
        }
        7 => {
            // Random bytes.
            let len = rng.gen_range(0..64);
            ((0..len).map(|_| rng.gen()).collect(), None)
        }
        _ => {
            // Wide and deep: arrays declaring many elements, each a few more arrays.
            let mut head = Vec::new();
            for _ in 0..rng.gen_range(1..40) {
                head.extend_from_slice(format!("*{}\r\n", rng.gen_range(1..1_000_000)).as_bytes());
                head.extend_from_slice(&out);
            }
            (head, None)
        }
    }
}

#[test]
fn fuzzed_replies_end_in_a_value_or_an_error() {
    const CASES: usize = 2000;
    let seed: u64 = std::env::var("RESP_FUZZ_SEED")
        .ok()
        .map_or_else(rand::random, |s| {
            s.trim().parse().expect("RESP_FUZZ_SEED: a u64")
        });
    eprintln!("RESP fuzz seed {seed} (replay with RESP_FUZZ_SEED={seed})");
    let ((ok, err), peak) = measured(async move {
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut ok, mut err) = (0usize, 0usize);
        for case in 0..CASES {
            let (bytes, expected) = fuzz_case(&mut rng);
            let sent = bytes.clone();
            let config = hostile(move |mut socket| async move {
                if socket.write_all(&bytes).await.is_ok() {
                    let _ = socket.shutdown().await;
                    // Wait for the client to hang up.
                    let mut sink = [0u8; 64];
                    while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
                }
            })
            .await;
            let result = ping(config).await;
            if let Some(expected) = expected {
                assert_eq!(
                    result.as_ref().ok(),
                    Some(&expected),
                    "case {case} (seed {seed}): {:?}",
                    String::from_utf8_lossy(&sent[..sent.len().min(200)])
                );
            }
            match result {
                Ok(_) => ok += 1,
                Err(_) => err += 1,
            }
        }
        (ok, err)
    });
    eprintln!(
        "RESP fuzz: {ok} replies parsed, {err} refused; peak heap {:.2} MiB",
        peak as f64 / MIB as f64
    );
    assert_eq!(ok + err, CASES);
    assert!(peak < MAX_REPLY_BYTES + 16 * MIB, "peak heap {peak} bytes");
}
